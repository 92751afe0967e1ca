"""Train and eval step factories for the PyTorch backend."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.config import Case
from harness.errors import HarnessError
from harness.schedules import lr_at

__all__ = ["make_train_step", "make_eval_step", "param_groups"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: never on biases or 1-D parameters (BN)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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


def _forward(case: Case, model: nn.Module) -> nn.Module:
    mode = case.settings.mode
    if mode in ("default", "eager"):
        return model
    if mode == "compile":
        return torch.compile(model)
    raise HarnessError(f"mode '{mode}' is not a PyTorch mode (use default, eager or compile)")


def make_train_step(case: Case, model: nn.Module, device: torch.device, total_steps: int,
                    steps_per_epoch: int) -> Callable[[Any], torch.Tensor]:
    s = case.settings
    if s.optimizer != "sgd":
        raise HarnessError(f"optimizer '{s.optimizer}' is not available in the PyTorch backend (sgd)")
    model.train()
    forward = _forward(case, model)
    opt = torch.optim.SGD(param_groups(model, s.weight_decay), lr=lr_at(0, s, total_steps, steps_per_epoch),
                          momentum=s.momentum, nesterov=s.nesterov)
    criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
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

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        i = min(count[0], total_steps - 1)
        count[0] += 1
        for g in opt.param_groups:
            g["lr"] = lrs[i]
        with autocast():
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

    return step


def make_eval_step(case: Case, model: nn.Module, device: torch.device) -> Callable[[Any], tuple]:
    model.eval()
    forward = _forward(case, model)
    autocast = _autocast(case, device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        with torch.inference_mode(), autocast():
            logits = forward(x)
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(y[:, None])
        return hits[:, 0].sum(), hits.any(dim=1).sum(), y.shape[0]

    return step
