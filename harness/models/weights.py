"""Framework-neutral weights: names, checks, and MindSpore name mapping.

Neutral names are PyTorch's state-dict names. Backends exchange weights as
``dict[str, numpy.ndarray]`` under these names, which makes conversion and
cross-framework parity framework-free.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.errors import HarnessError

__all__ = ["OPTIONAL_SUFFIXES", "check_weights", "check_finite", "to_mindspore_names", "from_mindspore_names"]

#: Entries one framework keeps and another has no place for; carried, never required.
OPTIONAL_SUFFIXES = (".num_batches_tracked",)

_BN_TO_MS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_BN_FROM_MS = {v: k for k, v in _BN_TO_MS.items()}


def check_weights(weights: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Raise a one-line error naming the first parameter that is missing, extra or of another shape.

    ``expected`` maps every neutral name the model needs to its shape; ``what``
    names the source (a file, a model) in the message.
    """
    for name, shape in expected.items():
        if name not in weights:
            raise HarnessError(f"{what}: parameter '{name}' {tuple(shape)} is missing (not a checkpoint of this "
                               f"model?)")
        got = tuple(np.shape(weights[name]))
        if got != tuple(shape):
            raise HarnessError(f"{what}: parameter '{name}' has shape {got}, the model expects {tuple(shape)}")
    for name in weights:
        if name not in expected and not name.endswith(OPTIONAL_SUFFIXES):
            raise HarnessError(f"{what}: parameter '{name}' has no place in the model (a checkpoint of another "
                               f"model?)")


def check_finite(weights: Mapping[str, Any], what: str) -> None:
    """Refuse weights holding NaN or infinity, naming the first such tensor and how much of it is bad: evaluating
    them gives a meaningless accuracy (all-NaN logits score 0%), training them a NaN loss."""
    for name, value in weights.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fc" or a.size == 0:
            continue
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise HarnessError(f"{what}: tensor '{name}' {tuple(a.shape)} has {bad} of {a.size} values NaN or "
                               "infinite (a diverged or corrupted checkpoint)")


def _rename_bn(weights: Mapping[str, Any], names: dict[str, str], marker: str) -> dict[str, Any]:
    """Rename the leaves of BatchNorm tensors (those whose prefix also has ``marker``) by ``names``."""
    out = {}
    for name, value in weights.items():
        prefix, _, leaf = name.rpartition(".")
        if leaf in names and f"{prefix}.{marker}" in weights:
            name = f"{prefix}.{names[leaf]}"
        out[name] = value
    return out


def to_mindspore_names(weights: Mapping[str, Any]) -> dict[str, Any]:
    """Neutral (PyTorch) names -> MindSpore names: BatchNorm weight/bias/running_* -> gamma/beta/moving_*."""
    return _rename_bn(weights, _BN_TO_MS, "running_mean")


def from_mindspore_names(weights: Mapping[str, Any]) -> dict[str, Any]:
    """MindSpore names -> neutral names (the inverse of :func:`to_mindspore_names`)."""
    return _rename_bn(weights, _BN_FROM_MS, "moving_mean")
