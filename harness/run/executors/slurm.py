"""``slurm``: each case repetition as a Slurm job (``harness run SUITE --on slurm``).

Each job asks for what its case needs (:mod:`harness.run.slurm.cluster`: nodes, devices as GRES, partition, time
limit, ...), runs the case on its first node (:mod:`harness.run.slurm.job`) and leaves the case's record in the case
folder; this side submits up to ``cluster.max_jobs`` at once, watches their states, and appends each record to the
run's ``results.jsonl`` as its job ends - or, for a job Slurm ended itself (time limit, memory, node failure,
preemption, cancellation), a failed record whose reason is Slurm's state, exit code and reason. Every submission is
noted in ``slurm/jobs.log`` of the run folder, so ``--resume`` after a killed ``harness run`` takes in the records
its jobs left, watches the jobs still queued or running instead of submitting them again, and submits only the rest.
Ctrl-C cancels every job this run submitted.
"""
from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Case, case_slug
from harness.errors import HarnessError
from harness.results.case_rules import identity_key
from harness.results.records import RESULTS_FILE, append_record, read_records
from harness.run.case_run import Work, base_record
from harness.run.executors.base import Executor, Plan
from harness.run.launchers.process import log_tail
from harness.run.progress import Display, summary
from harness.run.slurm import scheduler
from harness.run.slurm.cluster import place, sbatch_options
from harness.run.slurm.job import JOB_FILE, RECORD_FILE
from harness.run.suite import Suite

__all__ = ["Slurm", "JOBS_FILE"]

#: In the run folder: one JSON line per job submitted (case, repetition, job id, case folder, submission time); not
#: ``.jsonl``, which reports read as records.
JOBS_FILE = "slurm/jobs.log"
#: Seconds a job that ended as COMPLETED or FAILED is given for its record file to appear (a shared filesystem's
#: attribute cache can hide a file another node just wrote).
RECORD_GRACE_S = 30.0
#: Polls in a row in which the scheduler does not know a job before it counts as gone.
UNKNOWN_POLLS = 3


@dataclass
class _Job:
    work: Work
    job_id: str
    submitted_at: str
    state: str = "SUBMITTED"
    unknown: int = 0
    ended_at: float | None = None
    info: scheduler.JobInfo | None = field(default=None, repr=False)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _read_record(case_dir: Path, job_id: str) -> dict[str, Any] | None:
    """The record the job ``job_id`` left in ``case_dir``; None if it left none (or the file is another job's)."""
    try:
        record: dict[str, Any] = json.loads((case_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if str(((record.get("env") or {}).get("slurm") or {}).get("job_id")) == job_id else None


def _partial_metrics(case_dir: Path) -> dict[str, Any]:
    """What the case measured before Slurm stopped it (the worker rewrites its result file after each phase)."""
    for name in ("result.json", "result.rank0.json"):
        try:
            metrics = json.loads((case_dir / name).read_text()).get("metrics")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(metrics, dict):
            return metrics
    return {}


class Slurm(Executor):
    name = "slurm"
    help = "each case as a Slurm job"

    def __init__(self) -> None:
        self._attached: dict[tuple[str, int], dict[str, Any]] = {}  # jobs of a killed run still queued or running

    def place(self, case: Case, suite: Suite) -> Case:
        return place(case, suite.cluster)

    # -- the run folder's notes ------------------------------------------------------------------------------------
    @staticmethod
    def _submissions(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
        """The newest submission of each (case, repetition)."""
        latest: dict[tuple[str, int], dict[str, Any]] = {}
        path = run_dir / JOBS_FILE
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    latest[(entry["case"], int(entry["repeat"]))] = entry
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write
        return latest

    def recover(self, run_dir: Path, display: Display) -> None:
        """Take in what the jobs of an earlier, killed ``harness run`` left: records not yet in ``results.jsonl``
        are appended; jobs still queued or running are watched again (not submitted twice); a job that ended
        without a record gets a failed one with Slurm's reason (so the case runs again)."""
        results = run_dir / RESULTS_FILE
        recorded = {str((r.get("env") or {}).get("slurm", {}).get("job_id"))
                    for r in (read_records(results, empty_ok=True) if results.exists() else [])}
        left = [e for e in self._submissions(run_dir).values() if str(e["job_id"]) not in recorded]
        if not left:
            return
        scheduler.require()
        infos = scheduler.job_states([str(e["job_id"]) for e in left])
        for entry in left:
            job_id, case_dir = str(entry["job_id"]), run_dir / entry["case_dir"]
            try:
                spec = json.loads((case_dir / JOB_FILE).read_text())
            except (OSError, ValueError):
                continue
            work = Work(Case.from_dict(spec["case"]), int(spec["repeat"]), case_dir, spec["label"])
            job = _Job(work, job_id, entry["submitted_at"], info=infos.get(job_id))
            record = _read_record(case_dir, job_id)
            if record is None and job.info is not None and job.info.active:
                self._attached[(work.case.name, work.repeat)] = {**entry, "config": spec["case"]}
                display.line(f"{work.label}: Slurm job {job_id} of the earlier run is still {job.info.state}: "
                             "watched, not submitted again")
                continue
            self._finish(job, record, run_dir, spec["suite"], tuple(spec.get("selection", [])), display,
                         "recovered: ")

    # -- submitting and watching ------------------------------------------------------------------------------------
    def _submit(self, plan: Plan, work: Work) -> _Job:
        cluster, case_dir = plan.suite.cluster, work.case_dir
        case_dir.mkdir(parents=True, exist_ok=True)
        for stale in (RECORD_FILE, RECORD_FILE + ".partial"):
            (case_dir / stale).unlink(missing_ok=True)
        (case_dir / JOB_FILE).write_text(json.dumps({
            "case": work.case.to_dict(), "repeat": work.repeat, "label": work.label,
            "run_dir": str(plan.run_dir.resolve()), "suite": plan.suite.name,
            "selection": list(plan.suite.selection)}, indent=1))
        script = case_dir / "job.sh"
        run = f"exec {shlex.quote(sys.executable)} -m harness.run.slurm.job {shlex.quote(str(case_dir.resolve()))}\n"
        setup = "".join(f"{line}\n" for line in cluster.setup)
        script.write_text(f"#!/bin/bash\n# written by harness run --on slurm\n{setup}{run}")
        options = [f"--job-name=harness-{case_slug(plan.suite.name)}-{case_slug(work.case.name)}"[:120],
                   f"--output={case_dir.resolve()}/slurm-%j.out", f"--chdir={case_dir.resolve()}",
                   "--open-mode=append", *sbatch_options(work.case, cluster)]
        job_id = scheduler.submit(str(script), options)
        job = _Job(work, job_id, _now())
        notes = plan.run_dir / JOBS_FILE
        notes.parent.mkdir(exist_ok=True)
        with open(notes, "a", encoding="utf-8") as f:
            f.write(json.dumps({"case": work.case.name, "repeat": work.repeat, "job_id": job_id,
                                "case_dir": str(case_dir.relative_to(plan.run_dir)), "submitted_at": job.submitted_at,
                                "sbatch": options}) + "\n")
        return job

    def _finish(self, job: _Job, record: dict[str, Any] | None, run_dir: Path, suite: str,
                selection: tuple[str, ...], display: Display, prefix: str = "") -> None:
        """Append the job's record - its own, or one made from what Slurm says of how it ended."""
        facts = {**(job.info.facts() if job.info else {"job_id": job.job_id}), "submitted_at": job.submitted_at}
        if record is None:
            if job.info is not None:
                _, reason = scheduler.ended_reason(job.info)
            else:
                reason = (f"crashed: Slurm no longer knows job {job.job_id} and it left no record "
                          f"(see {job.work.case_dir / f'slurm-{job.job_id}.out'})")
            metrics = _partial_metrics(job.work.case_dir)
            record = {**base_record(job.work, run_dir, suite, selection), "status": "failed",
                      "reason": reason + (" (measurements before the end kept)" if metrics else ""),
                      "started_at": facts.get("started"), "duration_s": facts.get("run_s"), "metrics": metrics,
                      "samples": {}, "noise": None,
                      "env": {"backend": job.work.case.backend, "device": job.work.case.device},
                      "log_tail": log_tail(job.work.case_dir / f"slurm-{job.job_id}.out")}
        record.setdefault("env", {})["slurm"] = {**(record["env"].get("slurm") or {}), **facts}
        append_record(run_dir / RESULTS_FILE, record)
        where = f"Slurm job {job.job_id}" + (f" on {facts['node_list']}" if facts.get("node_list") else "")
        times = ", ".join(f"{k} {facts[v]:.0f} s" for k, v in (("pending", "pending_s"), ("ran", "run_s"))
                          if isinstance(facts.get(v), (int, float)))
        display.line(f"{prefix}{job.work.label}: {summary(record)} ({where}{'; ' + times if times else ''})")

    def _watch(self, job: _Job, info: scheduler.JobInfo | None, display: Display) -> bool:
        """Note the job's new state (shown when it changes); whether it has ended."""
        if info is None:
            job.unknown += 1
            return job.unknown >= UNKNOWN_POLLS
        job.unknown, job.info = 0, info
        if info.state != job.state:
            job.state = info.state
            if info.state == "PENDING":
                display.line(f"{job.work.label}: Slurm job {job.job_id} pending"
                             + (f" ({info.reason})" if info.reason else ""))
            elif info.state == "RUNNING":
                display.line(f"{job.work.label}: Slurm job {job.job_id} running on {info.node_list}")
        if info.active:
            return False
        if info.state in ("COMPLETED", "FAILED"):  # the job ran to its end: its record may take a moment to show
            job.ended_at = job.ended_at or time.monotonic()
            return time.monotonic() - job.ended_at >= RECORD_GRACE_S
        return True

    def execute(self, plan: Plan, display: Display) -> None:
        if not plan.work:  # a resumed run with nothing left: no scheduler needed
            return
        scheduler.require()
        cluster, suite = plan.suite.cluster, plan.suite
        queue: list[Work] = []
        active: dict[str, _Job] = {}
        for work in plan.work:
            entry = self._attached.pop((work.case.name, work.repeat), None)
            if entry is not None and identity_key(entry["config"]) == identity_key(work.case.to_dict()):
                active[str(entry["job_id"])] = _Job(work, str(entry["job_id"]), entry["submitted_at"])
                continue
            if entry is not None:  # the case's settings changed since: its old job measures something else
                scheduler.cancel([str(entry["job_id"])])
                display.line(f"{work.label}: cancelled Slurm job {entry['job_id']} of the earlier run (the case's "
                             "settings changed since)")
            queue.append(work)
        done = 0
        display.start(suite.name, len(plan.work))
        try:
            while queue or active:
                while queue and len(active) < cluster.max_jobs:
                    job = self._submit(plan, queue.pop(0))
                    active[job.job_id] = job
                    display.line(f"{job.work.label}: submitted as Slurm job {job.job_id}")
                try:
                    infos = scheduler.job_states(list(active))
                except HarnessError as exc:  # the controller did not answer this time: ask again next poll
                    display.line(f"harness: {exc}")
                    infos = {j: info for j in active if (info := active[j].info) is not None}
                for job_id, job in list(active.items()):
                    record = _read_record(job.work.case_dir, job_id)
                    ended = self._watch(job, infos.get(job_id), display)
                    if (record is not None and (job.info is None or not job.info.active)) or ended:
                        self._finish(job, record, plan.run_dir, suite.name, suite.selection, display)
                        del active[job_id]
                        done += 1
                        display.advance()
                states = [j.state for j in active.values()]
                display.info(f"slurm: {states.count('PENDING')} pending, {states.count('RUNNING')} running, "
                             f"{len(queue)} to submit, {done} done of {len(plan.work)}")
                if queue or active:
                    time.sleep(cluster.poll_s)
        except KeyboardInterrupt:
            scheduler.cancel(list(active))
            display.line(f"harness: cancelled the {len(active)} Slurm job(s) this run submitted that had not ended "
                         f"({', '.join(active) or 'none'})")
            for job_id, job in active.items():
                record = _read_record(job.work.case_dir, job_id)
                if record is None:
                    job.info = None
                    record = {**base_record(job.work, plan.run_dir, suite.name, suite.selection),
                              "status": "failed", "reason": f"interrupted: harness run was stopped; Slurm job {job_id} "
                              f"cancelled ({job.state})", "started_at": None, "duration_s": None,
                              "metrics": _partial_metrics(job.work.case_dir), "samples": {}, "noise": None,
                              "env": {"backend": job.work.case.backend, "device": job.work.case.device}}
                self._finish(job, record, plan.run_dir, suite.name, suite.selection, display)
            raise
        finally:
            display.close()
