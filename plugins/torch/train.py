"""The PyTorch backend's train step (:class:`TrainStep`, with its checkpoint) and eval step."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.config import Case
from harness.errors import HarnessError, one_line
from harness.models.losses import LossChoice, loss_for
from harness.models.multigrain import (
    SAME_INSTANCE_SCORE,
    ZERO_WEIGHT_SCORE,
    pair_indices,
)
from harness.models.optim import MULTIGRAIN_BETA, decays
from harness.models.schedules import lr_at
from harness.models.specs import MULTIGRAIN_LOSS, MultigrainLoss
from harness.models.weights import check_weights

from .checkpoint import TRAIN_STATE, _load, rng_state, set_rng_state
from .models import unwrap

__all__ = ["TrainStep", "make_train_step", "make_eval_step", "param_groups", "make_criterion",
           "MultigrainCriterion", "SmoothedCrossEntropy", "OPTIMIZERS", "PRECISIONS", "AMP_LEVELS", "MODES"]

#: What the backend takes (declared in ``harness_backend_info()["supports"]``); the core refuses anything else
#: when the suite loads, so each is handled here without a fallback.
OPTIMIZERS = ("sgd",)
#: Precision -> autocast dtype (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The precision decides: autocast for bf16/fp16 (auto, O1, O2), none for fp32 (auto, O0); the core checks the
#: pairing. O3 (the whole network in low precision) is not offered.
AMP_LEVELS = ("auto", "O0", "O1", "O2")
#: Mode -> what it does to a forward function.
MODES: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "default": lambda fn: fn, "eager": lambda fn: fn, "compile": torch.compile}


def param_groups(model: nn.Module, weight_decay: float, on: str = "weights",
                 extra: dict[str, nn.Parameter] | None = None) -> list[dict[str, Any]]:
    """The decayed and the undecayed group of the model's trainable parameters and the named ``extra`` ones (the
    loss's: Multigrain's beta under :data:`harness.models.optim.MULTIGRAIN_BETA`), as the core's rule decides
    (:func:`harness.models.optim.decays`)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    # the extra ones first: the order a checkpoint's optimizer state was saved in
    named = list((extra or {}).items()) + [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for name, p in named:
        (decay if decays(name, tuple(p.shape), on) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy against ``on`` for the label and ``off`` elsewhere (see harness.models.losses)."""

    def __init__(self, on: float, off: float) -> None:
        super().__init__()
        self.on, self.off = on, off

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=1)
        picked = logp.gather(1, labels[:, None]).squeeze(1)
        return -(self.off * logp.sum(1) + (self.on - self.off) * picked).mean()


def _cross_entropy(loss: LossChoice) -> nn.Module:
    if loss.targets is None:
        return nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing)
    return SmoothedCrossEntropy(*loss.targets)


class MultigrainCriterion(nn.Module):
    """``lam * CE + (1 - lam) * margin`` with distance-weighted negatives (see :mod:`harness.models.multigrain`).

    Called with the model's ``(embedding, logits, normalized_embedding)``, the labels and the
    ``(B, B)`` uniform noise of the Gumbel-top-k sampling. ``beta`` is the learnable margin boundary.
    """

    anchors: torch.Tensor
    positives: torch.Tensor
    other: torch.Tensor
    eye: torch.Tensor

    def __init__(self, batch_size: int, repeats: int, ce: nn.Module, spec: MultigrainLoss = MULTIGRAIN_LOSS) -> None:
        super().__init__()
        self.spec, self.ce, self.k = spec, ce, repeats - 1
        self.beta = nn.Parameter(torch.tensor(float(spec.beta_init)))
        anchors, positives = pair_indices(batch_size, repeats)
        ids = torch.arange(batch_size) // repeats
        self.register_buffer("anchors", torch.from_numpy(anchors), persistent=False)
        self.register_buffer("positives", torch.from_numpy(positives), persistent=False)
        self.register_buffer("other", ids[:, None] != ids[None, :], persistent=False)
        self.register_buffer("eye", torch.eye(batch_size), persistent=False)

    def negatives(self, emb: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        sp = self.spec
        with torch.no_grad():
            e = emb.detach().float()
            sq = (e * e).sum(1, keepdim=True)
            dist = ((sq + sq.T - 2.0 * e @ e.T).clamp_min(0.0) + self.eye).sqrt().clamp_min(sp.cutoff)
            inside = dist < sp.nonzero_loss_cutoff
            safe = torch.where(inside, dist, torch.ones_like(dist))
            d = e.shape[1]
            log_w = (2.0 - d) * safe.log() - ((d - 3.0) / 2.0) * torch.log(1.0 - 0.25 * safe * safe)
            scores = torch.where(self.other & inside, log_w,
                                 torch.where(self.other, torch.full_like(dist, ZERO_WEIGHT_SCORE),
                                             torch.full_like(dist, SAME_INSTANCE_SCORE)))
            gumbel = -torch.log(-torch.log(noise.float().clamp(1e-7, 1.0 - 1e-7)))
            return (scores + gumbel).topk(self.k, dim=1).indices.reshape(-1)

    def forward(self, outputs: tuple[torch.Tensor, ...], labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        _, logits, norm = outputs
        sp = self.spec
        x = norm.float()
        a = x[self.anchors]
        d_ap = ((x[self.positives] - a) ** 2).sum(1).add(sp.eps).sqrt()
        d_an = ((x[self.negatives(x, noise)] - a) ** 2).sum(1).add(sp.eps).sqrt()
        pos = torch.relu(d_ap - self.beta + sp.margin)
        neg = torch.relu(self.beta - d_an + sp.margin)
        count = ((pos > 0).sum() + (neg > 0).sum()).clamp_min(1).float()
        margin = (pos + neg).sum() / count
        ce: torch.Tensor = self.ce(logits.float(), labels)
        return sp.lam * ce + (1.0 - sp.lam) * margin


def make_criterion(case: Case, device: torch.device) -> nn.Module:
    """The case's loss as the core chose it (:func:`harness.models.losses.loss_for`): cross-entropy, or the
    Multigrain mixed loss for a model that asks for it."""
    loss = loss_for(case)
    ce = _cross_entropy(loss)
    if loss.multigrain is not None:
        return MultigrainCriterion(case.settings.batch_size, loss.repeats, ce, loss.multigrain).to(device)
    return ce


def _autocast(case: Case, device: torch.device) -> Callable[[], Any]:
    """Autocast to the case's precision (amp levels auto/O1/O2 with bf16/fp16); fp32 (auto/O0) runs as it is. The
    core has already checked the precision against ``supports`` and the amp level against the precision."""
    dtype = PRECISIONS[case.settings.precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _forward(case: Case, model: nn.Module, outputs: bool = False) -> Callable[..., Any]:
    """The model's forward (``outputs``: all of Multigrain's outputs), compiled in mode ``compile``."""
    fn = (lambda x: model(x, all_outputs=True)) if outputs else model
    return MODES[case.settings.mode](fn)


class TrainStep:
    """One SGD step of ``case`` with its state: the model, optimizer, loss (Multigrain's beta included), loss
    scaling and the step count that indexes the learning-rate schedule. :meth:`save` and :meth:`load` checkpoint
    all of it, with the framework's RNG states (see :class:`harness.backends.hookspecs.TrainStep`)."""

    def __init__(self, case: Case, model: nn.Module, device: torch.device, total_steps: int,
                 steps_per_epoch: int) -> None:
        s = case.settings
        self.name, self.model, self.device = case.model, model, device
        model.train()
        self.criterion = make_criterion(case, device)
        self.multigrain = isinstance(self.criterion, MultigrainCriterion)
        self.forward = _forward(case, model, outputs=self.multigrain)
        criterion = self.criterion
        extra = {MULTIGRAIN_BETA: criterion.beta} if isinstance(criterion, MultigrainCriterion) else None
        self.optimizer = torch.optim.SGD(param_groups(model, s.weight_decay, s.weight_decay_on, extra),
                                         lr=lr_at(0, s, total_steps, steps_per_epoch), momentum=s.momentum,
                                         nesterov=s.nesterov)
        self.autocast = _autocast(case, device)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # fp16: dynamic scaling through GradScaler unless a fixed scale is given.
        self.scaler: torch.amp.GradScaler | None = None
        self.static_scale: float | None = None
        if s.precision == "fp16":
            if isinstance(s.loss_scale, (int, float)) and not isinstance(s.loss_scale, bool):
                self.static_scale = float(s.loss_scale)
            else:
                self.scaler = torch.amp.GradScaler(device.type)
        self.lrs = [lr_at(i, s, total_steps, steps_per_epoch) for i in range(total_steps)]
        self.count = 0  # steps run: the schedule position

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        model, opt = self.model, self.optimizer
        if not model.training:  # an evaluation ran in between (time to accuracy)
            model.train()
        lr = self.lrs[min(self.count, len(self.lrs) - 1)]
        self.count += 1
        for g in opt.param_groups:
            g["lr"] = lr
        with self.autocast():
            loss: torch.Tensor
            if self.multigrain:  # the sampling noise comes with the batch (parity checks) or from the device RNG
                noise = batch[2] if len(batch) > 2 else torch.rand(x.shape[0], x.shape[0], device=x.device)
                loss = self.criterion(self.forward(x), y, noise)
            else:
                loss = self.criterion(self.forward(x), y)
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
        elif self.static_scale is not None:
            (loss * self.static_scale).backward()
            torch._foreach_mul_([p.grad for p in self.params if p.grad is not None], 1.0 / self.static_scale)
            opt.step()
        else:
            loss.backward()
            opt.step()
        return loss.detach()

    def save(self, path: str) -> list[str]:
        """Write into the existing folder ``path``, as one ``torch.save`` file: the model's parameters and buffers,
        the optimizer (momentum buffers, learning rates), the criterion (Multigrain's beta), the gradient scaler,
        the step count that indexes the schedule, and the CPU and device RNG states. Returns the file names."""
        state = {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                 "criterion": self.criterion.state_dict(), "count": self.count, "rng": rng_state(self.device),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        torch.save(state, os.path.join(path, TRAIN_STATE))
        return [TRAIN_STATE]

    def load(self, path: str) -> None:
        """Restore :meth:`save`'s file from the folder ``path`` into this fresh step of the same case (safe
        ``weights_only`` loading); a missing, foreign or mismatched file is a HarnessError naming it."""
        file = os.path.join(path, TRAIN_STATE)
        state = _load(file)
        if (not isinstance(state, dict) or not {"model", "optimizer", "criterion", "count", "rng"} <= set(state)
                or not isinstance(state["model"], dict) or not isinstance(state["rng"], dict)):
            raise HarnessError(f"checkpoint '{file}': not a harness training state")
        model = unwrap(self.model)
        own = model.state_dict()
        check_weights(state["model"], {k: tuple(v.shape) for k, v in own.items()},
                      f"checkpoint '{file}' for {self.name}")
        if (state.get("scaler") is None) != (self.scaler is None):
            what = "has no" if self.scaler is not None else "has a"
            raise HarnessError(f"checkpoint '{file}' {what} dynamic loss-scale state, unlike this case")
        try:
            model.load_state_dict(state["model"])
            self.criterion.load_state_dict(state["criterion"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler is not None:
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(self.device, state["rng"])
            self.count = int(state["count"])
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise HarnessError(f"checkpoint '{file}': training state does not fit this case "
                               f"({type(exc).__name__}: {one_line(str(exc), 200, first_line=True)})") from None


def make_train_step(case: Case, model: nn.Module, device: torch.device, total_steps: int,
                    steps_per_epoch: int) -> TrainStep:
    return TrainStep(case, model, device, total_steps, steps_per_epoch)


def make_eval_step(case: Case, model: nn.Module, device: torch.device) -> Callable[[Any], tuple[Any, ...]]:
    """``step(batch) -> (top1_correct, top5_correct, count)`` over the images whose label is >= 0: the core pads
    the last eval batch with :data:`harness.data.splits.PAD_LABEL` (-1) images, which count nowhere. All three stay on
    the device."""
    model = unwrap(model)  # rank 0 evaluates alone: no collectives from a DDP wrapper
    model.eval()
    forward = _forward(case, model)
    autocast = _autocast(case, device)

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        if model.training:
            model.eval()
        with torch.inference_mode(), autocast():
            logits = forward(x)
        real = y >= 0
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(y[:, None]) & real[:, None]
        return hits[:, 0].sum(), hits.any(dim=1).sum(), real.sum()

    return step
