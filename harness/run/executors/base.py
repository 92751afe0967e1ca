"""What an executor is: it runs a plan's case repetitions, wherever it runs them, and appends each one's record to
the run's ``results.jsonl`` as it ends (records are only ever appended; every executor writes the same records,
so reports, ``compare``, ``history`` and ``export`` read every run alike)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.config import Case
from harness.run.case_run import Work
from harness.run.progress import Display
from harness.run.suite import Suite

__all__ = ["Executor", "Plan"]


@dataclass(frozen=True)
class Plan:
    """A run's remaining work: the suite, the run folder, the submitting host's description, the repetitions not
    done yet (in the order to run them) and the results file to append to."""
    suite: Suite
    run_dir: Path
    host: dict[str, Any]
    work: list[Work]
    results: Path


class Executor:
    """Runs a plan. Subclasses set ``name`` and ``help`` and implement :meth:`execute`."""

    name: ClassVar[str] = ""
    #: One line for ``harness list`` and the run's first line.
    help: ClassVar[str] = ""

    def place(self, case: Case, suite: Suite) -> Case:
        """``case`` as this executor runs it (default: as it is). Called for every case before anything runs, so a
        case it cannot place stops the run at once, and a resumed run compares like with like."""
        return case

    def recover(self, run_dir: Path, display: Display) -> None:
        """Before a resumed run decides what is done: bring in whatever an earlier, killed ``harness run`` left
        behind (default: nothing; the local executor's records are written the moment a case ends)."""

    def execute(self, plan: Plan, display: Display) -> None:
        raise NotImplementedError
