"""The model contract, the NumPy reference and the golden checks: the reference computes what its formulas say
(checked here against independent loops), the torch backend computes what the reference does, the docs page is the
contract, the shipped golden values were made from today's golden case, and check-backend catches wrong networks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, register_backend

from harness.backends.conformance import check_backend
from harness.backends.golden import GOLDEN_DIR, Golden, tracked
from harness.cli.contract import contract_markdown
from harness.models import reference
from harness.models.contract import BN_MOMENTUM, layout, seeded_weights, shapes
from harness.models.specs import MODELS, get_model

TINY = {"width": 0.125, "num_classes": 10, "image_size": 32}


def _loop_conv(x, w, stride, pad, dilation):
    """Cross-correlation by explicit loops: the definition, independent of the reference's windows."""
    n, c, h, _ = x.shape
    o, cg, k, _ = w.shape
    groups = c // cg
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    size = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, o, size, size))
    for oc in range(o):
        g = oc // (o // groups)
        for i in range(size):
            for j in range(size):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + dilation * (k - 1) + 1:dilation,
                           j * stride:j * stride + dilation * (k - 1) + 1:dilation]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out


@pytest.mark.parametrize(("stride", "pad", "dilation", "groups"), [(1, 0, 1, 1), (2, 3, 1, 1), (1, 2, 2, 1),
                                                                   (2, 1, 1, 4), (1, 0, 1, 4)])
def test_reference_conv_is_the_cross_correlation(stride, pad, dilation, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 9))
    w = rng.standard_normal((8, 4 // groups, 3, 3))
    np.testing.assert_allclose(reference.conv2d(x, w, stride, pad, dilation),
                               _loop_conv(x, w, stride, pad, dilation), rtol=1e-12, atol=1e-12)


def test_reference_batchnorm_updates_running_statistics_with_the_unbiased_variance():
    spec = get_model("gluon_resnet50_v1b", **TINY)
    weights = seeded_weights(spec, 1)
    images = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    out = reference.forward(spec, weights, images, train=True)
    conv = reference.conv2d(images.astype(np.float64), weights["conv1.weight"].astype(np.float64), 2, 3)
    n = conv.shape[0] * conv.shape[2] * conv.shape[3]
    var = conv.var(axis=(0, 2, 3)) * n / (n - 1)
    want = (1 - BN_MOMENTUM) * weights["bn1.running_var"].astype(np.float64) + BN_MOMENTUM * var
    np.testing.assert_allclose(out.running["bn1.running_var"], want, rtol=1e-10)
    assert out.used == set(shapes(spec)), "the reference reads every tensor of the contract"


@pytest.mark.parametrize("model", list(MODELS))
def test_layout_is_the_torch_state_dict(model):
    from harness_torch.models import build_model

    spec = get_model(model, **TINY)
    state = build_model(spec).state_dict()
    assert [(t.name, t.shape) for t in layout(spec)] == [(k, tuple(v.shape)) for k, v in state.items()]


@pytest.mark.parametrize("model", list(MODELS))
def test_reference_logits_equal_the_torch_backends(model):
    """Acceptance: within 1e-4 (relative to the largest logit) at width 0.125, 32 px, on every variant."""
    import torch

    from harness_torch.models import build_model

    spec = get_model(model, **TINY)
    rng = np.random.default_rng(5)
    images = rng.standard_normal((8, 3, 32, 32), dtype=np.float32)
    weights = reference.calibrated_weights(spec, 5, rng.standard_normal((32, 3, 32, 32), dtype=np.float32))
    want = reference.forward(spec, weights, images).logits
    net = build_model(spec)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(images)).numpy()
    rel = np.max(np.abs(logits - want)) / np.max(np.abs(want))
    assert rel <= 1e-4, f"{model}: logits differ by {rel:.2e} of the largest"
    # A different network is far outside: the stem's filters negated move the logits by orders more.
    wrong = {**weights, "conv1.weight": -weights["conv1.weight"]}
    assert np.max(np.abs(reference.forward(spec, wrong, images).logits - want)) > 1e-2 * np.max(np.abs(want))


def test_docs_page_is_the_contract():
    page = Path(REPO, "docs", "model-contract.md").read_text()
    assert page == contract_markdown(), "docs/model-contract.md is stale: harness models --weights > it"


def test_models_command(cli):
    rc, out, _ = cli("models", "genet_res50_theta", "--weights", "--width", "0.125", "--image-size", "32")
    assert rc == 0 and "layer1.0.ge.gather.0.weight" in out
    assert "gather kernel per stage: [4, 4, 2, 1]" in out
    rc, _, err = cli("models", "genet_res50_thta")
    assert rc == 2 and "genet_res50_theta" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("model", list(MODELS))
def test_golden_values_on_file_were_made_from_the_golden_case(model):
    g = Golden.make("torch", model)
    with np.load(GOLDEN_DIR / f"{model}.npz") as z:
        about = json.loads(str(z["about"]))
        assert about["digest"] == g.digest()
        stored = sorted(k.removeprefix("after/") for k in z.files if k.startswith("after/"))
    assert stored == sorted(tracked(g.spec))
    assert any(".bn" in n or "bn1." in n for n in stored), "a BatchNorm scale is tracked (weight decay skips it)"


def test_a_backend_without_neutral_weights_skips_the_golden_checks_saying_why(fake_backend):
    rows = [r for r in check_backend("fake") if r["check"].startswith("golden")]
    assert rows == [{"check": "golden checks", "status": "skip",
                     "detail": "it declares supports.neutral_weights = false: it cannot hold weights in the neutral "
                               "layout"}]


@pytest.fixture
def mutant(tmp_path, monkeypatch):
    yield from register_backend(tmp_path, monkeypatch, "mutant", "harness_mutant")


# Each mutation, the model it applies to, and the golden check that must catch it.
MUTATIONS = [("bn_eps", "gluon_resnet50_v1b", "eval logits"), ("no_relu", "gluon_resnet50_v1b", "eval logits"),
             ("stride_1x1", "gluon_resnet50_v1b", "eval logits"), ("gem_p", "multigrain_resnet50", "eval logits"),
             ("no_nesterov", "gluon_resnet50_v1b", "after one step vs golden"),
             ("wd_on_bn", "gluon_resnet50_v1b", "after one step vs golden")]


@pytest.mark.slow
@pytest.mark.parametrize(("mutation", "model", "check"), [("", "resnet50_bam", ""), *MUTATIONS])
def test_check_backend_catches_a_wrong_network(mutant, monkeypatch, mutation, model, check):
    monkeypatch.setenv("HARNESS_MUTANT", mutation)
    results = check_backend("mutant", model=model, golden_only=bool(mutation))  # the unmutated one: every check
    failed = [r for r in results if r["status"] == "fail"]
    golden = [r for r in results if r["check"].startswith("golden")]
    assert len(golden) >= 6
    if not mutation:
        assert not failed, failed
        return
    assert any(check in r["check"] for r in failed), (check, failed)
    for r in failed:  # one line naming the tensor and the size of the difference
        assert "golden" in r["check"] and "max abs diff" in r["detail"] and "tolerance" in r["detail"], r
        assert "\n" not in r["detail"]
