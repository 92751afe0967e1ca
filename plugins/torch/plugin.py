"""Hook implementations of the PyTorch backend (see :mod:`harness.backends.hookspecs`).

Neutral device names map to ``cpu``, ``cuda`` and ``npu``; torch_npu is imported
only when ``ascend`` is asked for, because without Ascend CANN it breaks
``import torch`` itself.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np
import torch

from harness import DeviceUnavailable, Unsupported, hookimpl
from harness.config import Case
from harness.dist import place
from harness.measure.environment import bf16_refusal, cpu_model
from harness.models.specs import MODELS, get_model
from harness.models.weights import OPTIONAL_SUFFIXES, check_weights
from harness.run.loop import StreamEvents

from . import __version__
from .checkpoint import read_state_dict
from .data import make_stream
from .export import FORMATS, RUNTIMES, export_model, inference_session
from .models import BUILDERS, build_model, unwrap
from .profile import profile
from .train import (
    AMP_LEVELS,
    MODES,
    OPTIMIZERS,
    PRECISIONS,
    TrainStep,
    make_eval_step,
    make_train_step,
)

_TORCH_TYPE = {"cpu": "cpu", "gpu": "cuda", "ascend": "npu"}
_PROCESS_GROUP = {"cpu": "gloo", "gpu": "nccl", "ascend": "hccl"}
#: The suffixes of the files harness_read_checkpoint reads (any ``torch.save`` state dict, safely loaded): .pt and
#: .pth, and .bin as Hugging Face's ``pytorch_model.bin`` (the suffixes ``harness convert`` gives to torch).
WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin")


def _npu() -> Any:
    """torch_npu, imported on first use; raises DeviceUnavailable with the reason."""
    if importlib.util.find_spec("torch_npu") is None:
        raise DeviceUnavailable("no Ascend device: torch_npu not importable (not installed; needs Ascend CANN)")
    try:
        return importlib.import_module("torch_npu")
    except Exception as exc:  # noqa: BLE001 - missing CANN libraries surface as assorted errors
        raise DeviceUnavailable(f"no Ascend device: torch_npu not importable ({type(exc).__name__}: {exc})") from None


def _device_status(device: str) -> dict[str, Any]:
    if device == "cpu":
        return {"available": True, "reason": None, "model": cpu_model(), "count": 1}
    if device == "gpu":
        if not torch.cuda.is_available():
            why = "torch built without CUDA" if torch.version.cuda is None else "torch.cuda.is_available() is False"
            return {"available": False, "reason": f"no CUDA device: {why}", "model": None, "count": 0}
        return {"available": True, "reason": None, "model": torch.cuda.get_device_name(0),
                "count": torch.cuda.device_count()}
    if device == "ascend":
        try:
            _npu()
        except DeviceUnavailable as exc:
            return {"available": False, "reason": str(exc), "model": None, "count": 0}
        if not torch.npu.is_available():  # type: ignore[attr-defined]
            return {"available": False, "reason": "no Ascend device: torch.npu.is_available() is False",
                    "model": None, "count": 0}
        return {"available": True, "reason": None, "model": torch.npu.get_device_name(0),  # type: ignore[attr-defined]
                "count": torch.npu.device_count()}  # type: ignore[attr-defined]
    return {"available": False, "reason": f"unknown device '{device}'", "model": None, "count": 0}


@hookimpl
def harness_backend_info() -> dict[str, Any]:
    return {"name": "torch", "framework": "PyTorch", "framework_version": torch.__version__,
            "version": __version__, "devices": list(_TORCH_TYPE), "launcher": "torchrun",
            "scenarios": ["train", "eval", "inference", "export"], "runtimes": dict(RUNTIMES),
            "models": [name for name, spec in MODELS.items() if spec.family in BUILDERS],
            "supports": {"optimizer": list(OPTIMIZERS), "precision": list(PRECISIONS), "amp_level": list(AMP_LEVELS),
                         "mode": list(MODES), "export": list(FORMATS), "weights": list(WEIGHTS_SUFFIXES),
                         "checkpoint": True, "profile": True}}


@hookimpl
def harness_probe_device(device: str) -> dict[str, Any]:
    return _device_status(device)


@hookimpl
def harness_setup(case: Case) -> torch.device:
    status = _device_status(case.device)
    if not status["available"]:
        raise DeviceUnavailable(status["reason"])
    where = place()
    index = where.local_device if case.device != "cpu" else None
    device = torch.device(_TORCH_TYPE[case.device]) if index is None else torch.device(_TORCH_TYPE[case.device], index)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    elif device.type == "npu":
        torch.npu.set_device(device)  # type: ignore[attr-defined]
        torch.npu.reset_peak_memory_stats(device)  # type: ignore[attr-defined]
    if case.settings.threads:
        torch.set_num_threads(case.settings.threads)
    if where.distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=_PROCESS_GROUP[case.device],
                                             device_id=device if device.type != "cpu" else None)
    torch.manual_seed(case.settings.seed)
    return device


@hookimpl
def harness_build_model(case: Case, device: torch.device) -> torch.nn.Module:
    s = case.settings
    if device.type == "cpu" and s.precision == "bf16" and (why := bf16_refusal()):
        raise Unsupported(why)  # emulated bf16 would measure the emulation, not the framework
    spec = get_model(case.model, width=s.width, num_classes=s.num_classes, image_size=s.image_size)
    torch.manual_seed(s.seed)
    model = build_model(spec).to(device)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (missing in the stub)
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        # BatchNorm stays per device, as in the references; the same seed gives every rank the same weights
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type != "cpu" else None)
    return model.train()


@hookimpl
def harness_data(case: Case, split: str, device: torch.device) -> Any:
    return make_stream(case, split, device)


@hookimpl
def harness_train_step(case: Case, model: torch.nn.Module, device: torch.device, total_steps: int,
                       steps_per_epoch: int) -> TrainStep:
    return make_train_step(case, model, device, total_steps, steps_per_epoch)


@hookimpl
def harness_eval_step(case: Case, model: torch.nn.Module, device: torch.device) -> Any:
    return make_eval_step(case, model, device)


@hookimpl
def harness_to_host(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, torch.Tensor) for v in value):
            return torch.stack([v.detach().float().reshape(()) for v in value]).cpu().tolist()
        return [float(v) for v in value]
    return float(value)


@hookimpl
def harness_synchronize(device: torch.device) -> bool:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "npu":
        torch.npu.synchronize(device)  # type: ignore[attr-defined]
    return True


@hookimpl
def harness_events(device: torch.device) -> StreamEvents | None:
    if device.type == "cuda":
        return StreamEvents(torch.cuda.Event)
    if device.type == "npu":
        return StreamEvents(torch.npu.Event)  # type: ignore[attr-defined]
    return None  # CPU: synchronous, the host clock is right


@hookimpl
def harness_profile(device: torch.device, run_steps: Any, folder: str) -> dict[str, Any]:
    return profile(device, run_steps, folder)


@hookimpl
def harness_device_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "npu":
        return int(torch.npu.max_memory_allocated(device))  # type: ignore[attr-defined]
    return None


@hookimpl
def harness_export(case: Case, model: torch.nn.Module, device: torch.device, fmt: str, path: str,
                   batch: int | None) -> dict[str, Any]:
    return export_model(case, unwrap(model), device, fmt, path, batch)


@hookimpl
def harness_inference_session(case: Case, device: torch.device, model: torch.nn.Module | None, runtime: str,
                              path: str | None, batch: int) -> Any:
    return inference_session(case, device, unwrap(model) if model is not None else None, runtime, path)


@hookimpl
def harness_environment(case: Case, device: torch.device) -> dict[str, Any]:
    # framework, versions and the device's model and count are the core's (from the info and the probe)
    env: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    if device.type == "npu":
        env.update(torch_npu=getattr(_npu(), "__version__", None))
    return env


@hookimpl
def harness_to_device(arrays: tuple[Any, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays)


@hookimpl
def harness_predict(case: Case, model: torch.nn.Module, device: torch.device, images: np.ndarray) -> np.ndarray:
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits: np.ndarray = model(torch.from_numpy(np.ascontiguousarray(images)).to(device)).float().cpu().numpy()
            return logits
    finally:
        model.train(was_training)


@hookimpl
def harness_get_weights(case: Case, model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in unwrap(model).state_dict().items()}


@hookimpl
def harness_set_weights(case: Case, model: torch.nn.Module, weights: dict[str, np.ndarray]) -> bool:
    model = unwrap(model)
    state = model.state_dict()
    check_weights(weights, {k: tuple(v.shape) for k, v in state.items() if not k.endswith(OPTIONAL_SUFFIXES)},
                  f"weights for {case.model}")
    model.load_state_dict({k: torch.from_numpy(np.array(weights[k])).to(v.dtype) if k in weights else v
                           for k, v in state.items()})
    return True


@hookimpl
def harness_read_checkpoint(path: str) -> dict[str, np.ndarray]:
    return read_state_dict(path)


@hookimpl
def harness_write_checkpoint(weights: dict[str, np.ndarray], path: str) -> str:
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, path)
    return path
