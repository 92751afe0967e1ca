"""The parent: the suite loop. Runs each case through its launcher (:mod:`harness.run.launchers`) in a working folder
of its own, after any case its scenario needs first, and appends one record per case to ``results.jsonl`` the
moment the case ends, whatever happened to its processes. The parent never imports a deep-learning framework.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from harness.backends.probe import backend_info
from harness.config import Case, case_slug
from harness.errors import HarnessError
from harness.measure.environment import host_environment
from harness.results.case_rules import identity_key, representative_samples
from harness.results.records import RESULTS_FILE, SCHEMA, append_record
from harness.run.launchers import get_launcher, launcher_for
from harness.run.launchers.base import failed
from harness.run.launchers.process import log_tail
from harness.run.progress import Display, summary
from harness.run.scenarios import get_scenario
from harness.run.suite import Suite

__all__ = ["run_suite", "new_run_id", "tiny_data_root", "resume_target"]


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 100000:05d}"


def tiny_data_root(results_root: Path) -> Path:
    return results_root / "_data" / "tiny"


def _run_case(case: Case, case_dir: Path, display: Display, label: str, eta: float | None) -> dict[str, Any]:
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
        result = launcher_for(case, info).run(case, case_dir, display.watcher(label, eta))
    except HarnessError as exc:
        return failed(f"launch: {exc}")
    if extra:
        scenario.merge(result, extra)
    return result


def resume_target(run_dir: str | os.PathLike[str], suite: Suite) -> Path:
    """The folder of an earlier run of ``suite`` to resume, checked; it is resumed where it is, wherever it was
    moved or copied to."""
    path = Path(run_dir)
    meta = path / "run.json"
    if not meta.is_file():
        raise HarnessError(f"--resume {run_dir}: not a run folder (no run.json)")
    from harness.files import read_text

    try:
        info = json.loads(read_text(meta, "run description"))
    except ValueError as exc:
        raise HarnessError(f"--resume {run_dir}: {meta}: not valid JSON ({exc})") from None
    cases = info.get("cases", []) if isinstance(info, dict) else None
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise HarnessError(f"--resume {run_dir}: {meta} is not a run's description (expected an object with "
                           "'suite' and a list of 'cases')")
    if info.get("suite") != suite.name:
        raise HarnessError(f"--resume {run_dir}: that run is of suite '{info.get('suite')}', not '{suite.name}'")
    return path


def _prepare(run_dir: Path, suite: Suite, root: Path, resume: bool,
             host: dict[str, Any]) -> tuple[list[Case], dict[tuple[str, int], str]]:
    """The run folder made (or reopened), the cases with the tiny dataset in place, and what a resumed run has
    done already: ``{(case, repeat): identity key}`` of cases that ended ok or skipped (the identity:
    :func:`harness.results.case_rules.identity_key`; a case whose identity changed is run again)."""
    try:
        (run_dir / "cases").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"{run_dir}: results folder is not writable: {exc.strerror}") from None
    cases = list(suite.cases)
    if any(c.settings.data == "tiny" and not c.settings.data_root for c in cases):
        from harness.data.tiny import make_tiny_dataset

        tiny = tiny_data_root(root)
        make_tiny_dataset(str(tiny))
        cases = [dataclasses.replace(c, settings=dataclasses.replace(c.settings, data_root=str(tiny.resolve())))
                 if c.settings.data == "tiny" and not c.settings.data_root else c for c in cases]
    done: dict[tuple[str, int], str] = {}
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    meta = run_dir / "run.json"
    if resume and meta.is_file():
        info = json.loads(meta.read_text(encoding="utf-8"))
        info.setdefault("resumed_at", []).append(now)
        info["cases"] = list(dict.fromkeys([*info.get("cases", []), *(c.name for c in cases)]))
        meta.write_text(json.dumps(info, indent=1))
        if (run_dir / RESULTS_FILE).exists():
            from harness.results.records import read_records

            for r in read_records(run_dir / RESULTS_FILE, empty_ok=True):
                if r.get("kind", "measured") == "measured":
                    key = (r["case"], r.get("repeat", 0))
                    done[key] = identity_key(r["config"]) if r["status"] in ("ok", "skipped") else ""
    else:
        meta.write_text(json.dumps({"suite": suite.name, "suite_path": suite.path, "run_id": run_dir.name,
                                    "cases": [c.name for c in cases], "started_at": now, "env": host}, indent=1))
    return cases, done


def run_suite(suite: Suite, results_root: str | os.PathLike[str] = "results", run_id: str | None = None,
              quiet: bool = False, stream: TextIO | None = None, resume: bool = False,
              run_dir: str | os.PathLike[str] | None = None) -> Path:
    """Run every case of ``suite`` (``repeats`` times each, in fresh processes, interleaved: every case once, then
    every case again, so drift hits every backend alike); return the run folder holding ``results.jsonl``.

    The run folder is ``run_dir`` when given (``--resume`` passes the folder it was given, wherever it lives), else
    ``results_root/<suite>/<run_id>``. With ``resume`` a case (repetition) whose last record there has the same
    configuration and ended ok or skipped is not run again; failed, unfinished and changed ones are. Records are
    only ever appended, one per case and repetition.
    """
    from harness.measure.doctor import quick_checks
    from harness.measure.host import HostWindow
    from harness.measure.noise import assess

    root = Path(results_root)
    run_dir = Path(run_dir) if run_dir is not None else root / case_slug(suite.name) / case_slug(run_id or new_run_id())
    host = host_environment()
    cases, done = _prepare(run_dir, suite, root, resume, host)
    display = Display(stream or sys.stderr, quiet)
    out_file = run_dir / RESULTS_FILE
    rounds = max(c.settings.repeats for c in cases)
    todo = [(r, c) for r in range(rounds) for c in cases if r < c.settings.repeats]
    durations: list[float] = []
    display.line(f"harness: suite '{suite.name}': {len(cases)} case(s)"
                 + (f", {len(todo)} runs in {rounds} interleaved rounds" if rounds > 1 else "") + f" -> {run_dir}")
    for i, (rep, case) in enumerate(display.cases(suite.name, todo), 1):
        many = case.settings.repeats > 1
        case_dir = run_dir / "cases" / case_slug(case.name) / (f"rep{rep}" if many else "")
        label = f"[{i}/{len(todo)}] {case.name}" + (f" (run {rep + 1} of {case.settings.repeats})" if many else "")
        if done.get((case.name, rep)) and done[case.name, rep] == identity_key(case.to_dict()):
            display.line(f"{label}: done in the resumed run, not run again")
            continue
        case_dir.mkdir(parents=True, exist_ok=True)
        eta = (sum(durations) / len(durations)) * (len(todo) - i + 1) if durations else None
        started = dt.datetime.now(dt.timezone.utc)
        checks = quick_checks()
        window = HostWindow.start()
        t0 = time.monotonic()
        result = _run_case(case, case_dir, display, label, eta)
        duration = time.monotonic() - t0
        facts = window.stop()
        durations.append(duration)
        record = {
            "schema": SCHEMA, "kind": "measured", "suite": suite.name, "run_id": run_dir.name, "case": case.name,
            "repeat": rep, "repeats": case.settings.repeats, "config": case.to_dict(),
            "status": result["status"], "reason": result.get("reason"),
            "started_at": started.isoformat(), "duration_s": duration,
            "metrics": result.get("metrics", {}), "samples": result.get("samples", {}),
            "noise": assess(representative_samples({**result, "config": case.to_dict()}), facts)
            if result["status"] == "ok" else None,
            "env": {**host, "load_avg_1m": checks.get("load_avg_1m"), "host_checks": checks, "backend": case.backend,
                    "device": case.device, **result.get("env", {})},
            "log": str((case_dir / "case.log").relative_to(run_dir)),
            **({"selection": list(suite.selection)} if suite.selection else {}),
        }
        if result["status"] == "failed":
            record["log_tail"] = result.get("rank_log_tail") or log_tail(case_dir / "case.log")
            if "failed_rank" in result:
                record["failed_rank"] = result["failed_rank"]
        append_record(out_file, record)
        display.line(f"{label}: {summary(record)} ({duration:.1f} s)")
    return run_dir
