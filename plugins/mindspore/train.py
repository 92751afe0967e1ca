"""Train and eval step factories for the MindSpore backend.

Momentum (optionally Nesterov) with weight decay only on >1-D parameters,
cross-entropy with label smoothing (PyTorch's convention: eps/K off-value),
the shared per-step schedule (:func:`harness.schedules.lr_table`) as a dynamic
learning rate, AMP levels O0-O3 and a fixed or dynamic loss scale.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mindspore as ms
from mindspore import nn, ops

from harness.config import Case
from harness.errors import HarnessError, Unsupported
from harness.schedules import lr_table

__all__ = ["make_train_step", "make_eval_step", "make_optimizer", "param_groups", "amp_level", "NesterovMomentum",
           "AMP_DTYPES"]

AMP_DTYPES = {"fp16": ms.float16, "bf16": ms.bfloat16}


def param_groups(net: nn.Cell, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/dense weights only: never on biases or BatchNorm gamma/beta."""
    params = net.trainable_params()
    decay = [p for p in params if len(p.shape) > 1]
    no_decay = [p for p in params if len(p.shape) <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]] + [{"order_params": params}]


def amp_level(case: Case, device_target: str) -> str:
    """The AMP level to use, refusing what the device cannot run."""
    s = case.settings
    level = s.amp_level if s.amp_level != "auto" else ("O0" if s.precision == "fp32" else "O2")
    if level == "O0" and s.precision != "fp32":
        raise HarnessError(f"amp_level O0 means fp32, but precision is {s.precision}")
    if level != "O0" and s.precision == "fp32":
        raise HarnessError(f"amp_level {level} needs precision fp16 or bf16")
    if level != "O0" and device_target == "CPU":
        raise Unsupported(f"cpu: MindSpore mixed precision ({s.precision}, {level}) is not supported on CPU "
                          "(CPU Conv2D is fp32 only)")
    return level


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


def make_optimizer(case: Case, net: nn.Cell, total_steps: int, steps_per_epoch: int) -> nn.Optimizer:
    """``nn.Momentum``, or :class:`NesterovMomentum` where the device kernel would drop Nesterov."""
    s = case.settings
    groups = param_groups(net, s.weight_decay)
    lrs = lr_table(s, total_steps, steps_per_epoch)
    if s.nesterov and _device_target() == "CPU":
        return NesterovMomentum(groups, learning_rate=lrs, momentum=s.momentum)
    return nn.Momentum(groups, learning_rate=lrs, momentum=s.momentum, use_nesterov=s.nesterov)


class _WithLoss(nn.Cell):
    def __init__(self, net: nn.Cell, loss: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.loss = net, loss

    def construct(self, x, y):
        return self.loss(self.net(x), y)


class _TopK(nn.Cell):
    """(top-1 hits, top-k hits) of a batch, computed on the device."""

    def __init__(self, net: nn.Cell, k: int) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.k = net, k

    def construct(self, x, y):
        logits = self.net(x).astype(ms.float32)
        _, idx = ops.topk(logits, self.k)
        hits = ops.equal(idx, y.reshape((-1, 1)).astype(idx.dtype)).astype(ms.float32)
        return hits[:, 0].sum(), hits.sum()


def _device_target() -> str:
    return ms.get_context("device_target")


def make_train_step(case: Case, net: nn.Cell, device: Any, total_steps: int,
                    steps_per_epoch: int) -> Callable[[Any], Any]:
    s = case.settings
    if s.optimizer != "sgd":
        raise HarnessError(f"optimizer '{s.optimizer}' is not available in the MindSpore backend (sgd)")
    net.set_train(True)  # mixed precision, if any, was applied when the model was built
    opt = make_optimizer(case, net, total_steps, steps_per_epoch)
    loss = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
    with_loss = _WithLoss(net, loss)
    scale = s.loss_scale if s.loss_scale is not None else ("dynamic" if s.precision == "fp16" else None)
    if scale is None:
        train_net = nn.TrainOneStepCell(with_loss, opt)
    else:
        manager = (nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0 ** 16, scale_factor=2, scale_window=2000)
                   if scale == "dynamic" else nn.FixedLossScaleUpdateCell(loss_scale_value=float(scale)))
        train_net = nn.TrainOneStepWithLossScaleCell(with_loss, opt, scale_sense=manager)
    train_net.set_train(True)
    scaled = scale is not None

    def step(batch: tuple[ms.Tensor, ms.Tensor]) -> ms.Tensor:
        out = train_net(*batch)
        return out[0] if scaled else out  # with a loss scale: (loss, overflow, scale)

    return step


def make_eval_step(case: Case, net: nn.Cell, device: Any) -> Callable[[Any], tuple]:
    net.set_train(False)
    topk = _TopK(net, min(5, case.settings.num_classes))
    topk.set_train(False)

    def step(batch: tuple[ms.Tensor, ms.Tensor]) -> tuple[ms.Tensor, ms.Tensor, int]:
        x, y = batch
        top1, top5 = topk(x, y)
        return top1, top5, x.shape[0]

    return step
