"""Hook implementations of the MindSpore backend (see :mod:`harness.backends.hookspecs`).

Neutral devices map to MindSpore targets ``CPU``, ``GPU``, ``Ascend``, set with
``mindspore.set_device`` (not the deprecated ``set_context(device_target=)``).
Modes: GRAPH (``mode: default`` or ``graph``) and PYNATIVE.
"""
from __future__ import annotations

import os
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn

from harness import DeviceUnavailable, hookimpl
from harness.config import Case
from harness.dist import place
from harness.measure.environment import cpu_model
from harness.models.specs import MODELS, get_model
from harness.models.weights import (
    check_weights,
    from_mindspore_names,
    to_mindspore_names,
)
from harness.run.loop import StreamEvents

from . import __version__, absorb_numpy_abi_first_failure
from .amp import AMP_DTYPES, amp_level
from .checkpoint import load_checkpoint
from .data import make_stream
from .evaluate import make_eval_step
from .export import FORMATS, RUNTIMES, export_model, inference_session
from .jit import jit_level
from .models import BUILDERS, build_model
from .optim import check_optimizer
from .profile import profile
from .train import TrainStep

#: The framework-specific settings this backend takes (checked by the core when a suite loads, with the rules
#: between them: amp_level O0 is fp32, O1-O3 need fp16 or bf16). Device limits are skipped by the hooks:
#: THOR and mixed precision need GPU or Ascend, AIR export Ascend, the ``lite`` runtime MindSpore Lite.
SUPPORTS: dict[str, Any] = {"optimizer": ["sgd", "thor"], "precision": ["fp32", "bf16", "fp16"],
                            "amp_level": ["auto", "O0", "O1", "O2", "O3"], "mode": ["default", "graph", "pynative"],
                            "jit_level": ["auto", "O0", "O1"], "export": list(FORMATS), "weights": [".ckpt"],
                            "checkpoint": True, "profile": True}

_TARGET = {"cpu": "CPU", "gpu": "GPU", "ascend": "Ascend"}
_MODES = {"default": ms.GRAPH_MODE, "graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def _device_status(device: str) -> dict[str, Any]:
    if device == "cpu":
        return {"available": True, "reason": None, "model": cpu_model(), "count": 1}
    target = _TARGET.get(device)
    if target is None:
        return {"available": False, "reason": f"unknown device '{device}'", "model": None, "count": 0}
    try:
        ok = ms.hal.is_available(target)
    except Exception as exc:  # noqa: BLE001 - a missing device plugin shows up as assorted errors
        ok, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = f"mindspore.hal.is_available('{target}') is False (this MindSpore build or host has no {target})"
    if not ok:
        kind = "CUDA" if device == "gpu" else "Ascend"
        return {"available": False, "reason": f"no {kind} device: {why}", "model": None, "count": 0}
    return {"available": True, "reason": None, "model": ms.hal.get_device_name(0, target),
            "count": ms.hal.device_count(target)}


def _target(device: Any) -> str:
    target: str = device["target"]
    return target


@hookimpl
def harness_backend_info() -> dict[str, Any]:
    return {"name": "mindspore", "framework": "MindSpore", "framework_version": ms.__version__,
            "version": __version__, "devices": list(_TARGET), "launcher": "msrun",
            "scenarios": ["train", "eval", "inference", "export"], "runtimes": dict(RUNTIMES),
            "models": [name for name, spec in MODELS.items() if spec.family in BUILDERS],
            "supports": {k: list(v) if isinstance(v, list) else v for k, v in SUPPORTS.items()}}


@hookimpl
def harness_probe_device(device: str) -> dict[str, Any]:
    return _device_status(device)


@hookimpl
def harness_setup(case: Case) -> dict[str, Any]:
    s = case.settings
    status = _device_status(case.device)
    if not status["available"]:
        raise DeviceUnavailable(status["reason"])
    target = _TARGET[case.device]
    where = place()  # rank, world size and local device as the launcher set them (harness.dist)
    device_id = where.local_device
    if target == "CPU":
        ms.set_device(target)
    else:
        ms.set_device(target, device_id)
    ms.set_context(mode=_MODES[s.mode])
    absorb_numpy_abi_first_failure()
    if where.distributed:  # started by msrun: one process per device
        from mindspore.communication import init

        init()  # HCCL on Ascend, NCCL on GPU, MindSpore's own collectives on CPU
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=where.world)
    if s.threads:
        ms.device_context.cpu.op_tuning.threads_num(s.threads)  # the CPU kernels' pool
    ms.set_seed(s.seed)
    return {"target": target, "device_id": device_id, "mode": "PYNATIVE" if s.mode == "pynative" else "GRAPH",
            "jit_level": jit_level(case, target)}


@hookimpl
def harness_build_model(case: Case, device: Any) -> nn.Cell:
    s = case.settings
    spec = get_model(case.model, width=s.width, num_classes=s.num_classes, image_size=s.image_size)
    level = amp_level(case, device["target"])  # refuses what the device cannot run, before any work
    check_optimizer(case, device["target"])
    ms.set_seed(s.seed)
    net = build_model(spec)
    if level != "O0":  # once, here, so training and evaluation run in the same precision
        net = ms.amp.auto_mixed_precision(net, level, dtype=AMP_DTYPES[s.precision])
    net.set_train(True)
    return net


@hookimpl
def harness_data(case: Case, split: str, device: Any) -> Any:
    return make_stream(case, split, device)


@hookimpl
def harness_train_step(case: Case, model: nn.Cell, device: Any, total_steps: int, steps_per_epoch: int) -> TrainStep:
    return TrainStep(case, model, device, total_steps, steps_per_epoch)


@hookimpl
def harness_eval_step(case: Case, model: nn.Cell, device: Any) -> Any:
    return make_eval_step(case, model, device)


@hookimpl
def harness_synchronize(device: Any) -> bool:
    ms.runtime.synchronize()
    return True


@hookimpl
def harness_events(device: Any) -> StreamEvents | None:
    if ms.get_context("device_target") in ("Ascend", "GPU"):
        return StreamEvents(ms.runtime.Event)
    return None  # CPU: synchronous, the host clock is right


@hookimpl
def harness_profile(device: Any, run_steps: Any, folder: str) -> dict[str, Any]:
    return profile(device, run_steps, folder)


@hookimpl
def harness_device_memory(device: Any) -> int | None:
    if _target(device) == "CPU":
        return None
    return int(ms.runtime.max_memory_allocated())


@hookimpl
def harness_export(case: Case, model: nn.Cell, device: Any, fmt: str, path: str, batch: int | None) -> dict[str, Any]:
    return export_model(case, model, device, fmt, path, batch)


@hookimpl
def harness_inference_session(case: Case, device: Any, model: nn.Cell | None, runtime: str, path: str | None,
                              batch: int) -> Any:
    return inference_session(case, model, device, runtime, path)


@hookimpl
def harness_to_device(arrays: tuple[Any, ...], device: Any) -> tuple[ms.Tensor, ...]:
    images, labels, *rest = arrays  # rest: float arrays a step may take (Multigrain's sampling noise)
    return (ms.Tensor(np.ascontiguousarray(images, dtype=np.float32)), ms.Tensor(np.asarray(labels, dtype=np.int32)),
            *(ms.Tensor(np.ascontiguousarray(r, dtype=np.float32)) for r in rest))


@hookimpl
def harness_predict(case: Case, model: nn.Cell, device: Any, images: np.ndarray) -> np.ndarray:
    was_training = model.training
    model.set_train(False)
    try:
        logits: np.ndarray = model(ms.Tensor(np.ascontiguousarray(images, dtype=np.float32))).asnumpy().astype(
            np.float32)
        return logits
    finally:
        model.set_train(was_training)


@hookimpl
def harness_get_weights(case: Case, model: nn.Cell) -> dict[str, np.ndarray]:
    return from_mindspore_names({p.name: p.asnumpy().copy() for p in model.get_parameters()})


@hookimpl
def harness_set_weights(case: Case, model: nn.Cell, weights: dict[str, np.ndarray]) -> bool:
    params = {p.name: p for p in model.get_parameters()}
    neutral = from_mindspore_names({name: p.shape for name, p in params.items()})
    check_weights(weights, {k: tuple(v) for k, v in neutral.items()}, f"weights for {case.model}")
    for name, value in to_mindspore_names({k: v for k, v in weights.items() if k in neutral}).items():
        p = params[name]
        p.set_data(ms.Tensor(np.asarray(value), dtype=p.dtype))
    return True


@hookimpl
def harness_read_checkpoint(path: str) -> dict[str, np.ndarray]:
    params = load_checkpoint(path)
    return from_mindspore_names({k: v.asnumpy().copy() for k, v in params.items()})


@hookimpl
def harness_write_checkpoint(weights: dict[str, np.ndarray], path: str) -> str:
    if not path.endswith(".ckpt"):  # MindSpore appends it anyway, and reads only files that carry it
        path += ".ckpt"
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in to_mindspore_names(weights).items()],
                       path)
    os.chmod(path, 0o644)  # MindSpore writes checkpoints read-only
    return path


@hookimpl
def harness_environment(case: Case, device: Any) -> dict[str, Any]:
    # framework, versions and the device's model and count are the core's (from the info and the probe)
    return {"mindspore_mode": device["mode"], "mindspore_jit_level": device["jit_level"],
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "mindspore_threads": case.settings.threads}
