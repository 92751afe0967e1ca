"""THOR (``mindspore.nn.thor``, Ascend and GPU): the second-order optimizer and the switching of its two graphs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from mindspore import Tensor, nn

from harness.config import Case
from harness.errors import Unsupported
from harness.models.schedules import damping_table

__all__ = ["check_thor", "thor_optimizer", "ThorPhases"]


def check_thor(case: Case, device_target: str) -> None:
    """Refuse THOR where it cannot run, before any work."""
    if case.settings.optimizer == "thor" and device_target == "CPU":
        raise Unsupported("cpu: THOR (mindspore.nn.thor) runs on Ascend and GPU only")


def thor_optimizer(case: Case, network: nn.Cell, lrs: list[float], total_steps: int, steps_per_epoch: int,
                   held: Callable[[list[float]], list[float]], decay: Callable[[Any], bool]) -> nn.Optimizer:
    """``nn.thor`` over the layers of ``network`` with the learning rates ``lrs`` and the shared damping schedule
    (both per step, ``held`` past the run's end), weight decay where ``decay(parameter)`` says."""
    s = case.settings
    scale = float(s.loss_scale) if isinstance(s.loss_scale, (int, float)) else 1.0
    return nn.thor(network, Tensor(np.asarray(lrs, np.float32)),
                   Tensor(np.asarray(held(damping_table(s, total_steps, steps_per_epoch)), np.float32)),
                   s.momentum, weight_decay=s.weight_decay, loss_scale=scale, batch_size=s.batch_size,
                   decay_filter=decay, frequency=s.thor_frequency)


class ThorPhases:
    """THOR's two graphs, switched as ``mindspore.train.train_thor.ModelThor`` does without dataset sinking:
    every ``frequency`` steps one step recomputes the second-order matrices (``thor=True``, phase
    ``train0``); the steps between reuse them (``thor=False``, phase ``train1``). The flags are read when a
    phase's graph compiles, so they are set only on the first step of each phase. ``count`` (steps taken) is
    saved in training checkpoints."""

    def __init__(self, train_net: nn.Cell, frequency: int) -> None:
        self.train_net, self.frequency = train_net, frequency
        self.count = 0
        self.compiled: set[str] = set()

    def __call__(self) -> None:
        phase = "train0" if self.count % self.frequency == 0 else "train1"
        self.count += 1
        if phase not in self.compiled:
            self.train_net.add_flags_recursive(thor=phase == "train0")
            self.compiled.add(phase)
        self.train_net.phase = phase
