"""A case's processes: started in a session of their own, watched through a progress pipe with a timeout, and
reaped afterwards, whatever the launcher started beneath them.

Every process of a case inherits ``HARNESS_CASE_TOKEN`` (this run of the case) and ``HARNESS_CASE_DIR``: the
child, a launcher's workers (torchrun and msrun start them in sessions of their own, out of reach of the child's
process group) and their data-loader workers. After the case, or before one runs in a folder an earlier killed run
used, whatever still carries them is killed.
"""
from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends.child import child_env

__all__ = ["Progress", "Watched", "start_and_watch", "reap", "log_tail"]

_PROGRESS_EVERY_S = 0.5


#: Phases whose steps are batches of ``batch_size`` images per device (others, e.g. inference at several batch sizes
#: or exports, report steps per second only).
IMAGE_PHASES = ("warmup", "train", "eval", "data")


class Progress:
    """Worker side: sends ``{"phase", "step", "total"}`` lines to the parent, at most every 0.5 s, with
    ``steps_per_s`` (and ``images_per_s`` for :data:`IMAGE_PHASES` when ``images_per_step`` is given) measured
    since the phase's first report, on ``clock`` (seconds)."""

    def __init__(self, images_per_step: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        fd, ino = os.environ.get("HARNESS_PROGRESS_FD"), os.environ.get("HARNESS_PROGRESS_INO")
        self.fd = int(fd) if fd else None
        # A launcher (torchrun, msrun) does not pass the pipe on to its workers, so the number may name another
        # file of this process (a data-loader queue): write only to the very pipe the runner opened.
        try:
            if self.fd is not None and str(os.fstat(self.fd).st_ino) != ino:
                self.fd = None
        except OSError:
            self.fd = None
        self.last = 0.0
        self.images_per_step = images_per_step
        self._since: tuple[str, int, float] | None = None  # (phase, step, time) of the phase's first report

    def __call__(self, phase: str, step: int, total: int, force: bool = False) -> None:
        if self.fd is None:
            return
        now = self.clock()
        if self._since is None or self._since[0] != phase or step < self._since[1]:
            self._since = (phase, step, now)
        if not force and now - self.last < _PROGRESS_EVERY_S:
            return
        self.last = now
        msg: dict[str, Any] = {"phase": phase, "step": step, "total": total}
        _, first, t0 = self._since
        if step > first and now > t0:
            msg["steps_per_s"] = (step - first) / (now - t0)
            if self.images_per_step and phase.split(":")[0] in IMAGE_PHASES:
                msg["images_per_s"] = msg["steps_per_s"] * self.images_per_step
        try:
            os.write(self.fd, (json.dumps(msg) + "\n").encode())
        except OSError:
            self.fd = None


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _processes_with(variable: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``variable`` (``NAME=value``); empty where
    ``/proc`` does not exist."""
    needle = variable.encode()
    found = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        if int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or not ours
            continue
    return found


def reap(variable: str) -> int:
    """SIGKILL every process left over from a case (``variable`` in its environment) and wait until they are gone;
    returns how many there were."""
    deadline = time.monotonic() + 10
    first = None
    while (pids := _processes_with(variable)) and time.monotonic() < deadline:
        first = len(pids) if first is None else first
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
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
        except subprocess.TimeoutExpired:
            continue


class Watched:
    """How the case's top process ended: ``returncode`` (None if it never ended) and ``timed_out``."""

    def __init__(self, returncode: int | None, timed_out: bool) -> None:
        self.returncode, self.timed_out = returncode, timed_out


def start_and_watch(argv: list[str], env: dict[str, str], case_dir: Path, log_file: Path, timeout: float,
                    status: Callable[[Any], None]) -> Watched:
    """Run ``argv`` in ``case_dir`` (output to ``log_file``), report its progress messages (dicts, as
    :class:`Progress` sends them; ``""`` once a second without one) through ``status``, kill
    its whole group past ``timeout`` seconds, and reap every process of the case afterwards."""
    read_fd, write_fd = os.pipe()
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    env = child_env(HARNESS_PROGRESS_FD=str(write_fd), HARNESS_PROGRESS_INO=str(os.fstat(write_fd).st_ino),
                    PYTHONUNBUFFERED="1", HARNESS_CASE_TOKEN=token, HARNESS_CASE_DIR=str(case_dir), **env)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(argv, cwd=case_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(read_fd, selectors.EVENT_READ)
    buf, timed_out = b"", False
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
                        p: Any = json.loads(raw)
                        if (isinstance(p, dict) and isinstance(p.get("phase"), str)
                                and all(isinstance(p.get(k), int) for k in ("step", "total"))
                                and all(isinstance(p.get(k, 0.0), (int, float))
                                        for k in ("steps_per_s", "images_per_s"))):
                            status(p)  # the progress message itself: Display.watcher shows it
                    except ValueError:
                        pass
            else:
                status("")
    finally:
        sel.close()
        os.close(read_fd)
        if proc.poll() is None:
            _kill_group(proc)
        else:  # leftovers (data-loader workers) of a crashed child
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        reap(f"HARNESS_CASE_TOKEN={token}")
    return Watched(proc.returncode, timed_out)
