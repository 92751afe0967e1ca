"""The one timed loop: what is timed, what is not, where the device is synchronised, and callbacks between steps."""
from __future__ import annotations

import pytest

from harness.loop import STOP, TimedLoop


class Recorder:
    """A fake clock that advances only inside steps, and a log of steps, syncs and callbacks."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def clock(self) -> float:
        return self.now

    def sync(self) -> None:
        self.log.append("sync")

    def step(self, i: int) -> None:
        self.log.append(f"step{i}")
        self.now += 1.0 + i / 100  # step i takes 1 + i/100 seconds


def test_first_step_alone_untimed_warmup_then_samples():
    r = Recorder()
    t = TimedLoop(r.sync, clock=r.clock).run(r.step, 0, 6, timed_from=3)
    assert t.first_s == 1.0 and t.done == 6
    assert t.samples == pytest.approx([1.03, 1.04, 1.05])  # steps 3, 4, 5; 1 and 2 were warm-up
    # the first step bracketed by syncs; warm-up steps not; the device settled before the first timed step;
    # each timed step ends with a sync
    assert r.log == ["sync", "step0", "sync", "step1", "step2", "sync", "step3", "sync", "step4", "sync",
                     "step5", "sync"]


def test_work_between_steps_is_outside_the_timed_intervals_and_settled_after():
    r = Recorder()

    def after(i: int):
        if i == 2:
            r.now += 100.0  # a checkpoint or an evaluation
            r.log.append("checkpoint")
            return True
        return False

    t = TimedLoop(r.sync, clock=r.clock).run(r.step, 0, 4, timed_from=1, first_alone=False, after=after)
    assert t.samples == pytest.approx([1.01, 1.02, 1.03])  # no 100 s anywhere
    assert r.log[r.log.index("checkpoint") + 1] == "sync"  # nothing queued before it spills into step 2


def test_stop_ends_the_loop_and_a_resumed_run_goes_on_with_its_samples():
    r = Recorder()
    kept = [9.0]
    t = TimedLoop(r.sync, clock=r.clock).run(r.step, 5, 20, first_alone=False, samples=kept,
                                            after=lambda i: STOP if i == 8 else False)
    assert t.done == 3 and kept == pytest.approx([9.0, 1.05, 1.06, 1.07]) and t.samples is kept


def test_until_enough_runs_and_seconds():
    r = Recorder()
    t = TimedLoop(r.sync, clock=r.clock).run(lambda i: r.step(0), first_alone=False, min_runs=3, min_s=5.5)
    assert len(t.samples) == 6  # three runs are not 5.5 s; six are


def test_prime_times_the_first_call_and_settles_after_the_warmup():
    r = Recorder()
    first = TimedLoop(r.sync, clock=r.clock).prime(lambda: r.step(0), 3)
    assert first == 1.0
    assert r.log == ["sync", "step0", "sync", "step0", "step0", "sync"]
