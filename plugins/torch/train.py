"""Train and eval step factories for the PyTorch backend."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.config import Case
from harness.errors import HarnessError
from harness.losses import smoothing_targets
from harness.models import MULTIGRAIN_LOSS, MultigrainLoss, get_model
from harness.multigrain import SAME_INSTANCE_SCORE, ZERO_WEIGHT_SCORE, pair_indices
from harness.schedules import lr_at

from .models import unwrap

__all__ = ["make_train_step", "make_eval_step", "param_groups", "make_criterion", "MultigrainCriterion",
           "SmoothedCrossEntropy"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def param_groups(model: nn.Module, weight_decay: float, on: str = "weights",
                 extra_no_decay: tuple[nn.Parameter, ...] = ()) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only (``on="weights"``: never biases or BN), or on every network
    parameter (``on="all"``); ``extra_no_decay`` (e.g. Multigrain's beta) is never decayed."""
    decay, no_decay = [], list(extra_no_decay)
    for p in model.parameters():
        if p.requires_grad:
            (decay if on == "all" or p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy against ``on`` for the label and ``off`` elsewhere (see harness.losses)."""

    def __init__(self, on: float, off: float) -> None:
        super().__init__()
        self.on, self.off = on, off

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=1)
        picked = logp.gather(1, labels[:, None]).squeeze(1)
        return -(self.off * logp.sum(1) + (self.on - self.off) * picked).mean()


def _cross_entropy(case: Case) -> nn.Module:
    s = case.settings
    if s.label_smoothing == 0 or s.label_smoothing_off == "torch":
        return nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
    return SmoothedCrossEntropy(*smoothing_targets(s.label_smoothing, s.num_classes, s.label_smoothing_off))


class MultigrainCriterion(nn.Module):
    """``lam * CE + (1 - lam) * margin`` with distance-weighted negatives (see :mod:`harness.multigrain`).

    Called with the model's ``(embedding, logits, normalized_embedding)``, the labels and the
    ``(B, B)`` uniform noise of the Gumbel-top-k sampling. ``beta`` is the learnable margin boundary.
    """

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
        return sp.lam * self.ce(logits.float(), labels) + (1.0 - sp.lam) * margin


def make_criterion(case: Case, device: torch.device) -> nn.Module:
    """The case's loss: cross-entropy, or the Multigrain mixed loss for a model that asks for it."""
    spec = get_model(case.model)
    ce = _cross_entropy(case)
    if spec.loss == "multigrain":
        return MultigrainCriterion(case.settings.batch_size, spec.repeats, ce).to(device)
    return ce


def _autocast(case: Case, device: torch.device) -> Callable[[], Any]:
    s = case.settings
    if s.amp_level == "O3":
        raise HarnessError("amp_level O3 (whole network in low precision) is not offered by the torch backend; "
                           "use O1/O2 (autocast)")
    if s.amp_level == "O0" and s.precision != "fp32":
        raise HarnessError(f"amp_level O0 means fp32, but precision is {s.precision}")
    dtype = _DTYPES.get(s.precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _forward(case: Case, model: nn.Module, outputs: bool = False) -> Callable[..., Any]:
    """The model's forward (``outputs``: all of Multigrain's outputs), compiled in mode ``compile``."""
    mode = case.settings.mode
    fn = (lambda x: model(x, all_outputs=True)) if outputs else model
    if mode in ("default", "eager"):
        return fn
    if mode == "compile":
        return torch.compile(fn)
    raise HarnessError(f"mode '{mode}' is not a PyTorch mode (use default, eager or compile)")


def make_train_step(case: Case, model: nn.Module, device: torch.device, total_steps: int,
                    steps_per_epoch: int) -> Callable[[Any], torch.Tensor]:
    s = case.settings
    if s.optimizer != "sgd":
        raise HarnessError(f"optimizer '{s.optimizer}' is not available in the PyTorch backend (sgd; THOR exists "
                           "only in MindSpore)")
    model.train()
    criterion = make_criterion(case, device)
    multigrain = isinstance(criterion, MultigrainCriterion)
    forward = _forward(case, model, outputs=multigrain)
    extra = (criterion.beta,) if multigrain else ()
    opt = torch.optim.SGD(param_groups(model, s.weight_decay, s.weight_decay_on, extra),
                          lr=lr_at(0, s, total_steps, steps_per_epoch), momentum=s.momentum, nesterov=s.nesterov)
    autocast = _autocast(case, device)
    params = [p for g in opt.param_groups for p in g["params"]]
    # fp16: dynamic scaling through GradScaler unless a fixed scale is given.
    scaler = None
    static_scale = None
    if s.precision == "fp16":
        if isinstance(s.loss_scale, (int, float)) and not isinstance(s.loss_scale, bool):
            static_scale = float(s.loss_scale)
        else:
            scaler = torch.amp.GradScaler(device.type)
    lrs = [lr_at(i, s, total_steps, steps_per_epoch) for i in range(total_steps)]
    count = [0]

    def step(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if not model.training:  # an evaluation ran in between (time to accuracy)
            model.train()
        i = min(count[0], total_steps - 1)
        count[0] += 1
        for g in opt.param_groups:
            g["lr"] = lrs[i]
        with autocast():
            if multigrain:  # the sampling noise comes with the batch (parity checks) or from the device RNG
                noise = batch[2] if len(batch) > 2 else torch.rand(x.shape[0], x.shape[0], device=x.device)
                loss = criterion(forward(x), y, noise)
            else:
                loss = criterion(forward(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        elif static_scale is not None:
            (loss * static_scale).backward()
            torch._foreach_mul_([p.grad for p in params if p.grad is not None], 1.0 / static_scale)
            opt.step()
        else:
            loss.backward()
            opt.step()
        return loss.detach()

    # what a training checkpoint saves (harness_save_train_state)
    step.criterion, step.optimizer, step.scaler, step.count = criterion, opt, scaler, count
    return step


def make_eval_step(case: Case, model: nn.Module, device: torch.device) -> Callable[[Any], tuple]:
    model = unwrap(model)  # rank 0 evaluates alone: no collectives from a DDP wrapper
    model.eval()
    forward = _forward(case, model)
    autocast = _autocast(case, device)

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch[0], batch[1]
        if model.training:
            model.eval()
        with torch.inference_mode(), autocast():
            logits = forward(x)
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(y[:, None])
        return hits[:, 0].sum(), hits.any(dim=1).sum(), y.shape[0]

    return step
