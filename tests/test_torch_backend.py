"""Behaviour tests of the PyTorch backend (package ``harness_torch``, source in plugins/torch/).

Expected values come from the published architecture and recipes
(shared/reference/models.md, timm ``resnet50.gluon_in1k`` / torchvision ``resnet50``)
and from the formulas written out here, never from running the code under test.
Apart from the full-size architecture checks, models are width 0.25 at 32-64 px.
"""
from __future__ import annotations

import copy
import importlib.util
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from conftest import expected_state_dict
import harness_torch.plugin as plugin
from harness import Case, DeviceUnavailable, HarnessError, Settings, hookspecs
from harness.config import coerce_settings
from harness.contract import check_counts, check_info
from harness.data import PAD_LABEL, synthetic_arrays
from harness.dist import Place
from harness.models import get_model
from harness.schedules import lr_at
from harness.tinydata import make_tiny_dataset
from harness_torch.data import make_stream
from harness_torch.export import export_model
from harness_torch.models import ResNet, build_model
from harness_torch.train import TrainStep, make_eval_step, make_train_step, param_groups

MODEL = "gluon_resnet50_v1b"
CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()

LAYERS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings(**kw) -> Settings:
    return Settings(**coerce_settings(kw, "test"))


def small_case(device: str = "cpu", **kw) -> Case:
    base = dict(width=0.25, image_size=32, batch_size=4, num_classes=10, steps=3, warmup=1)
    base.update(kw)
    return Case(name="t", model=MODEL, backend="torch", device=device, settings=settings(**base))


def small_model(case: Case, device: torch.device = CPU) -> nn.Module:
    return plugin.harness_build_model(case=case, device=device)


def batch(case: Case, seed: int = 0, device: torch.device = CPU) -> tuple[torch.Tensor, torch.Tensor]:
    s = case.settings
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(s.batch_size, 3, s.image_size, s.image_size, generator=g)
    y = torch.randint(0, s.num_classes, (s.batch_size,), generator=g)
    return x.to(device), y.to(device)


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainable_of(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for k, s in shapes.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


@pytest.fixture(scope="module")
def full_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(get_model(MODEL))


# --- 1. parameter counts --------------------------------------------------------------------

def test_expected_state_dict_is_self_consistent() -> None:
    # The independently written description has 320 entries and the published parameter count.
    shapes = expected_state_dict()
    assert len(shapes) == 320
    assert trainable_of(shapes) == 25_557_032
    assert trainable_of(expected_state_dict(1001)) == 25_559_081


def test_param_count_full_model(full_model: nn.Module) -> None:
    assert trainable_count(full_model) == 25_557_032
    assert get_model(MODEL).params == 25_557_032


def test_param_count_1001_classes() -> None:
    spec = get_model(MODEL, num_classes=1001)
    assert spec.num_classes == 1001
    model = build_model(spec)
    assert trainable_count(model) == 25_559_081
    assert model.fc.out_features == 1001


def test_param_count_through_plugin_hook() -> None:
    case = Case(name="full", model=MODEL, backend="torch", device="cpu", settings=settings(num_classes=1001))
    model = plugin.harness_build_model(case=case, device=CPU)
    assert trainable_count(model) == 25_559_081
    assert model.training


# --- 2. state dict equals torchvision / timm ------------------------------------------------

def test_state_dict_keys_and_shapes_match_timm(full_model: nn.Module) -> None:
    expected = expected_state_dict()
    got = {k: tuple(v.shape) for k, v in full_model.state_dict().items()}
    assert len(got) == 320
    assert set(got) - set(expected) == set(), "unexpected keys"
    assert set(expected) - set(got) == set(), "missing keys"
    mismatched = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert mismatched == {}


def test_state_dict_loads_a_checkpoint_of_that_layout(full_model: nn.Module) -> None:
    # A checkpoint made of the expected keys/shapes loads strictly.
    ckpt = {k: torch.zeros(s, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
            for k, s in expected_state_dict().items()}
    model = copy.deepcopy(full_model)
    result = model.load_state_dict(ckpt, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_reduced_state_dict_layout() -> None:
    model = build_model(get_model(MODEL, width=0.25, num_classes=10))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_state_dict(num_classes=10, width=0.25)


# --- 3. named facts ---------------------------------------------------------------------------

def test_v1b_strides_on_the_3x3_conv(full_model: nn.Module) -> None:
    m = full_model
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2) and m.conv1.bias is None
    assert isinstance(m.maxpool, nn.MaxPool2d)
    assert m.maxpool.kernel_size in (3, (3, 3)) and m.maxpool.stride in (2, (2, 2))
    assert m.layer2[0].conv2.stride == (2, 2)
    assert m.layer2[0].conv1.stride == (1, 1)
    for i in (2, 3, 4):
        block = getattr(m, f"layer{i}")[0]
        assert block.conv1.stride == (1, 1) and block.conv3.stride == (1, 1)
        assert block.conv2.stride == (2, 2)
        assert block.downsample[0].stride == (2, 2)
        assert block.downsample[0].kernel_size == (1, 1)
    assert m.layer1[0].conv2.stride == (1, 1)
    assert m.layer1[0].downsample[0].stride == (1, 1)
    for i in range(1, 5):
        for j, block in enumerate(getattr(m, f"layer{i}")):
            if j > 0:
                assert block.downsample is None or len(list(block.downsample.parameters())) == 0
                assert block.conv2.stride == (1, 1)
            for conv in (block.conv1, block.conv2, block.conv3):
                assert conv.bias is None


def test_bn_init_zero_last_and_eps_momentum(full_model: nn.Module) -> None:
    sd = full_model.state_dict()
    bn3 = [k for k in sd if k.endswith("bn3.weight")]
    assert len(bn3) == 16
    for k in bn3:
        assert torch.count_nonzero(sd[k]) == 0, k
    bns = [(n, m) for n, m in full_model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53
    for name, m in bns:
        if not name.endswith("bn3"):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
        assert torch.count_nonzero(m.bias) == 0, name
        assert m.eps == 1e-5 and m.momentum == pytest.approx(0.1), name


def test_conv_init_is_kaiming_fan_out(full_model: nn.Module) -> None:
    # kaiming-normal, fan_out, relu: std = sqrt(2 / (out_channels * k * k))
    w = full_model.layer4[0].conv2.weight  # (512, 512, 3, 3): 2.4M samples
    expected = math.sqrt(2.0 / (512 * 9))
    assert float(w.detach().std()) == pytest.approx(expected, rel=0.01)
    assert abs(float(w.detach().mean())) < expected * 0.01


def test_stage_output_shapes_at_224(full_model: nn.Module) -> None:
    model = full_model.eval()
    try:
        with torch.no_grad():
            x = torch.randn(1, 3, 224, 224)
            stages = model.stages(x)
            logits = model(x)
    finally:
        model.train()
    assert [tuple(s.shape) for s in stages] == [(1, 256, 56, 56), (1, 512, 28, 28), (1, 1024, 14, 14),
                                                (1, 2048, 7, 7)]
    assert tuple(logits.shape) == (1, 1000)


# --- 4. width multiplier and image size ---------------------------------------------------------

def test_width_quarter_channels() -> None:
    spec = get_model(MODEL, width=0.25)
    assert spec.stem_width == 16 and spec.widths == (16, 32, 64, 128)
    assert spec.params is None
    model = build_model(spec)
    assert isinstance(model, ResNet)
    assert model.conv1.out_channels == 16
    assert model.fc.in_features == 512
    assert model.layer4[-1].conv3.out_channels == 512


@pytest.mark.parametrize("size", [32, 64])
def test_reduced_model_forward(size: int) -> None:
    case = small_case(image_size=size, batch_size=2)
    model = small_model(case)
    x, _ = batch(case)
    stages = model.stages(x)
    # stem /4, then /1, /2, /4, /8 more: total /4, /8, /16, /32
    expected = [(2, 64, size // 4, size // 4), (2, 128, size // 8, size // 8),
                (2, 256, size // 16, size // 16), (2, 512, size // 32, size // 32)]
    assert [tuple(s.shape) for s in stages] == expected
    out = model(x)
    assert tuple(out.shape) == (2, 10)
    assert torch.isfinite(out).all()


# --- 5. param_groups ---------------------------------------------------------------------------

def test_param_groups_decay_only_conv_and_linear_weights() -> None:
    model = build_model(get_model(MODEL, width=0.25, num_classes=10))
    groups = param_groups(model, 1e-4)
    decay_ids, no_decay_ids = set(), set()
    for g in groups:
        ids = {id(p) for p in g["params"]}
        (decay_ids if g["weight_decay"] > 0 else no_decay_ids).update(ids)
        if g["weight_decay"] > 0:
            assert g["weight_decay"] == pytest.approx(1e-4)
        else:
            assert g["weight_decay"] == 0
    named = dict(model.named_parameters())
    conv_linear_weights = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    for name, p in named.items():
        owner, _, leaf = name.rpartition(".")
        if leaf == "weight" and owner in conv_linear_weights:
            assert id(p) in decay_ids, name
            assert id(p) not in no_decay_ids, name
        else:
            assert p.ndim == 1, name
            assert id(p) in no_decay_ids, name
            assert id(p) not in decay_ids, name
    # 53 conv weights + fc.weight decayed; 53 BNs x (weight, bias) + fc.bias not decayed
    assert len(decay_ids) == 54
    assert len(no_decay_ids) == 107
    assert len(decay_ids) + len(no_decay_ids) == len(named) == 161
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_param_groups_skip_frozen_parameters() -> None:
    model = build_model(get_model(MODEL, width=0.25, num_classes=10))
    model.conv1.weight.requires_grad_(False)
    ids = {id(p) for g in param_groups(model, 1e-4) for p in g["params"]}
    assert id(model.conv1.weight) not in ids
    assert len(ids) == 160


# --- 6. train step ------------------------------------------------------------------------------

def reference_groups(model: nn.Module, wd: float) -> list[dict]:
    conv_linear = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        (decay if leaf == "weight" and owner in conv_linear else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def test_train_step_uses_label_smoothing() -> None:
    case = small_case(label_smoothing=0.1, lr=0.05)
    model = small_model(case)
    ref = copy.deepcopy(model)
    x, y = batch(case)
    step = make_train_step(case, model, CPU, total_steps=5, steps_per_epoch=5)
    loss = step((x, y))
    assert loss.ndim == 0 and not loss.requires_grad
    ref_logits = ref(x)
    smoothed = F.cross_entropy(ref_logits, y, label_smoothing=0.1)
    plain = F.cross_entropy(ref_logits, y)
    assert abs(float(smoothed.detach()) - float(plain.detach())) > 1e-3  # the test can tell them apart
    assert float(loss) == pytest.approx(float(smoothed), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
def test_train_step_matches_torch_sgd(nesterov: bool) -> None:
    lr, momentum, wd, ls = 0.05, 0.9, 1e-2, 0.1
    case = small_case(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd, label_smoothing=ls)
    model = small_model(case)
    ref = copy.deepcopy(model)
    other = copy.deepcopy(model)  # the same run with the other nesterov setting: must differ
    step = make_train_step(case, model, CPU, total_steps=10, steps_per_epoch=10)
    opt = torch.optim.SGD(reference_groups(ref, wd), lr=lr, momentum=momentum, nesterov=nesterov)
    opt_other = torch.optim.SGD(reference_groups(other, wd), lr=lr, momentum=momentum, nesterov=not nesterov)
    for i in range(3):
        xy = batch(case, seed=i)
        got = step(xy)
        for m, o in ((ref, opt), (other, opt_other)):
            o.zero_grad()
            loss = F.cross_entropy(m(xy[0]), xy[1], label_smoothing=ls)
            loss.backward()
            o.step()
            if m is ref:
                expected = float(loss)
        assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6), i
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
    for b, rb in zip(model.buffers(), ref.buffers()):  # BN running statistics follow the same batches
        torch.testing.assert_close(b, rb, rtol=1e-5, atol=1e-6)
    diff = max(float((p - q).abs().max()) for p, q in zip(model.parameters(), other.parameters()))
    assert diff > 1e-5


def test_train_step_weight_decay_reaches_conv_weights_only() -> None:
    # lr 1, no momentum, zero gradient on an unused parameter: the update is -lr * wd * w.
    case = small_case(lr=1.0, momentum=0.0, weight_decay=0.5)
    model = small_model(case)
    step = make_train_step(case, model, CPU, total_steps=2, steps_per_epoch=2)
    # fc gets a gradient, so use the first-step change of a BN bias (1-D, no decay) vs. what SGD gives
    ref = copy.deepcopy(model)
    xy = batch(case)
    step(xy)
    opt = torch.optim.SGD(reference_groups(ref, 0.5), lr=1.0, momentum=0.0)
    F.cross_entropy(ref(xy[0]), xy[1]).backward()
    opt.step()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


class LrRecorder:
    """Records every optimizer step's per-group learning rates (a global step pre-hook)."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.groups: list[list[dict]] = []

    def __enter__(self) -> "LrRecorder":
        def hook(opt, args, kwargs):
            self.lrs.append([g["lr"] for g in opt.param_groups])
            self.groups.append([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
        self.handle = register_optimizer_step_pre_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def test_train_step_lr_follows_schedule() -> None:
    case = small_case(lr=0.4, schedule="cosine", lr_warmup_epochs=1, lr_warmup_init=0.01, min_lr=0.001,
                      momentum=0.9, nesterov=True, weight_decay=1e-4)
    model = small_model(case)
    total, spe = 9, 3
    step = make_train_step(case, model, CPU, total_steps=total, steps_per_epoch=spe)
    xy = batch(case)
    with LrRecorder() as rec:
        for _ in range(total):
            step(xy)
    assert len(rec.lrs) == total
    for i, group_lrs in enumerate(rec.lrs):
        expected = lr_at(i, case.settings, total, spe)
        assert group_lrs == [pytest.approx(expected, rel=1e-12)] * len(group_lrs), i
    # the schedule's shape, from the formulas: warm-up start, peak at the end of warm-up, cosine after
    assert rec.lrs[0][0] == pytest.approx(0.01)
    assert rec.lrs[1][0] == pytest.approx(0.01 + (0.4 - 0.01) / 3)
    assert rec.lrs[3][0] == pytest.approx(0.4)
    assert rec.lrs[6][0] == pytest.approx(0.001 + (0.4 - 0.001) * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    # and the optimizer settings
    for groups in rec.groups:
        assert all(g["momentum"] == 0.9 and g["nesterov"] is True for g in groups)
        assert sorted(g["weight_decay"] for g in groups) == [0.0, pytest.approx(1e-4)]


def assert_trains(case: Case, steps: int = 2) -> list[float]:
    model = small_model(case)
    before = [p.detach().clone() for p in model.parameters()]
    step = make_train_step(case, model, CPU, total_steps=steps, steps_per_epoch=steps)
    losses = [step(batch(case, seed=i)) for i in range(steps)]
    values = [float(v) for v in losses]
    assert all(math.isfinite(v) for v in values), values
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return values if changed or case.settings.loss_scale == "dynamic" else pytest.fail("no update")


def test_fp16_static_loss_scale_trains_and_unscales() -> None:
    case = small_case(precision="fp16", loss_scale=64, lr=0.1, momentum=0.0, weight_decay=0.0)
    assert case.settings.loss_scale == 64.0
    assert_trains(case)
    # The update equals the unscaled one (x64 would show): compare with an fp32 SGD step.
    model = small_model(case)
    ref = copy.deepcopy(model)
    xy = batch(case)
    step = make_train_step(case, model, CPU, total_steps=1, steps_per_epoch=1)
    start = model.fc.weight.detach().clone()
    step(xy)
    got = model.fc.weight.detach() - start
    F.cross_entropy(ref(xy[0]), xy[1]).backward()
    want = -0.1 * ref.fc.weight.grad
    rel = float((got - want).norm() / want.norm())
    assert rel < 0.05, rel


@pytest.mark.parametrize("scale", [64.0, 64])
def test_fp16_static_loss_scale_does_not_use_dynamic_scaling(scale, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings(loss_scale=64) built directly (an int is a valid float per PEP 484) must still
    # mean a static scale, not dynamic GradScaler scaling.
    made = []

    class Recording(torch.amp.GradScaler):
        def __init__(self, *a, **kw):
            made.append(1)
            super().__init__(*a, **kw)

    monkeypatch.setattr(torch.amp, "GradScaler", Recording)
    # the dynamic setting does construct one, so the recorder can see it
    dyn = small_case(precision="fp16", loss_scale="dynamic")
    make_train_step(dyn, small_model(dyn), CPU, total_steps=1, steps_per_epoch=1)
    assert made == [1]
    made.clear()
    s = Settings(width=0.25, image_size=32, batch_size=4, num_classes=10, precision="fp16", loss_scale=scale)
    case = Case(name="t", model=MODEL, backend="torch", device="cpu", settings=s)
    make_train_step(case, small_model(case), CPU, total_steps=1, steps_per_epoch=1)
    assert made == [], f"loss_scale={scale!r} used dynamic scaling"


def test_fp16_dynamic_loss_scale_trains() -> None:
    assert_trains(small_case(precision="fp16", loss_scale="dynamic"), steps=3)


def test_fp16_without_loss_scale_trains() -> None:
    assert_trains(small_case(precision="fp16"), steps=2)


def test_bf16_autocast_trains() -> None:
    assert_trains(small_case(precision="bf16"))


def test_channels_last_trains() -> None:
    case = small_case(channels_last=True)
    model = small_model(case)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.layer1[0].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    stream = make_stream(case, "train", CPU)
    x, y = next(iter(stream))
    assert x.is_contiguous(memory_format=torch.channels_last)
    step = make_train_step(case, model, CPU, total_steps=2, steps_per_epoch=2)
    assert math.isfinite(float(step((x, y))))


def test_eager_mode_trains() -> None:
    assert_trains(small_case(mode="eager"))


# --- 6b. the train step's own state and its checkpoint -------------------------------------------

MULTIGRAIN = "multigrain_resnet50"


def resumable_case(model: str = MODEL, **kw) -> Case:
    base = dict(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule="cosine", lr_warmup_epochs=1,
                lr_warmup_init=0.01, label_smoothing=0.1, batch_size=6 if model == MULTIGRAIN else 4)
    base.update(kw)
    case = small_case(**base)
    return Case(name="r", model=model, backend="torch", device="cpu", settings=case.settings)


def fresh_step(case: Case, total: int = 6) -> TrainStep:
    model = plugin.harness_build_model(case=case, device=CPU)  # seeds: the same initial weights every time
    return plugin.harness_train_step(case=case, model=model, device=CPU, total_steps=total, steps_per_epoch=2)


def test_train_step_is_an_object_with_its_own_state() -> None:
    case = small_case(precision="fp16", loss_scale="dynamic")
    step = fresh_step(case)
    assert isinstance(step, TrainStep) and callable(step)
    assert isinstance(step.optimizer, torch.optim.SGD) and isinstance(step.scaler, torch.amp.GradScaler)
    assert step.count == 0
    step(batch(case))
    assert step.count == 1


@pytest.mark.parametrize("model,kw", [(MODEL, {}), (MODEL, {"precision": "fp16", "loss_scale": "dynamic"}),
                                      (MULTIGRAIN, {})], ids=["fp32", "fp16-dynamic", "multigrain"])
def test_train_step_save_and_load_go_on_exactly(tmp_path, model: str, kw: dict) -> None:
    # Three steps, save, three more; a fresh step of the same case loads the save and gives the same last three
    # losses and weights bit for bit: optimizer momentum, schedule position (cosine lr), loss scale,
    # Multigrain's beta and the RNG (Multigrain's sampling noise is drawn from it) all come back.
    case = resumable_case(model, **kw)
    batches = [batch(case, seed=i) for i in range(6)]
    a = fresh_step(case)
    for b in batches[:3]:
        a(b)
    if model == MULTIGRAIN:  # a beta the fresh step does not start from, so that its restore shows
        with torch.no_grad():
            a.criterion.beta.fill_(0.77)
    files = a.save(str(tmp_path))
    rng_at_save = torch.get_rng_state()
    assert files == os.listdir(tmp_path) and len(files) == 1
    saved_scale = a.scaler.get_scale() if a.scaler is not None else None
    tail_a = [float(a(b)) for b in batches[3:]]
    b_step = fresh_step(case)
    torch.manual_seed(12345)  # the RNG stands elsewhere, as in a new process
    assert b_step.load(str(tmp_path)) is None
    assert torch.equal(torch.get_rng_state(), rng_at_save)
    assert b_step.count == 3
    if model == MULTIGRAIN:
        assert float(b_step.criterion.beta) == pytest.approx(0.77)
    if saved_scale is not None:
        assert b_step.scaler.get_scale() == saved_scale
    tail_b = [float(b_step(b)) for b in batches[3:]]
    assert tail_b == tail_a
    for (name, p), q in zip(a.model.state_dict().items(), b_step.model.state_dict().values()):
        assert torch.equal(p, q), name
    if model == MULTIGRAIN:  # beta (a criterion parameter) is part of the state
        assert torch.equal(a.criterion.beta, b_step.criterion.beta)


def test_train_step_load_refuses_missing_foreign_and_mismatched_files(tmp_path) -> None:
    case = resumable_case()
    step = fresh_step(case)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match=r"train_state\.pt': no such file") as exc:
        step.load(str(empty))
    assert str(empty) in str(exc.value)
    # not a torch file
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "train_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match="train_state.pt.*not a PyTorch checkpoint"):
        step.load(str(junk))
    # a torch file, but a plain weights file rather than a training state
    plain = tmp_path / "plain"
    plain.mkdir()
    torch.save({"fc.weight": torch.zeros(2, 2)}, plain / "train_state.pt")
    with pytest.raises(HarnessError, match="train_state.pt': not a harness training state"):
        step.load(str(plain))
    # a pickled object is refused by weights_only loading
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"model": {}, "optimizer": {}, "criterion": {}, "count": 0, "rng": {"cpu": Place()}},
               pickled / "train_state.pt")
    with pytest.raises(HarnessError, match="weights_only=True"):
        step.load(str(pickled))
    # the state of another shape (7 classes) names the parameter
    other = tmp_path / "other"
    other.mkdir()
    fresh_step(resumable_case(num_classes=7)).save(str(other))
    with pytest.raises(HarnessError, match=r"train_state\.pt' for gluon_resnet50_v1b: parameter 'fc.weight' has shape"):
        step.load(str(other))
    # a dynamic-loss-scale case does not take the state of an fp32 one
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    step.save(str(fp32))
    with pytest.raises(HarnessError, match="train_state.pt' has no dynamic loss-scale state"):
        fresh_step(resumable_case(precision="fp16", loss_scale="dynamic")).load(str(fp32))
    assert step.count == 0


# --- 7. eval step -------------------------------------------------------------------------------

class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.lin = nn.Linear(1, 1)  # so that model.eval()/parameters behave like a real model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]].clone()


def test_eval_step_top1_top5_counts() -> None:
    # 8 classes; each row's ranking is its own permutation.
    logits = torch.tensor([
        [0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],   # rank: 1,7,6,5,4 | 3,2,0
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0],  # rank: 0,1,2,3,4 | 5,6,7
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
        [-3.0, 2.0, 1.0, 0.0, 8.0, 7.0, 6.0, 5.0],   # rank: 4,5,6,7,1 | 2,3,0
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0],
    ])
    labels = torch.tensor([
        1,  # top-1 hit
        4,  # 5th best: top-5 only
        5,  # 6th best: miss
        2,  # 3rd best: top-5 only
        0,  # worst: miss
        7,  # top-1 hit
    ])
    case = small_case(num_classes=8)
    model = FixedLogits(logits)
    model.train()
    step = make_eval_step(case, model, CPU)
    assert not model.training
    x = torch.zeros(6, 3, 32, 32)
    top1, top5, n = plugin.harness_to_host(value=step((x, labels)))
    assert (top1, top5, n) == (2.0, 4.0, 6.0)
    # a partial batch
    top1, top5, n = plugin.harness_to_host(value=step((x[:3], labels[:3])))
    assert (top1, top5, n) == (1.0, 2.0, 3.0)
    # the first three rows, then three pad rows (PAD_LABEL): the pads count nowhere, not even in `count`
    padded = torch.tensor([1, 4, 5, PAD_LABEL, PAD_LABEL, PAD_LABEL])
    top1, top5, n = plugin.harness_to_host(value=step((x, padded)))
    assert (top1, top5, n) == (1.0, 2.0, 3.0)
    # all pads: nothing counted
    assert plugin.harness_to_host(value=step((x, torch.full((6,), PAD_LABEL)))) == [0.0, 0.0, 0.0]


def test_eval_step_fewer_than_five_classes() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    labels = torch.tensor([0, 0, 2])
    step = make_eval_step(small_case(num_classes=3), FixedLogits(logits), CPU)
    top1, top5, n = plugin.harness_to_host(value=step((torch.zeros(3, 3, 8, 8), labels)))
    assert (top1, top5, n) == (1.0, 3.0, 3.0)


def test_eval_step_on_real_model_puts_it_in_eval_mode() -> None:
    case = small_case()
    model = small_model(case)
    step = plugin.harness_eval_step(case=case, model=model, device=CPU)
    assert not model.training
    x, y = batch(case)
    top1, top5, n = plugin.harness_to_host(value=step((x, y)))
    logits = model(x)
    ranks = logits.argsort(dim=1, descending=True)
    assert top1 == float((ranks[:, 0] == y).sum())
    assert top5 == float((ranks[:, :5] == y[:, None]).any(dim=1).sum())
    assert n == 4.0


class ConstantClass(nn.Module):
    """Ranks class ``c`` first for every image."""

    def __init__(self, classes: int, c: int) -> None:
        super().__init__()
        self.register_buffer("row", torch.roll(torch.arange(classes, 0, -1).float(), c))
        self.lin = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.row.expand(x.shape[0], -1).clone()


def test_eval_stream_is_full_batches_and_padding_is_not_counted(tmp_path) -> None:
    # 3 classes x 3 val images = 9, batch 4: 4 + 4 + (1 real + 3 pads). A model that always says class 2 gets
    # exactly the 3 class-2 images right; the pads (copies of the last image, a class-2 one) count nowhere.
    root = make_tiny_dataset(str(tmp_path / "tiny"), classes=3, train_per_class=2, val_per_class=3, size=32)
    case = small_case(data="folder", data_root=root, batch_size=4, image_size=32, workers=0, num_classes=3)
    stream = plugin.harness_data(case=case, split="eval", device=CPU)
    batches = list(stream)
    assert len(stream) == len(batches) == 3
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 32, 32)] * 3  # every batch full
    labels = torch.cat([y for _, y in batches]).tolist()
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2] + [PAD_LABEL] * 3
    step = plugin.harness_eval_step(case=case, model=ConstantClass(3, 2), device=CPU)
    totals = np.sum([check_counts("torch", plugin.harness_to_host(value=step(b))) for b in batches], axis=0)
    assert totals.tolist() == [3.0, 9.0, 9.0]  # top-1: the class-2 images; top-5 (k = 3 classes): all; count: 9


# --- 8. export ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def export_case_model() -> tuple[Case, nn.Module]:
    case = small_case(batch_size=2, num_classes=10)
    model = small_model(case)
    # make the BN statistics and the zero-init bn3 non-trivial, so the check means something
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                if name.endswith("bn3"):
                    m.weight.uniform_(0.1, 0.3)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    return case, model.eval()


def check_export(case: Case, model: nn.Module, fmt: str, ext: str, tol: float, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    result = plugin.harness_export(case=case, model=model, device=CPU, fmt=fmt, path="model", batch=None)
    assert result["format"] == fmt
    assert result["path"] == "model" + ext
    assert (tmp_path / result["path"]).is_file()
    assert result["bytes"] == os.path.getsize(tmp_path / result["path"]) > 0
    check = result["check"]
    assert isinstance(check["runtime"], str) and check["runtime"]
    assert 0.0 <= check["max_abs_diff"] < tol
    return result


def test_export_onnx(export_case_model, tmp_path, monkeypatch) -> None:
    ort = pytest.importorskip("onnxruntime")
    case, model = export_case_model
    result = check_export(case, model, "onnx", ".onnx", 1e-4, tmp_path, monkeypatch)
    # independent check: run the file ourselves on another batch size (dynamic batch axis)
    sess = ort.InferenceSession(str(tmp_path / result["path"]), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 10)
    assert np.max(np.abs(got - want)) < 1e-4


def test_export_torchscript(export_case_model, tmp_path, monkeypatch) -> None:
    case, model = export_case_model
    result = check_export(case, model, "torchscript", ".pt", 1e-5, tmp_path, monkeypatch)
    loaded = torch.jit.load(str(tmp_path / result["path"]))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-5)


def test_export_pt2(export_case_model, tmp_path, monkeypatch) -> None:
    case, model = export_case_model
    result = check_export(case, model, "pt2", ".pt2", 1e-5, tmp_path, monkeypatch)
    loaded = torch.export.load(str(tmp_path / result["path"])).module()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-5)


def test_export_unknown_format_names_supported(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    case = small_case()
    model = small_model(case)
    with pytest.raises(HarnessError) as exc:
        export_model(case, model, CPU, "tflite", "model")
    msg = str(exc.value)
    assert "tflite" in msg and "\n" not in msg
    for fmt in ("onnx", "torchscript", "pt2"):
        assert fmt in msg
    assert list(tmp_path.iterdir()) == []


# --- 9. data ------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels_last", [False, True])
def test_synthetic_stream(channels_last: bool) -> None:
    case = small_case(batch_size=3, image_size=40, steps=4, warmup=2, eval_batches=5, num_classes=7,
                      channels_last=channels_last)
    train = plugin.harness_data(case=case, split="train", device=CPU)
    assert len(train) == 2 + 4  # one epoch is the whole run: warm-up + timed steps
    batches = list(train)
    assert len(batches) == 6
    for x, y in batches:
        assert tuple(x.shape) == (3, 3, 40, 40) and x.dtype == torch.float32
        assert tuple(y.shape) == (3,) and y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < 7
        assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
        if channels_last:
            assert x.stride() == (40 * 40 * 3, 1, 40 * 3, 3)
    assert len(list(train)) == 6  # iterating again is another epoch
    ev = plugin.harness_data(case=case, split="eval", device=CPU)
    assert len(ev) == 5 and len(list(ev)) == 5
    # the very bytes of the core's synthetic arrays (which MindSpore sees too), a different batch per split
    for split, stream in (("train", train), ("eval", ev)):
        x, y = next(iter(stream))
        images, labels = synthetic_arrays(case.settings, split)
        assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    assert not torch.equal(next(iter(train))[0], next(iter(ev))[0])


def test_synthetic_stream_by_epochs_is_imagenet_sized() -> None:
    case = small_case(batch_size=256, epochs=1.0)
    assert len(make_stream(case, "train", CPU)) == 1_281_167 // 256


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "tiny"), classes=4, train_per_class=8,
                             val_per_class=4, size=32)


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_stream(tiny_root: str, workers: int) -> None:
    case = small_case(data="folder", data_root=tiny_root, batch_size=5, image_size=24, workers=workers,
                      num_classes=4)
    train = plugin.harness_data(case=case, split="train", device=CPU)
    # 32 train images in batches of 5: 6 full batches, the last 2 images dropped
    assert len(train) == 6
    batches = list(train)
    assert len(batches) == 6
    labels = []
    for x, y in batches:
        assert tuple(x.shape) == (5, 3, 24, 24) and x.dtype == torch.float32
        assert torch.isfinite(x).all()
        assert tuple(y.shape) == (5,)
        assert int(y.min()) >= 0 and int(y.max()) < 4
        labels += y.tolist()
    assert len(labels) == 30
    assert max(np.bincount(labels, minlength=4)) <= 8
    # val: 16 = 5 + 5 + 5 + 1 images in folder order (not shuffled), the last batch padded to 5 with copies of
    # the last image labelled PAD_LABEL (-1), so every eval batch is full
    ev = plugin.harness_data(case=case, split="eval", device=CPU)
    assert len(ev) == 4
    ev_batches = list(ev)
    assert [tuple(x.shape) for x, _ in ev_batches] == [(5, 3, 24, 24)] * 4
    assert all(x.dtype == torch.float32 for x, _ in ev_batches)
    assert torch.cat([y for _, y in ev_batches]).tolist() == [c for c in range(4) for _ in range(4)] + [-1] * 4
    last_x = ev_batches[-1][0]
    for i in (1, 2, 3, 4):
        assert torch.equal(last_x[i], last_x[0])  # the padding is the last image again


def test_folder_stream_channels_last(tiny_root: str) -> None:
    case = small_case(data="folder", data_root=tiny_root, batch_size=4, image_size=32, workers=0,
                      num_classes=4, channels_last=True)
    x, y = next(iter(make_stream(case, "eval", CPU)))
    assert tuple(x.shape) == (4, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_folder_stream_with_too_few_classes_fails(tiny_root: str) -> None:
    case = small_case(data="folder", data_root=tiny_root, workers=0, num_classes=3)
    with pytest.raises(HarnessError, match="num_classes"):
        make_stream(case, "train", CPU)


# --- 10. devices --------------------------------------------------------------------------------

def test_backend_info() -> None:
    info = plugin.harness_backend_info()
    assert info["name"] == "torch"
    assert info["framework"] == "PyTorch"
    assert info["framework_version"] == torch.__version__
    assert MODEL in info["models"]
    assert set(info["devices"]) == {"cpu", "gpu", "ascend"}


def test_backend_info_declares_what_it_supports() -> None:
    # The core refuses undeclared values when the suite loads (and checks amp_level against precision), so the
    # backend no longer refuses them itself: thor, MindSpore's modes, amp_level O3 are simply not declared.
    info = check_info("torch", plugin.harness_backend_info())
    assert info["supports"] == {"optimizer": ["sgd"], "precision": ["fp32", "bf16", "fp16"],
                                "amp_level": ["auto", "O0", "O1", "O2"], "mode": ["default", "eager", "compile"],
                                "export": ["onnx", "torchscript", "pt2"], "weights": [".pt", ".pth", ".bin"],
                                "checkpoint": True}
    # every runtime that loads an export loads a declared format
    assert {f for f in info["runtimes"].values() if f} <= set(info["supports"]["export"])


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_declared_weight_suffixes_are_read(tmp_path, suffix: str) -> None:
    weights = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.zeros(2, np.float32)}
    path = plugin.harness_write_checkpoint(weights=weights, path=str(tmp_path / f"w{suffix}"))
    got = plugin.harness_read_checkpoint(path=path)
    assert set(got) == set(weights) and all(np.array_equal(got[k], weights[k]) for k in weights)


def test_plugin_registers_against_the_hook_specs() -> None:
    # pluggy refuses a hookimpl without a spec: the train-state hooks are gone (the step saves itself)
    import pluggy

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    pm.check_pending()
    assert not hasattr(plugin, "harness_save_train_state") and not hasattr(plugin, "harness_load_train_state")


def test_probe_cpu() -> None:
    status = plugin.harness_probe_device(device="cpu")
    assert status["available"] is True and status["reason"] is None and status["count"] >= 1


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present")
def test_probe_gpu_unavailable() -> None:
    status = plugin.harness_probe_device(device="gpu")
    assert status["available"] is False
    assert status["reason"].startswith("no CUDA device")
    assert "\n" not in status["reason"]
    assert status["count"] == 0


@pytest.mark.skipif(importlib.util.find_spec("torch_npu") is not None, reason="torch_npu is installed")
def test_probe_ascend_unavailable() -> None:
    status = plugin.harness_probe_device(device="ascend")
    assert status["available"] is False
    assert "torch_npu not importable" in status["reason"]


def test_probe_unknown_device_does_not_raise() -> None:
    status = plugin.harness_probe_device(device="tpu")
    assert status["available"] is False and "tpu" in status["reason"]


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present")
def test_setup_gpu_raises_device_unavailable() -> None:
    case = Case(name="g", model=MODEL, backend="torch", device="gpu", settings=settings())
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        plugin.harness_setup(case=case)


@pytest.mark.skipif(importlib.util.find_spec("torch_npu") is not None, reason="torch_npu is installed")
def test_setup_ascend_raises_device_unavailable() -> None:
    case = Case(name="a", model=MODEL, backend="torch", device="ascend", settings=settings())
    with pytest.raises(DeviceUnavailable, match="torch_npu"):
        plugin.harness_setup(case=case)


def test_setup_cpu_seeds() -> None:
    case = small_case(seed=123)
    device = plugin.harness_setup(case=case)
    assert device == torch.device("cpu")
    a = torch.rand(3)
    plugin.harness_setup(case=case)
    assert torch.equal(a, torch.rand(3))
    assert plugin.harness_synchronize(device=device) is True
    assert plugin.harness_device_memory(device=device) is None


def test_setup_takes_the_world_from_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # harness.dist.place() alone says the world size: no WORLD_SIZE in the environment, yet a world of 2 joins
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK_ID", "RANK_SIZE", "DEVICE_ID"):
        monkeypatch.delenv(name, raising=False)
    joined = []
    monkeypatch.setattr(plugin, "place", lambda: Place(rank=1, world=2, local_device=1))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kw: joined.append(kw))
    assert plugin.harness_setup(case=small_case()) == CPU
    assert joined == [{"backend": "gloo", "device_id": None}]
    monkeypatch.setattr(plugin, "place", lambda: Place())
    joined.clear()
    plugin.harness_setup(case=small_case())
    assert joined == []


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_train_and_eval_step() -> None:
    case = small_case(device="gpu", precision="bf16", channels_last=True)
    device = plugin.harness_setup(case=case)
    assert device.type == "cuda"
    status = plugin.harness_probe_device(device="gpu")
    assert status["available"] and status["count"] >= 1
    model = plugin.harness_build_model(case=case, device=device)
    assert next(model.parameters()).device.type == "cuda"
    data = plugin.harness_data(case=case, split="train", device=device)
    x, y = next(iter(data))
    assert x.device.type == "cuda"
    step = plugin.harness_train_step(case=case, model=model, device=device, total_steps=2, steps_per_epoch=2)
    losses = [step((x, y)) for _ in range(2)]
    assert plugin.harness_synchronize(device=device) is True
    values = plugin.harness_to_host(value=losses)
    assert all(math.isfinite(v) for v in values)
    top1, top5, n = plugin.harness_to_host(value=plugin.harness_eval_step(case=case, model=model,
                                                                         device=device)((x, y)))
    assert 0 <= top1 <= top5 <= n == 4
    assert plugin.harness_device_memory(device=device) > 0


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_cuda_train_step_save_and_load(tmp_path) -> None:
    # fp16 with dynamic loss scaling on the GPU: the scale, the step count and the CUDA RNG state come back
    case = small_case(device="gpu", precision="fp16", loss_scale="dynamic")
    device = plugin.harness_setup(case=case)
    x, y = next(iter(plugin.harness_data(case=case, split="train", device=device)))
    a = plugin.harness_train_step(case=case, model=plugin.harness_build_model(case=case, device=device),
                                  device=device, total_steps=4, steps_per_epoch=2)
    for _ in range(2):
        a((x, y))
    a.save(str(tmp_path))
    cuda_rng, scale = torch.cuda.get_rng_state(device), a.scaler.get_scale()
    torch.cuda.manual_seed(999)
    b = plugin.harness_train_step(case=case, model=plugin.harness_build_model(case=case, device=device),
                                  device=device, total_steps=4, steps_per_epoch=2)
    b.load(str(tmp_path))
    assert b.count == 2 and b.scaler.get_scale() == scale
    assert torch.equal(torch.cuda.get_rng_state(device), cuda_rng)
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)
    assert math.isfinite(float(b((x, y))))


# --- 11. to_host --------------------------------------------------------------------------------

def test_to_host_list_of_scalars() -> None:
    out = plugin.harness_to_host(value=[torch.tensor(1.5), torch.tensor(2), torch.tensor(-3.25, dtype=torch.float16)])
    assert out == [1.5, 2.0, -3.25]
    assert all(type(v) is float for v in out)


def test_to_host_tuple_with_int() -> None:
    out = plugin.harness_to_host(value=(torch.tensor(3), torch.tensor(4.5), 7))
    assert list(out) == [3.0, 4.5, 7.0]
    assert all(type(v) is float for v in out)


def test_to_host_scalar() -> None:
    out = plugin.harness_to_host(value=torch.tensor(0.25))
    assert out == 0.25 and type(out) is float


def test_smoothing_off_value_conventions_give_the_written_out_loss() -> None:
    # logits all zero over K=10 classes: log p = -log 10 everywhere; loss = -(on + (K-1) * off) * (-log 10)
    from harness_torch.train import make_criterion

    logits, labels = torch.zeros(4, 10), torch.arange(4)
    for style, (on, off) in {"k-1": (0.9, 0.1 / 9), "k": (0.9, 0.01), "torch": (0.91, 0.01)}.items():
        crit = make_criterion(small_case(label_smoothing=0.1, label_smoothing_off=style), CPU)
        assert float(crit(logits, labels)) == pytest.approx((on + 9 * off) * math.log(10), rel=1e-6), style
