"""One case (one repetition of it) run in its folder, and the record it leaves: the one place a record is made,
whether the case runs in ``harness run``'s own process tree (the local executor) or in a Slurm job on another node
(:mod:`harness.run.slurm.job`).
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.probe import backend_info
from harness.config import Case
from harness.errors import HarnessError
from harness.results.case_rules import representative_samples
from harness.results.records import SCHEMA
from harness.run.launchers import Launcher, get_launcher, launcher_for
from harness.run.launchers.base import failed
from harness.run.launchers.process import log_tail
from harness.run.progress import Display
from harness.run.scenarios import get_scenario

__all__ = ["Work", "run_case", "measure", "base_record"]

#: How a case's own launcher is chosen (the local executor: :func:`launcher_for`; on Slurm: through ``srun``).
Choose = Callable[[Case, dict[str, Any]], Launcher]


@dataclass(frozen=True)
class Work:
    """One case repetition of a run: the case, which repetition, its folder and its label on the terminal."""
    case: Case
    repeat: int
    case_dir: Path
    label: str


def run_case(case: Case, case_dir: Path, display: Display, label: str, eta: float | None,
             choose: Choose = launcher_for) -> dict[str, Any]:
    """The case's result: any case its scenario needs first (inference's export by ``export_from``) in
    ``case_dir/<scenario of that case>``, then the case itself through its launcher."""
    try:
        info = backend_info(case.backend)
        scenario = get_scenario(case.settings.scenario)
        first = scenario.prerequisite(case, info)
        extra: dict[str, Any] = {}
        if first is not None:
            status = info.get("device_status", {}).get(case.device, {})
            if not status.get("available", True):  # nothing to make first for: this backend cannot run here
                reason = status.get("reason") or "unavailable"
                return {"status": "skipped", "metrics": {},
                        "reason": reason if reason.startswith(case.device) else f"{case.device}: {reason}"}
            folder = case_dir / first.settings.scenario
            folder.mkdir(exist_ok=True)
            made = get_launcher("single").run(first, folder, display.watcher(f"{label} {first.settings.scenario} "
                                                                              f"by {first.backend}", None))
            if made["status"] != "ok":
                return {**made, "reason": f"{first.settings.scenario} by {first.backend}: {made.get('reason')}"}
            case, extra = scenario.after_prerequisite(case, made, str(folder))
        result = choose(case, info).run(case, case_dir, display.watcher(label, eta))
    except HarnessError as exc:
        return failed(f"launch: {exc}")
    if extra:
        scenario.merge(result, extra)
    return result


def base_record(work: Work, run_dir: Path, suite: str, selection: tuple[str, ...]) -> dict[str, Any]:
    """What every record of ``work`` holds before its outcome: schema, run, case, repetition and configuration."""
    case = work.case
    return {"schema": SCHEMA, "kind": "measured", "suite": suite, "run_id": run_dir.name, "case": case.name,
            "repeat": work.repeat, "repeats": case.settings.repeats, "config": case.to_dict(),
            "log": str((work.case_dir / "case.log").relative_to(run_dir)),
            **({"selection": list(selection)} if selection else {})}


def measure(work: Work, run_dir: Path, suite: str, selection: tuple[str, ...], host: dict[str, Any],
            display: Display, eta: float | None, choose: Choose = launcher_for) -> dict[str, Any]:
    """Run ``work`` and return its record: the outcome, the measurements, the noise verdict and the host's state."""
    from harness.measure.doctor import quick_checks
    from harness.measure.host import HostWindow
    from harness.measure.noise import assess

    case, case_dir = work.case, work.case_dir
    case_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    checks = quick_checks()
    window = HostWindow.start()
    t0 = time.monotonic()
    result = run_case(case, case_dir, display, work.label, eta, choose)
    duration = time.monotonic() - t0
    facts = window.stop()
    record = {
        **base_record(work, run_dir, suite, selection),
        "status": result["status"], "reason": result.get("reason"),
        "started_at": started.isoformat(), "duration_s": duration,
        "metrics": result.get("metrics", {}), "samples": result.get("samples", {}),
        "noise": assess(representative_samples({**result, "config": case.to_dict()}), facts)
        if result["status"] == "ok" else None,
        "env": {**host, "load_avg_1m": checks.get("load_avg_1m"), "host_checks": checks, "backend": case.backend,
                "device": case.device, **result.get("env", {})},
    }
    if result["status"] == "failed":
        record["log_tail"] = result.get("rank_log_tail") or log_tail(case_dir / "case.log")
        if "failed_rank" in result:
            record["failed_rank"] = result["failed_rank"]
    return record
