"""Reading PyTorch checkpoints safely (``weights_only=True``) into neutral NumPy weights."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.weights import check_weights

__all__ = ["read_state_dict", "save_train_state", "load_train_state", "TRAIN_STATE"]

#: The file of a training checkpoint, inside the folder the core gives.
TRAIN_STATE = "train_state.pt"


def _load(path: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (no pickle), its failures as one-line errors naming ``path``."""
    if not os.path.isfile(path):
        raise HarnessError(f"checkpoint '{path}': no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a foreign or corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"checkpoint '{path}': not a PyTorch checkpoint loadable with weights_only=True "
                           f"({type(exc).__name__}: {first[:200]})") from None


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state dict from ``path``: plain, or wrapped under ``state_dict``/``model``; ``module.`` stripped (DDP)."""
    obj = _load(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HarnessError(f"checkpoint '{path}': expected a state dict of tensors")
    return {k.removeprefix("module."): v.detach().cpu().numpy().copy() for k, v in obj.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "npu":
        state["npu"] = torch.npu.get_rng_state(device)
    return state


def _set_rng_state(device: torch.device, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "npu" and "npu" in state:
        torch.npu.set_rng_state(state["npu"], device)


def save_train_state(model: torch.nn.Module, device: torch.device, step: Any, folder: str) -> list[str]:
    """Model, optimizer (momentum buffers, learning rates), criterion (Multigrain's beta), gradient scaler, the
    step count that indexes the schedule, and the RNG states, in one ``torch.save`` file."""
    state = {"model": model.state_dict(), "optimizer": step.optimizer.state_dict(),
             "criterion": step.criterion.state_dict(), "count": step.count[0], "rng": _rng_state(device),
             "scaler": step.scaler.state_dict() if step.scaler is not None else None}
    torch.save(state, os.path.join(folder, TRAIN_STATE))
    return [TRAIN_STATE]


def load_train_state(model: torch.nn.Module, device: torch.device, step: Any, folder: str, name: str) -> None:
    """Restore :func:`save_train_state`'s file into ``model`` and ``step``; ``weights_only`` loading."""
    path = os.path.join(folder, TRAIN_STATE)
    state = _load(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "criterion", "count", "rng"} <= set(state):
        raise HarnessError(f"checkpoint '{path}': not a harness training state")
    own = model.state_dict()
    check_weights(state["model"], {k: tuple(v.shape) for k, v in own.items()},
                  f"checkpoint '{path}' for {name}")
    model.load_state_dict(state["model"])
    step.criterion.load_state_dict(state["criterion"])
    try:
        step.optimizer.load_state_dict(state["optimizer"])
    except ValueError as exc:
        raise HarnessError(f"checkpoint '{path}': optimizer state does not fit ({exc})") from None
    if step.scaler is not None and state.get("scaler"):
        step.scaler.load_state_dict(state["scaler"])
    step.count[0] = int(state["count"])
    _set_rng_state(device, state["rng"])
