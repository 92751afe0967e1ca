"""The one timed loop every scenario uses, and the clock's rules.

* The first call (graph compilation, allocator warm-up) is timed on its own (``first_s``).
* Warm-up calls are not timed; nothing queued during them spills into the first timed interval (the device is
  synchronised before it).
* Each timed interval is bracketed by the backend's ``harness_synchronize`` and holds only what ``step`` does
  (a batch fetch and the backend's step): no logging, no reading values to the host.
* ``after(i)`` runs between steps, outside every timed interval (checkpoints, evaluations, reading losses);
  when it did work it returns True and the device is settled again before the next timed step, or
  :data:`STOP` to end the loop.
* Progress goes to the parent between steps.

On a device that runs asynchronously (CUDA, Ascend NPU) a host synchronisation around every step would stop
the host from queueing the next step while the device works, so the timing itself would cost throughput. There,
when the backend offers device events (``harness_events``), each timed step is bracketed by two events recorded
in the device's queue without blocking the host; the device is synchronised only at the ends of the timed region
(and before work between steps that needs the samples, :meth:`TimedLoop.flush`), and each sample is the time the
device took between its two events.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TimedLoop", "Timed", "STOP", "StreamEvents"]

#: Returned by ``after`` to end the loop early (a target reached, a run diverged).
STOP = "stop"


class StreamEvents:
    """``harness_events`` for a framework whose timing events follow CUDA's shape (``torch.cuda.Event``, torch_npu's
    ``torch.npu.Event``, ``mindspore.runtime.Event``): made with ``enable_timing=True``, recorded in the current
    stream without blocking the host, ``start.elapsed_time(end)`` in milliseconds."""

    def __init__(self, event_class: Any) -> None:
        self.event_class = event_class

    def record(self) -> Any:
        event = self.event_class(enable_timing=True)
        event.record()
        return event

    @staticmethod
    def elapsed(start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1e3


@dataclass
class Timed:
    """What one run of the loop measured: per-step seconds of the timed steps, the first step's seconds (None when
    the loop did not time one) and how many steps ran in all (``done``, counting from ``start``)."""

    samples: list[float] = field(default_factory=list)
    first_s: float | None = None
    done: int = 0


class TimedLoop:
    """Runs ``step(i)`` under the clock's rules; ``sync()`` waits for the device, ``progress(phase, i, n)``
    reports between steps."""

    def __init__(self, sync: Callable[[], Any], progress: Callable[..., None] = lambda *a, **k: None,
                 clock: Callable[[], float] = time.perf_counter, events: Any = None, energy: Any = None) -> None:
        self.sync, self.progress, self.clock, self.events = sync, progress, clock, events
        #: A :class:`harness.measure.energy.EnergyMeter` (or None): started at the first timed step, the device settled,
        #: and stopped after the last one, the device synchronised; its window lands in ``energy_window``.
        self.energy, self.energy_window = energy, None
        self._pending: list[tuple[Any, Any]] = []  # device events of timed steps not yet read
        #: ``HARNESS_GATE_SLOWDOWN=0.3`` makes every host-timed step 30% slower: how benchmarks/gate checks that
        #: ``harness compare`` catches a real slowdown. Never set it otherwise.
        self.slowdown = float(os.environ.get("HARNESS_GATE_SLOWDOWN") or 0)
        self._into: list[float] = []

    @property
    def timing(self) -> str:
        return "device events" if self.events is not None else "host clock"

    def flush(self) -> None:
        """Read the pending device events into the samples (after one synchronisation)."""
        if self._pending:
            self.sync()
            self._into.extend(float(self.events.elapsed(a, b)) for a, b in self._pending)
            self._pending.clear()

    def _timed(self, step: Callable[[int], Any], i: int, settle: bool, out: Timed) -> float:
        """One timed step; returns the host seconds it took (with events: to queue it)."""
        if self.events is not None:
            t0 = self.clock()
            start = self.events.record()
            step(i)
            self._pending.append((start, self.events.record()))
            return self.clock() - t0
        if settle:
            self.sync()
        t0 = self.clock()
        step(i)
        self.sync()
        if self.slowdown:  # a known slowdown injected inside the timed interval (benchmarks/gate only): a spin, as
            # time.sleep overshoots by a fraction of a millisecond, which made a 30% slowdown of 5 ms inference runs
            # anything from +30% to +75% and the injected change itself noisy
            end = self.clock() + (self.clock() - t0) * self.slowdown
            while self.clock() < end:
                pass
        dt = self.clock() - t0
        out.samples.append(dt)
        return dt

    def first(self, call: Callable[[], Any]) -> float:
        """Seconds of ``call()`` alone, the device idle before and after."""
        self.sync()
        t0 = self.clock()
        call()
        self.sync()
        return self.clock() - t0

    def prime(self, call: Callable[[], Any], warmup: int, min_s: float = 0.0) -> float:
        """The first ``call()`` timed alone, then untimed ones until ``warmup`` calls in all and ``min_s`` seconds
        since the first ended, the device settled after; returns the first call's seconds. For passes that repeat
        one input (evaluation, inference)."""
        first = self.first(call)
        n, t0 = 1, self.clock()
        while n < warmup or self.clock() - t0 < min_s:
            call()
            n += 1
            if n >= warmup and min_s:  # the time counts what the device did, not only what was queued
                self.sync()
        self.sync()
        return first

    def run(self, step: Callable[[int], Any], start: int = 0, stop: int | None = None, *, timed_from: int = 0,
            first_alone: bool = True, phase: str = "run", after: Callable[[int], Any] | None = None,
            min_runs: int = 0, min_s: float = 0.0, samples: list[float] | None = None) -> Timed:
        """Steps ``start .. stop - 1`` (``stop=None``: until ``min_runs`` timed steps and ``min_s`` timed seconds).

        With ``first_alone`` the first step is timed on its own into ``first_s``; steps before ``timed_from`` are
        warm-up (untimed); the rest are the samples. ``after(i)`` is called with ``i`` steps done after each step.
        Samples are appended to ``samples`` when given (a run resumed from a checkpoint goes on with its list).
        """
        out = Timed(samples=[] if samples is None else samples)
        self._into = out.samples
        i = start
        total_s, runs = 0.0, 0

        def more() -> bool:
            if stop is not None:
                return i < stop
            return runs < min_runs or total_s < min_s

        settle: bool | str = True  # or STOP, from ``after``
        if first_alone and more():
            out.first_s = self.first(lambda: step(i))
            i += 1
            settle = self._after(after, i, out)
            if settle is STOP:
                out.done = i - start
                return out
        while more():
            if i < timed_from:
                step(i)
                i += 1
                self.progress("warmup", i, timed_from)
                settle = self._after(after, i, out) or i == timed_from
            else:
                if self.energy is not None and not self.energy.running:  # the timed region starts: settle, start
                    self.flush()
                    self.sync()
                    self.energy.start()
                    settle = False  # settled just now
                if settle and self.events is not None:
                    self.flush()
                    self.sync()
                total_s += self._timed(step, i, bool(settle), out)
                runs += 1
                i += 1
                self.progress(phase, i - timed_from, (stop - timed_from) if stop is not None else max(min_runs, i))
                settle = self._after(after, i, out)
            if settle is STOP:
                break
        pending = bool(self._pending)
        self.flush()  # with device events: the one synchronisation at the end (host clock: each step ended with one)
        if self.energy is not None and self.energy.running:
            if self.events is not None and not pending:
                self.sync()
            self.energy_window = self.energy.stop()
        out.done = i - start
        return out

    @staticmethod
    def _after(after: Callable[[int], Any] | None, i: int, out: Timed) -> Any:
        if after is None:
            return False
        return after(i)

