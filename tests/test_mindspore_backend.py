"""Behaviour tests of the MindSpore backend (package ``harness_mindspore``, source in plugins/mindspore/).

Expected values come from the published architecture (shared/reference/models.md), from the
PyTorch backend as the reference implementation (its model and torch's own optimizer and loss),
and from formulas written out here, never from running the code under test.
Apart from the full-size architecture checks, models are width 0.25 at 32-64 px.

MindSpore is global state (execution mode, device): every test that runs MindSpore calls the
plugin's ``harness_setup`` with the mode it needs. Tests that compile graphs or export run in
their own temporary folder, because MindSpore writes ``rank_0/`` and export files into the
current directory.
"""
from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

harness_mindspore = pytest.importorskip("harness_mindspore")  # before mindspore: it fixes ONEDNN_MAX_CPU_ISA
ms = pytest.importorskip("mindspore")
torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from mindspore import nn  # noqa: E402

from conftest import expected_state_dict  # noqa: E402

import harness_mindspore.models as ms_models  # noqa: E402
import harness_mindspore.plugin as plugin  # noqa: E402
import harness_torch.plugin as tplugin  # noqa: E402
from harness import Case, DeviceUnavailable, HarnessError, Settings, Unsupported  # noqa: E402
from harness.config import coerce_settings  # noqa: E402
from harness.contract import check_info  # noqa: E402
from harness.data import PAD_LABEL, Preprocess, scan_folder, synthetic_arrays  # noqa: E402
from harness.schedules import lr_table  # noqa: E402
from harness.tinydata import make_tiny_dataset  # noqa: E402
from harness_mindspore.train import NesterovMomentum, make_optimizer, param_groups  # noqa: E402

MODEL = "gluon_resnet50_v1b"
LAYERS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
TORCH_CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- helpers ------------------------------------------------------------------------------------

def settings(**kw) -> Settings:
    return Settings(**coerce_settings(kw, "test"))


def case(backend: str = "mindspore", device: str = "cpu", **kw) -> Case:
    base = dict(width=0.25, image_size=32, batch_size=4, num_classes=10, steps=2, warmup=1, workers=1)
    base.update(kw)
    return Case(name="t", model=MODEL, backend=backend, device=device, settings=settings(**base))


def setup(c: Case):
    """The plugin's harness_setup (sets the MindSpore device and mode for this process)."""
    return plugin.harness_setup(case=c)


def ms_model(c: Case):
    dev = setup(c)
    return plugin.harness_build_model(case=c, device=dev), dev


def torch_model(c: Case):
    tc = Case(name=c.name, model=c.model, backend="torch", device="cpu", settings=c.settings)
    return tplugin.harness_build_model(case=tc, device=TORCH_CPU), tc


def trainable(net) -> int:
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


def randomized(weights: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """``weights`` with every BatchNorm tensor made non-trivial (gamma != 0, running stats != 0/1),
    so that every block, including its zero-initialised bn3, influences the output."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in weights.items():
        v = np.array(v)
        if k.endswith("num_batches_tracked"):
            out[k] = v
            continue
        is_bn = f"{k.rpartition('.')[0]}.running_mean" in weights
        if is_bn and k.endswith(".weight"):
            v = rng.uniform(0.5, 1.5, v.shape)
        elif is_bn and k.endswith(".bias"):
            v = rng.normal(0.0, 0.1, v.shape)
        elif k.endswith("running_mean"):
            v = rng.normal(0.0, 0.1, v.shape)
        elif k.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, v.shape)
        out[k] = np.asarray(v, dtype=np.float32)
    return out


@pytest.fixture(scope="module")
def full_ms():
    c = Case(name="full", model=MODEL, backend="mindspore", device="cpu", settings=settings(mode="pynative"))
    net, _ = ms_model(c)
    return c, net


# --- 1. parameter counts and neutral names --------------------------------------------------------

def test_expected_layout_is_self_consistent() -> None:
    shapes = expected_state_dict(counters=False)
    assert len(shapes) == 320 - 53  # torchvision's 320 keys minus 53 num_batches_tracked
    trainable_of = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var")))
    assert trainable_of == 25_557_032


def test_param_count_full_model(full_ms) -> None:
    _, net = full_ms
    assert trainable(net) == 25_557_032
    assert net.training


def test_param_count_1001_classes() -> None:
    c = Case(name="full", model=MODEL, backend="mindspore", device="cpu",
             settings=settings(mode="pynative", num_classes=1001))
    net, _ = ms_model(c)
    assert trainable(net) == 25_559_081
    assert tuple(net.fc.weight.shape) == (1001, 2048)


def test_full_neutral_weights_match_expected_layout(full_ms) -> None:
    c, net = full_ms
    got = {k: tuple(v.shape) for k, v in plugin.harness_get_weights(case=c, model=net).items()}
    expected = expected_state_dict(counters=False)
    assert set(got) ^ set(expected) == set()
    assert {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]} == {}


def test_neutral_weights_equal_torch_state_dict_small() -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    tnet, _ = torch_model(c)
    got = {k: tuple(v.shape) for k, v in plugin.harness_get_weights(case=c, model=net).items()}
    want = {k: tuple(v.shape) for k, v in tnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert got == want
    assert got == expected_state_dict(num_classes=10, width=0.25, counters=False)


def test_neutral_key_set_equals_torch_at_full_width(full_ms) -> None:
    c, net = full_ms
    tnet, _ = torch_model(Case(name="full", model=MODEL, backend="torch", device="cpu", settings=settings()))
    want = {k: tuple(v.shape) for k, v in tnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: tuple(v.shape) for k, v in plugin.harness_get_weights(case=c, model=net).items()}
    assert got == want


def test_get_weights_returns_copies(full_ms) -> None:
    c, net = full_ms
    w = plugin.harness_get_weights(case=c, model=net)
    w["fc.bias"][:] = 123.0
    assert not np.any(net.fc.bias.asnumpy() == 123.0)


# --- 2. named facts --------------------------------------------------------------------------------

def test_zero_init_last_bn_and_bn_init(full_ms) -> None:
    c, net = full_ms
    w = plugin.harness_get_weights(case=c, model=net)
    bn3 = [k for k in w if k.endswith(".bn3.weight")]
    assert len(bn3) == sum(LAYERS)
    for k in bn3:
        assert np.all(w[k] == 0), k
    other_gammas = [k for k in w if k.endswith(".weight") and f"{k[:-7]}.running_mean" in w and k not in bn3]
    assert len(other_gammas) == 1 + 2 * sum(LAYERS) + 4  # stem bn1, bn1/bn2 per block, 4 downsample BNs
    for k in other_gammas:
        assert np.all(w[k] == 1), k
    for k in w:
        if k.endswith(("running_mean",)) or (k.endswith(".bias") and not k.startswith("fc")):
            assert np.all(w[k] == 0), k
        if k.endswith("running_var"):
            assert np.all(w[k] == 1), k


def test_conv_init_is_kaiming_normal_fan_out(full_ms) -> None:
    c, net = full_ms
    w = plugin.harness_get_weights(case=c, model=net)
    for name in ("conv1.weight", "layer4.0.conv2.weight", "layer3.0.downsample.0.weight"):
        cout, _, kh, kw = w[name].shape
        std = math.sqrt(2.0 / (cout * kh * kw))
        assert abs(float(w[name].mean())) < 0.05 * std, name
        assert float(w[name].std()) == pytest.approx(std, rel=0.05), name


def test_v1b_strides_and_symmetric_padding(full_ms) -> None:
    _, m = full_ms
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert m.conv1.has_bias is False
    assert m.conv1.pad_mode == "pad" and m.conv1.padding == 3
    assert m.layer2[0].conv2.stride == (2, 2)
    assert m.layer2[0].conv1.stride == (1, 1)
    for i in (1, 2, 3, 4):
        for j, block in enumerate(getattr(m, f"layer{i}")):
            stride = (2, 2) if (i > 1 and j == 0) else (1, 1)
            assert block.conv1.stride == (1, 1) and block.conv3.stride == (1, 1)
            assert block.conv2.stride == stride, (i, j)
            assert block.conv2.pad_mode == "pad" and block.conv2.padding == 1, (i, j)
        ds = getattr(m, f"layer{i}")[0].downsample
        assert ds[0].stride == ((2, 2) if i > 1 else (1, 1)) and ds[0].kernel_size == (1, 1)


def test_stage_output_shapes_at_64px() -> None:
    c = case(mode="pynative", image_size=64, batch_size=2)
    net, _ = ms_model(c)
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32))
    shapes = [tuple(o.shape) for o in net.stages(x)]
    assert shapes == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    assert tuple(net(x).shape) == (2, 10)


# --- 3. padding convention and cross-framework parity -----------------------------------------------

@pytest.fixture(scope="module")
def parity_weights():
    """Random-BN weights taken from the torch model, and a batch."""
    c = case(batch_size=2)
    tnet, _ = torch_model(c)
    weights = randomized({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32), dtype=np.float32)
    return weights, x


def torch_logits(c: Case, weights, x) -> np.ndarray:
    tnet, tc = torch_model(c)
    assert tplugin.harness_set_weights(case=tc, model=tnet, weights=weights)
    return tplugin.harness_predict(case=tc, model=tnet, device=TORCH_CPU, images=x)


def test_eval_logits_match_torch(parity_weights, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    weights, x = parity_weights
    c = case(batch_size=2)  # default mode: GRAPH
    net, dev = ms_model(c)
    assert plugin.harness_set_weights(case=c, model=net, weights=weights) is True
    got = plugin.harness_predict(case=c, model=net, device=dev, images=x)
    want = torch_logits(c, weights, x)
    assert got.dtype == np.float32 and got.shape == (2, 10)
    assert float(np.abs(want).max()) > 1e-2  # a meaningful comparison, not of zeros
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert net.training, "harness_predict must restore training mode"


def test_same_padding_model_would_fail_the_parity_check(parity_weights, monkeypatch) -> None:
    # The same network with MindSpore's default 'same' padding computes another function:
    # the 1e-4 tolerance above catches a broken padding convention.
    weights, x = parity_weights

    def same_conv(cin, cout, k, stride=1, init="fan_out", **kwargs):
        return nn.Conv2d(cin, cout, k, stride=stride, pad_mode="same", has_bias=False)

    monkeypatch.setattr(ms_models, "_conv", same_conv)
    c = case(batch_size=2, mode="pynative")
    net, dev = ms_model(c)
    assert net.conv1.pad_mode == "same"
    plugin.harness_set_weights(case=c, model=net, weights=weights)
    got = plugin.harness_predict(case=c, model=net, device=dev, images=x)
    want = torch_logits(c, weights, x)
    assert float(np.abs(got - want).max()) > 1e-3


@pytest.mark.parametrize("k,stride", [(7, 2), (3, 2)])
def test_same_padding_conv_differs_from_torch(k: int, stride: int) -> None:
    setup(case(mode="pynative"))
    rng = np.random.default_rng(k)
    w = rng.standard_normal((4, 3, k, k), dtype=np.float32)
    x = rng.standard_normal((1, 3, 32, 32), dtype=np.float32)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=k // 2).numpy()
    sym = nn.Conv2d(3, 4, k, stride=stride, pad_mode="pad", padding=k // 2, has_bias=False,
                    weight_init=ms.Tensor(w))
    same = nn.Conv2d(3, 4, k, stride=stride, pad_mode="same", has_bias=False, weight_init=ms.Tensor(w))
    got_sym = sym(ms.Tensor(x)).asnumpy()
    got_same = same(ms.Tensor(x)).asnumpy()
    assert got_same.shape == want.shape  # same output size: only the alignment differs
    np.testing.assert_allclose(got_sym, want, rtol=0, atol=1e-4)
    assert float(np.abs(got_same - want).max()) > 1e-3


def test_model_stem_conv_and_pool_match_torch() -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 32, 32), dtype=np.float32)
    w = net.conv1.weight.asnumpy()
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=3)
    np.testing.assert_allclose(net.conv1(ms.Tensor(x)).asnumpy(), want.numpy(), rtol=0, atol=1e-4)
    r = np.abs(rng.standard_normal((2, 16, 15, 15), dtype=np.float32))  # post-ReLU, odd size
    pooled = net.maxpool(net.pad(ms.Tensor(r))).asnumpy()
    np.testing.assert_array_equal(pooled, F.max_pool2d(torch.from_numpy(r), 3, 2, 1).numpy())


# --- 4. BatchNorm momentum convention ----------------------------------------------------------------

def _bn_stats_after_one_step(bn_ms, x: np.ndarray):
    bn_ms.set_train(True)
    bn_ms(ms.Tensor(x))
    return bn_ms.moving_mean.asnumpy(), bn_ms.moving_variance.asnumpy()


def test_bn_momentum_convention() -> None:
    setup(case(mode="pynative"))
    x = (np.random.default_rng(4).standard_normal((4, 3, 5, 5)) * 2 + 1).astype(np.float32)
    tbn = torch.nn.BatchNorm2d(3, momentum=0.1).train()
    tbn(torch.from_numpy(x))
    want_mean, want_var = tbn.running_mean.numpy(), tbn.running_var.numpy()
    # Written out: running = 0.9 * running + 0.1 * batch stat (unbiased variance).
    flat = x.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(want_mean, 0.1 * flat.mean(1), atol=1e-6)
    np.testing.assert_allclose(want_var, 0.9 + 0.1 * flat.var(1, ddof=1), atol=1e-5)

    mean, var = _bn_stats_after_one_step(nn.BatchNorm2d(3, momentum=0.9), x)
    np.testing.assert_allclose(mean, want_mean, atol=1e-5)
    np.testing.assert_allclose(var, want_var, atol=1e-5)
    mean, var = _bn_stats_after_one_step(nn.BatchNorm2d(3, momentum=0.1), x)
    assert float(np.abs(mean - want_mean).max()) > 1e-3
    assert float(np.abs(var - want_var).max()) > 1e-3


def test_model_batchnorm_uses_torch_momentum_0_1() -> None:
    # The model's own BatchNorm layers (stem, a bn3, a shortcut BN) update like torch's momentum=0.1.
    c = case(mode="pynative")
    net, _ = ms_model(c)
    rng = np.random.default_rng(5)
    for bn in (net.bn1, net.layer3[1].bn3, net.layer2[0].downsample[1]):
        channels = bn.moving_mean.shape[0]
        x = (rng.standard_normal((4, channels, 3, 3)) * 3 - 1).astype(np.float32)
        tbn = torch.nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5).train()
        tbn(torch.from_numpy(x))
        mean, var = _bn_stats_after_one_step(bn, x)
        np.testing.assert_allclose(mean, tbn.running_mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(var, tbn.running_var.numpy(), atol=1e-5)
        assert bn.eps == pytest.approx(1e-5)


# --- 5. train step, optimizer, schedule ------------------------------------------------------------

TRAIN_KW = dict(batch_size=4, nesterov=True, momentum=0.9, weight_decay=1e-4, label_smoothing=0.1,
                lr=0.01, schedule="linear", steps=2, warmup=1)
TRAIN_STEPS = 3


def _linear_lrs(lr: float, total: int) -> list[float]:
    """The linear schedule without warm-up over one epoch of ``total`` steps, written out."""
    return [lr * (1.0 - i / total) for i in range(total)]


@pytest.fixture(scope="module")
def train_data():
    c = case(**TRAIN_KW)
    tnet, _ = torch_model(c)
    # The reference model's own initial weights. (Random BatchNorm gammas make training-mode BN over
    # the 4 values per channel of layer4 at 32 px ill-conditioned: float rounding alone then moves the
    # two frameworks apart after one update.)
    weights = {k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()}
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 32, 32), dtype=np.float32)
    y = np.array([1, 7, 3, 3], dtype=np.int64)
    return weights, x, y


@pytest.fixture(scope="module")
def torch_losses(train_data):
    """torch.optim.SGD (nesterov, decay only on >1-D params) and torch's cross-entropy with label
    smoothing on the reference model, per-step lr from the written-out schedule."""
    weights, x, y = train_data
    c = case(**TRAIN_KW)
    tnet, tc = torch_model(c)
    tplugin.harness_set_weights(case=tc, model=tnet, weights=weights)
    tnet.train()
    params = list(tnet.parameters())
    opt = torch.optim.SGD([{"params": [p for p in params if p.ndim > 1], "weight_decay": 1e-4},
                           {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                          lr=0.01, momentum=0.9, nesterov=True)
    losses, states = [], []
    for lr in _linear_lrs(0.01, TRAIN_STEPS):
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y), label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        states.append({k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()})
    return losses, states


def _ms_train(mode: str, train_data, steps: int, workdir: Path):
    weights, x, y = train_data
    c = case(mode=mode, **TRAIN_KW)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        net, dev = ms_model(c)
        plugin.harness_set_weights(case=c, model=net, weights=weights)
        step = plugin.harness_train_step(case=c, model=net, device=dev, total_steps=TRAIN_STEPS,
                                         steps_per_epoch=TRAIN_STEPS)
        batch = plugin.harness_to_device(arrays=(x, y), device=dev)
        losses = plugin.harness_to_host(value=[step(batch) for _ in range(steps)])
        return losses, plugin.harness_get_weights(case=c, model=net)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def graph_run(train_data, tmp_path_factory):
    return _ms_train("graph", train_data, TRAIN_STEPS, tmp_path_factory.mktemp("graph"))


def test_lr_table_is_the_written_out_schedule() -> None:
    # The schedule the optimizer is fed (checked here so the comparisons below test the optimizer).
    assert lr_table(case(**TRAIN_KW).settings, TRAIN_STEPS, TRAIN_STEPS) == pytest.approx(
        _linear_lrs(0.01, TRAIN_STEPS), abs=1e-12)


def test_first_loss_equals_torch_cross_entropy_with_label_smoothing(graph_run, torch_losses, train_data) -> None:
    losses, _ = graph_run
    want, _ = torch_losses
    assert all(isinstance(v, float) for v in losses)
    assert losses[0] == pytest.approx(want[0], abs=1e-4)
    # Label smoothing matters here: the loss without it is clearly different.
    weights, x, y = train_data
    tnet, tc = torch_model(case(**TRAIN_KW))
    tplugin.harness_set_weights(case=tc, model=tnet.train(), weights=weights)
    with torch.no_grad():
        plain = float(F.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y)))
    assert abs(plain - want[0]) > 1e-3


def test_graph_training_follows_torch_sgd_nesterov(graph_run, torch_losses, train_data) -> None:
    # Three steps with a changing lr: the losses after one and two updates, and the weights after
    # three, equal torch.optim.SGD(nesterov=True) with decay only on >1-D parameters.
    losses, weights = graph_run
    want, states = torch_losses
    final = states[-1]
    assert losses == pytest.approx(want, abs=1e-4)
    assert want[0] - want[1] > 0.1 and want[1] - want[2] > 0.1  # the updates do change the loss
    for k in ("conv1.weight", "layer4.2.conv3.weight", "fc.weight", "fc.bias", "layer1.0.bn3.weight",
              "layer2.0.downsample.1.bias", "layer3.5.bn2.running_mean", "layer4.2.bn3.running_var"):
        np.testing.assert_allclose(weights[k], final[k], rtol=0, atol=1e-4, err_msg=k)
        assert not np.array_equal(final[k], train_data[0][k]), k  # every one of them was updated


def test_label_smoothing_is_torch_convention() -> None:
    # nn.CrossEntropyLoss(label_smoothing) in MindSpore == torch's eps/K off-value convention
    # (the loss the backend builds), on random logits.
    setup(case(mode="pynative"))
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((6, 10), dtype=np.float32) * 3
    y = rng.integers(0, 10, 6)
    got = float(nn.CrossEntropyLoss(label_smoothing=0.1)(ms.Tensor(logits), ms.Tensor(y.astype(np.int32))).asnumpy())
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    want = float(np.mean(-(0.9 * logp[np.arange(6), y] + 0.1 * logp.mean(1))))
    assert got == pytest.approx(want, abs=1e-5)
    assert got == pytest.approx(float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y),
                                                      label_smoothing=0.1)), abs=1e-5)


class Tiny(nn.Cell):
    """conv (weight + bias) -> ReLU -> mean -> dense: 4-D, 2-D and 1-D parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.relu = nn.ReLU()
        self.fc = nn.Dense(4, 3)

    def construct(self, x):
        return self.fc(self.relu(self.conv(x)).mean(axis=(2, 3)))


class TinyLoss(nn.Cell):
    def __init__(self, net) -> None:
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss = nn.CrossEntropyLoss()

    def construct(self, x, y):
        return self.loss(self.net(x), y)


def _tiny_pair(seed: int = 0):
    torch.manual_seed(seed)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=True), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        for p in tnet.parameters():
            p.uniform_(-0.5, 0.5)
    net = Tiny()
    pairs = {"conv.weight": tnet[0].weight, "conv.bias": tnet[0].bias, "fc.weight": tnet[4].weight,
             "fc.bias": tnet[4].bias}
    for p in net.get_parameters():
        p.set_data(ms.Tensor(pairs[p.name].detach().numpy().copy()))
    return net, tnet, pairs


def _run_tiny(nesterov: bool, momentum: float, wd: float, lrs: list[float]):
    setup(case(mode="pynative"))
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 3, 6, 6), dtype=np.float32)
    y = np.array([0, 2, 1, 2, 0])
    net, tnet, pairs = _tiny_pair()
    total = len(lrs)
    c = case(mode="pynative", nesterov=nesterov, momentum=momentum, weight_decay=wd, lr=lrs[0],
             schedule="linear", steps=total, warmup=1)
    opt = make_optimizer(c, net, total, total)
    train = nn.TrainOneStepCell(TinyLoss(net), opt)
    train.set_train(True)
    params = list(tnet.parameters())
    topt = torch.optim.SGD([{"params": [p for p in params if p.ndim > 1], "weight_decay": wd},
                            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                           lr=lrs[0], momentum=momentum, nesterov=nesterov)
    for lr in lrs:
        train(ms.Tensor(x), ms.Tensor(y.astype(np.int32)))
        for g in topt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y))
        topt.zero_grad()
        loss.backward()
        topt.step()
    got = {p.name: p.asnumpy() for p in net.get_parameters()}
    want = {k: v.detach().numpy() for k, v in pairs.items()}
    return opt, got, want


@pytest.mark.parametrize("nesterov", [True, False])
def test_optimizer_reproduces_torch_sgd(nesterov: bool) -> None:
    lrs = _linear_lrs(0.5, 3)  # what make_optimizer's linear schedule gives over 3 steps
    opt, got, want = _run_tiny(nesterov, 0.9, 0.05, lrs)
    if nesterov:
        assert isinstance(opt, NesterovMomentum)  # CPU ApplyMomentum would drop Nesterov
    else:
        assert isinstance(opt, nn.Momentum) and not isinstance(opt, NesterovMomentum)
    assert int(opt.global_step.asnumpy().reshape(())) == 3
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)
    # and it is a real comparison: plain momentum and Nesterov end apart on this problem
    _, other, _ = _run_tiny(not nesterov, 0.9, 0.05, lrs)
    assert max(float(np.abs(other[k] - got[k]).max()) for k in got) > 1e-3


def test_param_groups_no_decay_on_1d_params() -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    groups = param_groups(net, 0.01)
    decay = [g for g in groups if g.get("weight_decay") == 0.01]
    nodecay = [g for g in groups if "params" in g and g.get("weight_decay") == 0.0]
    assert len(decay) == 1 and len(nodecay) == 1
    decay_names = {p.name for p in decay[0]["params"]}
    nodecay_names = {p.name for p in nodecay[0]["params"]}
    all_names = {p.name for p in net.trainable_params()}
    assert decay_names | nodecay_names == all_names and not decay_names & nodecay_names
    for p in net.trainable_params():
        assert (p.name in decay_names) == (len(p.shape) > 1), p.name
    # gamma/beta of every BN and the fc bias are the 1-D ones; conv and fc weights are decayed
    assert "fc.bias" in nodecay_names and "fc.weight" in decay_names
    assert "layer1.0.bn3.gamma" in nodecay_names and "layer1.0.bn3.beta" in nodecay_names
    assert "layer2.0.downsample.0.weight" in decay_names
    assert len(nodecay_names) == 2 * (1 + 3 * sum(LAYERS) + 4) + 1
    order = [g for g in groups if "order_params" in g]
    if order:
        assert [p.name for p in order[0]["order_params"]] == [p.name for p in net.trainable_params()]


def test_lr_follows_table_per_step_and_global_step_advances() -> None:
    # momentum 0, no decay: each step moves a parameter by exactly lr_i * grad, and grad is known.
    setup(case(mode="pynative"))

    class Linear(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.w = ms.Parameter(ms.Tensor(np.zeros((2, 3), np.float32)), name="w")
            self.b = ms.Parameter(ms.Tensor(np.zeros((3,), np.float32)), name="b")
            self.c = ms.Tensor(np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], np.float32))
            self.d = ms.Tensor(np.array([0.5, -1.5, 2.0], np.float32))

        def construct(self, x):
            return (self.w * self.c).sum() + (self.b * self.d).sum() + x.sum() * 0

    net = Linear()
    c = case(mode="pynative", momentum=0.0, weight_decay=0.0, lr=0.4, schedule="step", milestones=[1, 2],
             gamma=0.5, steps=6, warmup=1)
    spe = 2
    opt = make_optimizer(c, net, 6, spe)
    train = nn.TrainOneStepCell(net, opt)
    expected = [0.4 * 0.5 ** sum(i / spe >= m for m in (1, 2)) for i in range(6)]  # 0.4,0.4,0.2,0.2,0.1,0.1
    assert lr_table(c.settings, 6, spe) == pytest.approx(expected)
    grad_w = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], np.float32)
    grad_b = np.array([0.5, -1.5, 2.0], np.float32)
    before = (net.w.asnumpy().copy(), net.b.asnumpy().copy())
    for i, lr in enumerate(expected):
        train(ms.Tensor(np.ones((1,), np.float32)))
        after = (net.w.asnumpy().copy(), net.b.asnumpy().copy())
        np.testing.assert_allclose(before[0] - after[0], lr * grad_w, rtol=1e-5, atol=1e-7, err_msg=f"step {i}")
        np.testing.assert_allclose(before[1] - after[1], lr * grad_b, rtol=1e-5, atol=1e-7, err_msg=f"step {i}")
        assert int(opt.global_step.asnumpy().reshape(())) == i + 1
        before = after


# --- 6. AMP and modes ------------------------------------------------------------------------------

@pytest.mark.parametrize("precision,level", [("fp16", "auto"), ("bf16", "auto"), ("fp16", "O2"),
                                             ("fp16", "O3"), ("bf16", "O1")])
def test_low_precision_on_cpu_is_unsupported(precision: str, level: str) -> None:
    c = case(mode="pynative", precision=precision, amp_level=level)
    with pytest.raises(Unsupported, match="(?i)cpu"):  # refused when the model is built, before any work
        ms_model(c)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_eval_on_cpu_is_unsupported(precision: str) -> None:
    c = case(mode="pynative", precision=precision, scenario="eval")
    with pytest.raises(Unsupported, match="(?i)cpu"):
        net, dev = ms_model(c)
        plugin.harness_eval_step(case=c, model=net, device=dev)


def test_backend_info_declares_what_it_takes() -> None:
    # The core refuses undeclared values (torch's modes eager/compile, an unknown optimizer or export format) and
    # the AMP rules between settings (O0 is fp32, O1-O3 need fp16/bf16) when a suite loads, so the backend only
    # declares them; device limits stay its own skips (THOR, mixed precision and AIR on CPU: tests below).
    info = check_info("mindspore", plugin.harness_backend_info())
    sup = info["supports"]
    assert sup == {"optimizer": ["sgd", "thor"], "precision": ["fp32", "bf16", "fp16"],
                   "amp_level": ["auto", "O0", "O1", "O2", "O3"], "mode": ["default", "graph", "pynative"],
                   "export": ["mindir", "onnx", "air"], "weights": [".ckpt"], "checkpoint": True}
    assert not {"eager", "compile"} & set(sup["mode"])
    assert set(info["runtimes"].values()) - {None} <= set(sup["export"])
    sup["mode"].append("eager")  # a copy: the declaration itself does not change
    assert "eager" not in plugin.harness_backend_info()["supports"]["mode"]
    # checkpoint: the train step's save/load (the train-state hooks are gone from the contract)
    assert not hasattr(plugin, "harness_save_train_state") and not hasattr(plugin, "harness_load_train_state")


def test_weights_suffixes_are_the_ones_read(tmp_path) -> None:
    # supports["weights"] names exactly what harness_read_checkpoint reads: MindSpore reads only .ckpt files.
    written = plugin.harness_write_checkpoint(weights={"fc.bias": np.ones(3, np.float32)}, path=str(tmp_path / "w"))
    assert os.path.splitext(written)[1] in plugin.harness_backend_info()["supports"]["weights"]
    other = tmp_path / "w.bin"
    other.write_bytes(Path(written).read_bytes())
    with pytest.raises(HarnessError, match=r"w\.bin"):
        plugin.harness_read_checkpoint(path=str(other))


def test_setup_selects_mode() -> None:
    dev = setup(case(mode="pynative"))
    assert ms.get_context("mode") == ms.PYNATIVE_MODE and dev["target"] == "CPU" and dev["mode"] == "PYNATIVE"
    dev = setup(case(mode="default"))
    assert ms.get_context("mode") == ms.GRAPH_MODE and dev["mode"] == "GRAPH"
    assert ms.get_context("device_target") == "CPU"


def test_pynative_step_equals_graph_step(graph_run, torch_losses, train_data, tmp_path) -> None:
    # One PYNATIVE step: the same loss as GRAPH mode, and it trained (the weights after it are the
    # reference optimizer's after one step).
    losses, weights = _ms_train("pynative", train_data, 1, tmp_path)
    graph_losses, _ = graph_run
    assert losses[0] == pytest.approx(graph_losses[0], abs=1e-5)
    after_one = torch_losses[1][0]
    for k in ("conv1.weight", "layer2.0.conv2.weight", "fc.weight", "fc.bias", "layer4.2.bn3.weight"):
        assert not np.array_equal(weights[k], train_data[0][k]), k
        np.testing.assert_allclose(weights[k], after_one[k], rtol=0, atol=1e-5, err_msg=k)


# --- 6b. the train step's own state: save / load ------------------------------------------------------

SAVE_KW = dict(TRAIN_KW, mode="pynative")


def _fresh_step(c: Case, total: int = 4):
    net, dev = ms_model(c)
    step = plugin.harness_train_step(case=c, model=net, device=dev, total_steps=total, steps_per_epoch=total)
    return net, dev, step


def _params(cell) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def test_train_step_is_an_object_holding_its_state() -> None:
    c = case(**SAVE_KW)
    net, _, step = _fresh_step(c)
    assert isinstance(step, plugin.TrainStep) and callable(step.save) and callable(step.load)
    assert step.with_loss.net is net and step.train_net.optimizer is step.optimizer
    assert isinstance(step.optimizer, NesterovMomentum) and step.thor_phase is None and not step.scaled


@pytest.mark.parametrize("scale", ["dynamic", 128.0])
def test_loss_scale_on_cpu_is_unsupported(scale) -> None:
    # MindSpore's loss-scale cell reads the overflow status with Ascend/GPU ops (no CPU kernel): a skip, not a crash.
    c = case(mode="pynative", loss_scale=scale)
    net, dev = ms_model(c)
    with pytest.raises(Unsupported, match=r"^cpu: MindSpore's loss-scale cell .*NPUGetFloatStatusV2"):
        plugin.harness_train_step(case=c, model=net, device=dev, total_steps=2, steps_per_epoch=2)


def test_train_step_save_then_load_goes_on_exactly(tmp_path, train_data) -> None:
    weights, x, y = train_data
    c = case(**SAVE_KW)
    net, dev, step = _fresh_step(c)
    plugin.harness_set_weights(case=c, model=net, weights=weights)
    batch = plugin.harness_to_device(arrays=(x, y), device=dev)
    plugin.harness_to_host(value=[step(batch) for _ in range(2)])
    folder = tmp_path / "ckpt"
    folder.mkdir()
    rng_saved = ms.get_rng_state().asnumpy().copy()
    assert step.save(str(folder)) == ["train_state.ckpt"]
    assert sorted(os.listdir(folder)) == ["train_state.ckpt"]
    assert os.stat(folder / "train_state.ckpt").st_mode & stat.S_IWUSR
    saved = _params(step.train_net)
    names = set(ms.load_checkpoint(str(folder / "train_state.ckpt")))
    # the model, the optimizer's moments, lr table and global step, the RNG state, THOR's counter (and, on a
    # device, the loss-scale cells': every parameter of the training cell)
    assert {"conv1.weight", "global_step", "learning_rate", "harness_rng_state", "harness_thor_count"} <= names
    assert any(n.startswith("moments.") for n in names)
    assert {p.name for p in step.train_net.get_parameters()} <= names
    going_on = [plugin.harness_to_host(value=step(batch)) for _ in range(2)]

    ms.manual_seed(99)  # the RNG moves on; load puts it back
    net2, _, step2 = _fresh_step(c)
    fresh_loss = plugin.harness_to_host(value=step2(batch))  # a fresh step differs from the saved one ...
    assert fresh_loss != pytest.approx(going_on[0], abs=1e-3)
    net2, _, step2 = _fresh_step(c)
    assert not np.array_equal(ms.get_rng_state().asnumpy(), rng_saved)
    assert step2.load(str(folder)) is None
    np.testing.assert_array_equal(ms.get_rng_state().asnumpy(), rng_saved)
    for k, v in _params(step2.train_net).items():  # ... the loaded one is exactly where the saved one stood
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
    assert int(step2.optimizer.global_step.asnumpy().reshape(())) == 2
    resumed = [plugin.harness_to_host(value=step2(batch)) for _ in range(2)]
    assert resumed == pytest.approx(going_on, abs=1e-6)


def test_train_step_thor_phase_counter_is_saved(tmp_path) -> None:
    # THOR itself runs on Ascend/GPU only; its phase counter is the step's own state, saved and restored with it.
    from harness_mindspore.train import _ThorPhases

    c = case(mode="pynative")
    _, _, step = _fresh_step(c)
    step.thor_phase = _ThorPhases(step.train_net, 3)
    phases = []
    for _ in range(5):
        step.thor_phase()
        phases.append(step.train_net.phase)
    assert phases == ["train0", "train1", "train1", "train0", "train1"] and step.thor_phase.count == 5
    step.save(str(tmp_path))
    _, _, step2 = _fresh_step(c)
    step2.thor_phase = _ThorPhases(step2.train_net, 3)
    step2.load(str(tmp_path))
    assert step2.thor_phase.count == 5
    step2.thor_phase()
    assert step2.train_net.phase == "train1"  # step 6 of a frequency-3 run reuses the matrices


def test_train_step_load_refuses_missing_foreign_and_other_shapes(tmp_path) -> None:
    c = case(mode="pynative")
    _, _, step = _fresh_step(c)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match=r"train_state\.ckpt'?: no such file"):
        step.load(str(empty))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "train_state.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match=r"junk.train_state\.ckpt.*not a MindSpore checkpoint"):
        step.load(str(junk))
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    written = plugin.harness_write_checkpoint(weights={"fc.bias": np.ones(10, np.float32)},
                                              path=str(weights_only / "train_state.ckpt"))
    assert written.endswith("weights_only/train_state.ckpt")
    with pytest.raises(HarnessError, match=r"train_state\.ckpt.*not a harness training state"):
        step.load(str(weights_only))
    other = tmp_path / "other"
    other.mkdir()
    _, _, seven = _fresh_step(case(mode="pynative", num_classes=7))
    seven.save(str(other))
    with pytest.raises(HarnessError, match=r"other.train_state\.ckpt.*fc\.weight.*\(7, \d+\).*\(10, \d+\)"):
        step.load(str(other))


# --- 7. data ------------------------------------------------------------------------------------------

def test_synthetic_streams() -> None:
    c = case(mode="pynative", batch_size=3, image_size=32, steps=4, warmup=2, eval_batches=5, num_classes=7)
    dev = setup(c)
    train = plugin.harness_data(case=c, split="train", device=dev)
    ev = plugin.harness_data(case=c, split="eval", device=dev)
    assert len(train) == 6 and len(ev) == 5
    for stream, n in ((train, 6), (ev, 5)):
        for _ in range(2):  # every iteration is one full epoch
            batches = list(stream)
            assert len(batches) == n
        x, y = batches[0]
        assert isinstance(x, ms.Tensor) and isinstance(y, ms.Tensor)
        assert tuple(x.shape) == (3, 3, 32, 32) and x.dtype == ms.float32
        assert tuple(y.shape) == (3,) and y.dtype == ms.int32
        labels = y.asnumpy()
        assert labels.min() >= 0 and labels.max() < 7
    c2 = case(mode="pynative", batch_size=3, steps=4, warmup=2)
    assert len(plugin.harness_data(case=c2, split="eval", device=dev)) == 10
    # the core's arrays (drawn from the seed, the same bytes every framework sees), one per split
    for split, stream in (("train", train), ("eval", ev)):
        x, y = next(iter(stream))
        want_x, want_y = synthetic_arrays(c.settings, split)
        np.testing.assert_array_equal(x.asnumpy(), want_x)
        np.testing.assert_array_equal(y.asnumpy(), want_y.astype(np.int32))
    assert not np.array_equal(next(iter(train))[0].asnumpy(), next(iter(ev))[0].asnumpy())


CLASS_NAMES = ("b", "B", "a10", "a9")  # sorted: B, a10, a9, b (not natural, not case-insensitive order)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> str:
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", classes=4, train_per_class=8,
                             val_per_class=3, size=32)
    for split in ("train", "val"):
        for i, name in enumerate(CLASS_NAMES):
            os.rename(os.path.join(root, split, f"class_{i:02d}"), os.path.join(root, split, name))
    return str(root)


def test_folder_val_stream_pads_to_whole_batches_in_class_order(folder_root) -> None:
    c = case(mode="pynative", data="folder", data_root=folder_root, batch_size=5, image_size=32, num_classes=4)
    dev = setup(c)
    stream = plugin.harness_data(case=c, split="eval", device=dev)
    classes, samples = scan_folder(folder_root, "val")
    assert classes == ["B", "a10", "a9", "b"]
    assert len(samples) == 12 and len(stream) == 3  # 12 images: two whole batches and one padded with 3 copies
    batches = list(stream)
    assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 32, 32)] * 3  # never a short batch
    assert all(x.dtype == ms.float32 and y.dtype == ms.int32 for x, y in batches)
    labels = np.concatenate([y.asnumpy() for _, y in batches])
    assert labels.tolist() == [label for _, label in samples] + [PAD_LABEL] * 3
    # Each image is the one scan_folder lists at that position (eval preprocessing, not shuffled):
    # the nearest of the reference images is its own; the padding repeats the last image.
    images = np.concatenate([x.asnumpy() for x, _ in batches])
    pre = Preprocess(32, train=False)
    refs = np.stack([pre.load(path, None) for path, _ in samples])
    dist = ((images[:12, None] - refs[None]) ** 2).mean(axis=(2, 3, 4))
    assert dist.argmin(axis=1).tolist() == list(range(len(samples)))
    assert float(np.abs(images[:12] - refs).mean()) < 0.1
    for pad in images[12:]:
        np.testing.assert_array_equal(pad, images[11])
    assert len(list(stream)) == 3  # a second pass is a full epoch again


def test_folder_eval_counts_only_real_images(folder_root, tmp_path, monkeypatch) -> None:
    # 12 val images, batch 5: the eval step (GRAPH mode, compiled for one batch shape) sees three whole
    # batches; count is 12 and the hits are those of the 12 real images.
    monkeypatch.chdir(tmp_path)
    c = case(data="folder", data_root=folder_root, batch_size=5, image_size=32, num_classes=10)
    net, dev = ms_model(c)
    plugin.harness_set_weights(case=c, model=net, weights=randomized(plugin.harness_get_weights(case=c, model=net)))
    stream = plugin.harness_data(case=c, split="eval", device=dev)
    step = plugin.harness_eval_step(case=c, model=net, device=dev)
    batches = list(stream)
    assert {tuple(x.shape) for x, _ in batches} == {(5, 3, 32, 32)}
    counts = [plugin.harness_to_host(value=step(b)) for b in batches]
    assert [n for _, _, n in counts] == [5.0, 5.0, 2.0]
    images = np.concatenate([x.asnumpy() for x, _ in batches])[:12]
    labels = np.concatenate([y.asnumpy() for _, y in batches])[:12]
    logits = plugin.harness_predict(case=c, model=net, device=dev, images=images)
    order = np.argsort(-logits, axis=1)
    want1 = int((order[:, 0] == labels).sum())
    want5 = int((order[:, :5] == labels[:, None]).any(axis=1).sum())
    assert np.sum(counts, axis=0).tolist() == [want1, want5, 12]
    assert 0 < want5 < 12  # a meaningful check: some hits, some misses
    # a batch of padding alone counts nothing
    pad = plugin.harness_to_device(arrays=(images[:5], np.full(5, PAD_LABEL)), device=dev)
    assert plugin.harness_to_host(value=step(pad)) == [0.0, 0.0, 0.0]


def test_folder_train_stream_drops_remainder_and_repeats(folder_root) -> None:
    c = case(mode="pynative", data="folder", data_root=folder_root, batch_size=5, image_size=32, num_classes=4)
    dev = setup(c)
    stream = plugin.harness_data(case=c, split="train", device=dev)
    assert len(stream) == 6  # 32 images // 5
    for _ in range(2):  # two epochs
        batches = list(stream)
        assert len(batches) == 6
        assert all(tuple(x.shape) == (5, 3, 32, 32) and x.dtype == ms.float32 for x, _ in batches)
        labels = np.concatenate([y.asnumpy() for _, y in batches])
        assert labels.dtype == np.int32
        counts = Counter(labels.tolist())
        assert set(counts) <= {0, 1, 2, 3} and sum(counts.values()) == 30
        assert all(v <= 8 for v in counts.values())


def test_train_order_matches_torch_skips_unreadable_images_and_resumes_mid_epoch(tmp_path) -> None:
    """Both frameworks read the same images in the same order (harness.data.epoch_order), leave out unreadable
    files, and a stream started at (epoch, batch) goes on exactly as the uninterrupted one."""
    from harness_torch.data import make_stream as torch_stream

    root = make_tiny_dataset(str(tmp_path / "tiny"), classes=4, train_per_class=8, val_per_class=3, size=32)
    samples = scan_folder(root, "train")[1]
    for i in (3, 17):
        with open(samples[i][0], "wb") as f:
            f.write(b"not an image")
    c = case(mode="pynative", data="folder", data_root=root, batch_size=5, image_size=32, num_classes=4,
             augment=False, max_bad_images=2)
    dev = setup(c)

    def images(stream, epochs):
        out = []
        for _ in range(epochs):
            out += [x.asnumpy() if hasattr(x, "asnumpy") else x.numpy() for x, _ in stream]
        return np.concatenate(out)

    whole = images(plugin.harness_data(case=c, split="train", device=dev), 2)
    assert len(whole) == 2 * 30  # 30 readable images, 6 batches of 5 per epoch
    theirs = images(torch_stream(c, "train", TORCH_CPU), 2)
    np.testing.assert_allclose(whole, theirs, atol=0.05)  # the same pictures (decoders differ slightly)
    resumed = plugin.harness_data(case=c, split="train", device=dev)
    resumed.start_at(0, 4)
    tail = images(resumed, 2)  # the rest of epoch 0, then all of epoch 1
    np.testing.assert_array_equal(tail, whole[20:])


def test_train_shard_follows_harness_dist_place(folder_root, monkeypatch) -> None:
    # msrun's names (RANK_ID, RANK_SIZE) read through harness.dist.place: rank 1 of 2 reads half an epoch.
    for name in ("RANK", "WORLD_SIZE", "RANK_ID", "RANK_SIZE"):
        monkeypatch.delenv(name, raising=False)
    c = case(mode="pynative", data="folder", data_root=folder_root, batch_size=5, image_size=32, num_classes=4,
             augment=False)
    dev = setup(c)
    whole = plugin.harness_data(case=c, split="train", device=dev)
    monkeypatch.setenv("RANK_ID", "1")
    monkeypatch.setenv("RANK_SIZE", "2")
    half = plugin.harness_data(case=c, split="train", device=dev)
    assert (len(whole), len(half)) == (6, 3)  # 32 images; 16 per rank, 3 batches of 5
    assert half.sampler.rank == 1 and half.sampler.world == 2


@pytest.mark.parametrize("env,device_id", [({"DEVICE_ID": "3"}, 3), ({"DEVICE_ID": "3", "LOCAL_RANK": "2"}, 2),
                                           ({}, 0)])
def test_setup_device_id_follows_harness_dist_place(monkeypatch, env, device_id: int) -> None:
    for name in ("RANK", "WORLD_SIZE", "RANK_ID", "RANK_SIZE", "DEVICE_ID", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert setup(case(mode="pynative"))["device_id"] == device_id


def test_folder_too_many_classes(folder_root) -> None:
    c = case(mode="pynative", data="folder", data_root=folder_root, num_classes=3)
    with pytest.raises(HarnessError, match="4 classes"):
        plugin.harness_data(case=c, split="train", device=setup(c))


def test_missing_data_root_names_the_path(tmp_path) -> None:
    missing = str(tmp_path / "no_such_imagenet")
    c = case(mode="pynative", data="folder", data_root=missing)
    dev = setup(c)
    for split in ("train", "eval"):
        with pytest.raises(HarnessError, match="no_such_imagenet"):
            plugin.harness_data(case=c, split=split, device=dev)


# --- 8. export -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    folder = work / "case=a,b=1"
    folder.mkdir()
    c = case(batch_size=2)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        net, dev = ms_model(c)
        plugin.harness_set_weights(case=c, model=net,
                                   weights=randomized(plugin.harness_get_weights(case=c, model=net), seed=3))
        results = {fmt: plugin.harness_export(case=c, model=net, device=dev, fmt=fmt, path=str(folder / "model"), batch=None)
                   for fmt in ("mindir", "onnx")}
        x = np.random.default_rng(9).standard_normal((2, 3, 32, 32), dtype=np.float32)
        logits = plugin.harness_predict(case=c, model=net, device=dev, images=x)
        return results, folder, net, x, logits
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("fmt", ["mindir", "onnx"])
def test_export_checks_and_files(exported, fmt: str) -> None:
    results, folder, net, _, _ = exported
    r = results[fmt]
    file = folder / f"model.{fmt}"
    assert r["format"] == fmt
    assert file.is_file() and os.path.basename(r["path"]) == file.name
    assert r["bytes"] == file.stat().st_size > 0
    assert r["check"]["max_abs_diff"] < 1e-4
    assert r["check"]["runtime"]
    assert file.stat().st_mode & stat.S_IWUSR, "export must be writable by its owner"
    assert net.training, "export must restore training mode"


def test_onnx_export_computes_the_model(exported) -> None:
    ort = pytest.importorskip("onnxruntime")
    _, folder, _, x, logits = exported
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert float(np.abs(logits).max()) > 1e-2
    np.testing.assert_allclose(got, logits, rtol=0, atol=1e-4)


def test_export_air_on_cpu_is_unsupported(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = case(mode="pynative")
    net, dev = ms_model(c)
    with pytest.raises(Unsupported, match="(?i)ascend"):
        plugin.harness_export(case=c, model=net, device=dev, fmt="air", path=str(tmp_path / "m"), batch=None)
    assert not list(tmp_path.glob("m.*"))


# --- 9. checkpoints ------------------------------------------------------------------------------------

def test_checkpoint_round_trip_is_exact(tmp_path) -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    weights = randomized(plugin.harness_get_weights(case=c, model=net), seed=5)
    weights["bn1.num_batches_tracked"] = np.array(17, dtype=np.int64)
    path = str(tmp_path / "w.ckpt")
    written = plugin.harness_write_checkpoint(weights=weights, path=path)
    assert os.path.isfile(written)
    back = plugin.harness_read_checkpoint(path=written)
    assert set(back) == set(weights)
    for k, v in weights.items():
        assert back[k].dtype == v.dtype, k
        assert back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    assert back["bn1.num_batches_tracked"].dtype == np.int64 and int(back["bn1.num_batches_tracked"]) == 17
    # the read weights load into a fresh model (num_batches_tracked is optional there)
    net2, _ = ms_model(c)
    assert plugin.harness_set_weights(case=c, model=net2, weights=back) is True
    np.testing.assert_array_equal(net2.layer1[0].bn3.gamma.asnumpy(), weights["layer1.0.bn3.weight"])
    np.testing.assert_array_equal(net2.bn1.moving_variance.asnumpy(), weights["bn1.running_var"])


def test_checkpoint_uses_mindspore_names(tmp_path) -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    weights = plugin.harness_get_weights(case=c, model=net)
    path = plugin.harness_write_checkpoint(weights=weights, path=str(tmp_path / "w.ckpt"))
    names = set(ms.load_checkpoint(path))
    for leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert f"layer2.0.bn2.{leaf}" in names and f"bn1.{leaf}" in names
    assert not {n for n in names if n.endswith((".running_mean", ".running_var"))}
    assert not {n for n in names if ".bn" in n and n.endswith((".weight", ".bias"))}
    assert "fc.weight" in names and "fc.bias" in names and "conv1.weight" in names
    # the names MindSpore's own loader maps onto the model
    assert names == {p.name for p in net.get_parameters()}


def test_checkpoint_written_at_the_returned_path(tmp_path) -> None:
    path = str(tmp_path / "weights")
    written = plugin.harness_write_checkpoint(weights={"fc.bias": np.ones(3, np.float32)}, path=path)
    assert os.path.isfile(written) and written == path + ".ckpt"  # MindSpore only reads .ckpt files
    assert os.stat(written).st_mode & stat.S_IWUSR
    assert "fc.bias" in plugin.harness_read_checkpoint(path=written)


def test_set_weights_wrong_shape_names_the_parameter() -> None:
    c = case(mode="pynative")
    net, _ = ms_model(c)
    weights = plugin.harness_get_weights(case=c, model=net)
    weights["layer3.1.conv2.weight"] = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(HarnessError, match=r"layer3\.1\.conv2\.weight"):
        plugin.harness_set_weights(case=c, model=net, weights=weights)
    weights = plugin.harness_get_weights(case=c, model=net)
    del weights["layer2.0.bn1.running_var"]
    with pytest.raises(HarnessError, match=r"layer2\.0\.bn1\.running_var"):
        plugin.harness_set_weights(case=c, model=net, weights=weights)
    weights = plugin.harness_get_weights(case=c, model=net)
    weights["head.extra"] = np.zeros(3, np.float32)
    with pytest.raises(HarnessError, match=r"head\.extra"):
        plugin.harness_set_weights(case=c, model=net, weights=weights)


def test_read_missing_checkpoint_names_the_path(tmp_path) -> None:
    path = str(tmp_path / "nope.ckpt")
    with pytest.raises(HarnessError, match="nope.ckpt"):
        plugin.harness_read_checkpoint(path=path)


@pytest.mark.parametrize("content", [b"hello, not a checkpoint", b""])
def test_read_non_checkpoint_is_an_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "junk.ckpt"
    path.write_bytes(content)
    with pytest.raises(HarnessError, match="junk.ckpt"):
        plugin.harness_read_checkpoint(path=str(path))


def test_read_torch_checkpoint_is_an_error(tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"fc.bias": torch.zeros(3)}, path)
    with pytest.raises(HarnessError, match=r"w\.pt"):
        plugin.harness_read_checkpoint(path=str(path))


# --- 10. devices and environment ------------------------------------------------------------------------

@pytest.mark.parametrize("device,prefix", [("gpu", "no CUDA device"), ("ascend", "no Ascend device")])
def test_probe_absent_device(device: str, prefix: str) -> None:
    status = plugin.harness_probe_device(device=device)
    if status["available"]:
        pytest.skip(f"{device} is available here")
    assert status["reason"].startswith(prefix)
    assert "\n" not in status["reason"]
    assert status["count"] == 0 and status["model"] is None
    with pytest.raises(DeviceUnavailable, match=prefix):
        plugin.harness_setup(case=case(device=device))


def test_probe_cpu() -> None:
    status = plugin.harness_probe_device(device="cpu")
    assert status["available"] is True and status["count"] >= 1


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx512(), reason="no AVX-512 CPU")
def test_onednn_isa_capped_on_avx512() -> None:
    assert os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2"
    # In a clean process: set by importing the package, before mindspore is imported.
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    code = ("import sys, os, harness_mindspore; "
            "print(os.environ.get('ONEDNN_MAX_CPU_ISA'), 'mindspore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AVX2", "False"]


def test_environment_record() -> None:
    c = case(mode="pynative")
    dev = setup(c)
    env = plugin.harness_environment(case=c, device=dev)
    assert env["framework"] == "MindSpore" and env["framework_version"] == ms.__version__
    assert env["mindspore_mode"] == "PYNATIVE"


def test_threads_setting_sets_the_cpu_kernel_pool() -> None:
    # Last in the file: MindSpore accepts each thread setting once per process.
    from mindspore._c_expression import RuntimeConf
    conf = RuntimeConf.get_instance()
    if conf.is_op_threads_num_configured() or conf.is_dispatch_threads_num_configured():
        pytest.skip("thread counts already configured in this process")
    setup(case(mode="pynative", threads=1))
    assert conf.is_op_threads_num_configured()


def test_thor_is_refused_on_cpu_with_the_reason() -> None:
    c = case(optimizer="thor")
    with pytest.raises(Unsupported, match=r"^cpu: THOR \(mindspore.nn.thor\) runs on Ascend and GPU only$"):
        ms_model(c)  # refused when the model is built, before any work: the case is recorded as skipped
