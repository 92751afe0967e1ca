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
from harness.parity import UPDATE_REL_TOL, compare
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


#: Models whose untrained network at the parity size is ill-conditioned in float32: ResNet-50 BAM starts
#: with its ModelZoo init (HeUniform, no zero-init of the last BN), so every residual branch is live and
#: ReLU masks in layer4 (2x2 maps) flip on rounding-sized differences. PyTorch alone, float32 against
#: float64 from the same weights and batch, differs by about 2e-3 of the largest gradient there (2e-2 at
#: batch 8), against ~2e-6 for gluon_resnet50_v1b. For these the cross-framework update gap is bounded by
#: that intrinsic float32 gap instead of the flat 1e-4 (see test_update_gap_within_float32_conditioning).
ILL_CONDITIONED = ("resnet50_bam",)


@functools.cache
def parity(model: str):
    return compare(model, "torch", "mindspore")


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_eval_logits_loss_and_bn_statistics_agree(model):
    r = parity(model)
    assert r.logits_max_abs <= TOL, r
    assert r.loss_abs <= TOL, r
    assert r.running_stats_max_abs <= TOL, r  # BN momentum convention (torch 0.1 == mindspore 0.9)


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in sorted(MODELS) if m not in ILL_CONDITIONED])
def test_one_step_update_agrees(model):
    r = parity(model)  # the same update: nesterov, weight-decay groups, label smoothing, schedule
    assert r.update_rel_max <= UPDATE_REL_TOL, r


def float32_gradient_gap(model: str, batch_size: int = 4) -> float:
    """PyTorch alone: max |grad_fp32 - grad_fp64| / max |grad_fp64| on the parity case's weights and batch."""
    import copy

    import numpy as np
    import torch

    from harness.models import get_model
    from harness_torch.models import build_model

    spec = get_model(model, width=0.25, num_classes=10, image_size=64)
    torch.manual_seed(0)
    m32 = build_model(spec).train()
    m64 = copy.deepcopy(m32).double()
    rng = np.random.default_rng(1234)
    x = torch.from_numpy(rng.standard_normal((batch_size, 3, 64, 64), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch_size))
    for m, dtype in ((m32, torch.float32), (m64, torch.float64)):
        torch.nn.functional.cross_entropy(m(x.to(dtype)), y, label_smoothing=0.1).backward()
    g32 = [p.grad.double() for p in m32.parameters()]
    g64 = [p.grad for p in m64.parameters()]
    scale = max(float(g.abs().max()) for g in g64)
    return max(float((a - b).abs().max()) for a, b in zip(g32, g64)) / scale


@pytest.mark.slow
@pytest.mark.parametrize("model", ILL_CONDITIONED)
def test_update_gap_within_float32_conditioning(model):
    floor = float32_gradient_gap(model)
    assert floor > 2 * UPDATE_REL_TOL  # still ill-conditioned; if not, move the model back to the strict test
    r = parity(model)
    assert r.update_rel_max <= 3 * floor, (r, floor)


def test_float32_gap_is_tiny_for_a_well_conditioned_model():
    # the bound above is not vacuous: the same measure is ~1e-6 where the network is well conditioned
    assert float32_gradient_gap("gluon_resnet50_v1b") < 1e-5


@pytest.mark.slow
def test_pynative_mode_agrees_too():
    r = compare("gluon_resnet50_v1b", "torch", "mindspore", other_settings={"mode": "pynative"})
    assert max(r.logits_max_abs, r.loss_abs, r.running_stats_max_abs) <= TOL, r
    assert r.update_rel_max <= UPDATE_REL_TOL, r


@pytest.mark.slow
def test_modelzoo_smoothing_and_decay_on_every_parameter_agree():
    # label smoothing 1 - eps / eps/(K-1) (MindSpore ModelZoo) and weight decay on BN and biases too
    r = compare("gluon_resnet50_v1b", "torch", "mindspore", label_smoothing_off="k-1", weight_decay_on="all",
                weight_decay=0.05)
    assert max(r.logits_max_abs, r.loss_abs, r.running_stats_max_abs) <= TOL, r
    assert r.update_rel_max <= UPDATE_REL_TOL, r
