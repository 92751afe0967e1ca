"""``local``: every case repetition in this machine's process tree, one after another."""
from __future__ import annotations

import time

from harness.results.records import append_record
from harness.run.case_run import measure
from harness.run.executors.base import Executor, Plan
from harness.run.progress import Display, summary

__all__ = ["Local"]


class Local(Executor):
    name = "local"
    help = "one case after another on this machine"

    def execute(self, plan: Plan, display: Display) -> None:
        durations: list[float] = []
        for i, work in enumerate(display.cases(plan.suite.name, plan.work)):
            eta = sum(durations) / len(durations) * (len(plan.work) - i) if durations else None
            t0 = time.monotonic()
            record = measure(work, plan.run_dir, plan.suite.name, plan.suite.selection, plan.host, display, eta)
            durations.append(time.monotonic() - t0)
            append_record(plan.results, record)
            display.line(f"{work.label}: {summary(record)} ({record['duration_s']:.1f} s)")
