"""Ranks of a multi-device case: their result files, the rank at fault, and one record from all of them."""
from __future__ import annotations

import json
import math
import os
import re
import socket
from pathlib import Path
from typing import Any

from harness.config import Case, Settings
from harness.measure.steps import summarize

__all__ = ["rank_result_file", "merge_ranks", "root_cause_rank", "rendezvous_port", "cpus_here", "threads_per_rank"]


def rank_result_file(result_file: str | Path, rank: int) -> Path:
    p = Path(result_file)
    return p.with_name(f"{p.stem}.rank{rank}{p.suffix}")


def cpus_here() -> int:
    """How many CPUs this process may run on: its CPU affinity (a container's or ``taskset``'s limit, inherited by
    the processes it starts), else every CPU of the host."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_rank(threads: int | None, ranks_here: int) -> int:
    """The thread count of each of ``ranks_here`` processes of a case on this node: ``threads`` when set, else an
    equal share of :func:`cpus_here`. The one rule for it: the worker sets it in the case and the thread-pool
    variables, and a launcher that must set ``OMP_NUM_THREADS`` itself (torchrun would set 1) sets the same value.
    (torchrun's launcher used to divide ``os.cpu_count()``, which counts CPUs the affinity rules out, and its value
    won over the worker's; the affinity is what the ranks can use, so it is the rule kept.)"""
    return threads or max(1, cpus_here() // max(1, ranks_here))


def rendezvous_port(s: Settings) -> int:
    """``master_port``, else a free port on a single node, else 29500 (every node must agree)."""
    if s.master_port:
        return s.master_port
    if s.nodes > 1:
        return 29500
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_log_tail(case_dir: Path, rank: int, lines: int = 15) -> str:
    """The end of rank ``rank``'s own log, wherever its launcher put it."""
    candidates = sorted((case_dir / "ranks").rglob(f"worker_{rank}.log")) + \
        sorted(p for p in (case_dir / "ranks").rglob("*") if p.is_file() and p.parent.name == str(rank))
    for path in candidates:
        try:
            text = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            continue
        if text:
            return "\n".join(text[-lines:])
    return ""


_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+)", re.S)
_MSRUN_EXIT = re.compile(r"Worker process (\d+) exit with exception")


def root_cause_rank(launcher_log: str, pids: dict[int, int] | None = None) -> int | None:
    """The rank the launcher's log names as the first to fail: torchrun's "Root Cause" summary, or the
    first worker msrun reports as exiting with an exception (by pid, mapped through ``pids``: pid -> rank)."""
    m = _ROOT_CAUSE.search(launcher_log)
    if m:
        return int(m.group(1))
    m = _MSRUN_EXIT.search(launcher_log)
    if m and pids:
        return pids.get(int(m.group(1)))
    return None


def merge_ranks(case: Case, result_file: Path, case_dir: Path, every_node: bool = False) -> dict[str, Any] | None:
    """One result from every rank's file of this node (``every_node``: of all nodes, whose ranks write into one
    case folder on a shared filesystem, as under Slurm); None when no rank wrote anything."""
    s = case.settings
    ranks = list(range(s.devices * s.nodes)) if every_node else [s.node_rank * s.devices + i for i in range(s.devices)]
    per: dict[int, dict[str, Any] | None] = {}
    for r in ranks:
        try:
            per[r] = json.loads(rank_result_file(result_file, r).read_text())
        except (OSError, ValueError):
            per[r] = None
    if all(v is None for v in per.values()):
        return None
    lead = per.get(ranks[0]) or next(v for v in per.values() if v is not None)
    merged: dict[str, Any] = {"status": "ok", "reason": None, "metrics": dict(lead.get("metrics", {})),
                              "samples": {}, "env": dict(lead.get("env", {}))}
    # The rank at fault first: one that died without a result, then one that failed, then those the launcher
    # terminated because of it.
    try:
        pids = {v["pid"]: r for r, v in per.items() if v is not None and "pid" in v}
        first = root_cause_rank((case_dir / "case.log").read_text(errors="replace"), pids)
    except OSError:
        first = None
    bad = sorted(((r, v) for r, v in per.items() if v is None or v.get("status") != "ok"),
                 key=lambda rv: (rv[0] != first,
                                 0 if rv[1] is None or rv[1].get("status") == "running"
                                 else 2 if rv[1].get("terminated") else 1, rv[0]))
    skipped = [v for _, v in bad if v is not None and v.get("status") == "skipped"]
    if skipped and len(skipped) == len(per):
        return {**merged, "status": "skipped", "reason": skipped[0].get("reason")}
    if bad:
        r, v = bad[0]
        why = (v or {}).get("reason") or ("no result: the process died" if v is None or v.get("status") == "running"
                                          else v.get("status"))
        merged.update(status="failed", reason=f"rank {r}: {why}", failed_rank=r,
                      rank_log_tail=_rank_log_tail(case_dir, r))
    trains = {r: (v or {}).get("metrics", {}).get("train") for r, v in per.items()}
    if all(trains.values()):
        slowest = max(trains, key=lambda r: trains[r]["ms_per_step"]["mean"])
        merged["metrics"]["train"] = {
            **trains[slowest],
            "images_per_s": math.fsum(t["images_per_s"] for t in trains.values()),
            "ms_per_step": trains[slowest]["ms_per_step"],
            "slowest_rank": slowest,
            "global_batch": s.batch_size * s.devices * s.nodes,
        }
        merged["samples"]["train_step_s"] = (per[slowest] or {})["samples"].get("train_step_s", [])
    merged["samples"]["train_step_s_by_rank"] = {str(r): (v or {}).get("samples", {}).get("train_step_s", [])
                                                 for r, v in per.items()}
    merged["metrics"]["ranks"] = [
        {"rank": r, "status": (v or {}).get("status", "died"),
         "images_per_s": (trains.get(r) or {}).get("images_per_s"),
         "ms_per_step": ((trains.get(r) or {}).get("ms_per_step") or {}).get("mean"),
         "params_sha256": ((v or {}).get("metrics") or {}).get("weights_sha256")} for r, v in per.items()]
    merged["metrics"]["world_size"] = s.devices * s.nodes
    if "train_step_s" in merged["samples"] and merged["samples"]["train_step_s"]:
        merged["metrics"]["train"]["ms_per_step"] = summarize(merged["samples"]["train_step_s"])
    return merged
