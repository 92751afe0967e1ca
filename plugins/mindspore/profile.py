"""``harness_profile`` of the MindSpore backend: the core's window of training steps under
``mindspore.profiler.profile``, its output folder (TensorBoard/MindStudio Insight layout, with ``trace_view.json``)
kept in the case folder and its op table returned for :mod:`harness.measure.profiles`.

On CPU the op table is ``FRAMEWORK/cpu_op_detail_info_*.csv`` (each kernel's host time with its full scope name,
``Default/optimizer-Momentum/ApplyMomentum-op3``); on Ascend msprof's ``op_statistic.csv``.

MindSpore's CPU profiler records kernels only (its host-side ``op_range`` events are Ascend's), so the runtime's own
work between kernels (launching ~700 of them a step, the step's inputs, Python) is in no op. Its timeline of every
kernel launch (``FRAMEWORK/cpu_op_execute_timestamp_*.txt``: start, duration and thread of each) shows that work as
the time between the window's first kernel and its last when no kernel runs: :func:`kernel_timeline` measures it and
:func:`profile` adds it as one host/other row, :data:`BETWEEN_KERNELS`. What lies outside the kernels' span (before
the first, after the last) stays unattributed.
"""
from __future__ import annotations

import csv
import glob
import os
from collections.abc import Callable
from typing import Any

import mindspore as ms

from harness import Unsupported
from harness.measure.profiles import read_op_statistic

__all__ = ["BETWEEN_KERNELS", "cpu_op_table", "kernel_timeline", "profile"]

#: The op row of the time between kernels that the profiler's timeline shows with no kernel running.
BETWEEN_KERNELS = "host: MindSpore runtime between kernels"


def cpu_op_table(path: str) -> list[dict[str, Any]]:
    """``cpu_op_detail_info_*.csv``: per kernel, its type, full scope name, calls and total milliseconds."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"name": row["op_type"], "scope": row["full_op_name"].rpartition("/")[0],
                 "self_s": float(row["op_total_time(ms)"]) / 1e3, "calls": int(row["op_occurrences"])}
                for row in csv.DictReader(f)]


def kernel_timeline(path: str) -> dict[str, float]:
    """``cpu_op_execute_timestamp_*.txt``: a line per kernel, ``full name;type;...;start,dur,tid start,dur,tid ...``
    with the start in ns and the duration in ms. Returns the kernels' ``span_s`` (first start to last end),
    ``busy_s`` (the union of their intervals over every thread: kernels on two threads at once count once) and
    ``launches``."""
    spans: list[tuple[int, int]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.strip().split(";")
            if len(fields) < 3:
                continue
            for launch in fields[-1].split():
                try:
                    start, dur, _tid = launch.split(",")
                    begin = int(start)
                    spans.append((begin, begin + round(float(dur) * 1e6)))
                except ValueError:
                    raise Unsupported(f"profile: mindspore.profiler's kernel timeline {path} line {number}: "
                                      f"{launch[:60]!r} is not start_ns,duration_ms,thread") from None
    if not spans:
        raise Unsupported(f"profile: mindspore.profiler's kernel timeline {path} holds no kernel")
    spans.sort()
    busy, (lo, hi) = 0, spans[0]
    for begin, end in spans[1:]:
        if begin > hi:
            busy, lo, hi = busy + hi - lo, begin, end
        else:
            hi = max(hi, end)
    busy += hi - lo
    return {"span_s": (hi - spans[0][0]) / 1e9, "busy_s": busy / 1e9, "launches": len(spans)}  # hi: the last end


def profile(device: Any, run_steps: Callable[[], None], folder: str) -> dict[str, Any]:
    from mindspore.profiler import ProfilerActivity, tensorboard_trace_handler
    from mindspore.profiler import profile as ms_profile

    target = device["target"]
    activities = {"CPU": [ProfilerActivity.CPU], "GPU": [ProfilerActivity.CPU, ProfilerActivity.GPU],
                  "Ascend": [ProfilerActivity.CPU, ProfilerActivity.NPU]}[target]
    out = os.path.abspath(folder)
    with ms_profile(activities=activities, on_trace_ready=tensorboard_trace_handler(out)):
        run_steps()
    runs = sorted(glob.glob(os.path.join(out, "*_ascend_ms")), key=os.path.getmtime)
    if not runs:
        raise Unsupported(f"profile: mindspore.profiler wrote no *_ascend_ms folder under {folder}")
    run = runs[-1]
    name = f"mindspore.profiler.profile (MindSpore {ms.__version__}, {target} {device['mode']}, kernel self time"
    trace = os.path.relpath(run)
    if target == "CPU":
        found = sorted(glob.glob(os.path.join(run, "FRAMEWORK", "cpu_op_detail_info_*.csv")))
        if not found:
            raise Unsupported(f"profile: mindspore.profiler wrote no FRAMEWORK/cpu_op_detail_info_*.csv in {trace}")
        ops = cpu_op_table(found[0])
        stamps = sorted(glob.glob(os.path.join(run, "FRAMEWORK", "cpu_op_execute_timestamp_*.txt")))
        if stamps:  # the runtime's time between kernels, from the profiler's own timeline
            line = kernel_timeline(stamps[0])
            ops.append({"name": BETWEEN_KERNELS, "scope": "", "self_s": line["span_s"] - line["busy_s"], "calls": 0})
            name += " and the timeline's time between kernels"
        return {"profiler": name + ")", "ops": ops, "trace": trace}
    found = sorted(glob.glob(os.path.join(run, "ASCEND_PROFILER_OUTPUT", "op_statistic.csv")))
    if not found:
        raise Unsupported(f"profile: mindspore.profiler on {target} wrote no ASCEND_PROFILER_OUTPUT/op_statistic.csv "
                          f"in {trace} (files: {', '.join(sorted(os.listdir(run)))})")
    return {"profiler": name + ")", "ops": read_op_statistic(found[0]), "trace": trace}
