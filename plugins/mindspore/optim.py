"""The MindSpore backend's optimizers: momentum SGD (Nesterov's update written out where the device kernel drops
it) or THOR, over parameter groups that apply the core's weight-decay rule (:func:`harness.models.optim.decays`),
with the shared per-step schedule (:func:`harness.models.schedules.lr_table`) as a dynamic learning rate."""
from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import nn, ops

from harness.config import Case
from harness.measure.profiles import PROFILE_STEPS
from harness.models.optim import decays
from harness.models.schedules import lr_table

from .losses import MultigrainWithLoss, WithLoss
from .thor import check_thor, thor_optimizer

__all__ = ["param_groups", "check_optimizer", "NesterovMomentum", "make_optimizer", "device_target"]


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


_nesterov_update = ops.MultitypeFuncGraph("nesterov_update")


@_nesterov_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _apply_nesterov(momentum, lr, grad, param, moment):
    """PyTorch's SGD(nesterov=True): m = mu * m + g; p -= lr * (g + mu * m)."""
    new_moment = momentum * moment + grad
    ops.assign(moment, new_moment)
    ops.assign(param, param - lr * (grad + momentum * new_moment))
    return True


class NesterovMomentum(nn.Optimizer):
    """Momentum with Nesterov's update written out.

    MindSpore 2.10's CPU ``ApplyMomentum`` kernel ignores ``use_nesterov``
    (two steps with it on equal plain momentum), so on CPU the backend uses
    this instead; weight decay, loss scale and dynamic learning rates go
    through :class:`mindspore.nn.Optimizer` as in ``nn.Momentum``.
    """

    def __init__(self, params: Any, learning_rate: Any, momentum: float) -> None:
        super().__init__(learning_rate, params)
        self.momentum = ms.Tensor(momentum, ms.float32)
        self.moments = self.parameters.clone(prefix="moments", init="zeros")
        self.hyper_map = ops.HyperMap()
        self.assignadd = ops.AssignAdd()

    @ms.jit  # compiled in PYNATIVE mode too (op by op it is ~7x slower)
    def construct(self, gradients):
        gradients = self.flatten_gradients(gradients)
        gradients = self.decay_weight(gradients)
        gradients = self.gradients_centralization(gradients)
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if self.is_group_lr:
            return self.hyper_map(ops.partial(_nesterov_update, self.momentum), lr, gradients, self.parameters,
                                  self.moments)
        return self.hyper_map(ops.partial(_nesterov_update, self.momentum, lr), gradients, self.parameters,
                              self.moments)


def _held(table: list[float], s: Any) -> list[float]:
    """A per-step table, its last value held for the profiled window's steps after the run (``profile: true``):
    MindSpore reads the table at the global step, and past its end the CPU Gather fails."""
    return table + table[-1:] * PROFILE_STEPS if s.profile else table


def make_optimizer(case: Case, net: nn.Cell, total_steps: int, steps_per_epoch: int) -> nn.Optimizer:
    """``nn.Momentum``, :class:`NesterovMomentum` where the device kernel would drop Nesterov, or THOR.

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
        return NesterovMomentum(groups, learning_rate=lrs, momentum=s.momentum)
    return nn.Momentum(groups, learning_rate=lrs, momentum=s.momentum, use_nesterov=s.nesterov)
