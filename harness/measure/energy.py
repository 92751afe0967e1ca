"""Energy over a timed region, from the device's own counters: joules, mean power and joules per image.

One source per device kind (:mod:`harness.measure.energy_sources`): NVML for a GPU, ``npu-smi`` for an Ascend NPU,
RAPL through powercap for the CPU packages.

Every figure covers the whole device (the GPU board, the NPU, every CPU package), whatever else runs on it. A
source that cannot be read gives ``joules: null`` and the reason, never 0.

:class:`EnergyMeter` is what :class:`harness.run.loop.TimedLoop` starts when its first timed step starts and stops when
its last one ends (the device synchronised at both ends): nothing is read inside a timed step; a counter is read
twice, a sampling thread runs only for sources without a counter.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.measure.energy_sources import EnergySource, Unavailable, source_for

__all__ = ["EnergyMeter", "energy_record", "integrate"]


def integrate(points: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Joules from ``(time_s, watts)`` samples over ``[t0, t1]``: trapezoids between samples, the first and last
    values held out to the window's ends."""
    pts = sorted((min(max(t, t0), t1), w) for t, w in points)
    if not pts:
        return float("nan")
    joules = pts[0][1] * (pts[0][0] - t0) + pts[-1][1] * (t1 - pts[-1][0])
    for (ta, wa), (tb, wb) in itertools.pairwise(pts):
        joules += (tb - ta) * (wa + wb) / 2
    return joules


class EnergyMeter:
    """Joules over ``start()`` .. ``stop()`` from one source; never raises: an unreadable source is a reason."""

    def __init__(self, source: EnergySource | None, clock: Callable[[], float] = time.perf_counter,
                 why_none: str = "no energy source for this device") -> None:
        self.source, self.clock, self.why_none = source, clock, why_none
        self.running = False
        self._opened: bool | None = None
        self._reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._points: list[tuple[float, float]] = []
        self._j0 = 0.0
        self._t0 = 0.0
        self._error: str | None = None

    @classmethod
    def for_device(cls, device: str, local: int = 0) -> EnergyMeter:
        return cls(source_for(device, local), why_none=f"no energy source for device '{device}'")

    def _open(self) -> bool:
        if self._opened is None:
            if self.source is None:
                self._opened, self._reason = False, self.why_none
            else:
                try:
                    self.source.open()
                    self._opened = True
                except Unavailable as exc:
                    self._opened, self._reason = False, str(exc)
        return bool(self._opened)

    def _sample(self) -> None:
        assert self.source is not None
        try:
            t = self.clock()
            w = self.source.power_w()
            self._points.append(((t + self.clock()) / 2, w))
        except Exception as exc:  # noqa: BLE001 - a failed reading ends the sampling; the record says why
            self._error = f"{self.source.name}: reading failed: {exc}"
            self._stop.set()

    def _loop(self) -> None:
        assert self.source is not None
        if self.source.counter:  # a counter that may wrap: read it often enough to unwrap every wrap
            while not self._stop.wait(self.source.interval_s):
                try:
                    self.source.read_j()
                except Exception as exc:  # noqa: BLE001
                    self._error = f"{self.source.name}: reading failed: {exc}"
                    return
            return
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.source.interval_s)

    def start(self) -> None:
        """Begin the window: read the counter, or start sampling."""
        self.running = True
        self._points, self._error = [], None
        if not self._open():
            return
        assert self.source is not None
        self._stop.clear()
        self._t0 = self.clock()
        try:
            self._j0 = self.source.read_j() if self.source.counter else 0.0
        except Exception as exc:  # noqa: BLE001
            self._error = f"{self.source.name}: reading failed: {exc}"
            return
        if not self.source.counter or self.source.wraps:
            self._thread = threading.Thread(target=self._loop, name="harness-energy", daemon=True)
            self._thread.start()

    def stop(self) -> dict[str, Any]:
        """End the window: ``{source, joules, seconds, mean_w, reason, ...}`` (joules None with the reason)."""
        self.running = False
        t1 = self.clock()
        out: dict[str, Any] = {"source": self.source.name if self.source is not None else None, "joules": None,
                               "seconds": None, "mean_w": None, "reason": None}
        if not self._opened:
            out["reason"] = self._reason
            return out
        assert self.source is not None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        joules = None
        if self._error is None:
            try:
                if self.source.counter:
                    joules = self.source.read_j() - self._j0
                else:
                    self._sample()
                    if self._error is None:
                        joules = integrate([(min(t, t1), w) for t, w in self._points], self._t0, t1)
                        out["samples"] = len(self._points)
            except Exception as exc:  # noqa: BLE001
                self._error = f"{self.source.name}: reading failed: {exc}"
        seconds = t1 - self._t0
        if joules is None or joules != joules:
            out["reason"] = self._error or f"{self.source.name}: no reading"
            return out
        out.update(joules=joules, seconds=seconds, mean_w=joules / seconds if seconds > 0 else None,
                   **self.source.detail())
        return out


def energy_record(window: dict[str, Any] | None, images: int | None) -> dict[str, Any]:
    """The record's ``energy``: the meter's window with ``j_per_image`` (None and why where nothing was measured)."""
    if window is None:
        return {"source": None, "joules": None, "seconds": None, "mean_w": None, "j_per_image": None,
                "reason": "no timed steps: the energy meter never started"}
    out = {**window, "j_per_image": None}
    if window.get("joules") is not None and images:
        out["j_per_image"] = window["joules"] / images
    return out
