"""The parent: a suite's run folder, what a resumed run has done, and the repetitions still to run, handed to an
executor (:mod:`harness.run.executors`: here, one after another, or as Slurm jobs) that runs each in a working folder
of its own (:mod:`harness.run.case_run`) and appends one record per case to ``results.jsonl`` the moment the case
ends, whatever happened to its processes. The parent never imports a deep-learning framework.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from harness.config import Case, case_slug
from harness.errors import HarnessError
from harness.measure.environment import host_environment
from harness.results.case_rules import identity_key
from harness.results.records import RESULTS_FILE
from harness.run.case_run import Work
from harness.run.executors import Plan, get_executor
from harness.run.progress import Display
from harness.run.suite import Suite

__all__ = ["run_suite", "new_run_id", "tiny_data_root", "resume_target"]


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 100000:05d}"


def tiny_data_root(results_root: Path) -> Path:
    return results_root / "_data" / "tiny"


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


def _started_on(run_dir: Path) -> str:
    """The executor a run was started with (its ``run.json``; runs from before executors ran here)."""
    try:
        return str(json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("on", "local"))
    except (OSError, ValueError, AttributeError):
        return "local"


def _prepare(run_dir: Path, suite: Suite, root: Path, resume: bool, host: dict[str, Any], on: str) -> list[Case]:
    """The run folder made (or reopened, its ``run.json`` noting the resume) and the cases with the tiny dataset in
    place."""
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
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    meta = run_dir / "run.json"
    if resume and meta.is_file():
        info = json.loads(meta.read_text(encoding="utf-8"))
        info.setdefault("resumed_at", []).append(now)
        info["cases"] = list(dict.fromkeys([*info.get("cases", []), *(c.name for c in cases)]))
        meta.write_text(json.dumps(info, indent=1))
    else:
        meta.write_text(json.dumps({"suite": suite.name, "suite_path": suite.path, "run_id": run_dir.name,
                                    "cases": [c.name for c in cases], "started_at": now, "on": on, "env": host},
                                   indent=1))
    return cases


def _done(results: Path) -> dict[tuple[str, int], str]:
    """What a resumed run has done already: ``{(case, repeat): identity key}`` of cases whose last record ended ok or
    skipped (the identity: :func:`harness.results.case_rules.identity_key`; a case whose identity changed is run
    again; a failed one maps to "")."""
    from harness.results.records import read_records

    done: dict[tuple[str, int], str] = {}
    if results.exists():
        for r in read_records(results, empty_ok=True):
            if r.get("kind", "measured") == "measured":
                key = (r["case"], r.get("repeat", 0))
                done[key] = identity_key(r["config"]) if r["status"] in ("ok", "skipped") else ""
    return done


def run_suite(suite: Suite, results_root: str | os.PathLike[str] = "results", run_id: str | None = None,
              quiet: bool = False, stream: TextIO | None = None, resume: bool = False,
              run_dir: str | os.PathLike[str] | None = None, on: str | None = None) -> Path:
    """Run every case of ``suite`` (``repeats`` times each, in fresh processes, interleaved: every case once, then
    every case again, so drift hits every backend alike) through the executor ``on`` (:mod:`harness.run.executors`:
    ``local``, ``slurm``; a resumed run defaults to the one it was started with); return the run folder holding
    ``results.jsonl``.

    The run folder is ``run_dir`` when given (``--resume`` passes the folder it was given, wherever it lives), else
    ``results_root/<suite>/<run_id>``. With ``resume`` a case (repetition) whose last record there has the same
    configuration and ended ok or skipped is not run again; failed, unfinished and changed ones are. Records are
    only ever appended, one per case and repetition.
    """
    root = Path(results_root)
    run_dir = Path(run_dir) if run_dir is not None else root / case_slug(suite.name) / case_slug(run_id or new_run_id())
    if on is None:
        on = _started_on(run_dir) if resume else "local"
    executor = get_executor(on)
    suite = dataclasses.replace(suite, cases=tuple(executor.place(c, suite) for c in suite.cases))
    host = host_environment()
    cases = _prepare(run_dir, suite, root, resume, host, on)
    display = Display(stream or sys.stderr, quiet)
    out_file = run_dir / RESULTS_FILE
    if resume:
        executor.recover(run_dir, display)
    done = _done(out_file) if resume else {}
    rounds = max(c.settings.repeats for c in cases)
    todo = [(r, c) for r in range(rounds) for c in cases if r < c.settings.repeats]
    display.line(f"harness: suite '{suite.name}': {len(cases)} case(s)"
                 + (f", {len(todo)} runs in {rounds} interleaved rounds" if rounds > 1 else "") + f" -> {run_dir}"
                 + (f" ({executor.help})" if on != "local" else ""))
    work = []
    for i, (rep, case) in enumerate(todo, 1):
        many = case.settings.repeats > 1
        label = f"[{i}/{len(todo)}] {case.name}" + (f" (run {rep + 1} of {case.settings.repeats})" if many else "")
        if done.get((case.name, rep)) and done[case.name, rep] == identity_key(case.to_dict()):
            display.line(f"{label}: done in the resumed run, not run again")
            continue
        work.append(Work(case, rep, run_dir / "cases" / case_slug(case.name) / (f"rep{rep}" if many else ""), label))
    executor.execute(Plan(suite, run_dir, host, work, out_file), display)
    return run_dir
