"""The parent: runs each case in its own process and working folder.

The parent never imports a deep-learning framework. It waits on the child's
progress pipe with ``selectors`` (no busy loop), enforces the case timeout by
killing the child's whole process group, and appends one record per case to
``results.jsonl`` the moment the case ends, whatever happened to the child.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .child import child_env
from .launchers import launch_command, merge_ranks
from .probe import probe_backend
from .config import Case, case_slug
from .env import host_environment
from .errors import HarnessError
from .results import RESULTS_FILE, SCHEMA, append_record
from .suite import Suite

__all__ = ["run_suite", "new_run_id", "tiny_data_root"]

LOG_TAIL_LINES = 30


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid() % 100000:05d}"


def tiny_data_root(results_root: Path) -> Path:
    return results_root / "_data" / "tiny"


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


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


def _processes_with(variable: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``variable`` (``NAME=value``).

    Every process of a case inherits ``HARNESS_CASE_TOKEN`` (this run of the case) and ``HARNESS_CASE_DIR``:
    the child, the launcher's workers (torchrun and msrun start them in sessions of their own, out of reach of
    the child's process group) and their data-loader workers. Empty where ``/proc`` does not exist.
    """
    needle = variable.encode()
    found = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        pid = int(entry)
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:  # gone, or not ours
            continue
    return found


def _reap(variable: str) -> int:
    """SIGKILL every process left over from a case (found by ``variable`` in its environment) and wait until they
    are gone; returns how many there were."""
    deadline = time.monotonic() + 10
    first = None
    while (pids := _processes_with(variable)) and time.monotonic() < deadline:
        first = len(pids) if first is None else first
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)
    return first or 0


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            if sig == signal.SIGTERM:
                # the child is gone; make sure its workers go too
                continue
        except subprocess.TimeoutExpired:
            continue


_INFO_CACHE: dict[str, dict[str, Any]] = {}


def _info(backend: str) -> dict[str, Any]:
    """A backend's info (probed once, in a child process)."""
    if backend not in _INFO_CACHE:
        info = probe_backend(backend)
        if "error" in info:
            raise HarnessError(f"backend '{backend}': {info['error']}")
        _INFO_CACHE[backend] = info
    return _INFO_CACHE[backend]


def _launcher(backend: str) -> str:
    """The multi-device launcher a backend names in its info."""
    return _info(backend).get("launcher") or "single"


def _needs_export(case: Case) -> str | None:
    """The export format an inference case must have made by another backend first (it only loads exports)."""
    s = case.settings
    if s.scenario != "inference" or s.model_file:
        return None
    info = _info(case.backend)
    if "export" in info.get("scenarios", ["train", "eval"]):
        return None
    runtimes = info.get("runtimes") or {}
    return runtimes.get(s.runtime or next(iter(runtimes), ""))


def _with_export(case: Case, case_dir: Path, display: _Display, label: str) -> tuple[Case, dict[str, Any] | None]:
    """For a backend that only loads exports: run ``export_from`` on the case's model and device in its own process
    (``case_dir/export``), and return the case pointed at those files, or the failed/skipped result."""
    fmt = _needs_export(case)
    if fmt is None:
        return case, None
    s = case.settings
    status = _info(case.backend).get("device_status", {}).get(case.device, {})
    if not status.get("available", True):  # nothing to export for: this backend cannot run here
        reason = status.get("reason") or "unavailable"
        return case, {"status": "skipped", "reason": reason if reason.startswith(case.device) else
                      f"{case.device}: {reason}", "metrics": {}}
    source = dataclasses.replace(case, name=f"{case.name} [export]", backend=s.export_from,
                                 settings=dataclasses.replace(s, scenario="export", export=(fmt,), runtime=None))
    src_dir = case_dir / "export"
    src_dir.mkdir(exist_ok=True)
    made = _run_child(source, src_dir, display, f"{label} export by {s.export_from}", None)
    exports = made.get("metrics", {}).get("export") or []
    if made["status"] != "ok" or not exports:
        why = made.get("reason") or "no export was made"
        return case, {**made, "status": made["status"] if made["status"] != "ok" else "failed",
                      "reason": f"export by {s.export_from}: {why}"}
    e = exports[0]
    template = str(src_dir.resolve() / e["path"].replace(f"_b{e['batch']}.", "_b{batch}."))
    case = dataclasses.replace(case, settings=dataclasses.replace(s, model_file=template))
    return case, {"export_from": {"backend": s.export_from, "env": made.get("env", {}),
                                  "eval": made["metrics"].get("eval"), "export": exports}}


def _run_child(case: Case, case_dir: Path, display: _Display, label: str, eta: float | None) -> dict[str, Any]:
    """Run one case's process; return the child's result, or a failure built from the exit."""
    case_dir = case_dir.resolve()
    # a runner killed outright (kill -9) leaves its case's processes running: they must not write on into the
    # folder this run is about to use
    strays = _reap(f"HARNESS_CASE_DIR={case_dir}")
    if strays:
        display.line(f"{label}: stopped {strays} process(es) an earlier, killed run left running in {case_dir}")
    case_file, result_file, log_file = case_dir / "case.json", case_dir / "result.json", case_dir / "case.log"
    case_file.write_text(json.dumps(case.to_dict(), indent=1))
    result_file.unlink(missing_ok=True)
    distributed = case.settings.devices > 1 or case.settings.nodes > 1
    for stale in case_dir.glob("result.rank*.json"):
        stale.unlink()
    try:
        argv, extra = launch_command(case, _launcher(case.backend) if distributed else "single", case_file,
                                     result_file, case_dir)
    except HarnessError as exc:  # this case cannot start; the suite goes on
        return {"status": "failed", "reason": f"launch: {exc}", "metrics": {}, "samples": {}, "env": {}}
    read_fd, write_fd = os.pipe()
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    env = child_env(HARNESS_PROGRESS_FD=str(write_fd), HARNESS_PROGRESS_INO=str(os.fstat(write_fd).st_ino),
                    PYTHONUNBUFFERED="1", HARNESS_CASE_TOKEN=token,
                    HARNESS_CASE_DIR=str(case_dir), **extra)
    timeout = case.settings.timeout
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(argv, cwd=case_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    start = time.monotonic()
    deadline = start + timeout
    sel = selectors.DefaultSelector()
    sel.register(read_fd, selectors.EVENT_READ)
    buf, state, timed_out = b"", "starting", False
    try:
        while proc.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                _kill_group(proc)
                break
            if sel.select(timeout=min(remaining, 1.0)):
                chunk = os.read(read_fd, 65536)
                if not chunk:  # all writers closed: the child is exiting
                    sel.unregister(read_fd)
                    try:
                        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        continue
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines[-1:]:
                    try:
                        p = json.loads(raw)
                        state = f"{p['phase']} {p['step']}/{p['total']}"
                    except (ValueError, KeyError, TypeError):
                        pass
            elapsed = time.monotonic() - start
            display.status(f"{label} {state} | {_fmt_s(elapsed)}" + (f" | suite eta {_fmt_s(eta - elapsed)}" if eta else ""))
    finally:
        sel.close()
        os.close(read_fd)
        if proc.poll() is None:
            _kill_group(proc)
        else:  # reap leftovers (data-loader workers) of a crashed child
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _reap(f"HARNESS_CASE_TOKEN={token}")
    result: dict[str, Any] | None = None
    if distributed:
        result = merge_ranks(case, result_file, case_dir)
        if result is not None and result["status"] == "failed" and not timed_out:
            return result
    else:
        try:
            result = json.loads(result_file.read_text())
        except (OSError, ValueError):
            result = None
    rc = proc.returncode
    if timed_out:
        reason = f"timeout: case exceeded {timeout:g} s"
    elif result is not None and result.get("status") in ("ok", "failed", "skipped"):
        return result
    elif rc is not None and rc < 0:
        reason = f"crashed: killed by signal {signal.Signals(-rc).name}"
        if rc == -signal.SIGKILL:
            reason += " (from outside; on Linux the kernel's out-of-memory killer sends it: see `dmesg`)"
    else:
        last = (_log_tail(log_file, 1) or "no output").strip()
        reason = f"crashed: worker exited with status {rc} without a result: {last[:300]}"
    if result is None:
        result = {"metrics": {}, "samples": {}, "env": {}}
    phase_hint = " (measurements before the crash kept)" if result.get("metrics") else ""
    result.update(status="failed", reason=reason + phase_hint)
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
        try:
            run_case, source = _with_export(case, case_dir, display, label)
        except HarnessError as exc:
            run_case, source = case, {"status": "failed", "reason": f"launch: {exc}", "metrics": {}}
        if source is not None and "status" in source:
            result = source
        else:
            result = _run_child(run_case, case_dir, display, label, eta)
            if source is not None:  # the framework's own evaluation of the weights it exported, beside the runtime's
                result.setdefault("metrics", {})["export_from"] = source["export_from"]
                inference = result["metrics"].get("inference", {})
                own = (source["export_from"].get("eval") or {}).get("top1")
                if own is not None and "accuracy" in inference:
                    inference["accuracy"]["framework_top1"] = own
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
            record["log_tail"] = result.get("rank_log_tail") or _log_tail(case_dir / "case.log")
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
