"""``harness_profile`` of the PyTorch backend: the core's window of training steps under ``torch.profiler`` (CPU, and
CUDA on a GPU) or ``torch_npu.profiler`` (Ascend), the raw trace kept in the case folder and the op table returned
for :mod:`harness.measure.profiles`."""
from __future__ import annotations

import glob
import importlib
import os
from collections.abc import Callable
from typing import Any

import torch

from harness import Unsupported
from harness.measure.profiles import read_op_statistic

__all__ = ["npu_profiler", "profile"]


def _scope(event: Any) -> str:
    """The ops an event ran inside, outermost first (``Optimizer.step#SGD.step/aten::add_``'s is
    ``Optimizer.step#SGD.step``)."""
    chain, parent = [], event.cpu_parent
    while parent is not None:
        chain.append(parent.name)
        parent = parent.cpu_parent
    return "/".join(reversed(chain))


def _op_table(events: Any, on_device: bool) -> list[dict[str, Any]]:
    """Self time per (op, scope) over the window. On CUDA each op's self *device* time (its kernels' time, attributed
    to the op that launched them), so the kernels themselves are not counted again; on CPU its self host time."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    cpu = torch.profiler.DeviceType.CPU
    for e in events:
        if e.device_type != cpu:
            continue
        self_us = e.self_device_time_total if on_device else e.self_cpu_time_total
        entry = table.setdefault((e.name, _scope(e)), {"name": e.name, "scope": _scope(e), "self_s": 0.0, "calls": 0})
        entry["self_s"] += self_us / 1e6
        entry["calls"] += 1
    return [op for op in table.values() if op["self_s"] > 0]


def npu_profiler() -> Any:
    """``torch_npu.profiler``, or :class:`harness.Unsupported` saying why it cannot be imported."""
    try:
        return importlib.import_module("torch_npu.profiler")
    except Exception as exc:  # noqa: BLE001 - without CANN torch_npu fails in assorted ways
        raise Unsupported(f"profile: torch_npu.profiler is not importable ({type(exc).__name__}: {exc}); the Ascend "
                          "profile needs torch_npu with CANN") from None


def _npu(run_steps: Callable[[], None], folder: str) -> dict[str, Any]:
    prof = npu_profiler()
    with prof.profile(activities=[prof.ProfilerActivity.CPU, prof.ProfilerActivity.NPU],
                      on_trace_ready=prof.tensorboard_trace_handler(folder)):
        run_steps()
    found = sorted(glob.glob(os.path.join(folder, "*_ascend_pt", "ASCEND_PROFILER_OUTPUT", "op_statistic.csv")))
    if not found:
        raise Unsupported(f"profile: torch_npu.profiler wrote no */ASCEND_PROFILER_OUTPUT/op_statistic.csv under "
                          f"{folder}")
    version = getattr(importlib.import_module("torch_npu"), "__version__", "?")
    return {"profiler": f"torch_npu.profiler (torch_npu {version}, NPU kernel time)",
            "ops": read_op_statistic(found[-1]),
            "trace": os.path.dirname(os.path.dirname(found[-1]))}


def profile(device: torch.device, run_steps: Callable[[], None], folder: str) -> dict[str, Any]:
    if device.type == "npu":
        return _npu(run_steps, folder)
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    with torch_profile(activities=activities) as prof:
        run_steps()
    trace = os.path.join(folder, "trace.json")
    prof.export_chrome_trace(trace)  # Chrome trace JSON: chrome://tracing or ui.perfetto.dev
    what = "CPU+CUDA, op self time on the GPU" if on_device else "CPU, op self time"
    return {"profiler": f"torch.profiler (PyTorch {torch.__version__}, {what})",
            "ops": _op_table(prof.events(), on_device),
            "trace": trace}
