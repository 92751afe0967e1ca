"""The conformance suite's building blocks: a check's outcome, expectations, and the checks of a train step's
``save``/``load`` and of ``harness_synchronize`` waiting for queued work (see :mod:`harness.backends.conformance`)."""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.config import Case
from harness.errors import HarnessError, Unsupported, one_line

__all__ = ["Checks", "expect", "expect_raises", "weights_equal", "train_state_checks", "waits", "check_weights"]


class Checks:
    def __init__(self) -> None:
        self.results: list[dict[str, str]] = []
        self.model: Any = None  # the built model, once built

    def __call__(self, name: str, fn: Callable[..., Any]) -> Any:  # (...: a lambda may bind a loop variable)
        try:
            value = fn()
        except Unsupported as exc:
            self.results.append({"check": name, "status": "skip", "detail": str(exc)})
            return None
        except HarnessError as exc:
            self.results.append({"check": name, "status": "fail", "detail": str(exc)})
            return None
        except Exception as exc:  # noqa: BLE001 - a backend's own error fails the check, in one line
            self.results.append({"check": name, "status": "fail",
                                 "detail": f"{type(exc).__name__}: {one_line(str(exc), 300)}"})
            return None
        self.results.append({"check": name, "status": "pass", "detail": "" if value is None or value is True
                             else str(value)[:200]})
        return value


def expect(cond: object, what: str) -> None:
    if not cond:
        raise HarnessError(what)


def weights_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def train_state_checks(checks: Checks, hook: Any, case: Case, dev: Any, net: Any, batch: Any, tmp: str) -> None:
    """``supports["checkpoint"]``: the train step's ``save``/``load`` resume exactly and refuse what is not theirs."""
    def new_step(c: Case = case, model: Any = net) -> Any:
        step = hook.harness_train_step(case=c, model=model, device=dev, total_steps=4, steps_per_epoch=4)
        expect(callable(getattr(step, "save", None)) and callable(getattr(step, "load", None)),
                f"supports['checkpoint'] is true but the train step ({type(step).__name__}) has no save/load")
        return step

    saved: list[str] = []

    def resume() -> str:
        step = new_step()
        step(batch)  # momentum exists from here on
        folder = tempfile.mkdtemp(dir=tmp)
        files = step.save(folder)
        expect(isinstance(files, list) and files and all(isinstance(f, str) and os.path.isfile(os.path.join(
            folder, f)) for f in files), f"save must return the names of the files it wrote, got {files!r}")
        saved.extend(files)
        loss = hook.harness_to_host(value=step(batch))
        after = hook.harness_get_weights(case=case, model=net)
        fresh = new_step()
        fresh.load(folder)
        again = hook.harness_to_host(value=fresh(batch))
        expect(again == loss and weights_equal(after, hook.harness_get_weights(case=case, model=net)),
                f"the step after a restore differs from the step after the save (loss {again} vs {loss})")
        return ", ".join(files)
    checks("TrainStep.save / TrainStep.load: the step after a restore is the same", resume)

    def missing() -> None:
        if not saved:
            raise Unsupported("nothing was saved (see the save / load check)")
        expect_raises(lambda: new_step().load(tempfile.mkdtemp(dir=tmp)), *saved)
    checks("TrainStep.load refuses a folder without the state with HarnessError naming the file", missing)

    def foreign() -> None:
        other = Case(case.name, case.model, case.backend, case.device,
                     dataclasses.replace(case.settings, num_classes=case.settings.num_classes - 3))
        folder = tempfile.mkdtemp(dir=tmp)
        files = new_step(other, hook.harness_build_model(case=other, device=dev)).save(folder)
        expect(isinstance(files, list) and bool(files), f"save must return the names of the files it wrote, got "
                f"{files!r}")
        expect_raises(lambda: new_step().load(folder), *files)
    checks(f"TrainStep.load refuses the state of another shape (num_classes {case.settings.num_classes - 3}) with "
           "HarnessError naming the file", foreign)


def waits(hook: Any, dev: Any, queue: Callable[[], Any], read: Callable[[Any], Any], tries: int = 2) -> str:
    """``harness_synchronize`` waits for queued work: after it, reading the last result must not be where the
    time goes. Fails when, on every try, the read takes over half of queue + synchronize + read and over 5 ms."""
    for _ in range(tries):
        hook.harness_synchronize(device=dev)
        t0 = time.perf_counter()
        out = queue()
        t1 = time.perf_counter()
        hook.harness_synchronize(device=dev)
        t2 = time.perf_counter()
        read(out)
        t3 = time.perf_counter()
        whole, reading = t3 - t0, t3 - t2
        if not (reading > 0.5 * whole and reading > 0.005):
            return (f"queued in {(t1 - t0) * 1e3:.1f} ms, synchronize {(t2 - t1) * 1e3:.1f} ms, "
                    f"read {reading * 1e3:.1f} ms")
    raise HarnessError(f"harness_synchronize returned before the queued work had finished: reading the last result "
                       f"after it took {reading * 1e3:.1f} ms of {whole * 1e3:.1f} ms (synchronize returned in "
                       f"{(t2 - t1) * 1e3:.1f} ms)")


def check_weights(w: Any) -> dict[str, Any]:
    expect(isinstance(w, dict) and w and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in w.items()),
            "expected a non-empty dict of names to NumPy arrays")
    weights: dict[str, Any] = w
    return weights


def expect_raises(fn: Callable[[], Any], *mentions: str) -> None:
    """``fn`` raises HarnessError naming one of ``mentions``."""
    try:
        fn()
    except HarnessError as exc:
        expect(any(m in str(exc) for m in mentions),
                f"the message should name {' or '.join(repr(m) for m in mentions)}: {exc}")
        return
    raise HarnessError("accepted it without raising HarnessError")
