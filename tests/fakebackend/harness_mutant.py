"""A deliberately wrong network: the torch backend with one mutation, to prove the golden checks catch it.

``HARNESS_MUTANT`` picks the mutation (empty: the torch backend unchanged, which must pass):

* ``bn_eps``: every BatchNorm's eps 1e-3 instead of 1e-5;
* ``no_relu``: the first block of stage 2 without its ReLUs;
* ``stride_1x1``: that block's stride on its first 1x1 conv instead of the 3x3 (v1 instead of v1b);
* ``gem_p``: GeM with a hard-coded p = 4 (the weights still say 3);
* ``no_nesterov``: plain momentum where the case asks for Nesterov;
* ``wd_on_bn``: weight decay on every tensor, BatchNorm and biases too.

Every other hook is the torch backend's own. It declares only ``train`` and ``eval``, so its conformance run
skips the export and inference checks it would pass as torch does.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from torch import nn

import harness_torch.plugin as torch_backend
from harness import hookimpl

MUTANT = os.environ.get("HARNESS_MUTANT", "")
MUTANTS = ("bn_eps", "no_relu", "stride_1x1", "gem_p", "no_nesterov", "wd_on_bn")
if MUTANT and MUTANT not in MUTANTS:
    raise ValueError(f"HARNESS_MUTANT={MUTANT!r}: one of {', '.join(MUTANTS)}")

# The torch backend's hooks, but those defined below.
_OWN = {"harness_backend_info", "harness_build_model", "harness_train_step", "harness_export",
        "harness_inference_session"}
globals().update({k: getattr(torch_backend, k) for k in dir(torch_backend)
                  if k.startswith("harness_") and k not in _OWN})


@hookimpl
def harness_backend_info() -> dict[str, Any]:
    info = torch_backend.harness_backend_info()
    return {**info, "name": "mutant", "scenarios": ["train", "eval"], "runtimes": {},
            "supports": {**info["supports"], "export": []}}


@hookimpl
def harness_build_model(case: Any, device: Any) -> nn.Module:
    model = torch_backend.harness_build_model(case=case, device=device)
    block = model.layer2[0]
    if MUTANT == "bn_eps":
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.eps = 1e-3
    elif MUTANT == "no_relu":
        block.relu = nn.Identity()
    elif MUTANT == "stride_1x1":
        block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    elif MUTANT == "gem_p" and hasattr(model.global_pool, "p"):
        pool = model.global_pool
        pool.forward = lambda x: x.clamp(min=pool.eps).pow(4.0).mean((2, 3)).pow(0.25)
    return model


@hookimpl
def harness_train_step(case: Any, model: Any, device: Any, total_steps: int, steps_per_epoch: int) -> Any:
    s = case.settings
    if MUTANT == "no_nesterov":
        s = dataclasses.replace(s, nesterov=False)
    elif MUTANT == "wd_on_bn":
        s = dataclasses.replace(s, weight_decay_on="all")
    return torch_backend.harness_train_step(case=dataclasses.replace(case, settings=s), model=model, device=device,
                                            total_steps=total_steps, steps_per_epoch=steps_per_epoch)
