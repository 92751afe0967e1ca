"""Train and eval step factories for the MindSpore backend.

The train step is a :class:`TrainStep` object holding its own state (the training cell with the optimizer and
loss-scale cells, the THOR phase counter) and saving/restoring it (``save``/``load``).
Momentum (optionally Nesterov) with weight decay on >1-D parameters (or on all),
or THOR (``mindspore.nn.thor``, Ascend/GPU); cross-entropy with label smoothing
in the case's off-value convention (:func:`harness.models.losses.smoothing_targets`) or
the Multigrain mixed loss; the shared per-step schedule
(:func:`harness.models.schedules.lr_table`) as a dynamic learning rate; AMP levels
O0-O3 and a fixed or dynamic loss scale.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

import mindspore as ms
from harness.config import Case
from harness.errors import HarnessError, Unsupported
from harness.measure.profiles import PROFILE_STEPS
from harness.models.losses import smoothing_targets
from harness.models.multigrain import (
    SAME_INSTANCE_SCORE,
    ZERO_WEIGHT_SCORE,
    pair_indices,
)
from harness.models.schedules import damping_table, lr_table
from harness.models.specs import MULTIGRAIN_LOSS, MultigrainLoss, get_model
from harness.models.weights import check_weights
from mindspore import Parameter, Tensor, nn, ops

__all__ = ["TrainStep", "make_train_step", "make_eval_step", "make_optimizer", "param_groups", "amp_level",
           "NesterovMomentum", "AMP_DTYPES", "MultigrainWithLoss", "SmoothedCrossEntropy", "check_optimizer",
           "load_checkpoint", "TRAIN_STATE"]

AMP_DTYPES = {"fp16": ms.float16, "bf16": ms.bfloat16}


def param_groups(net: nn.Cell, weight_decay: float, on: str = "weights") -> list[dict[str, Any]]:
    """Weight decay on conv/dense weights only (``on="weights"``: never biases or BatchNorm gamma/beta) or
    on every parameter of the network (``on="all"``); Multigrain's ``beta`` is never decayed."""
    params = net.trainable_params()
    decay = [p for p in params if (on == "all" or len(p.shape) > 1) and p.name != MultigrainWithLoss.BETA]
    chosen = {id(p) for p in decay}
    no_decay = [p for p in params if id(p) not in chosen]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]] + [{"order_params": params}]


def check_optimizer(case: Case, device_target: str) -> None:
    """Refuse what the device cannot run, before any work."""
    if case.settings.optimizer == "thor" and device_target == "CPU":
        raise Unsupported("cpu: THOR (mindspore.nn.thor) runs on Ascend and GPU only")


def amp_level(case: Case, device_target: str) -> str:
    """The AMP level to use, refusing what the device cannot run. (The core checks at suite load that the level
    and precision agree: O0 is fp32, O1-O3 need fp16 or bf16.)"""
    s = case.settings
    level = s.amp_level if s.amp_level != "auto" else ("O0" if s.precision == "fp32" else "O2")
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
        check_optimizer(case, _device_target())
        network = net.net if isinstance(net, (_WithLoss, MultigrainWithLoss)) else net
        scale = float(s.loss_scale) if isinstance(s.loss_scale, (int, float)) else 1.0
        return nn.thor(network, Tensor(np.asarray(lrs, np.float32)),
                       Tensor(np.asarray(_held(damping_table(s, total_steps, steps_per_epoch), s), np.float32)),
                       s.momentum, weight_decay=s.weight_decay, loss_scale=scale, batch_size=s.batch_size,
                       decay_filter=lambda p: s.weight_decay_on == "all" or len(p.shape) > 1,
                       frequency=s.thor_frequency)
    groups = param_groups(net, s.weight_decay, s.weight_decay_on)
    if s.nesterov and _device_target() == "CPU":
        return NesterovMomentum(groups, learning_rate=lrs, momentum=s.momentum)
    return nn.Momentum(groups, learning_rate=lrs, momentum=s.momentum, use_nesterov=s.nesterov)


class SmoothedCrossEntropy(nn.Cell):
    """Cross-entropy against ``on`` for the label and ``off`` elsewhere (see harness.models.losses)."""

    def __init__(self, on: float, off: float) -> None:
        super().__init__()
        self.on, self.off = on, off

    def construct(self, logits, labels):
        logp = ops.log_softmax(logits.astype(ms.float32), 1)
        picked = ops.gather_elements(logp, 1, labels.reshape((-1, 1)).astype(ms.int32)).reshape((-1,))
        return -(self.off * logp.sum(axis=1) + (self.on - self.off) * picked).mean()


def _cross_entropy(case: Case) -> nn.Cell:
    s = case.settings
    if s.label_smoothing == 0 or s.label_smoothing_off == "torch":
        return nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
    return SmoothedCrossEntropy(*smoothing_targets(s.label_smoothing, s.num_classes, s.label_smoothing_off))


class _WithLoss(nn.Cell):
    def __init__(self, net: nn.Cell, loss: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.loss = net, loss

    def construct(self, x, y):
        return self.loss(self.net(x), y)


class MultigrainWithLoss(nn.Cell):
    """``lam * CE + (1 - lam) * margin`` on the network's outputs (see :mod:`harness.models.multigrain`).

    ``construct(x, y, noise)``: ``noise`` is the ``(B, B)`` uniform noise of the Gumbel-top-k
    distance-weighted sampling of negatives; ``beta`` is the learnable margin boundary.
    """

    BETA = "multigrain_beta"

    def __init__(self, net: nn.Cell, ce: nn.Cell, batch_size: int, repeats: int,
                 spec: MultigrainLoss = MULTIGRAIN_LOSS) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.ce, self.k = net, ce, repeats - 1
        self.lam, self.margin, self.eps = spec.lam, spec.margin, spec.eps
        self.cutoff, self.nonzero = spec.cutoff, spec.nonzero_loss_cutoff
        self.beta = Parameter(Tensor(spec.beta_init, ms.float32), name=self.BETA)
        anchors, positives = pair_indices(batch_size, repeats)
        ids = np.arange(batch_size) // repeats
        self.anchors = Tensor(anchors.astype(np.int32))
        self.positives = Tensor(positives.astype(np.int32))
        self.other = Tensor(ids[:, None] != ids[None, :])
        self.eye = Tensor(np.eye(batch_size, dtype=np.float32))
        self.zero_weight = Tensor(np.full((batch_size, batch_size), ZERO_WEIGHT_SCORE, np.float32))
        self.same_instance = Tensor(np.full((batch_size, batch_size), SAME_INSTANCE_SCORE, np.float32))

    def negatives(self, e, noise):
        e = ops.stop_gradient(e)
        sq = (e * e).sum(axis=1, keepdims=True)
        d2 = ops.clamp(sq + sq.T - 2.0 * ops.matmul(e, e.T), min=0.0)
        dist = ops.clamp(ops.sqrt(d2 + self.eye), min=self.cutoff)
        inside = dist < self.nonzero
        safe = ops.select(inside, dist, ops.ones_like(dist))
        d = e.shape[1]
        log_w = (2.0 - d) * ops.log(safe) - ((d - 3.0) / 2.0) * ops.log(1.0 - 0.25 * safe * safe)
        scores = ops.select(ops.logical_and(self.other, inside), log_w,
                            ops.select(self.other, self.zero_weight, self.same_instance))
        gumbel = -ops.log(-ops.log(ops.clamp(noise.astype(ms.float32), 1e-7, 1.0 - 1e-7)))
        _, idx = ops.topk(scores + gumbel, self.k)
        return ops.stop_gradient(idx.reshape((-1,)))

    def construct(self, x, y, noise):
        _, logits, norm = self.net.outputs(x)
        e = norm.astype(ms.float32)
        a = ops.gather(e, self.anchors, 0)
        d_ap = ops.sqrt(((ops.gather(e, self.positives, 0) - a) ** 2).sum(axis=1) + self.eps)
        d_an = ops.sqrt(((ops.gather(e, self.negatives(e, noise), 0) - a) ** 2).sum(axis=1) + self.eps)
        pos = ops.relu(d_ap - self.beta + self.margin)
        neg = ops.relu(self.beta - d_an + self.margin)
        count = ((pos > 0).astype(ms.float32).sum() + (neg > 0).astype(ms.float32).sum())
        margin = (pos + neg).sum() / ops.maximum(count, 1.0)
        return self.lam * self.ce(logits.astype(ms.float32), y) + (1.0 - self.lam) * margin


class _TopK(nn.Cell):
    """(top-1 hits, top-k hits, images counted) of a batch, computed on the device; only labels >= 0 count."""

    def __init__(self, net: nn.Cell, k: int) -> None:
        super().__init__(auto_prefix=False)
        self.net, self.k = net, k

    def construct(self, x, y):
        logits = self.net(x).astype(ms.float32)
        _, idx = ops.topk(logits, self.k)
        y = y.reshape((-1, 1)).astype(idx.dtype)
        real = y >= 0  # padding images (harness.data.splits.PAD_LABEL) are compared with, never indexed by, and not counted
        hits = ops.logical_and(ops.equal(idx, y), real).astype(ms.float32)
        return hits[:, 0].sum(), hits.sum(), real.astype(ms.float32).sum()


def _device_target() -> str:
    return ms.get_context("device_target")


class _ThorPhases:
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


TRAIN_STATE = "train_state.ckpt"
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
        spec = get_model(case.model)
        self.multigrain = spec.loss == "multigrain"
        ce = _cross_entropy(case)
        self.with_loss = (MultigrainWithLoss(net, ce, s.batch_size, spec.repeats) if self.multigrain
                          else _WithLoss(net, ce))
        self.optimizer = make_optimizer(case, self.with_loss, total_steps, steps_per_epoch)
        scale = s.loss_scale if s.loss_scale is not None else ("dynamic" if s.precision == "fp16" else None)
        if scale is not None and _device_target() == "CPU":
            raise Unsupported(f"cpu: MindSpore's loss-scale cell (TrainOneStepWithLossScaleCell, loss_scale {scale}) "
                              "checks overflow with Ascend/GPU ops only (NPUGetFloatStatusV2 has no CPU kernel)")
        if scale is None:
            self.train_net = nn.TrainOneStepCell(self.with_loss, self.optimizer)
        else:
            manager = (nn.DynamicLossScaleUpdateCell(loss_scale_value=2.0 ** 16, scale_factor=2, scale_window=2000)
                       if scale == "dynamic" else nn.FixedLossScaleUpdateCell(loss_scale_value=float(scale)))
            self.train_net = nn.TrainOneStepWithLossScaleCell(self.with_loss, self.optimizer, scale_sense=manager)
        self.train_net.set_train(True)
        self.scaled = scale is not None
        self.thor_phase = _ThorPhases(self.train_net, s.thor_frequency) if s.optimizer == "thor" else None

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


def load_checkpoint(path: str) -> dict[str, Any]:
    """``mindspore.load_checkpoint``, its failures as one-line errors naming ``path`` (the backend's one
    checkpoint reader: weights files and training states)."""
    if not os.path.isfile(path):
        raise HarnessError(f"checkpoint '{path}': no such file")
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - MindSpore raises ValueError/RuntimeError for foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise HarnessError(f"checkpoint '{path}': not a MindSpore checkpoint ({first[:200]})") from None


def make_eval_step(case: Case, net: nn.Cell, device: Any) -> Callable[[Any], tuple]:
    """``step(batch) -> (top1_correct, top5_correct, count)`` on the device. Every eval batch is whole (the last
    one padded with :data:`harness.data.splits.PAD_LABEL` images), so a graph compiles once; only labels >= 0 count."""
    net.set_train(False)
    topk = _TopK(net, min(5, case.settings.num_classes))
    topk.set_train(False)

    def step(batch: tuple[ms.Tensor, ...]) -> tuple[ms.Tensor, ms.Tensor, ms.Tensor]:
        if net.training:
            topk.set_train(False)
        return topk(batch[0], batch[1])

    return step
