"""The Slurm commands harness runs, and what they say about its jobs.

Job states are read with ``sacct`` where the cluster keeps accounting (slurmdbd), and with ``squeue`` and
``scontrol show job`` where it does not (``sacct`` then answers "accounting storage is disabled"; many small clusters
run so); those forget a job ``MinJobAge`` seconds (300 by default) after it ends, and then the job's own record file
is what remains. Every command failure is one :class:`HarnessError` line naming the command.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError, one_line

__all__ = ["JobInfo", "ACTIVE", "ENDED", "require", "submit", "job_states", "cancel", "hostnames", "node_address",
           "parse_scontrol", "parse_sacct", "parse_squeue", "ended_reason", "has_accounting"]

#: States of a job that has not ended (its processes may still run).
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT",
                    "RESV_DEL_HOLD", "POWER_UP_NODE", "UPDATE_DB"})
#: States of a job that has ended, and what each says of a case that left no record of its own.
ENDED = {"COMPLETED": ("crashed", "the job ended without writing the case's record"),
         "FAILED": ("crashed", "the job's script failed before writing the case's record"),
         "TIMEOUT": ("timeout", "Slurm stopped the job at its time limit"),
         "OUT_OF_MEMORY": ("crashed", "out of memory: Slurm killed the job at its memory limit"),
         "NODE_FAIL": ("crashed", "node failure: a node of the job stopped answering"),
         "BOOT_FAIL": ("crashed", "a node of the job failed to boot"),
         "PREEMPTED": ("interrupted", "preempted: Slurm took the nodes for another job"),
         "CANCELLED": ("interrupted", "the job was cancelled (scancel)"),
         "DEADLINE": ("timeout", "the job reached its deadline"),
         "REVOKED": ("interrupted", "the job was revoked (another cluster of a federation ran it)")}


@dataclass(frozen=True)
class JobInfo:
    """What the scheduler says of one job. Times are timezone-naive ISO strings as Slurm prints them, or None."""
    job_id: str
    state: str
    exit_code: str = ""
    reason: str = ""
    node_list: str = ""
    nodes: int | None = None
    submitted: str | None = None
    started: str | None = None
    ended: str | None = None
    time_limit: str = ""
    source: str = "scontrol"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def seconds(self, since: str | None, until: str | None) -> float | None:
        try:
            return (dt.datetime.fromisoformat(str(until)) - dt.datetime.fromisoformat(str(since))).total_seconds()
        except ValueError:
            return None

    def facts(self) -> dict[str, Any]:
        """For the record: state, exit code, nodes, and the pending and run times kept apart."""
        return {"job_id": self.job_id, "state": self.state, "exit_code": self.exit_code, "reason": self.reason or None,
                "node_list": self.node_list or None, "nodes": self.nodes, "time_limit": self.time_limit or None,
                "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "pending_s": self.seconds(self.submitted, self.started),
                "run_s": self.seconds(self.started, self.ended), "read_with": self.source}


def require() -> None:
    """Refuse ``--on slurm`` at once where the Slurm commands are missing."""
    missing = [c for c in ("sbatch", "scontrol", "scancel", "srun") if shutil.which(c) is None]
    if missing:
        raise HarnessError(f"--on slurm: {', '.join(missing)} not found on PATH: run harness on a Slurm login node "
                           "(or install Slurm's client commands and point SLURM_CONF at the cluster's slurm.conf)")


def _run(argv: list[str], what: str, timeout: float = 60) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"{what}: {' '.join(argv[:2])} did not answer: {one_line(str(exc))}") from None
    if out.returncode != 0:
        raise HarnessError(f"{what}: {' '.join(argv[:2])} failed (exit {out.returncode}): "
                           f"{one_line(out.stderr.strip() or out.stdout.strip())}")
    return out.stdout


def submit(script: str, options: list[str]) -> str:
    """``sbatch --parsable OPTIONS SCRIPT``; the job id."""
    out = _run(["sbatch", "--parsable", *options, script], "submitting a case").strip()
    job = out.split(";")[0].strip()
    if not job.isdigit():
        raise HarnessError(f"submitting a case: sbatch answered {out!r}, not a job id")
    return job


_FIELD = re.compile(r"(\w+)=(\S*)")


def _time(value: str | None) -> str | None:
    return value if value and value not in ("Unknown", "None", "N/A") and value[:1].isdigit() else None


def parse_scontrol(text: str) -> dict[str, JobInfo]:
    """``scontrol show job -o`` (one job a line, ``Key=Value`` fields) by job id."""
    out = {}
    for line in text.splitlines():
        f = dict(_FIELD.findall(line))
        if "JobId" not in f:
            continue
        nodes = f.get("NumNodes", "").split("-")[0]
        out[f["JobId"]] = JobInfo(
            job_id=f["JobId"], state=f.get("JobState", "UNKNOWN"), exit_code=f.get("ExitCode", ""),
            reason="" if f.get("Reason") in (None, "None") else f["Reason"],
            node_list="" if f.get("NodeList") in (None, "(null)") else f["NodeList"],
            nodes=int(nodes) if nodes.isdigit() else None, submitted=_time(f.get("SubmitTime")),
            started=_time(f.get("StartTime")), ended=_time(f.get("EndTime")), time_limit=f.get("TimeLimit", ""))
    return out


#: The fields read from ``sacct``, in order.
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Reason", "NodeList", "NNodes", "Submit", "Start", "End", "Timelimit")


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """``sacct --parsable2 --noheader -X --format=`` :data:`SACCT_FIELDS` by job id (the job's own line, not its
    steps'; ``CANCELLED by 1000`` is state CANCELLED)."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != len(SACCT_FIELDS) or not parts[0].isdigit():
            continue
        f = dict(zip(SACCT_FIELDS, parts))
        out[f["JobID"]] = JobInfo(
            job_id=f["JobID"], state=f["State"].split()[0] if f["State"] else "UNKNOWN", exit_code=f["ExitCode"],
            reason="" if f["Reason"] in ("", "None") else f["Reason"],
            node_list="" if f["NodeList"] in ("", "None assigned") else f["NodeList"],
            nodes=int(f["NNodes"]) if f["NNodes"].isdigit() else None, submitted=_time(f["Submit"]),
            started=_time(f["Start"]), ended=_time(f["End"]), time_limit=f["Timelimit"], source="sacct")
    return out


@functools.cache
def has_accounting() -> bool:
    """Whether ``sacct`` answers on this cluster (asked once per process; without slurmdbd it says "accounting
    storage is disabled")."""
    try:
        out = subprocess.run(["sacct", "--noheader", "-X", "-j", "1", "--format=JobID"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "disabled" not in (out.stderr + out.stdout).lower()


#: ``squeue --format``: the fields read from it, ``|``-separated (it has no exit code: ``scontrol`` gives that).
SQUEUE_FORMAT = "%i|%T|%r|%N|%D|%V|%S|%e|%l"


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue --noheader --format=`` :data:`SQUEUE_FORMAT` by job id."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 9 or not parts[0].isdigit():
            continue
        job, state, reason, nodes_list, nodes, submitted, started, ended, limit = parts
        out[job] = JobInfo(job_id=job, state=state, reason="" if reason == "None" else reason,
                           node_list="" if nodes_list in ("", "(null)") else nodes_list,
                           nodes=int(nodes) if nodes.isdigit() else None, submitted=_time(submitted),
                           started=_time(started), ended=_time(ended), time_limit=limit, source="squeue")
    return out


def job_states(job_ids: list[str]) -> dict[str, JobInfo]:
    """What the scheduler says of ``job_ids``: ``sacct`` where accounting is kept (it remembers ended jobs);
    otherwise ``squeue`` (every state, filtered by the controller), and for a job that has ended ``scontrol show
    job``, which has its exit code. A job none of them knows any more is absent."""
    if not job_ids:
        return {}
    found: dict[str, JobInfo] = {}
    if has_accounting():
        found = parse_sacct(_run(["sacct", "--noheader", "--parsable2", "-X", f"--format={','.join(SACCT_FIELDS)}",
                                  "-j", ",".join(job_ids)], "reading job states"))
    missing = [j for j in job_ids if j not in found]
    if not missing:
        return found
    argv = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}", f"--jobs={','.join(missing)}"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"reading job states: squeue did not answer: {one_line(str(exc))}") from None
    if out.returncode != 0 and "invalid job id" not in out.stderr.lower():  # (every job id unknown: none listed)
        raise HarnessError(f"reading job states: squeue failed (exit {out.returncode}): {one_line(out.stderr)}")
    for job, info in parse_squeue(out.stdout).items():
        if not info.active:  # ended: its exit code (if scontrol does not answer, the state without it)
            with contextlib.suppress(HarnessError):
                info = parse_scontrol(_run(["scontrol", "show", "job", "-o", job], "reading job states")).get(job, info)
        found[job] = info
    return found


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60, check=False)


def hostnames(node_list: str) -> list[str]:
    """``scontrol show hostnames``: ``n[1-2]`` -> ``["n1", "n2"]``."""
    return _run(["scontrol", "show", "hostnames", node_list], "reading the job's nodes").split()


def node_address(node: str) -> str:
    """The address Slurm reaches ``node`` at (its ``NodeAddr``; the name itself when it has none)."""
    f = dict(_FIELD.findall(_run(["scontrol", "show", "node", node, "-o"], "reading a node's address")))
    return f.get("NodeAddr") or node


def ended_reason(info: JobInfo) -> tuple[str, str]:
    """``(status word, reason)`` of a case whose job ended without its record: the word a local run would use
    (timeout, crashed, interrupted) and Slurm's own state, exit code and reason."""
    word, meaning = ENDED.get(info.state, ("crashed", "the job ended"))
    detail = ", ".join(filter(None, [f"exit code {info.exit_code}" if info.exit_code else "",
                                     f"reason {info.reason}" if info.reason else "",
                                     f"time limit {info.time_limit}" if info.state == "TIMEOUT" else "",
                                     f"on {info.node_list}" if info.node_list else ""]))
    return word, f"{word}: Slurm job {info.job_id} {info.state} ({detail}): {meaning}"
