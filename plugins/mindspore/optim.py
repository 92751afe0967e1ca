"""The MindSpore backend's optimizers: momentum SGD (``nn.SGD``'s kernel for Nesterov on CPU, where ``ApplyMomentum``
drops it) or THOR, over parameter groups that apply the core's weight-decay rule (:func:`harness.models.optim.decays`),
with the shared per-step schedule (:func:`harness.models.schedules.lr_table`) as a dynamic learning rate."""
from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import nn

from harness.config import Case
from harness.measure.profiles import PROFILE_STEPS
from harness.models.optim import decays
from harness.models.schedules import lr_table

from .losses import MultigrainWithLoss, WithLoss
from .thor import check_thor, thor_optimizer

__all__ = ["param_groups", "check_optimizer", "make_optimizer", "device_target"]


def device_target() -> str:
    """The device MindSpore runs on: ``"CPU"``, ``"GPU"`` or ``"Ascend"``."""
    return str(ms.get_context("device_target"))


def param_groups(net: nn.Cell, weight_decay: float, on: str = "weights") -> list[dict[str, Any]]:
    """The decayed and the undecayed group of ``net``'s trainable parameters, as the core's rule decides
    (:func:`harness.models.optim.decays`: conv/dense weights, or every parameter with ``on="all"``; never
    Multigrain's beta), and the order MindSpore keeps them in."""
    params = net.trainable_params()
    decay = [p for p in params if decays(p.name, p.shape, on)]
    chosen = {id(p) for p in decay}
    no_decay = [p for p in params if id(p) not in chosen]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]] + [{"order_params": params}]


def check_optimizer(case: Case, device_target: str) -> None:
    """Refuse what the device cannot run, before any work."""
    check_thor(case, device_target)


def _held(table: list[float], s: Any) -> list[float]:
    """A per-step table, its last value held for the profiled window's steps after the run (``profile: true``):
    MindSpore reads the table at the global step, and past its end the CPU Gather fails."""
    return table + table[-1:] * PROFILE_STEPS if s.profile else table


def make_optimizer(case: Case, net: nn.Cell, total_steps: int, steps_per_epoch: int) -> nn.Optimizer:
    """``nn.Momentum``, or THOR; for Nesterov on CPU ``nn.SGD``.

    MindSpore 2.10's CPU ``ApplyMomentum`` kernel ignores ``use_nesterov`` (two steps with it on equal plain
    momentum), so ``nn.Momentum(use_nesterov=True)`` would silently train with plain momentum there. ``nn.SGD``'s
    ``SGD`` kernel (``nesterov=True``, dampening 0) computes PyTorch's update, ``m = mu * m + g; p -= lr * (g + mu *
    m)``, fused in one kernel per parameter; it replaced an update written out in MindSpore ops, which gave the same
    values but took one pass over the weights per op.

    ``net`` is the cell whose trainable parameters are optimised (the network with its loss, so that
    Multigrain's beta is trained); THOR converts and preconditions the layers of the network itself.
    """
    s = case.settings
    lrs = _held(lr_table(s, total_steps, steps_per_epoch), s)
    if s.optimizer == "thor":
        check_optimizer(case, device_target())
        network = net.net if isinstance(net, (WithLoss, MultigrainWithLoss)) else net
        return thor_optimizer(case, network, lrs, total_steps, steps_per_epoch, lambda t: _held(t, s),
                              lambda p: decays(p.name, p.shape, s.weight_decay_on))
    groups = param_groups(net, s.weight_decay, s.weight_decay_on)
    if s.nesterov and device_target() == "CPU":
        return nn.SGD(groups, learning_rate=lrs, momentum=s.momentum, nesterov=True)
    return nn.Momentum(groups, learning_rate=lrs, momentum=s.momentum, use_nesterov=s.nesterov)
