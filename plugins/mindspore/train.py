"""The MindSpore backend's train step: :class:`TrainStep` holds its own state (the training cell with the optimizer
and loss-scale cells, the THOR phase counter) and saves and restores it (``save``/``load``).

Its parts, by concern: the loss (:mod:`harness_mindspore.losses`, as the core chose it), the optimizer and its
parameter groups (:mod:`harness_mindspore.optim`; THOR in :mod:`harness_mindspore.thor`), mixed precision
(:mod:`harness_mindspore.amp`), checkpoint files (:mod:`harness_mindspore.checkpoint`); the eval step is in
:mod:`harness_mindspore.evaluate`. Here: a fixed or dynamic loss scale, and the training state.
"""
from __future__ import annotations

import os
from typing import Any

import mindspore as ms
from mindspore import nn, ops

from harness.config import Case
from harness.errors import HarnessError, Unsupported
from harness.models.weights import check_weights

from .checkpoint import TRAIN_STATE, load_checkpoint
from .jit import set_level
from .losses import MultigrainWithLoss, with_loss
from .optim import device_target, make_optimizer
from .thor import ThorPhases

__all__ = ["TrainStep", "make_train_step"]

_RNG, _THOR = "harness_rng_state", "harness_thor_count"


class TrainStep:
    """One optimisation step of ``case`` (see :class:`harness.backends.hookspecs.TrainStep`).

    Holds the network with its loss (``with_loss``), the training cell (``train_net``: the optimizer, its
    moments, learning-rate table and global step, the loss-scale cells) and THOR's phase counter
    (``thor_phase``); ``save``/``load`` write and restore all of it with the framework's RNG state.
    """

    def __init__(self, case: Case, net: nn.Cell, device: Any, total_steps: int, steps_per_epoch: int) -> None:
        s = case.settings
        self.case, self.net, self.device = case, net, device
        net.set_train(True)  # mixed precision, if any, was applied when the model was built
        self.with_loss = with_loss(case, net)
        self.multigrain = isinstance(self.with_loss, MultigrainWithLoss)
        self.optimizer = make_optimizer(case, self.with_loss, total_steps, steps_per_epoch)
        scale = s.loss_scale if s.loss_scale is not None else ("dynamic" if s.precision == "fp16" else None)
        if scale is not None and device_target() == "CPU":
            raise Unsupported(f"cpu: MindSpore's loss-scale cell (TrainOneStepWithLossScaleCell, loss_scale {scale}) "
                              "checks overflow with Ascend/GPU ops only (NPUGetFloatStatusV2 has no CPU kernel)")
        if scale is None:
            self.train_net = nn.TrainOneStepCell(self.with_loss, self.optimizer)
        else:
            manager = (nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0 ** 16, scale_factor=2, scale_window=2000)
                       if scale == "dynamic" else nn.FixedLossScaleUpdateCell(loss_scale_value=float(scale)))
            self.train_net = nn.TrainOneStepWithLossScaleCell(self.with_loss, self.optimizer, scale_sense=manager)
        set_level(self.train_net, device)
        self.train_net.set_train(True)
        self.scaled = scale is not None
        self.thor_phase = ThorPhases(self.train_net, s.thor_frequency) if s.optimizer == "thor" else None

    def __call__(self, batch: tuple[ms.Tensor, ...]) -> ms.Tensor:
        if not self.net.training:  # an evaluation ran in between (time to accuracy)
            self.train_net.set_train(True)
        if self.thor_phase is not None:
            self.thor_phase()
        if self.multigrain and len(batch) == 2:  # sampling noise from the framework RNG unless the batch brings it
            n = batch[0].shape[0]
            batch = (*batch, ops.rand(n, n, dtype=ms.float32))
        out = self.train_net(*batch)
        return out[0] if self.scaled else out  # with a loss scale: (loss, overflow, scale)

    def save(self, path: str) -> list[str]:
        """Every parameter of the training cell (network, Multigrain's beta, optimizer moments, its learning-rate
        table and global step, which indexes the schedule, the loss-scale cells' state), the THOR phase counter
        and the default generator's state (``mindspore.get_rng_state``), in one checkpoint file in the existing
        folder ``path``."""
        file = os.path.join(path, TRAIN_STATE)
        extra = {_RNG: ms.get_rng_state(), _THOR: self.thor_phase.count if self.thor_phase is not None else 0}
        ms.save_checkpoint(self.train_net, file, append_dict=extra)
        os.chmod(file, 0o644)  # MindSpore writes checkpoints read-only
        return [TRAIN_STATE]

    def load(self, path: str) -> None:
        """Restore :meth:`save`'s file from the folder ``path`` into this (fresh) step, strictly."""
        file = os.path.join(path, TRAIN_STATE)
        params = load_checkpoint(file)
        if not {_RNG, _THOR} <= set(params):
            raise HarnessError(f"checkpoint '{file}': not a harness training state")
        rng, thor = params.pop(_RNG), params.pop(_THOR)
        check_weights(params, {p.name: tuple(p.shape) for p in self.train_net.get_parameters()},
                      f"checkpoint '{file}' for {self.case.model}")
        ms.load_param_into_net(self.train_net, params, strict_load=True)
        ms.set_rng_state(ms.Tensor(rng.asnumpy(), ms.uint8) if hasattr(rng, "asnumpy") else rng)
        if self.thor_phase is not None:
            self.thor_phase.count = int(thor.asnumpy()) if hasattr(thor, "asnumpy") else int(thor)


def make_train_step(case: Case, net: nn.Cell, device: Any, total_steps: int, steps_per_epoch: int) -> TrainStep:
    return TrainStep(case, net, device, total_steps, steps_per_epoch)
