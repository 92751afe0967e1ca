"""Both frameworks compute the same function: generated over every registered model.

From the same weights and batch, eval logits agree within 1e-4 (max abs);
one training step gives losses within 1e-4 and the same BatchNorm running
statistics. Each backend runs in its own process (harness.parity).
"""
from __future__ import annotations

import functools

import pytest
from conftest import needs_mindspore

from harness.models import MODELS
from harness.parity import compare
from harness.probe import probe_backend

TOL = 1e-4
pytestmark = needs_mindspore


@functools.cache
def supported(backend: str) -> frozenset[str]:
    info = probe_backend(backend)
    assert "error" not in info, info
    return frozenset(info["models"])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_is_on_both_backends(model):
    assert model in supported("torch") and model in supported("mindspore")


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_eval_logits_and_one_train_step_agree(model):
    r = compare(model, "torch", "mindspore")
    assert r.logits_max_abs <= TOL, r
    assert r.loss_abs <= TOL, r
    assert r.running_stats_max_abs <= TOL, r  # BN momentum convention (torch 0.1 == mindspore 0.9)
    assert r.weights_max_abs <= TOL, r  # the same update: nesterov, weight decay groups, smoothing


@pytest.mark.slow
def test_pynative_mode_agrees_too():
    r = compare("gluon_resnet50_v1b", "torch", "mindspore", other_settings={"mode": "pynative"})
    assert max(r.logits_max_abs, r.loss_abs, r.running_stats_max_abs, r.weights_max_abs) <= TOL, r
