"""Learning-rate (and THOR damping) schedules as pure functions, shared by every backend.

Backends never re-implement a schedule: PyTorch sets each step's rate from
:func:`lr_at`; MindSpore feeds the per-step list from :func:`lr_table` to its
optimizer. The position is ``e = step / steps_per_epoch`` (fractional), or its
floor with ``schedule_per_epoch``. With ``W = lr_warmup_epochs``:

* warm-up (``e < W``): ``lr_warmup_init + (lr - lr_warmup_init) * e / W``;
* ``constant``: ``lr``;
* ``step``: ``lr * gamma ** (number of milestones <= e)``;
* ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with ``p = (e - W) / T``, where ``T`` is
  ``schedule_period_epochs`` (then ``p`` may pass 1 and the rate rises again, as in the BAM recipe's
  ``T_max = 150`` over 160 epochs) or the rest of the run (``p`` clamped to 1);
* ``linear``: ``min_lr + (lr - min_lr) * (1 - p)`` (GENet theta: ``0.8 * (1 - i / T)`` per step);
* ``linear_cosine``: ``min_lr + lr * (1 - p) * (1 + cos(2 pi c p)) / 2`` with ``c = schedule_cycles``
  (GENet theta-minus: ``0.8 * ((T - i) / T * 0.5 * (1 + cos(2 pi 0.47 i / T)) + 1e-5)``, so ``min_lr = 0.8e-5``);
* ``poly``: ``lr * (1 - e1 / E) ** lr_power`` with ``e1 = (step + 1) / steps_per_epoch`` and ``E`` the
  period or the run's length (MindSpore ModelZoo ``get_thor_lr``).

THOR's damping is ``damping_init * damping_decay ** (e1 / 10)`` (ModelZoo ``get_thor_damping``).
"""
from __future__ import annotations

import bisect
import math

from harness.config import Settings

__all__ = ["lr_at", "lr_table", "damping_at", "damping_table"]


def lr_at(step: int, settings: Settings, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for optimisation step ``step`` (0-based) of ``total_steps``."""
    s = settings
    spe = max(1, steps_per_epoch)
    epoch = step // spe if s.schedule_per_epoch else step / spe
    total_epochs = max(total_steps / spe, 1e-12)
    if s.schedule == "poly":
        end = s.schedule_period_epochs or total_epochs
        return s.lr * float(max(0.0, 1.0 - ((step + 1) / spe) / end) ** s.lr_power)
    warm = s.lr_warmup_epochs
    if warm > 0 and epoch < warm:
        return s.lr_warmup_init + (s.lr - s.lr_warmup_init) * epoch / warm
    if s.schedule == "constant":
        return s.lr
    if s.schedule == "step":
        return s.lr * s.gamma ** bisect.bisect_right(sorted(s.milestones), epoch)
    if s.schedule == "cosine" and s.schedule_period_epochs:
        progress = max((epoch - warm) / s.schedule_period_epochs, 0.0)
    else:
        span = max(total_epochs - warm, 1e-12)
        progress = min(max((epoch - warm) / span, 0.0), 1.0)
    if s.schedule == "cosine":
        return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.schedule == "linear":
        return s.min_lr + (s.lr - s.min_lr) * (1.0 - progress)
    if s.schedule == "linear_cosine":
        return s.min_lr + s.lr * (1.0 - progress) * 0.5 * (1.0 + math.cos(2.0 * math.pi * s.schedule_cycles * progress))
    raise ValueError(f"unknown schedule {s.schedule!r}")


def lr_table(settings: Settings, total_steps: int, steps_per_epoch: int) -> list[float]:
    """The learning rate of every step, for frameworks that take a list."""
    return [lr_at(i, settings, total_steps, steps_per_epoch) for i in range(total_steps)]


def damping_at(step: int, settings: Settings, steps_per_epoch: int) -> float:
    """THOR's damping at ``step`` (0-based)."""
    epoch = (step + 1) / max(1, steps_per_epoch)
    return settings.damping_init * float(settings.damping_decay ** (epoch / 10.0))


def damping_table(settings: Settings, total_steps: int, steps_per_epoch: int) -> list[float]:
    return [damping_at(i, settings, steps_per_epoch) for i in range(total_steps)]
