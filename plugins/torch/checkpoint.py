"""Reading PyTorch checkpoints safely (``weights_only=True``) into neutral NumPy weights."""
from __future__ import annotations

import os

import numpy as np
import torch

from harness.errors import HarnessError

__all__ = ["read_state_dict"]


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state dict from ``path``: plain, or wrapped under ``state_dict``/``model``; ``module.`` stripped (DDP)."""
    if not os.path.isfile(path):
        raise HarnessError(f"checkpoint '{path}': no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a foreign or corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"checkpoint '{path}': not a PyTorch checkpoint loadable with weights_only=True "
                           f"({type(exc).__name__}: {first[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HarnessError(f"checkpoint '{path}': expected a state dict of tensors")
    return {k.removeprefix("module."): v.detach().cpu().numpy().copy() for k, v in obj.items()}
