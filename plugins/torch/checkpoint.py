"""Reading PyTorch checkpoints safely (``weights_only=True``) into neutral NumPy weights; the RNG states a training
checkpoint (:meth:`harness_torch.train.TrainStep.save`) keeps.

:func:`_load` is the backend's one checkpoint reader: weights files and training states both go through it."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from harness.backends.arrays import read_checked
from harness.errors import HarnessError

__all__ = ["read_state_dict", "rng_state", "set_rng_state", "TRAIN_STATE"]

#: The file of a training checkpoint (:class:`harness_torch.train.TrainStep`), inside the folder the core gives.
TRAIN_STATE = "train_state.pt"


def _load(path: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (no pickle); a missing file and its failures are one-line errors
    naming ``path`` (:func:`harness.backends.arrays.read_checked`)."""
    return read_checked(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                        "a PyTorch checkpoint loadable with weights_only=True")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state dict from ``path``: plain, or wrapped under ``state_dict``/``model``; ``module.`` stripped (DDP)."""
    obj = _load(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HarnessError(f"checkpoint '{path}': expected a state dict of tensors")
    return {k.removeprefix("module."): v.detach().cpu().numpy().copy() for k, v in obj.items()}


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "npu":
        state["npu"] = torch.npu.get_rng_state(device)  # type: ignore[attr-defined]
    return state


def set_rng_state(device: torch.device, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "npu" and "npu" in state:
        torch.npu.set_rng_state(state["npu"], device)  # type: ignore[attr-defined]
