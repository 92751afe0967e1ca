"""Both frameworks compute the same function: generated over every registered model.

From the same weights and batch, eval logits agree within 1e-4 (max abs);
one training step gives losses within 1e-4 and the same BatchNorm running
statistics. Each backend runs in its own process (harness.backends.parity).
"""
from __future__ import annotations

import functools

import pytest
from conftest import needs_mindspore

from harness.backends.parity import UPDATE_REL_TOL, compare
from harness.backends.probe import probe_backend
from harness.models.specs import MODELS

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


#: Models whose untrained network at the parity size is ill-conditioned: ResNet-50 BAM starts with its
#: ModelZoo init (HeUniform, no zero-init of the last BN), so every residual branch is live and ReLU masks
#: in layer4 (2x2 maps) flip on rounding-sized differences. Measured in float64 (so independent of thread
#: count and summation order), perturbing every weight by one float32 ulp moves BAM's gradient by ~3e-5 of
#: its largest entry, against ~3e-7 for gluon_resnet50_v1b; a float32 pass accumulates many such roundings
#: (PyTorch alone, fp32 against fp64, differs by 1e-4 to 2e-3 depending on threads). For these models the
#: cross-framework update gap is bounded by 100x that sensitivity instead of the flat 1e-4.
ILL_CONDITIONED = ("resnet50_bam",)


@functools.cache
def parity(model: str):
    return compare(model, "torch", "mindspore")


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_eval_logits_loss_bn_statistics_and_one_step_update_agree(model):
    """One comparison per model (each is two framework processes; a test per check would run it again on another
    xdist worker)."""
    r = parity(model)
    assert r.logits_max_abs <= TOL, r
    assert r.loss_abs <= TOL, r
    assert r.running_stats_max_abs <= TOL, r  # BN momentum convention (torch 0.1 == mindspore 0.9)
    if model not in ILL_CONDITIONED:  # the same update: nesterov, weight-decay groups, label smoothing, schedule
        assert r.update_rel_max <= UPDATE_REL_TOL, r


def ulp_sensitivity(model: str, batch_size: int = 4, trials: int = 4) -> float:
    """How far one float32 ulp of weight noise moves the gradient, relative to its largest entry.

    PyTorch in float64 on the parity case's weights and batch: the largest of ``trials`` perturbations of
    every weight by a relative N(0, 2**-24). Deterministic (float64 rounding is negligible here).
    """
    import copy

    import numpy as np
    import torch

    from harness.models.specs import get_model
    from harness_torch.models import build_model

    torch.manual_seed(0)
    base = build_model(get_model(model, width=0.25, num_classes=10, image_size=64)).train().double()
    rng = np.random.default_rng(1234)
    x = torch.from_numpy(rng.standard_normal((batch_size, 3, 64, 64), dtype=np.float32)).double()
    y = torch.from_numpy(rng.integers(0, 10, batch_size))

    def grads(m):
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y, label_smoothing=0.1).backward()
        return [p.grad.clone() for p in m.parameters()]

    g0 = grads(base)
    scale = max(float(g.abs().max()) for g in g0)
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for _ in range(trials):
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + 2.0 ** -24 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(grads(m), g0)) / scale)
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("model", ILL_CONDITIONED)
def test_update_gap_within_float32_conditioning(model):  # (its parity comparison runs again here: one model)
    sensitivity = ulp_sensitivity(model)
    # still ill-conditioned (else move the model back to the strict test): 10x a well-conditioned one
    assert sensitivity > 10 * ulp_sensitivity("gluon_resnet50_v1b")
    r = parity(model)
    assert r.update_rel_max <= max(UPDATE_REL_TOL, 100 * sensitivity), (r, sensitivity)


def test_ulp_sensitivity_is_tiny_for_a_well_conditioned_model():
    # the bound above is not vacuous: where the network is well conditioned the same measure is ~3e-7,
    # so 100x of it is below the flat tolerance
    assert ulp_sensitivity("gluon_resnet50_v1b") * 100 < UPDATE_REL_TOL


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
