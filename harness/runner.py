"""The parent: the suite loop. Runs each case through its launcher (:mod:`harness.launchers`) in a working folder
of its own, after any case its scenario needs first, and appends one record per case to ``results.jsonl`` the
moment the case ends, whatever happened to its processes. The parent never imports a deep-learning framework.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .config import Case, case_slug
from .env import host_environment
from .errors import HarnessError
from .launchers import get_launcher, launcher_for
from .launchers.base import failed
from .launchers.process import log_tail
from .probe import backend_info
from .results import RESULTS_FILE, SCHEMA, append_record
from .scenarios import get_scenario
from .suite import Suite

__all__ = ["run_suite", "new_run_id", "tiny_data_root", "resume_target"]


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 100000:05d}"


def tiny_data_root(results_root: Path) -> Path:
    return results_root / "_data" / "tiny"


def _fmt_s(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(max(0, seconds))))


class _Display:
    """Progress on stderr: one rewritten line on a terminal, sparse lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.tty = stream.isatty()
        self.last_print = 0.0

    def status(self, text: str) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text[: 160])
            self.stream.flush()
        elif now - self.last_print >= 10:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_print = now

    def line(self, text: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def watcher(self, label: str, eta: float | None):  # noqa: ANN201 - the launcher's status callback
        """What a launcher reports (progress lines; ``!``-prefixed notices) shown under ``label``."""
        start, state = time.monotonic(), ["starting"]

        def status(text: str) -> None:
            if text.startswith("!"):
                self.line(f"{label}: {text[1:]}")
                return
            state[0] = text or state[0]
            elapsed = time.monotonic() - start
            self.status(f"{label} {state[0]} | {_fmt_s(elapsed)}" + (f" | suite eta {_fmt_s(eta - elapsed)}"
                                                                       if eta else ""))
        return status


def _run_case(case: Case, case_dir: Path, display: _Display, label: str, eta: float | None) -> dict[str, Any]:
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


def config_digest(config: dict[str, Any]) -> str:
    """A case configuration's identity: a changed setting makes a different case."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def resume_target(run_dir: str | os.PathLike[str], suite: Suite) -> tuple[Path, str]:
    """(results root, run id) of an earlier run of ``suite`` to resume, checked."""
    path = Path(run_dir)
    meta = path / "run.json"
    if not meta.is_file():
        raise HarnessError(f"--resume {run_dir}: not a run folder (no run.json)")
    try:
        info = json.loads(meta.read_text())
    except ValueError:
        raise HarnessError(f"--resume {run_dir}: run.json is not valid JSON") from None
    if info.get("suite") != suite.name:
        raise HarnessError(f"--resume {run_dir}: that run is of suite '{info.get('suite')}', not '{suite.name}'")
    return path.parent.parent, path.name


def run_suite(suite: Suite, results_root: str | os.PathLike[str] = "results", run_id: str | None = None,
              quiet: bool = False, stream: TextIO | None = None, resume: bool = False) -> Path:
    """Run every case of ``suite``; return the run folder holding ``results.jsonl``.

    With ``resume``, the run folder ``run_id`` already exists: a case whose last record there has the same
    configuration and ended ok or skipped is not run again; failed, unfinished and changed cases are. Records
    are only ever appended.
    """
    stream = stream or sys.stderr
    root = Path(results_root)
    run_id = run_id or new_run_id()
    run_dir = root / case_slug(suite.name) / case_slug(run_id)
    try:
        (run_dir / "cases").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise HarnessError(f"{run_dir}: results folder is not writable: {exc.strerror}") from None
    cases = list(suite.cases)
    if any(c.settings.data == "tiny" and not c.settings.data_root for c in cases):
        from .tinydata import make_tiny_dataset

        tiny = tiny_data_root(root)
        make_tiny_dataset(str(tiny))
        cases = [dataclasses.replace(c, settings=dataclasses.replace(c.settings, data_root=str(tiny.resolve())))
                 if c.settings.data == "tiny" and not c.settings.data_root else c for c in cases]

    host = host_environment()
    out_file = run_dir / RESULTS_FILE
    done: dict[str, str] = {}
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    if resume and (run_dir / "run.json").is_file():
        info = json.loads((run_dir / "run.json").read_text())
        info.setdefault("resumed_at", []).append(now)
        info["cases"] = list(dict.fromkeys([*info.get("cases", []), *(c.name for c in cases)]))
        (run_dir / "run.json").write_text(json.dumps(info, indent=1))
        if out_file.exists():
            from .results import read_records

            for r in read_records(out_file):
                if r.get("kind", "measured") == "measured":
                    done[r["case"]] = config_digest(r["config"]) if r["status"] in ("ok", "skipped") else ""
    else:
        (run_dir / "run.json").write_text(json.dumps(
            {"suite": suite.name, "suite_path": suite.path, "run_id": run_id, "cases": [c.name for c in cases],
             "started_at": now, "env": host}, indent=1))
    display = _Display(stream, quiet)
    durations: list[float] = []
    n = len(cases)
    display.line(f"harness: suite '{suite.name}': {n} case(s) -> {run_dir}")
    for i, case in enumerate(cases, 1):
        case_dir = run_dir / "cases" / case_slug(case.name)
        label = f"[{i}/{n}] {case.name}"
        if done.get(case.name) and done[case.name] == config_digest(case.to_dict()):
            display.line(f"{label}: done in the resumed run, not run again")
            continue
        case_dir.mkdir(parents=True, exist_ok=True)
        eta = (sum(durations) / len(durations)) * (n - i + 1) if durations else None
        started = dt.datetime.now(dt.timezone.utc)
        load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # a busy host makes timings noise
        t0 = time.monotonic()
        result = _run_case(case, case_dir, display, label, eta)
        duration = time.monotonic() - t0
        durations.append(duration)
        record = {
            "schema": SCHEMA,
            "kind": "measured",
            "suite": suite.name,
            "run_id": run_id,
            "case": case.name,
            "config": case.to_dict(),
            "status": result["status"],
            "reason": result.get("reason"),
            "started_at": started.isoformat(),
            "duration_s": duration,
            "metrics": result.get("metrics", {}),
            "samples": result.get("samples", {}),
            "env": {**host, "load_avg_1m": load_avg, "backend": case.backend, "device": case.device,
                    **result.get("env", {})},
            "log": str((case_dir / "case.log").relative_to(run_dir)),
        }
        if result["status"] == "failed":
            record["log_tail"] = result.get("rank_log_tail") or log_tail(case_dir / "case.log")
            if "failed_rank" in result:
                record["failed_rank"] = result["failed_rank"]
        append_record(out_file, record)
        display.line(f"{label}: {_summary(record)} ({duration:.1f} s)")
    return run_dir


def _summary(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason']}"
    m = record["metrics"]
    parts = ["ok"]
    if "train" in m:
        parts.append(f"{m['train']['images_per_s']:.1f} img/s train, {m['train']['ms_per_step']['p50']:.1f} ms/step")
    if "eval" in m:
        parts.append(f"top-1 {m['eval']['top1']:.1f}%")
    inf = m.get("inference", {})
    if "latency_ms" in inf:
        parts.append(f"latency p50 {inf['latency_ms']['p50']:.2f} ms")
    if inf.get("throughput"):
        t = inf["throughput"][-1]
        parts.append(f"{t['images_per_s']:.1f} img/s at batch {t['batch_size']}")
    if "accuracy" in inf:
        parts.append(f"{inf['runtime']} top-1 {inf['accuracy']['top1']:.1f}%")
    for r in m.get("train", {}).get("resumed", []):
        parts.append(f"resumed from the checkpoint of step {r['step']}")
    for split, d in m.get("data", {}).items():
        if d.get("skipped"):
            parts.append(f"warning: {d['skipped']} unreadable image files skipped in {split} "
                         f"(metrics.data.{split}.examples)")
    return ", ".join(parts)
