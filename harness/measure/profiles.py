"""Where the time goes: one profiled window of training steps, with the framework's own profiler.

With ``profile: true`` a training case runs :data:`PROFILE_STEPS` more steps after everything it measured (the timed
steps, the weights' digest, the evaluation and the exports: the profiled steps train the model further and are never
among the timed samples). The backend's ``harness_profile`` hook runs them under its profiler, keeps the raw trace in
the case folder and returns the op table (:func:`check_profile` checks it; :func:`read_op_statistic` reads the one
Ascend's profilers write); the core times the window itself (:func:`profile_after`) and stores
``metrics.train.profile``: the ops' self time per step in neutral categories (:mod:`harness.measure.op_categories`).
The report's "Where the time goes" section is :mod:`harness.results.profile_report`.
"""
from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError, Unsupported, one_line
from harness.measure.op_categories import summarise

__all__ = ["PROFILE_STEPS", "check_profile", "profile_after", "read_op_statistic"]


#: Steps in the profiled window.
PROFILE_STEPS = 5


def check_profile(backend: str, value: Any) -> dict[str, Any]:
    """``harness_profile``'s answer: ``{"profiler": str, "ops": [{"name": str, "self_s": number >= 0,
    "calls": int, "scope": str (optional)}], "trace": str (a path in the case folder)}``."""
    def fail(what: str) -> HarnessError:
        shown = repr(value)
        shown = shown[:117] + "..." if len(shown) > 120 else shown
        return HarnessError(f"backend '{backend}': harness_profile returned {shown}: {what}")

    if not isinstance(value, dict) or not isinstance(value.get("profiler"), str):
        raise fail("expected a dict with 'profiler' (a string), 'ops' and 'trace'")
    ops = value.get("ops")
    if not isinstance(ops, list) or not ops:
        raise fail("'ops' must be a non-empty list of {name, self_s, calls}")
    for op in ops:
        if (not isinstance(op, dict) or not isinstance(op.get("name"), str)
                or not isinstance(op.get("self_s"), (int, float)) or isinstance(op.get("self_s"), bool)
                or not math.isfinite(op["self_s"]) or op["self_s"] < 0
                or not isinstance(op.get("calls", 0), int) or not isinstance(op.get("scope", ""), str)):
            raise fail(f"each op must be {{name: str, self_s: seconds >= 0, calls: int, scope: str}}, got {op!r}"[:300])
    if not isinstance(value.get("trace"), str):
        raise fail("'trace' must be the path of the raw trace it kept")
    return value


def read_op_statistic(path: str) -> list[dict[str, Any]]:
    """The op table of an Ascend profile (msprof's ``op_statistic.csv``, written by torch_npu's and MindSpore's
    profilers alike): ``OP Type``, ``Count`` and ``Total Time(us)`` per op type."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise Unsupported(f"profile: the profiler wrote no op table ({path}: {exc.strerror})") from None
    out = []
    for row in rows:
        name = row.get("OP Type") or row.get("Op Type") or row.get("op_type")
        total = row.get("Total Time(us)") or row.get("Total Time (us)")
        if name and total:
            out.append({"name": name, "self_s": float(total) / 1e6, "calls": int(float(row.get("Count") or 0))})
    return out


def profile_after(ctx: Any, step: Callable[[Any], Any], batches: Any) -> None:
    """The profiled window of a training case: :data:`PROFILE_STEPS` steps of ``step`` on the next ``batches``,
    run by the backend's ``harness_profile`` under its profiler and timed here (the device settled at both ends).
    A profiler this host or device cannot run (:class:`harness.Unsupported`) is recorded as skipped with its reason,
    and the case stays ok: its measurements do not depend on it."""
    steps = PROFILE_STEPS
    folder = "profile" if not ctx.place.distributed else os.path.join("profile", f"rank{ctx.place.rank}")
    os.makedirs(folder, exist_ok=True)
    window: list[float] = []
    losses: list[Any] = []

    def run_steps() -> None:
        if window:
            raise HarnessError("harness_profile called run_steps twice: it runs the window once")
        ctx.hook.harness_synchronize(device=ctx.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            losses.append(step(next(batches)))
        ctx.hook.harness_synchronize(device=ctx.device)
        window.append(time.perf_counter() - t0)

    ctx.phase = "profile"
    ctx.progress("profile", 0, steps, force=True)
    train = ctx.metrics.setdefault("train", {})
    try:
        raw = ctx.hook.harness_profile(case=ctx.case, device=ctx.device, run_steps=run_steps, folder=folder)
    except Unsupported as exc:
        train["profile"] = {"skipped": one_line(str(exc))}
        return
    raw = check_profile(ctx.case.backend, raw)
    if not window:
        raise HarnessError(f"backend '{ctx.case.backend}': harness_profile returned without calling run_steps")
    ctx.hook.harness_to_host(value=losses)  # the window's losses are discarded, but read: nothing left queued
    timed = (train.get("ms_per_step") or {}).get("p50")
    train["profile"] = {**summarise(raw["ops"], steps, window[0] / steps, raw["profiler"], raw["trace"]),
                        "timed_step_s": timed / 1e3 if isinstance(timed, (int, float)) else None}
