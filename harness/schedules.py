"""Learning-rate schedules as pure functions, shared by every backend.

Backends never re-implement a schedule: PyTorch wraps :func:`lr_at` in a
``LambdaLR``; MindSpore feeds the per-step list from :func:`lr_table` to its
optimizer. Epoch positions are fractional (``step / steps_per_epoch``).
"""
from __future__ import annotations

import bisect
import math

from .config import Settings

__all__ = ["lr_at", "lr_table"]


def lr_at(step: int, settings: Settings, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for optimisation step ``step`` (0-based) of ``total_steps``."""
    s = settings
    spe = max(1, steps_per_epoch)
    epoch = step / spe
    total_epochs = max(total_steps / spe, 1e-12)
    warm = s.lr_warmup_epochs
    if warm > 0 and epoch < warm:
        return s.lr_warmup_init + (s.lr - s.lr_warmup_init) * epoch / warm
    if s.schedule == "constant":
        return s.lr
    if s.schedule == "step":
        return s.lr * s.gamma ** bisect.bisect_right(sorted(s.milestones), epoch)
    span = max(total_epochs - warm, 1e-12)
    progress = min(max((epoch - warm) / span, 0.0), 1.0)
    if s.schedule == "cosine":
        return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.schedule == "linear":
        return s.min_lr + (s.lr - s.min_lr) * (1.0 - progress)
    raise ValueError(f"unknown schedule {s.schedule!r}")


def lr_table(settings: Settings, total_steps: int, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step, for frameworks that take a list."""
    return [lr_at(i, settings, total_steps, steps_per_epoch) for i in range(total_steps)]
