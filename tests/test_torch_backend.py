"""What the PyTorch backend (package ``harness_torch``, source in plugins/torch/) does its own way.

What every backend must do (building every model, weights and checkpoints, data streams, train and eval steps,
the loss, weight decay, the train step's save/load, exports) is checked once for all of them in
test_backend_contract.py. Here: the torch modules against the published architecture (timm ``resnet50.gluon_in1k``
/ torchvision ``resnet50``, shared/reference/models.md), the optimizer and schedule against ``torch.optim.SGD``,
mixed precision and loss scaling, channels-last, augmentation in DataLoader workers, the ONNX batch axis, devices,
process groups and the tensor types ``to_host`` takes.
Expected values come from those references and from formulas written out here, never from the code under test.
Apart from the full-size architecture checks, models are width 0.25 at 32 px.
"""
from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import expected_state_dict
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import harness_torch.plugin as plugin
from harness import Case, DeviceUnavailable, HarnessError, Settings
from harness.config import coerce_settings
from harness.data.tiny import make_tiny_dataset
from harness.dist import Place
from harness.models.schedules import lr_at
from harness.models.specs import get_model
from harness_torch.data import make_stream
from harness_torch.models import build_model
from harness_torch.train import TrainStep, make_eval_step, make_train_step, param_groups

MODEL = "gluon_resnet50_v1b"
CPU = torch.device("cpu")
HAS_CUDA = torch.cuda.is_available()


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


@pytest.fixture(scope="module")
def full_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(get_model(MODEL))


# --- 1. the torch modules against torchvision / timm ---------------------------------------------

def test_state_dict_loads_a_checkpoint_of_that_layout(full_model: nn.Module) -> None:
    # A timm / torchvision checkpoint (the expected keys and shapes, BatchNorm counters included) loads strictly.
    # (Neutral names and shapes of every backend: test_backend_contract.py.)
    ckpt = {k: torch.zeros(s, dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32)
            for k, s in expected_state_dict().items()}
    model = copy.deepcopy(full_model)
    result = model.load_state_dict(ckpt, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


# --- 2. named facts ---------------------------------------------------------------------------

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
                assert block.downsample is None  # an identity shortcut
                assert block.conv2.stride == (1, 1)
            for conv in (block.conv1, block.conv2, block.conv3):
                assert conv.bias is None


def test_batchnorm_eps_and_torch_momentum(full_model: nn.Module) -> None:
    # torch's momentum 0.1 (new = 0.9 * old + 0.1 * batch), the convention MindSpore writes as momentum 0.9
    # (test_mindspore_backend.py); the initial values of every backend: test_backend_contract.py.
    bns = [(n, m) for n, m in full_model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53
    for name, m in bns:
        assert m.eps == 1e-5 and m.momentum == pytest.approx(0.1), name


def test_built_model_is_in_training_mode() -> None:
    assert small_model(small_case()).training


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


# --- 3. param_groups ---------------------------------------------------------------------------

def test_param_groups_skip_frozen_parameters() -> None:
    # (Which parameters decay, every backend: test_backend_contract.py.)
    model = build_model(get_model(MODEL, width=0.25, num_classes=10))
    model.conv1.weight.requires_grad_(False)
    ids = {id(p) for g in param_groups(model, 1e-4) for p in g["params"]}
    assert id(model.conv1.weight) not in ids
    assert len(ids) == 160


# --- 4. train step ------------------------------------------------------------------------------

def reference_groups(model: nn.Module, wd: float) -> list[dict]:
    conv_linear = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        (decay if leaf == "weight" and owner in conv_linear else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


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
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    for b, rb in zip(model.buffers(), ref.buffers()):  # BN running statistics follow the same batches
        torch.testing.assert_close(b, rb, rtol=1e-5, atol=1e-6)
    diff = max(float((p - q).abs().max()) for p, q in zip(model.parameters(), other.parameters()))
    assert diff > 1e-5


class LrRecorder:
    """Records every optimizer step's per-group learning rates (a global step pre-hook)."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.groups: list[list[dict]] = []

    def __enter__(self) -> LrRecorder:
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
    """The autocast path itself, emulated where the CPU lacks native bf16 (a bf16 case is refused there when its
    model is built: tests/test_precision.py)."""
    case = small_case(precision="bf16")
    model = small_model(small_case())
    step = make_train_step(case, model, CPU, total_steps=2, steps_per_epoch=2)
    assert all(math.isfinite(float(step(batch(case, seed=i)))) for i in range(2))


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


# --- 4b. the train step's checkpoint with a loss scale ------------------------------------------

def resumable_case(**kw) -> Case:
    base = dict(lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule="cosine", lr_warmup_epochs=1,
                lr_warmup_init=0.01, label_smoothing=0.1)
    base.update(kw)
    return small_case(**base)


def fresh_step(case: Case, total: int = 6) -> TrainStep:
    model = plugin.harness_build_model(case=case, device=CPU)  # seeds: the same initial weights every time
    return plugin.harness_train_step(case=case, model=model, device=CPU, total_steps=total, steps_per_epoch=2)


def test_train_step_save_and_load_keep_the_dynamic_loss_scale_and_the_rng(tmp_path) -> None:
    # fp16 with GradScaler: the scale and its growth tracker, the step count and torch's RNG come back, and the
    # resumed run is bit for bit the uninterrupted one. (fp32 and Multigrain, every backend: test_backend_contract.)
    case = resumable_case(precision="fp16", loss_scale="dynamic")
    batches = [batch(case, seed=i) for i in range(6)]
    a = fresh_step(case)
    for b in batches[:3]:
        a(b)
    a.save(str(tmp_path))
    rng_at_save, saved_scale = torch.get_rng_state(), a.scaler.get_scale()
    tail_a = [float(a(b)) for b in batches[3:]]
    b_step = fresh_step(case)
    torch.manual_seed(12345)  # the RNG stands elsewhere, as in a new process
    b_step.load(str(tmp_path))
    assert torch.equal(torch.get_rng_state(), rng_at_save)
    assert b_step.count == 3 and b_step.scaler.get_scale() == saved_scale
    assert [float(b_step(b)) for b in batches[3:]] == tail_a


def test_train_step_load_refuses_pickles_and_another_loss_scaling(tmp_path) -> None:
    # What torch adds to the refusals of every backend (test_backend_contract.py): weights_only loading, and the
    # state of an fp32 case in a dynamic-loss-scale one.
    step = fresh_step(resumable_case())
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"model": {}, "optimizer": {}, "criterion": {}, "count": 0, "rng": {"cpu": Place()}},
               pickled / "train_state.pt")
    with pytest.raises(HarnessError, match="weights_only=True"):
        step.load(str(pickled))
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    step.save(str(fp32))
    with pytest.raises(HarnessError, match=r"train_state.pt' has no dynamic loss-scale state"):
        fresh_step(resumable_case(precision="fp16", loss_scale="dynamic")).load(str(fp32))
    assert step.count == 0


# --- 5. eval step -------------------------------------------------------------------------------

def test_eval_step_puts_the_module_in_inference_mode() -> None:
    # (What it counts, padding included, every backend: test_backend_contract.py.)
    case = small_case()
    model = small_model(case)
    assert model.training
    make_eval_step(case, model, CPU)
    assert not model.training


# --- 6. export ----------------------------------------------------------------------------------

def test_onnx_export_has_a_dynamic_batch_axis(tmp_path, monkeypatch) -> None:
    # torch exports ONNX with a symbolic batch axis: the file runs on another batch size than it was exported
    # with. (Every declared format of every backend, checked and loaded: test_backend_contract.py.)
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    case = small_case(batch_size=2)
    model = small_model(case).eval()
    result = plugin.harness_export(case=case, model=model, device=CPU, fmt="onnx", path="model", batch=None)
    sess = ort.InferenceSession(str(tmp_path / result["path"]), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert result["check"]["batch"] != 3 and got.shape == (3, 10)
    assert np.max(np.abs(got - want)) < 1e-4


# --- 7. data ------------------------------------------------------------------------------------

def test_synthetic_stream_channels_last() -> None:
    # (The stream itself, every backend: test_backend_contract.py.)
    case = small_case(batch_size=3, image_size=40, channels_last=True)
    for split in ("train", "eval"):
        x, _ = next(iter(plugin.harness_data(case=case, split=split, device=CPU)))
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert x.stride() == (40 * 40 * 3, 1, 40 * 3, 3)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "tiny"), classes=4, train_per_class=8,
                             val_per_class=4, size=32)


def test_augmented_batches_read_in_worker_processes_are_the_in_process_ones(tiny_root: str) -> None:
    # Each sample's augmentation is drawn from its place in the run (harness.data.orders.augment_rng), not from
    # the DataLoader worker that decodes it: persistent workers give the batches loading in this process gives,
    # epoch after epoch. (Without augmentation, every backend: test_backend_contract.py.)
    seen = {}
    for workers in (0, 2):
        case = small_case(data="folder", data_root=tiny_root, batch_size=5, image_size=24, workers=workers,
                          num_classes=4)
        stream = plugin.harness_data(case=case, split="train", device=CPU)
        seen[workers] = [(x.clone(), y.clone()) for _ in range(2) for x, y in stream]
    assert len(seen[2]) == len(seen[0]) == 2 * 6
    for (x0, y0), (x2, y2) in zip(seen[0], seen[2]):
        assert torch.equal(x2, x0) and torch.equal(y2, y0)
    assert not torch.equal(seen[0][0][0], seen[0][6][0])  # the next epoch is another shuffle


def test_folder_stream_channels_last(tiny_root: str) -> None:
    case = small_case(data="folder", data_root=tiny_root, batch_size=4, image_size=32, workers=0,
                      num_classes=4, channels_last=True)
    x, _y = next(iter(make_stream(case, "eval", CPU)))
    assert tuple(x.shape) == (4, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)


# --- 8. devices --------------------------------------------------------------------------------

HAS_NPU = importlib.util.find_spec("torch_npu") is not None


@pytest.mark.parametrize("device,why,present", [("gpu", "no CUDA device", HAS_CUDA),
                                                ("ascend", "torch_npu not importable", HAS_NPU)])
def test_an_absent_device_says_why(device: str, why: str, present: bool) -> None:
    # The reason in torch's words; that it is one line and that setup raises it: test_backend_contract.py.
    if present:
        pytest.skip(f"{device} may be present")
    assert why in plugin.harness_probe_device(device=device)["reason"]
    with pytest.raises(DeviceUnavailable, match=why):
        plugin.harness_setup(case=small_case(device=device))


def test_setup_cpu_seeds() -> None:
    case = small_case(seed=123)
    device = plugin.harness_setup(case=case)
    assert device == torch.device("cpu")
    a = torch.rand(3)
    plugin.harness_setup(case=case)
    assert torch.equal(a, torch.rand(3))
    assert plugin.harness_backend_info()["framework_version"] == torch.__version__


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


# --- 9. to_host --------------------------------------------------------------------------------

def test_to_host_takes_every_dtype_a_step_may_return() -> None:
    # Counts are integer tensors, an fp16 loss a half one, and a Python number may sit beside them. (A float for a
    # scalar and a list for a list or tuple, every backend: test_backend_contract.py.)
    values = [torch.tensor(1.5), torch.tensor(2), torch.tensor(-3.25, dtype=torch.float16)]
    for value in (values, tuple(values), (*values[1:], 7)):
        out = plugin.harness_to_host(value=value)
        assert type(out) is list and all(type(v) is float for v in out)
    assert plugin.harness_to_host(value=values) == [1.5, 2.0, -3.25]
    assert plugin.harness_to_host(value=(*values[1:], 7)) == [2.0, -3.25, 7.0]
    assert plugin.harness_to_host(value=torch.tensor(3, dtype=torch.int64)) == 3.0
