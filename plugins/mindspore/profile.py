"""``harness_profile`` of the MindSpore backend: the core's window of training steps under
``mindspore.profiler.profile``, its output folder (TensorBoard/MindStudio Insight layout, with ``trace_view.json``)
kept in the case folder and its op table returned for :mod:`harness.profiles`.

On CPU the op table is ``FRAMEWORK/cpu_op_detail_info_*.csv`` (each kernel's host time with its full scope name,
``Default/optimizer-Momentum/ApplyMomentum-op3``); on Ascend msprof's ``op_statistic.csv``.
"""
from __future__ import annotations

import csv
import glob
import os
from collections.abc import Callable
from typing import Any

import mindspore as ms
from harness import Unsupported
from harness.profiles import read_op_statistic

__all__ = ["cpu_op_table", "profile"]


def cpu_op_table(path: str) -> list[dict[str, Any]]:
    """``cpu_op_detail_info_*.csv``: per kernel, its type, full scope name, calls and total milliseconds."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"name": row["op_type"], "scope": row["full_op_name"].rpartition("/")[0],
                 "self_s": float(row["op_total_time(ms)"]) / 1e3, "calls": int(row["op_occurrences"])}
                for row in csv.DictReader(f)]


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
    name = f"mindspore.profiler.profile (MindSpore {ms.__version__}, {target} {device['mode']}, kernel self time)"
    trace = os.path.relpath(run)
    if target == "CPU":
        found = sorted(glob.glob(os.path.join(run, "FRAMEWORK", "cpu_op_detail_info_*.csv")))
        if not found:
            raise Unsupported(f"profile: mindspore.profiler wrote no FRAMEWORK/cpu_op_detail_info_*.csv in {trace}")
        return {"profiler": name, "ops": cpu_op_table(found[0]), "trace": trace}
    found = sorted(glob.glob(os.path.join(run, "ASCEND_PROFILER_OUTPUT", "op_statistic.csv")))
    if not found:
        raise Unsupported(f"profile: mindspore.profiler on {target} wrote no ASCEND_PROFILER_OUTPUT/op_statistic.csv "
                          f"in {trace} (files: {', '.join(sorted(os.listdir(run)))})")
    return {"profiler": name, "ops": read_op_statistic(found[0]), "trace": trace}
