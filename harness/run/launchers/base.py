"""What a launcher is: how a case's processes are started on this node, and how their results become one.

:meth:`Launcher.run` is the same for every launcher: write the case file, start the command in the case folder,
watch it (progress, timeout), reap every process of the case, then :meth:`collect` the result; a launcher only
says which command starts its ranks (:meth:`command`) and how their result files are read (:meth:`collect`).
"""
from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from harness.config import Case
from harness.errors import HarnessError
from harness.run.launchers.process import log_tail, reap, start_and_watch

__all__ = ["Launcher", "WORKER", "failed"]

#: The worker that runs one case (or one rank of it) in this interpreter.
WORKER = [sys.executable, "-m", "harness.run.worker"]


def failed(reason: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "metrics": {}, "samples": {}, "env": {}}


class Launcher:
    """Starts one case's processes. Subclasses set ``name`` and implement :meth:`command`; register them in
    :mod:`harness.run.launchers` (or, from another package, under the entry-point group ``harness.launchers``)."""

    name: ClassVar[str] = ""
    #: One line for ``harness list``.
    help: ClassVar[str] = ""
    #: Whether it starts several ranks (each writing ``result.rank<R>.json``).
    multi_device: ClassVar[bool] = True

    def command(self, case: Case, case_file: Path, result_file: Path,
                case_dir: Path) -> tuple[list[str], dict[str, str]]:
        """The argv and extra environment that start ``case``'s processes on this node."""
        raise NotImplementedError

    def collect(self, case: Case, result_file: Path, case_dir: Path) -> dict[str, Any] | None:
        """The case's result from what its processes wrote; None when nothing was written."""
        from harness.run.launchers.ranks import merge_ranks

        return merge_ranks(case, result_file, case_dir)

    def run(self, case: Case, case_dir: Path, status: Callable[[Any], None]) -> dict[str, Any]:
        """Run ``case`` in ``case_dir``; return its result, or a failure built from how it ended. ``status`` gets
        ``!``-prefixed notices (text) and the worker's progress messages (dicts, :func:`start_and_watch`)."""
        case_dir = case_dir.resolve()
        strays = reap(f"HARNESS_CASE_DIR={case_dir}")
        if strays:  # a runner killed outright (kill -9) left them writing into this folder
            status(f"!stopped {strays} process(es) an earlier, killed run left running in {case_dir}")
        case_file, result_file, log_file = case_dir / "case.json", case_dir / "result.json", case_dir / "case.log"
        case_file.write_text(json.dumps(case.to_dict(), indent=1))
        result_file.unlink(missing_ok=True)
        for stale in case_dir.glob("result.rank*.json"):
            stale.unlink()
        try:
            argv, env = self.command(case, case_file, result_file, case_dir)
        except HarnessError as exc:  # this case cannot start; the suite goes on
            return failed(f"launch: {exc}")
        ended = start_and_watch(argv, env, case_dir, log_file, case.settings.timeout, status)
        result = self.collect(case, result_file, case_dir)
        if ended.timed_out:
            reason = f"timeout: case exceeded {case.settings.timeout:g} s"
        elif result is not None and result.get("status") in ("ok", "failed", "skipped"):
            return result
        elif ended.returncode is not None and ended.returncode < 0:
            reason = f"crashed: killed by signal {signal.Signals(-ended.returncode).name}"
            if ended.returncode == -signal.SIGKILL:
                reason += " (from outside; on Linux the kernel's out-of-memory killer sends it: see `dmesg`)"
        else:
            last = (log_tail(log_file, 1) or "no output").strip()
            reason = f"crashed: worker exited with status {ended.returncode} without a result: {last[:300]}"
        result = result or {"metrics": {}, "samples": {}, "env": {}}
        hint = " (measurements before the crash kept)" if result.get("metrics") else ""
        result.update(status="failed", reason=reason + hint)
        return result
