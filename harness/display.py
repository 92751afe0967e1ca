"""What a run shows on the terminal while it goes: progress of the case running, and one line per case when it
ends (with its noise verdict)."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any, TextIO

__all__ = ["Display", "summary"]


def _fmt_s(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(max(0, seconds))))


class Display:
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


def summary(record: dict[str, Any]) -> str:
    """The case's terminal line after its label."""
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
    for pipe in (m.get("input_pipeline") or {}).get("pipelines") or []:
        parts.append(f"{pipe['pipeline']} loader {pipe['images_per_s']:.0f} img/s at {pipe['workers']} worker(s)")
    feed = (m.get("train") or {}).get("input") or {}
    if feed.get("input_bound"):
        parts.append(f"INPUT-BOUND ({100 * feed['wait_share']:.0f}% of each step waiting for data)")
    noise = record.get("noise") or {}
    if noise.get("unstable"):
        parts.append(f"UNSTABLE ({'; '.join(noise['reasons'])})")
    return ", ".join(parts)
