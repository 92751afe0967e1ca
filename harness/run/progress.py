"""What a run shows on the terminal while it goes: progress of the case running, and one line per case when it
ends (with its noise verdict)."""
from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar

from harness.config import has_accuracy
from harness.results.records import get

__all__ = ["Display", "summary"]

T = TypeVar("T")


def _fmt_s(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(max(0, seconds))))


class Display:
    """Progress on stderr. On a terminal, live bars (:mod:`rich`): the suite's (cases done of all, suite ETA) and
    the running case's (phase, step i/n, images/s so far, ETA of the phase); otherwise (CI logs, pipes) a plain line
    at most every 10 s. ``quiet`` silences progress; the per-case lines (:meth:`line`) are always written."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream, self.quiet = stream, quiet
        self.tty = stream.isatty()
        self.last_print = 0.0
        self._bars: Any = None  # rich.progress.Progress while a suite runs on a terminal
        self._suite: Any = None
        self._case: Any = None

    def start(self, title: str, total: int) -> None:
        """The suite's bar (terminal only, not quiet): ``total`` cases to run."""
        if not self.tty or self.quiet or self._bars is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        console = Console(file=self.stream, force_terminal=True, highlight=False, emoji=False)
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                              TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[info]}"),
                              console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
        self._bars.start()
        self._suite = self._bars.add_task(f"suite {title}"[:40], total=max(total, 1), counts=f"0/{total} cases",
                                          info="")

    def advance(self) -> None:
        """One more case of the suite done."""
        if self._bars is None:
            return
        self._bars.advance(self._suite)
        task = self._bars.tasks[self._suite]
        self._bars.update(self._suite, counts=f"{int(task.completed)}/{int(task.total or 0)} cases", info="")
        self._bars.refresh()

    def cases(self, title: str, todo: list[T]) -> Iterator[T]:
        """``todo`` one by one under the suite's bar: a case counts as done when the next is asked for; the bars
        leave the terminal when the loop ends, however it ends."""
        self.start(title, len(todo))
        try:
            for n, item in enumerate(todo):
                if n:
                    self.advance()
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Take the bars off the terminal (the per-case lines stay)."""
        if self._bars is not None:
            bars, self._bars = self._bars, None
            self._suite = self._case = None
            with contextlib.suppress(OSError, ValueError):  # the stream is gone (closed at exit)
                bars.stop()

    def status(self, text: str) -> None:
        """A plain progress line (not a terminal): at most every 10 s."""
        if self.quiet or self.tty:
            return
        now = time.monotonic()
        if now - self.last_print >= 10:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_print = now

    def info(self, text: str) -> None:
        """A state of the whole run (e.g. the scheduler's counts): beside the suite's bar on a terminal, else a plain
        line at most every 10 s."""
        if self._bars is not None:
            self._bars.update(self._suite, info=text)
            self._bars.refresh()
            return
        self.status(text)

    def line(self, text: str) -> None:
        if self._bars is not None:  # printed above the live bars
            self._bars.console.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)
            self._bars.refresh()
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def watcher(self, label: str, eta: float | None) -> Callable[[Any], None]:
        """What a launcher reports - the worker's progress messages (dicts: ``phase``, ``step``, ``total``, and
        ``steps_per_s``/``images_per_s`` once measured), ``""`` ticks and ``!``-prefixed notices - shown under
        ``label``; ``eta`` is the suite's remaining seconds when this case starts (None: not known yet)."""
        start = time.monotonic()
        state: dict[str, Any] = {}
        if self._bars is not None:
            if self._case is not None:
                self._bars.remove_task(self._case)
            self._case = self._bars.add_task(label[:60], total=None, counts="starting", info="")

        def status(msg: Any) -> None:
            if isinstance(msg, str) and msg.startswith("!"):
                self.line(f"{label}: {msg[1:]}")
                return
            if isinstance(msg, dict):
                state.clear()
                state.update(msg)
            elapsed = time.monotonic() - start
            suite_eta = f"suite eta {_fmt_s(eta - elapsed)}" if eta else ""
            step = f"{state['phase']} {state['step']}/{state['total']}" if state else "starting"
            rate = (f"{state['images_per_s']:.1f} img/s" if state.get("images_per_s") is not None
                    else f"{state['steps_per_s']:.2f} steps/s" if state.get("steps_per_s") else "")
            left = ((state["total"] - state["step"]) / state["steps_per_s"]
                    if state.get("steps_per_s") and state["total"] >= state["step"] else None)
            if self._bars is None:
                self.status(" | ".join(filter(None, [f"{label} {step}", rate, _fmt_s(elapsed),
                                                     f"eta {_fmt_s(left)}" if left is not None else "", suite_eta])))
                return
            if state:
                self._bars.update(self._case, description=f"{label[:60]} {state['phase']}"[:80],
                                  total=max(state["total"], 1), completed=state["step"],
                                  counts=f"{state['step']}/{state['total']}")
            self._bars.update(self._case, info=" | ".join(filter(None, [
                rate, _fmt_s(elapsed), f"eta {_fmt_s(left)}" if left is not None else ""])))
            self._bars.update(self._suite, info=suite_eta)
            self._bars.refresh()
        return status


def summary(record: dict[str, Any]) -> str:
    """The case's terminal line after its label."""
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason']}"
    m = record["metrics"]
    parts = ["ok"]
    if "train" in m:
        parts.append(f"{m['train']['images_per_s']:.1f} img/s train, {m['train']['ms_per_step']['p50']:.1f} ms/step")
    learned = has_accuracy(get(record, "config", "settings") or {})  # random labels: no top-1 to show
    if "eval" in m and learned:
        parts.append(f"top-1 {m['eval']['top1']:.1f}%")
    inf = m.get("inference", {})
    if "latency_ms" in inf:
        parts.append(f"latency p50 {inf['latency_ms']['p50']:.2f} ms")
    if inf.get("throughput"):
        t = inf["throughput"][-1]
        parts.append(f"{t['images_per_s']:.1f} img/s at batch {t['batch_size']}")
    if "accuracy" in inf and learned:
        parts.append(f"{inf['runtime']} top-1 {inf['accuracy']['top1']:.1f}%")
    for r in m.get("train", {}).get("resumed", []):
        parts.append(f"resumed from the checkpoint of step {r['step']}")
    for split, d in m.get("data", {}).items():
        if d.get("skipped"):
            parts.append(f"warning: {d['skipped']} unreadable image files skipped in {split} "
                         f"(metrics.data.{split}.examples)")
    for pipe in (m.get("input_pipeline") or {}).get("pipelines") or []:
        parts.append(f"{pipe['pipeline']} loader {pipe['images_per_s']:.0f} img/s at {pipe['workers']} worker(s)")
    feed = (m.get("train") or {}).get("input") or {}
    if feed.get("input_bound"):
        parts.append(f"INPUT-BOUND ({100 * feed['wait_share']:.0f}% of each step waiting for data)")
    noise = record.get("noise") or {}
    if noise.get("unstable"):
        parts.append(f"UNSTABLE ({'; '.join(noise['reasons'])})")
    return ", ".join(parts)
