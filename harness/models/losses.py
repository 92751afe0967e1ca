"""Loss conventions shared by every backend."""
from __future__ import annotations

__all__ = ["smoothing_targets"]


def smoothing_targets(epsilon: float, classes: int, style: str) -> tuple[float, float]:
    """(on-value, off-value) of a label-smoothed target.

    ``torch``: ``1 - eps + eps / K`` and ``eps / K`` (PyTorch's ``label_smoothing``); ``k-1``:
    ``1 - eps`` and ``eps / (K - 1)`` (MindSpore ModelZoo ``CrossEntropySmooth``, e.g. BAM's 0.1/999);
    ``k``: ``1 - eps`` and ``eps / K`` (GENet's 0.1/1000; the target then sums to ``1 - eps / K``).
    """
    if style == "torch":
        return 1.0 - epsilon + epsilon / classes, epsilon / classes
    if style == "k-1":
        return 1.0 - epsilon, epsilon / (classes - 1)
    if style == "k":
        return 1.0 - epsilon, epsilon / classes
    raise ValueError(f"unknown label smoothing style {style!r}")
