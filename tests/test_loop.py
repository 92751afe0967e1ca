"""The one timed loop: what is timed, what is not, where the device is synchronised, and callbacks between steps."""
from __future__ import annotations

import pytest

from harness.run.loop import STOP, TimedLoop


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


def test_prime_warms_up_for_a_count_and_for_seconds_whichever_is_longer():
    r = Recorder()
    TimedLoop(r.sync, clock=r.clock).prime(lambda: r.step(0), 2, min_s=3.5)
    assert r.log.count("step0") == 5  # the first, then untimed calls until 3.5 s have passed after it: four more
    r = Recorder()
    TimedLoop(r.sync, clock=r.clock).prime(lambda: r.step(0), 4, min_s=0.5)
    assert r.log.count("step0") == 4  # the count is the longer


class AsyncDevice:
    """A device that runs queued work in order on its own clock, as a CUDA stream does: the host only queues
    (``step``: 1 ms of host time, 20 ms of device work); events are marks in the queue; ``sync`` waits for it."""

    def __init__(self) -> None:
        self.host = 0.0  # the host's clock
        self.device = 0.0  # when the device has finished everything queued so far
        self.syncs = 0

    def clock(self) -> float:
        return self.host

    def step(self, i: int) -> None:
        self.host += 0.001
        self.device = max(self.device, self.host) + 0.020

    def sync(self) -> None:
        self.syncs += 1
        self.host = max(self.host, self.device)

    def record(self) -> float:  # an event: when the device reaches this point of its queue
        self.device = max(self.device, self.host)
        return self.device

    @staticmethod
    def elapsed(start: float, end: float) -> float:
        return end - start


def test_device_events_time_the_device_and_synchronise_only_at_the_edges():
    dev = AsyncDevice()
    t = TimedLoop(dev.sync, clock=dev.clock, events=dev).run(dev.step, 0, 12, timed_from=2)
    assert t.first_s == pytest.approx(0.021) and len(t.samples) == 10
    # the device's time per step: once the queue is primed, the host's queueing overlaps the device's work
    assert t.samples == pytest.approx([0.021] + [0.020] * 9)
    assert dev.syncs == 4  # the first step's two edges, before the timed region, and its end: never per step
    host = AsyncDevice()
    h = TimedLoop(host.sync, clock=host.clock).run(host.step, 0, 12, timed_from=2)
    assert h.samples == pytest.approx([0.021] * 10) and host.syncs == 13  # a sync per timed step


def test_work_between_steps_reads_the_pending_events_first():
    dev = AsyncDevice()
    loop = TimedLoop(dev.sync, clock=dev.clock, events=dev)
    seen = []

    def after(i: int):
        if i == 6:
            loop.flush()
            seen.append(len(out))
            return True
        return False

    out: list[float] = []
    loop.run(dev.step, 0, 10, first_alone=False, after=after, samples=out)
    assert seen == [6] and len(out) == 10


def test_stream_events_read_a_cuda_shaped_event_in_seconds():
    from harness.run.loop import StreamEvents

    class Event:  # the shape of torch.cuda.Event / torch.npu.Event / mindspore.runtime.Event
        clock = 0.0

        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            self.at = None

        def record(self) -> None:
            Event.clock += 12.5
            self.at = Event.clock

        def elapsed_time(self, end: Event) -> float:
            return end.at - self.at  # milliseconds

    events = StreamEvents(Event)
    a, b = events.record(), events.record()
    assert events.elapsed(a, b) == pytest.approx(0.0125)
