"""What the MindSpore backend (package ``harness_mindspore``, source in plugins/mindspore/) does its own way.

What every backend must do (building every model, weights and checkpoints, data streams, train and eval steps,
the loss, weight decay, the train step's save/load, exports, folder data order across backends) is checked once
for all of them in test_backend_contract.py. Here: the padding convention, BatchNorm momentum, the Nesterov kernel,
the recipe against torch's optimizer, GRAPH and PYNATIVE, what CPU refuses (mixed precision, loss scaling, THOR,
AIR), the checkpoint's MindSpore names and contents, the batches' dtypes, msrun's ranks, the oneDNN ISA cap and the
thread pool.

Expected values come from the published architecture (shared/reference/models.md), from the
PyTorch backend as the reference implementation (its model and torch's own optimizer and loss),
and from formulas written out here, never from running the code under test.
Models are width 0.25 at 32-64 px.

MindSpore is global state (execution mode, device): every test that runs MindSpore calls the
plugin's ``harness_setup`` with the mode it needs. Tests that compile graphs or export run in
their own temporary folder, because MindSpore writes ``rank_0/`` and export files into the
current directory.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

harness_mindspore = pytest.importorskip("harness_mindspore")  # before mindspore: it fixes ONEDNN_MAX_CPU_ISA
ms = pytest.importorskip("mindspore")
torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from backends import randomized  # noqa: E402
from mindspore import nn  # noqa: E402

import harness_mindspore.models as ms_models  # noqa: E402
import harness_mindspore.plugin as plugin  # noqa: E402
import harness_torch.plugin as tplugin  # noqa: E402
from harness import Case, DeviceUnavailable, HarnessError, Settings, Unsupported  # noqa: E402
from harness.config import coerce_settings  # noqa: E402
from harness.data.tiny import make_tiny_dataset  # noqa: E402
from harness.models.schedules import lr_table  # noqa: E402
from harness_mindspore.jit import DEFAULT_LEVELS  # noqa: E402
from harness_mindspore.models import onnx_stem_pool  # noqa: E402
from harness_mindspore.optim import make_optimizer, param_groups  # noqa: E402

MODEL = "gluon_resnet50_v1b"
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


# --- 1. named facts and the padding convention ----------------------------------------------------

def test_v1b_strides_and_symmetric_padding() -> None:
    # (Neutral names, shapes and initial values of every backend at full and reduced width: test_backend_contract.)
    m, _ = ms_model(case(mode="pynative"))
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
    assert net.training  # built for training
    net.set_train(False)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32))
    shapes = [tuple(o.shape) for o in net.stages(x)]
    assert shapes == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    assert tuple(net(x).shape) == (2, 10)


# --- 2. padding convention and cross-framework parity -----------------------------------------------

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
    want = F.max_pool2d(torch.from_numpy(r), 3, 2, 1).numpy()
    np.testing.assert_array_equal(net.maxpool(ms.Tensor(r)).asnumpy(), want)
    np.testing.assert_array_equal(onnx_stem_pool()(ms.Tensor(r)).asnumpy(), want)  # what an ONNX export writes


# --- 3. BatchNorm momentum convention ----------------------------------------------------------------

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


# --- 4. train step, optimizer, schedule ------------------------------------------------------------

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


def _ms_train(mode: str, train_data, steps: int, workdir: Path, jit_level: str = "auto"):
    weights, x, y = train_data
    c = case(mode=mode, jit_level=jit_level, **TRAIN_KW)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        net, dev = ms_model(c)
        plugin.harness_set_weights(case=c, model=net, weights=weights)
        step = plugin.harness_train_step(case=c, model=net, device=dev, total_steps=TRAIN_STEPS,
                                         steps_per_epoch=TRAIN_STEPS)
        batch = plugin.harness_to_device(arrays=(x, y), device=dev)
        losses = [float(loss.asnumpy()) for loss in [step(batch) for _ in range(steps)]]
        assert step.train_net.jit_config_dict.get("jit_level") == dev["jit_level"]  # the cell compiled at it
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


def test_graph_training_follows_torch_sgd_nesterov(graph_run, torch_losses, train_data) -> None:
    # Three steps with a changing lr: the losses after one and two updates, and the weights after
    # three, equal torch.optim.SGD(nesterov=True) with decay only on >1-D parameters.
    losses, weights = graph_run
    want, states = torch_losses
    final = states[-1]
    assert losses == pytest.approx(want, abs=1e-4)
    assert want[0] - want[1] > 0.1 and want[1] - want[2] > 0.1  # the updates do change the loss
    start, x, y = train_data  # and the loss without label smoothing is clearly another
    tnet, tc = torch_model(case(**TRAIN_KW))
    tplugin.harness_set_weights(case=tc, model=tnet.train(), weights=start)
    with torch.no_grad():
        assert abs(float(F.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y))) - want[0]) > 1e-3
    for k in ("conv1.weight", "layer4.2.conv3.weight", "fc.weight", "fc.bias", "layer1.0.bn3.weight",
              "layer2.0.downsample.1.bias", "layer3.5.bn2.running_mean", "layer4.2.bn3.running_var"):
        np.testing.assert_allclose(weights[k], final[k], rtol=0, atol=1e-4, err_msg=k)
        assert not np.array_equal(final[k], train_data[0][k]), k  # every one of them was updated


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
    # CPU ApplyMomentum (nn.Momentum) would drop Nesterov: nn.SGD's kernel computes it
    assert isinstance(opt, nn.SGD if nesterov else nn.Momentum)
    assert int(opt.global_step.asnumpy().reshape(())) == 3
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)
    # and it is a real comparison: plain momentum and Nesterov end apart on this problem
    _, other, _ = _run_tiny(not nesterov, 0.9, 0.05, lrs)
    assert max(float(np.abs(other[k] - got[k]).max()) for k in got) > 1e-3


def test_param_groups_keep_the_cells_parameter_order() -> None:
    # MindSpore's optimizer takes its groups with the order of the cell's parameters (order_params), whatever
    # the groups hold. (Which parameters decay, every backend: test_backend_contract.py.)
    net, _ = ms_model(case(mode="pynative"))
    groups = param_groups(net, 0.01)
    order = [g for g in groups if "order_params" in g]
    assert len(order) == 1 and [p.name for p in order[0]["order_params"]] == [p.name for p in net.trainable_params()]
    held = [p.name for g in groups if "params" in g for p in g["params"]]
    assert sorted(held) == sorted(p.name for p in net.trainable_params())


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


# --- 5. AMP and modes ------------------------------------------------------------------------------

@pytest.mark.parametrize("precision,level", [("fp16", "auto"), ("bf16", "auto"), ("fp16", "O2"),
                                             ("fp16", "O3"), ("bf16", "O1")])
def test_low_precision_on_cpu_is_unsupported(precision: str, level: str) -> None:
    c = case(mode="pynative", precision=precision, amp_level=level)
    with pytest.raises(Unsupported, match=r"(?i)cpu"):  # refused when the model is built, before any work
        ms_model(c)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_eval_on_cpu_is_unsupported(precision: str) -> None:
    c = case(mode="pynative", precision=precision, scenario="eval")
    with pytest.raises(Unsupported, match=r"(?i)cpu"):
        net, dev = ms_model(c)
        plugin.harness_eval_step(case=c, model=net, device=dev)


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


def test_compile_level_o1_trains_the_same_network(graph_run, train_data, tmp_path) -> None:
    # jit_level O1 adds passes and operator fusion: the same losses and weights as the default level.
    losses, weights = _ms_train("graph", train_data, TRAIN_STEPS, tmp_path, jit_level="O1")
    graph_losses, graph_weights = graph_run
    assert losses == pytest.approx(graph_losses, abs=1e-5)
    for k in ("conv1.weight", "fc.weight", "layer4.2.bn3.weight"):
        np.testing.assert_allclose(weights[k], graph_weights[k], rtol=0, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("mode, level, expected", [("graph", "auto", DEFAULT_LEVELS["CPU"]), ("graph", "O1", "O1"),
                                                   ("pynative", "auto", None)])
def test_compile_level_is_set_and_recorded(mode: str, level: str, expected: str | None) -> None:
    c = case(mode=mode, jit_level=level)
    dev = setup(c)
    assert dev["jit_level"] == expected
    assert plugin.harness_environment(case=c, device=dev)["mindspore_jit_level"] == expected


# --- 6b. the train step's own state: save / load ------------------------------------------------------

SAVE_KW = dict(TRAIN_KW, mode="pynative")


def _fresh_step(c: Case, total: int = 4):
    net, dev = ms_model(c)
    step = plugin.harness_train_step(case=c, model=net, device=dev, total_steps=total, steps_per_epoch=total)
    return net, dev, step


@pytest.mark.parametrize("scale", ["dynamic", 128.0])
def test_loss_scale_on_cpu_is_unsupported(scale) -> None:
    # MindSpore's loss-scale cell reads the overflow status with Ascend/GPU ops (no CPU kernel): a skip, not a crash.
    c = case(mode="pynative", loss_scale=scale)
    net, dev = ms_model(c)
    with pytest.raises(Unsupported, match=r"^cpu: MindSpore's loss-scale cell .*NPUGetFloatStatusV2"):
        plugin.harness_train_step(case=c, model=net, device=dev, total_steps=2, steps_per_epoch=2)


def test_train_step_checkpoint_holds_the_training_cell_and_the_rng_state(tmp_path) -> None:
    # What the one file holds (that a loaded step goes on exactly: test_backend_contract.py): every parameter of the
    # training cell (the model, the optimizer's moments, lr table and global step; on a device the loss-scale
    # cells'), THOR's counter and the generator's state, which load puts back. Nesterov on CPU is nn.SGD (CPU
    # ApplyMomentum drops Nesterov).
    c = case(**SAVE_KW)
    _, _, step = _fresh_step(c)
    assert isinstance(step.optimizer, nn.SGD) and step.thor_phase is None and not step.scaled
    rng_saved = ms.get_rng_state().asnumpy().copy()
    assert step.save(str(tmp_path)) == ["train_state.ckpt"]
    names = set(ms.load_checkpoint(str(tmp_path / "train_state.ckpt")))
    assert {"conv1.weight", "global_step", "learning_rate", "harness_rng_state", "harness_thor_count"} <= names
    assert any(n.startswith("accum.") for n in names) and any(n.startswith("stat.") for n in names)  # nn.SGD's
    assert {p.name for p in step.train_net.get_parameters()} <= names
    ms.manual_seed(99)  # the RNG moves on; load puts it back
    _, _, step2 = _fresh_step(c)
    assert not np.array_equal(ms.get_rng_state().asnumpy(), rng_saved)
    step2.load(str(tmp_path))
    np.testing.assert_array_equal(ms.get_rng_state().asnumpy(), rng_saved)


def test_train_step_thor_phase_counter_is_saved(tmp_path) -> None:
    # THOR itself runs on Ascend/GPU only; its phase counter is the step's own state, saved and restored with it.
    from harness_mindspore.thor import ThorPhases as _ThorPhases

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


# --- 6. data ------------------------------------------------------------------------------------------

CLASS_NAMES = ("b", "B", "a10", "a9")  # sorted: B, a10, a9, b (not natural, not case-insensitive order)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> str:
    root = make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", classes=4, train_per_class=8,
                             val_per_class=3, size=32)
    for split in ("train", "val"):
        for i, name in enumerate(CLASS_NAMES):
            os.rename(os.path.join(root, split, f"class_{i:02d}"), os.path.join(root, split, name))
    return str(root)


def test_batches_are_float32_images_and_int32_labels(folder_root) -> None:
    # The dtypes MindSpore's steps take (torch's labels are int64), synthetic and decoded alike.
    for c in (case(mode="pynative"), case(mode="pynative", data="folder", data_root=folder_root, num_classes=4)):
        dev = setup(c)
        for split in ("train", "eval"):
            x, y = next(iter(plugin.harness_data(case=c, split=split, device=dev)))
            assert x.dtype == ms.float32 and y.dtype == ms.int32, (c.settings.data, split)


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


# --- 7. export -----------------------------------------------------------------------------------------

def test_export_air_on_cpu_is_unsupported(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = case(mode="pynative")
    net, dev = ms_model(c)
    with pytest.raises(Unsupported, match=r"(?i)ascend"):
        plugin.harness_export(case=c, model=net, device=dev, fmt="air", path=str(tmp_path / "m"), batch=None)
    assert not list(tmp_path.glob("m.*"))


# --- 8. checkpoints ------------------------------------------------------------------------------------

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


def test_checkpoint_gets_the_only_suffix_mindspore_reads(tmp_path) -> None:
    path = str(tmp_path / "weights")
    written = plugin.harness_write_checkpoint(weights={"fc.bias": np.ones(3, np.float32)}, path=path)
    assert written == path + ".ckpt"  # appended: MindSpore reads only .ckpt files ...
    assert "fc.bias" in plugin.harness_read_checkpoint(path=written)
    other = tmp_path / "weights.bin"  # ... so the same bytes under another suffix are refused
    other.write_bytes(Path(written).read_bytes())
    with pytest.raises(HarnessError, match=r"weights\.bin"):
        plugin.harness_read_checkpoint(path=str(other))


# --- 9. devices and environment ------------------------------------------------------------------------

@pytest.mark.parametrize("device,prefix", [("gpu", "no CUDA device"), ("ascend", "no Ascend device")])
def test_an_absent_device_says_why(device: str, prefix: str) -> None:
    # The reason in MindSpore's words; that it is one line and that setup raises it: test_backend_contract.py.
    status = plugin.harness_probe_device(device=device)
    if status["available"]:
        pytest.skip(f"{device} is available here")
    assert status["reason"].startswith(prefix) and status["model"] is None
    with pytest.raises(DeviceUnavailable, match=prefix):
        plugin.harness_setup(case=case(device=device))


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
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AVX2", "False"]


def test_environment_record() -> None:
    c = case(mode="pynative")
    dev = setup(c)
    env = plugin.harness_environment(case=c, device=dev)  # framework and versions are the core's (from the info)
    assert env["mindspore_mode"] == "PYNATIVE" and "framework_version" not in env


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
