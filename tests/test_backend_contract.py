"""The backend contract, generated from the registries: every installed backend that trains (its declared
``scenarios`` include ``train``; see tests/backends.py) x every registered model (:data:`harness.models.specs.MODELS`).

Only hooks are called (``pm.hook.harness_*`` of :func:`harness.backends.loading.load_backend`), so a new backend package
is checked by installing it. What one framework does its own way (padding, BatchNorm momentum, the Nesterov kernel,
the oneDNN ISA cap, loss scaling, DDP, execution modes) stays in test_torch_backend.py and
test_mindspore_backend.py. Expected values come from the core (:mod:`harness.data.folders`,
:mod:`harness.models.specs`), the published layout (conftest.expected_state_dict) and the hook specs, never from the
backend under test.

Cheap by design: width 0.125, 32 px, 10 classes, batch 4 (6 for repeated augmentation), one process, one torch
thread, and the backend's op-by-op mode where it declares one (whole-graph compilation costs seconds per model);
the padded eval stream, which exists for static-shape graphs, runs in the default mode.
"""
from __future__ import annotations

import math
import os
import shutil
import stat

import numpy as np
import pytest
from backends import params_with, randomized, registry
from conftest import expected_state_dict, have

from harness import Case, DeviceUnavailable, HarnessError, Settings, Unsupported
from harness.backends.hook_checks import (
    check_counts,
    check_export,
    check_logits,
    check_probe,
    scenarios_of,
    supports_of,
)
from harness.config import DEVICES
from harness.data.folders import scan_folder
from harness.data.images import preprocess_for
from harness.data.splits import PAD_LABEL
from harness.data.synthetic import synthetic_arrays
from harness.data.tiny import make_tiny_dataset
from harness.models.schedules import lr_at
from harness.models.specs import MODELS
from harness.models.weights import OPTIONAL_SUFFIXES

TRAINERS = params_with("train")
MODEL_NAMES = sorted(MODELS)
PLAIN = "gluon_resnet50_v1b"  # the plain ResNet-50 that conftest.expected_state_dict writes out
REPEATED = next(m for m in MODEL_NAMES if MODELS[m].repeats > 1)  # one with repeated augmentation (Multigrain)
CLASSES = 10
#: Execution modes that run op by op, preferred where a backend declares one (no whole-graph compile per model).
OP_BY_OP = ("eager", "pynative")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(request):
    if have("torch"):
        request.getfixturevalue("one_torch_thread")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # compilers and exporters write into the working directory


# --- helpers ----------------------------------------------------------------------------------------------------

def hook(backend: str):
    return registry()[backend].hook


def info(backend: str) -> dict:
    hook(backend)
    return registry()[backend].info


def trainers_loaded() -> list[str]:
    return [b.name for b in registry().values() if b.info is not None and "train" in scenarios_of(b.info)]


def quick_mode(backend: str) -> str:
    return next((m for m in OP_BY_OP if m in supports_of(info(backend))["mode"]), "default")


def case(backend: str, model: str = PLAIN, mode: str | None = None, device: str = "cpu", **kw) -> Case:
    spec = MODELS[model]
    base = dict(width=0.125, image_size=32, num_classes=CLASSES, steps=2, warmup=1, workers=0,
                batch_size=4 if spec.repeats == 1 else 2 * spec.repeats, mode=mode or quick_mode(backend))
    base.update(kw)
    return Case(name="contract", model=model, backend=backend, device=device, settings=Settings(**base))


def build(c: Case):
    if c.model not in info(c.backend)["models"]:
        pytest.skip(f"backend '{c.backend}' does not declare model {c.model}")
    h = hook(c.backend)
    device = h.harness_setup(case=c)
    return h, device, h.harness_build_model(case=c, device=device)


def images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def required(weights: dict) -> dict[str, tuple[int, ...]]:
    """Neutral names and shapes every backend must give (entries one framework keeps alone left out)."""
    return {k: tuple(np.shape(v)) for k, v in weights.items() if not k.endswith(OPTIONAL_SUFFIXES)}


def perturbed(weights: dict, seed: int) -> dict[str, np.ndarray]:
    """Every float tensor changed: BatchNorm made non-trivial, the rest moved by noise."""
    rng = np.random.default_rng(seed + 100)
    out = randomized(weights, seed)
    for k, v in out.items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        if f"{k.rpartition('.')[0]}.running_mean" in out:  # BatchNorm gamma and beta: randomized already
            continue
        out[k] = (v + rng.normal(0.0, 0.02, v.shape)).astype(np.float32)
    return out


def topk_counts(logits: np.ndarray, labels: np.ndarray) -> list[float]:
    """(top-1 hits, top-k hits, real images) written out: k = min(5, classes), labels < 0 count nowhere."""
    real = labels >= 0
    order = np.argsort(-logits, axis=1)[:, :min(5, logits.shape[1])]
    hits = (order == labels[:, None]) & real[:, None]
    return [float(hits[:, 0].sum()), float(hits.any(axis=1).sum()), float(real.sum())]


def host(batch) -> tuple[np.ndarray, ...]:
    """A batch of a CPU stream as NumPy arrays (torch and MindSpore tensors both convert)."""
    return tuple(np.asarray(t) for t in batch)


#: Where a shipped backend does not meet the contract yet: (backend, test, model or None) -> (why, run). Each is
#: an xfail; a strict one that runs fails once the backend is fixed (delete the entry then); one that costs seconds
#: to fail is not run. Not a list of backends to test: those come from the registry.
KNOWN_GAPS = {
    ("mindspore", "test_train_step_save_and_load_go_on_exactly", REPEATED):
        (("MindSpore 2.10's ops.rand (Multigrain's sampling noise) does not follow mindspore.get_rng_state/"
          "set_rng_state, which TrainStep.save/load keep, so a resumed run draws other noise"), False),
}


def known_gap(request, backend: str, model: str | None = None) -> None:
    gap = KNOWN_GAPS.get((backend, request.function.__name__, model))
    if gap:
        reason, run = gap
        if not run:
            pytest.xfail(reason)
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def needs_two() -> None:
    if len(trainers_loaded()) < 2:
        pytest.skip("one training backend is installed: nothing to compare it with")


# --- the published layout (framework-free) ----------------------------------------------------------------------

def test_expected_layout_is_the_published_resnet50() -> None:
    # The independently written description: torchvision's 320 entries (53 BatchNorm counters among them) and the
    # published parameter count, with 1000 and 1001 classes.
    def trainable(shapes):
        return sum(math.prod(s) for k, s in shapes.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert len(expected_state_dict()) == 320 and len(expected_state_dict(counters=False)) == 320 - 53
    assert trainable(expected_state_dict()) == MODELS[PLAIN].params == 25_557_032
    assert trainable(expected_state_dict(1001)) == 25_557_032 + 2049


@pytest.mark.parametrize("backend", TRAINERS)
def test_full_size_layout_is_the_published_one(backend) -> None:
    # The published network (1001 classes): neutral names and shapes of torchvision / timm resnet50; a BatchNorm
    # counter, where a framework keeps one, is a scalar in its place.
    c = case(backend, width=1.0, num_classes=1001, image_size=224)
    h, _, net = build(c)
    w = h.harness_get_weights(case=c, model=net)
    assert required(w) == expected_state_dict(1001, counters=False)
    counters = {k: np.shape(v) for k, v in w.items() if k.endswith(OPTIONAL_SUFFIXES)}
    assert all(k in expected_state_dict(1001) and s == () for k, s in counters.items())


# --- what a backend declares --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", TRAINERS)
def test_info_names_the_entry_point_and_registered_models(backend) -> None:
    i = hook(backend).harness_backend_info()
    assert i["name"] == backend
    assert i["models"] and set(i["models"]) <= set(MODELS)
    sup = supports_of(i)
    if "export" in scenarios_of(i):  # every runtime that loads an export loads a format the backend writes
        assert {f for f in (i.get("runtimes") or {}).values() if f} <= set(sup["export"])
    # a fresh declaration each call: a caller's change does not stick
    i["models"].append("no_such_model")
    for v in (i.get("supports") or {}).values():
        if isinstance(v, list):
            v.append("no_such_value")
    again = hook(backend).harness_backend_info()
    assert "no_such_model" not in again["models"]
    assert not any("no_such_value" in v for v in (again.get("supports") or {}).values() if isinstance(v, list))


@pytest.mark.parametrize("backend", TRAINERS)
def test_devices_probe_and_setup(backend) -> None:
    h = hook(backend)
    declared = info(backend)["devices"]
    for device in [*declared, "tpu"]:  # "tpu": a device nobody knows is reported, not raised
        status = check_probe(backend, device, h.harness_probe_device(device=device))
        if device == "cpu":
            assert status["available"] is True and status["count"] >= 1
        if not status["available"]:
            assert status["reason"] and "\n" not in status["reason"] and status["count"] == 0, status
            if device in DEVICES:
                with pytest.raises(DeviceUnavailable) as exc:
                    h.harness_setup(case=case(backend, device=device))
                assert status["reason"] in str(exc.value)
    c = case(backend)
    dev = h.harness_setup(case=c)
    assert h.harness_synchronize(device=dev) is True
    assert h.harness_device_memory(device=dev) is None  # on the CPU the core measures the host's peak
    env: dict = {}
    for part in h.harness_environment(case=c, device=dev)[::-1]:  # as the worker merges: the core's first
        env.update(part)
    i = info(backend)
    assert (env["framework"], env["framework_version"]) == (i["framework"], i["framework_version"])
    assert env["device_model"] == h.harness_probe_device(device="cpu")["model"]
    assert env["backend_version"] == i["version"]


# --- every backend x every model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("backend", TRAINERS)
def test_model_builds_predicts_evaluates_and_round_trips_weights(backend, model) -> None:
    c = case(backend, model)
    h, dev, net = build(c)
    bs, spec = c.settings.batch_size, MODELS[model]
    x = images(bs)
    logits = check_logits(backend, "harness_predict", h.harness_predict(case=c, model=net, device=dev, images=x),
                          bs, CLASSES)
    assert np.isfinite(logits).all()
    np.testing.assert_array_equal(h.harness_predict(case=c, model=net, device=dev, images=x), logits)

    w = h.harness_get_weights(case=c, model=net)
    assert all(isinstance(v, np.ndarray) for v in w.values())
    w["fc.bias"][...] = 123.0  # a copy: changing it changes nothing in the model
    w = h.harness_get_weights(case=c, model=net)
    assert not np.any(w["fc.bias"] == 123.0)
    if model == PLAIN:
        assert required(w) == expected_state_dict(CLASSES, width=0.125, counters=False)

    # initialised as the spec says, from the seed
    bn = [k[: -len(".running_mean")] for k in w if k.endswith(".running_mean")]
    for p in bn:
        assert np.all(w[f"{p}.running_mean"] == 0) and np.all(w[f"{p}.running_var"] == 1), p
        assert np.all(w[f"{p}.bias"] == 0), p
        last = p.endswith(".bn3") and spec.zero_init_last_bn
        assert np.all(w[f"{p}.weight"] == (0 if last else 1)), p
    assert sum(p.endswith(".bn3") for p in bn) == sum(spec.layers)
    conv = w["layer4.0.conv3.weight"]  # 1x1, 4x more outputs than inputs: fan_in and fan_out differ
    cout, cin, kh, kw = conv.shape
    if spec.init == "fan_out":  # kaiming normal, fan_out, relu
        assert float(conv.std()) == pytest.approx(math.sqrt(2.0 / (cout * kh * kw)), rel=0.05)
    else:  # HeUniform (fan_in), dense Normal(0, 0.01), biases 0
        bound = math.sqrt(6.0 / (cin * kh * kw))
        assert float(np.abs(conv).max()) <= bound * (1 + 1e-6)
        assert float(conv.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert float(w["fc.weight"].std()) == pytest.approx(0.01, rel=0.1) and np.all(w["fc.bias"] == 0)
    _, _, twin = build(c)
    again = h.harness_get_weights(case=c, model=twin)
    assert all(np.array_equal(again[k], w[k]) for k in w), "the same seed gives the same weights"

    new = perturbed(w, seed=1)
    assert h.harness_set_weights(case=c, model=net, weights=new) is True
    back = h.harness_get_weights(case=c, model=net)
    assert set(back) == set(w)
    for k in back:
        np.testing.assert_array_equal(back[k], new[k], err_msg=k)
    moved = h.harness_predict(case=c, model=net, device=dev, images=x)
    assert np.isfinite(moved).all() and float(np.abs(moved - logits).max()) > 1e-3

    # the eval step counts what predict ranks, on the core's synthetic eval batch
    x, y = synthetic_arrays(c.settings, "eval")
    step = h.harness_eval_step(case=c, model=net, device=dev)
    got = check_counts(backend, h.harness_to_host(value=step(next(iter(h.harness_data(case=c, split="eval",
                                                                                        device=dev))))))
    assert got == topk_counts(h.harness_predict(case=c, model=net, device=dev, images=x), y)
    assert got[2] == bs


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_neutral_names_and_shapes_agree_across_backends(model) -> None:
    needs_two()
    layouts = {}
    for backend in trainers_loaded():
        c = case(backend, model)
        h, _, net = build(c)
        layouts[backend] = required(h.harness_get_weights(case=c, model=net))
    first, *others = layouts
    for other in others:
        assert layouts[other] == layouts[first], (first, other)


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("backend", TRAINERS)
def test_train_step_updates_the_weights(backend, model) -> None:
    c = case(backend, model)
    h, dev, net = build(c)
    step = h.harness_train_step(case=c, model=net, device=dev, total_steps=2, steps_per_epoch=2)
    batch = next(iter(h.harness_data(case=c, split="train", device=dev)))
    before = h.harness_get_weights(case=c, model=net)
    loss = step(batch)
    value = h.harness_to_host(value=loss)  # a float; a list of floats for a list or a tuple
    assert type(value) is float and math.isfinite(value)
    assert h.harness_to_host(value=[loss]) == [value] and h.harness_to_host(value=(loss, loss)) == [value, value]
    after = h.harness_get_weights(case=c, model=net)
    assert all(np.isfinite(v).all() for v in after.values())
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert "fc.weight" in changed and "conv1.weight" in changed


def smoothed_cross_entropy(logits: np.ndarray, labels: np.ndarray, eps: float, off: str) -> float:
    """The mean cross-entropy against smoothed targets, written out from the ``label_smoothing_off`` options
    (harness.config): torch: 1 - eps + eps/K and eps/K; k-1: 1 - eps and eps/(K-1); k: 1 - eps and eps/K."""
    k = logits.shape[1]
    on, other = {"torch": (1 - eps + eps / k, eps / k), "k-1": (1 - eps, eps / (k - 1)), "k": (1 - eps, eps / k)}[off]
    target = np.full(logits.shape, other)
    target[np.arange(len(labels)), labels] = on
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-(target * logp).sum(axis=1).mean())


@pytest.mark.parametrize("eps,off", [(0.0, "torch"), (0.1, "torch"), (0.1, "k-1"), (0.3, "k")])
@pytest.mark.parametrize("backend", TRAINERS)
def test_train_loss_is_the_smoothed_cross_entropy(backend, eps, off) -> None:
    # With fc.weight zero every image's logits are fc.bias, whatever the layers below compute: the loss the first
    # step returns (computed before it updates anything) is then the written-out cross-entropy of those logits.
    c = case(backend, label_smoothing=eps, label_smoothing_off=off)
    h, dev, net = build(c)
    w = h.harness_get_weights(case=c, model=net)
    bias = np.random.default_rng(6).normal(0.0, 1.5, CLASSES).astype(np.float32)
    w["fc.weight"], w["fc.bias"] = np.zeros_like(w["fc.weight"]), bias
    assert h.harness_set_weights(case=c, model=net, weights=w) is True
    labels = np.array([0, 3, 3, 9], np.int64)
    want = smoothed_cross_entropy(np.tile(bias, (4, 1)).astype(np.float64), labels, eps, off)
    if eps:  # the comparison tells smoothing from none
        assert abs(want - smoothed_cross_entropy(np.tile(bias, (4, 1)).astype(np.float64), labels, 0.0, off)) > 1e-2
    step = h.harness_train_step(case=c, model=net, device=dev, total_steps=2, steps_per_epoch=2)
    loss = h.harness_to_host(value=step(h.harness_to_device(arrays=(images(4), labels), device=dev)))
    assert loss == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("decay_on", ["weights", "all"])
@pytest.mark.parametrize("backend", TRAINERS)
def test_weight_decay_moves_exactly_the_parameters_it_names(backend, decay_on) -> None:
    # One SGD step without momentum from the same weights on the same batch, with and without decay: the two
    # results differ by -lr * weight_decay * w on each decayed parameter and not at all elsewhere. weight_decay_on
    # "weights" decays convolution and dense weights only (never a bias or a BatchNorm parameter); "all" every one.
    x, y = images(4, seed=4), np.arange(4) % CLASSES
    decay = 25.0  # with a small rate: a large difference, next to which the gradient's rounding does not show
    after = {}
    for wd in (0.0, decay):
        c = case(backend, lr=0.002, momentum=0.0, weight_decay=wd, weight_decay_on=decay_on)
        h, dev, net = build(c)
        start = perturbed(h.harness_get_weights(case=c, model=net), seed=2)  # no parameter at 0
        h.harness_set_weights(case=c, model=net, weights=start)
        step = h.harness_train_step(case=c, model=net, device=dev, total_steps=2, steps_per_epoch=2)
        step(h.harness_to_device(arrays=(x, y), device=dev))
        after[wd] = h.harness_get_weights(case=c, model=net)
    shrink = lr_at(0, c.settings, 2, 2) * decay
    bn = {k.rpartition(".")[0] for k in start if k.endswith(".running_mean")}
    decayed = []
    for k, w0 in start.items():
        if k.endswith(OPTIONAL_SUFFIXES):
            continue
        is_param = not k.endswith((".running_mean", ".running_var"))
        if is_param and (decay_on == "all" or (k.endswith(".weight") and k.rpartition(".")[0] not in bn)):
            decayed.append(k)
            want = -shrink * w0
        else:
            want = np.zeros_like(w0)
        np.testing.assert_allclose(after[decay][k] - after[0.0][k], want, rtol=1e-3, atol=1e-6, err_msg=k)
    assert "conv1.weight" in decayed and "fc.weight" in decayed
    assert ("bn1.weight" in decayed) == ("fc.bias" in decayed) == (decay_on == "all")


# --- every backend: data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", TRAINERS)
def test_synthetic_streams_are_the_cores_arrays(backend) -> None:
    c = case(backend, batch_size=3, steps=4, warmup=2, eval_batches=5, num_classes=7)
    h = hook(backend)
    dev = h.harness_setup(case=c)
    first = {}
    for split, n in (("train", 2 + 4), ("eval", 5)):  # train: one epoch is the whole run, warm-up included
        stream = h.harness_data(case=c, split=split, device=dev)
        assert len(stream) == n
        for _ in range(2):  # iterating again is another epoch
            batches = list(stream)
            assert len(batches) == n
        x, y = host(batches[0])[:2]
        want_x, want_y = synthetic_arrays(c.settings, split)
        assert x.dtype == np.float32 and x.tobytes() == want_x.tobytes()
        np.testing.assert_array_equal(y, want_y)
        assert int(y.min()) >= 0 and int(y.max()) < 7
        first[split] = x
    assert not np.array_equal(first["train"], first["eval"])  # a batch of its own per split
    default = case(backend, batch_size=3, steps=4, warmup=2)
    assert len(h.harness_data(case=default, split="eval", device=dev)) == 10  # eval_batches unset: 10
    by_epochs = case(backend, batch_size=256, epochs=1.0)
    assert len(h.harness_data(case=by_epochs, split="train", device=dev)) == 1_281_167 // 256  # ImageNet-sized
    rep = case(backend, REPEATED)  # repeated augmentation: whole instances, as the core arranges them
    x, y = host(next(iter(h.harness_data(case=rep, split="train", device=dev))))[:2]
    want_x, want_y = synthetic_arrays(rep.settings, "train", MODELS[REPEATED].repeats)
    assert x.tobytes() == want_x.tobytes() and np.array_equal(y, want_y)


@pytest.mark.parametrize("model,split", [(PLAIN, "train"), (PLAIN, "eval"), (REPEATED, "train")])
def test_synthetic_batches_are_the_same_bytes_in_every_backend(model, split) -> None:
    needs_two()
    seen = {}
    for backend in trainers_loaded():
        c = case(backend, model, seed=7)
        h = hook(backend)
        x, y = host(next(iter(h.harness_data(case=c, split=split, device=h.harness_setup(case=c)))))[:2]
        seen[backend] = (x.dtype, x.shape, x.tobytes(), y.astype(np.int64).tolist())
    first, *others = seen
    for other in others:
        assert seen[other] == seen[first], (first, other)


CLASS_NAMES = ("b", "B", "a10", "a9")  # sorted: B, a10, a9, b (neither natural nor case-insensitive order)


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> str:
    root = make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "tiny"), classes=4, train_per_class=8,
                             val_per_class=3, size=32)
    for split in ("train", "val"):
        for i, name in enumerate(CLASS_NAMES):
            os.rename(os.path.join(root, split, f"class_{i:02d}"), os.path.join(root, split, name))
    return root


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_eval_stream_is_padded_and_counts_only_real_images(backend, folder_root) -> None:
    # 12 val images, batch 5: two whole batches and one of 2 images padded with 3 copies of the last, labelled
    # PAD_LABEL, in the default mode (a static-shape graph where the backend compiles one).
    c = case(backend, mode="default", data="folder", data_root=folder_root, batch_size=5)
    h, dev, net = build(c)
    h.harness_set_weights(case=c, model=net, weights=perturbed(h.harness_get_weights(case=c, model=net), seed=3))
    classes, samples = scan_folder(folder_root, "val")
    assert classes == ["B", "a10", "a9", "b"] and len(samples) == 12
    stream = h.harness_data(case=c, split="eval", device=dev)
    batches = list(stream)
    assert len(stream) == len(batches) == 3
    arrays = [host(b)[:2] for b in batches]
    assert [x.shape for x, _ in arrays] == [(5, 3, 32, 32)] * 3  # never a short batch
    labels = np.concatenate([y for _, y in arrays])
    assert labels.tolist() == [label for _, label in samples] + [PAD_LABEL] * 3
    # in scan_folder's order, preprocessed for evaluation (decoders differ slightly), the padding the last again
    got = np.concatenate([x for x, _ in arrays])
    pre = preprocess_for(c.settings, False, MODELS[PLAIN].mean, MODELS[PLAIN].std)
    refs = np.stack([pre.load(path, None) for path, _ in samples])
    nearest = ((got[:12, None] - refs[None]) ** 2).mean(axis=(2, 3, 4)).argmin(axis=1)
    assert nearest.tolist() == list(range(12)) and float(np.abs(got[:12] - refs).mean()) < 0.1
    for pad in got[12:]:
        np.testing.assert_array_equal(pad, got[11])
    assert len(list(stream)) == 3  # a second pass is a whole epoch again

    step = h.harness_eval_step(case=c, model=net, device=dev)
    counts = [check_counts(backend, h.harness_to_host(value=step(b))) for b in batches]
    assert [n for *_, n in counts] == [5, 5, 2]
    want = topk_counts(h.harness_predict(case=c, model=net, device=dev, images=got[:12]), labels[:12])
    assert np.sum(counts, axis=0).tolist() == want
    assert 0 < want[1] < 12  # a meaningful check: some hits, some misses
    pads = h.harness_to_device(arrays=(got[:5], np.full(5, PAD_LABEL, np.int64)), device=dev)
    assert h.harness_to_host(value=step(pads)) == [0.0, 0.0, 0.0]  # a batch of padding alone counts nothing


@pytest.mark.parametrize("backend", TRAINERS)
def test_eval_with_fewer_classes_than_five(backend) -> None:
    c = case(backend, num_classes=3)
    h, dev, net = build(c)
    x, y = synthetic_arrays(c.settings, "eval")
    step = h.harness_eval_step(case=c, model=net, device=dev)
    got = check_counts(backend, h.harness_to_host(value=step(h.harness_to_device(arrays=(x, y), device=dev))))
    want = topk_counts(h.harness_predict(case=c, model=net, device=dev, images=x), y)
    assert got == want and want[1] == want[2] == 4  # top-5 of 3 classes: every image


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_train_stream_drops_the_remainder_every_epoch(backend, folder_root) -> None:
    c = case(backend, data="folder", data_root=folder_root, batch_size=5, num_classes=4)
    h = hook(backend)
    stream = h.harness_data(case=c, split="train", device=h.harness_setup(case=c))
    assert len(stream) == 6  # 32 images // 5
    for _ in range(2):
        arrays = [host(b)[:2] for b in stream]
        assert len(arrays) == 6
        assert all(x.shape == (5, 3, 32, 32) and x.dtype == np.float32 and np.isfinite(x).all() for x, _ in arrays)
        labels = np.concatenate([y for _, y in arrays])
        assert len(labels) == 30 and set(labels.tolist()) <= {0, 1, 2, 3}
        assert np.bincount(labels, minlength=4).max() <= 8  # each image at most once per epoch


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_data_refusals_name_the_problem(backend, folder_root, tmp_path) -> None:
    # (more classes than num_classes is refused when the suite loads: tests/test_suite.py)
    h = hook(backend)
    dev = h.harness_setup(case=case(backend, data="folder", data_root=folder_root))
    missing = case(backend, data="folder", data_root=str(tmp_path / "no_such_imagenet"))
    for split in ("train", "eval"):
        with pytest.raises(HarnessError, match="no_such_imagenet"):
            h.harness_data(case=missing, split=split, device=dev)


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_streams_read_in_worker_processes_give_the_in_process_batches(backend, folder_root) -> None:
    # workers: 2 decodes in other processes; without augmentation the batches, train and eval, are those that
    # loading in this process gives, in the same order.
    seen = {}
    for workers in (0, 2):
        c = case(backend, data="folder", data_root=folder_root, batch_size=5, num_classes=4, augment=False,
                 workers=workers)
        h = hook(backend)
        dev = h.harness_setup(case=c)
        seen[workers] = [host(b)[:2] for split in ("train", "eval")
                         for b in h.harness_data(case=c, split=split, device=dev)]
    assert len(seen[2]) == len(seen[0]) == 6 + 3
    for (x0, y0), (x2, y2) in zip(seen[0], seen[2]):
        np.testing.assert_array_equal(x2, x0)
        np.testing.assert_array_equal(y2, y0)


@pytest.fixture(scope="module")
def damaged_root(tmp_path_factory) -> str:
    """A tiny folder set (4 classes x 8 train and 3 val images) in which train files 3 and 17 (of classes 0 and
    2) and val file 4 (of class 1) are not images."""
    root = make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "damaged"), classes=4, train_per_class=8,
                             val_per_class=3, size=32)
    for split, spoiled in (("train", (3, 17)), ("val", (4,))):
        samples = scan_folder(root, split)[1]
        for i in spoiled:
            with open(samples[i][0], "wb") as f:
                f.write(b"not an image")
    return root


def damaged_epochs(backend: str, root: str, epochs: int = 2, start: tuple[int, int] | None = None,
                   split: str = "train"):
    """The ``split`` stream of ``root`` without augmentation (batches of 5) over ``epochs`` passes, as host arrays:
    ``(images, labels)``, from ``start`` = (epoch, batch) where given."""
    c = case(backend, data="folder", data_root=root, batch_size=5, num_classes=4, augment=False, max_bad_images=2)
    h = hook(backend)
    stream = h.harness_data(case=c, split=split, device=h.harness_setup(case=c))
    if start is not None:
        stream.start_at(*start)
    batches = [host(b)[:2] for _ in range(epochs) for b in stream]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_streams_leave_out_unreadable_images(backend, damaged_root) -> None:
    # train: 30 readable images of 32, 6 batches of 5 an epoch, each readable image once, in a new order each epoch
    x, y = damaged_epochs(backend, damaged_root)
    assert len(x) == len(y) == 2 * 30
    first, second = ([a.tobytes() for a in x[e * 30:(e + 1) * 30]] for e in (0, 1))
    assert len(set(first)) == 30 and set(first) == set(second) and first != second
    assert np.bincount(y[:30], minlength=4).tolist() == [7, 8, 7, 8]
    # eval: 11 readable images of 12 in order, then padding to whole batches
    _, y = damaged_epochs(backend, damaged_root, epochs=1, split="eval")
    assert y.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3] + [PAD_LABEL] * 4


@pytest.mark.parametrize("backend", TRAINERS)
def test_folder_train_stream_started_mid_epoch_goes_on_as_the_uninterrupted_one(backend, damaged_root) -> None:
    # What a resumed run relies on (the core calls start_at after loading a train-step checkpoint)
    needs_checkpoint(backend)
    x, y = damaged_epochs(backend, damaged_root)
    tail_x, tail_y = damaged_epochs(backend, damaged_root, start=(0, 4))  # the rest of epoch 0, then all of epoch 1
    np.testing.assert_array_equal(tail_x, x[20:])
    np.testing.assert_array_equal(tail_y, y[20:])


def test_folder_train_batches_are_the_same_pictures_in_every_backend(damaged_root) -> None:
    # harness.data.orders.epoch_order over the same readable files: the same images in the same order (decoders
    # differ slightly), the same labels
    needs_two()
    seen = {backend: damaged_epochs(backend, damaged_root) for backend in trainers_loaded()}
    (first, (x0, y0)), *others = seen.items()
    for other, (x, y) in others:
        np.testing.assert_array_equal(y, y0, err_msg=f"{first} {other}")
        np.testing.assert_allclose(x, x0, atol=0.05, err_msg=f"{first} {other}")


# --- every backend: weights files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", TRAINERS)
def test_weights_files_round_trip_in_every_declared_suffix(backend, tmp_path) -> None:
    # supports["weights"] names what harness_read_checkpoint reads; every entry comes back exactly, including a
    # counter one framework keeps and the other has no place for.
    c = case(backend)
    h, _, net = build(c)
    weights = perturbed(h.harness_get_weights(case=c, model=net), seed=5)
    weights["bn1.num_batches_tracked"] = np.array(17, dtype=np.int64)
    suffixes = supports_of(info(backend))["weights"]
    for suffix in suffixes or [""]:
        written = h.harness_write_checkpoint(weights=weights, path=str(tmp_path / f"w{suffix}"))
        assert os.path.isfile(written) and os.stat(written).st_mode & stat.S_IWUSR
        if suffixes:
            assert os.path.splitext(written)[1] in suffixes
        back = h.harness_read_checkpoint(path=written)
        assert set(back) == set(weights)
        for k, v in weights.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            np.testing.assert_array_equal(back[k], v, err_msg=k)
        _, _, fresh = build(c)
        assert h.harness_set_weights(case=c, model=fresh, weights=back) is True
        loaded = h.harness_get_weights(case=c, model=fresh)
        assert all(np.array_equal(loaded[k], weights[k]) for k in required(loaded))


@pytest.mark.parametrize("backend", TRAINERS)
def test_reading_what_is_not_a_checkpoint_names_the_file(backend, tmp_path) -> None:
    h = hook(backend)
    suffix = next(iter(supports_of(info(backend))["weights"]), "")
    with pytest.raises(HarnessError, match=f"nope{suffix}"):
        h.harness_read_checkpoint(path=str(tmp_path / f"nope{suffix}"))
    for name, content in (("junk", b"hello, not a checkpoint"), ("empty", b"")):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with pytest.raises(HarnessError, match=str(path.name)):
            h.harness_read_checkpoint(path=str(path))
    weights = {"fc.bias": np.ones(3, np.float32)}
    for other in trainers_loaded():  # another framework's checkpoint under this one's suffix
        if other == backend:
            continue
        theirs = hook(other).harness_write_checkpoint(weights=weights, path=str(tmp_path / f"by_{other}"))
        path = tmp_path / f"from_{other}{suffix}"
        shutil.copy(theirs, path)
        with pytest.raises(HarnessError, match=path.name):
            h.harness_read_checkpoint(path=str(path))


@pytest.mark.parametrize("backend", TRAINERS)
def test_set_weights_is_strict_and_names_the_parameter(backend) -> None:
    c = case(backend)
    h, _, net = build(c)
    fresh = h.harness_get_weights(case=c, model=net)
    for change, name in ((lambda w: w.__setitem__("layer3.1.conv2.weight", np.zeros((1, 2, 3, 3), np.float32)),
                          "layer3.1.conv2.weight"),
                         (lambda w: w.pop("layer2.0.bn1.running_var"), "layer2.0.bn1.running_var"),
                         (lambda w: w.__setitem__("head.extra", np.zeros(3, np.float32)), "head.extra")):
        w = {k: v.copy() for k, v in fresh.items()}
        change(w)
        with pytest.raises(HarnessError, match=name.replace(".", r"\.")):
            h.harness_set_weights(case=c, model=net, weights=w)


# --- every backend: the train step's own checkpoint ---------------------------------------------------------------

def resumable(backend: str, model: str = PLAIN, **kw) -> Case:
    base = dict(lr=0.2, momentum=0.9, weight_decay=1e-3, schedule="cosine", lr_warmup_epochs=1,
                lr_warmup_init=0.01, label_smoothing=0.1)
    base.update(kw)
    return case(backend, model, **base)


def needs_checkpoint(backend: str) -> None:
    if not supports_of(info(backend))["checkpoint"]:
        pytest.skip(f"backend '{backend}' declares no train-step checkpoint")


def fresh_step(c: Case, total: int = 4):
    h, dev, net = build(c)  # seeded: the same initial weights every time
    step = h.harness_train_step(case=c, model=net, device=dev, total_steps=total, steps_per_epoch=2)
    assert callable(step.save) and callable(step.load)
    return h, dev, net, step


@pytest.mark.parametrize("model", [PLAIN, REPEATED])
@pytest.mark.parametrize("backend", TRAINERS)
def test_train_step_save_and_load_go_on_exactly(backend, model, tmp_path, request) -> None:
    # Two steps, save, two more; a fresh step of the same case loads the save (the framework's RNG moved
    # elsewhere first, as in a new process) and gives the same last two losses and weights: momentum, the
    # schedule position (cosine: warm-up over the first epoch of 2 steps), the loss's own parameters and the RNG
    # (Multigrain's sampling noise) come back.
    needs_checkpoint(backend)
    known_gap(request, backend, model)
    c = resumable(backend, model)
    elsewhere = resumable(backend, model, seed=12345)
    h, dev, net, a = fresh_step(c)
    bs, repeats = c.settings.batch_size, MODELS[model].repeats
    rng = np.random.default_rng(7)
    batches = [h.harness_to_device(arrays=(images(bs, seed=i), np.repeat(rng.integers(0, CLASSES, bs // repeats),
                                                                        repeats)), device=dev) for i in range(4)]
    for b in batches[:2]:
        a(b)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    files = a.save(str(folder))
    assert files and sorted(files) == sorted(os.listdir(folder))
    assert all(os.stat(folder / f).st_mode & stat.S_IWUSR for f in files)
    tail_a = h.harness_to_host(value=[a(b) for b in batches[2:]])
    weights_a = h.harness_get_weights(case=c, model=net)

    _, _, net_b, b_step = fresh_step(c)
    h.harness_setup(case=elsewhere)  # the RNG stands elsewhere
    assert b_step.load(str(folder)) is None
    tail_b = h.harness_to_host(value=[b_step(b) for b in batches[2:]])
    # Within float32 rounding here: in one process that other tests have used, MindSpore's CPU kernels can sum in
    # another order in the newly compiled graph (a few ulp, seen under pytest-xdist). Bit-for-bit equality across
    # a real kill and resume, in fresh processes, is tests/test_checkpoints.py's.
    np.testing.assert_allclose(tail_b, tail_a, rtol=1e-5)
    weights_b = h.harness_get_weights(case=c, model=net_b)
    for k in weights_a:
        np.testing.assert_allclose(weights_b[k], weights_a[k], rtol=1e-5, atol=1e-7, err_msg=k)
    if repeats > 1:  # the comparison can fail: with the RNG left elsewhere after loading, the noise differs
        _, _, _, c_step = fresh_step(c)
        c_step.load(str(folder))
        h.harness_setup(case=elsewhere)
        assert not np.allclose(h.harness_to_host(value=[c_step(b) for b in batches[2:]]), tail_a, rtol=1e-5)


@pytest.mark.parametrize("backend", TRAINERS)
def test_train_step_load_refuses_missing_foreign_and_other_shapes_naming_the_file(backend, tmp_path) -> None:
    needs_checkpoint(backend)
    c = resumable(backend)
    h, _, _, step = fresh_step(c)
    good = tmp_path / "good"
    good.mkdir()
    files = step.save(str(good))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HarnessError, match="empty"):
        step.load(str(empty))
    junk = tmp_path / "junk"
    junk.mkdir()
    for f in files:
        (junk / f).write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match="junk"):
        step.load(str(junk))
    plain = tmp_path / "plain"  # a weights file where the training state belongs
    plain.mkdir()
    written = [h.harness_write_checkpoint(weights={"fc.bias": np.ones(CLASSES, np.float32)}, path=str(plain / f))
               for f in files]
    if sorted(os.path.basename(p) for p in written) == sorted(files):
        with pytest.raises(HarnessError, match="plain"):
            step.load(str(plain))
    other = tmp_path / "other"
    other.mkdir()
    fresh_step(resumable(backend, num_classes=7))[3].save(str(other))
    with pytest.raises(HarnessError, match=r"other.*fc\.weight"):
        step.load(str(other))
    assert step.load(str(good)) is None  # the refusals left the step able to load a good state


# --- every backend: exports -------------------------------------------------------------------------------------

EXPORTS = [pytest.param(b.name, fmt, id=f"{b.name}-{fmt}") for b in registry().values()
           if b.info is not None and {"train", "export"} <= set(scenarios_of(b.info))
           for fmt in supports_of(b.info)["export"]]


@pytest.mark.parametrize("backend,fmt", EXPORTS)
def test_export_is_checked_and_loads_in_every_runtime_of_its_format(backend, fmt, tmp_path) -> None:
    c = case(backend, batch_size=2)
    h, dev, net = build(c)
    h.harness_set_weights(case=c, model=net, weights=randomized(h.harness_get_weights(case=c, model=net), seed=3))
    folder = tmp_path / "case=a,b=1"  # a case folder's name, as the runner makes them
    folder.mkdir()
    try:
        result = check_export(backend, fmt, h.harness_export(case=c, model=net, device=dev, fmt=fmt,
                                                             path=str(folder / "model"), batch=None))
    except Unsupported as exc:
        pytest.skip(str(exc))
    file = folder / result["path"]
    assert result["format"] == fmt and os.path.dirname(result["path"]) == ""
    assert file.is_file() and result["bytes"] == file.stat().st_size > 0
    assert file.stat().st_mode & stat.S_IWUSR
    assert isinstance(result["check"]["runtime"], str) and result["check"]["runtime"]
    assert 0.0 <= result["check"]["max_abs_diff"] < 1e-4
    # the file computes the model in every installed runtime that loads this format
    x = images(result["check"].get("batch", 2), seed=9)
    want = h.harness_predict(case=c, model=net, device=dev, images=x)
    assert float(np.abs(want).max()) > 1e-2  # a meaningful comparison, not of zeros
    for other in registry().values():
        if other.info is None:
            continue
        for runtime, loads in (other.info.get("runtimes") or {}).items():
            if loads != fmt:
                continue
            oc = Case(name="contract", model=c.model, backend=other.name, device="cpu", settings=c.settings)
            oh = other.hook
            try:
                session = oh.harness_inference_session(case=oc, device=oh.harness_setup(case=oc), model=None,
                                                       runtime=runtime, path=str(file), batch=len(x))
            except Unsupported:
                continue  # e.g. MindSpore Lite, not installed here
            got = session.logits(session.run(session.inputs(x)))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{other.name} {runtime}")


@pytest.mark.parametrize("backend", sorted({p.values[0] for p in EXPORTS}))
def test_export_refuses_an_unknown_format_naming_the_declared_ones(backend, tmp_path, request) -> None:
    known_gap(request, backend)
    c = case(backend)
    h, dev, net = build(c)
    with pytest.raises(HarnessError) as exc:
        h.harness_export(case=c, model=net, device=dev, fmt="tflite", path=str(tmp_path / "model"), batch=None)
    msg = str(exc.value)
    assert "tflite" in msg and "\n" not in msg
    assert all(fmt in msg for fmt in supports_of(info(backend))["export"]), msg
    assert not list(tmp_path.glob("model*"))


# --- every backend that declares supports.profile: the profiled window --------------------------------------------

@pytest.mark.parametrize("backend", TRAINERS)
def test_profile_runs_the_window_once_and_returns_an_op_table(backend, tmp_path) -> None:
    # harness_profile runs the core's run_steps exactly once, inside its profiler, keeps a trace under the folder and
    # returns ops whose self times fit in the window (none counted twice) and whose names the core's rules read:
    # every model is a ResNet, so convolution is found.
    from harness.measure.op_categories import categorise
    from harness.measure.profiles import check_profile

    if not supports_of(info(backend))["profile"]:
        pytest.skip(f"backend '{backend}' declares no profiler (supports.profile)")
    c = case(backend)
    h, dev, net = build(c)
    step = h.harness_train_step(case=c, model=net, device=dev, total_steps=3, steps_per_epoch=3)
    batch = h.harness_to_device(arrays=(images(4), np.arange(4) % CLASSES), device=dev)
    step(batch)  # warm: compiled before the window
    h.harness_synchronize(device=dev)
    windows = []

    def run_steps():
        import time
        t0 = time.perf_counter()
        step(batch)
        step(batch)
        h.harness_synchronize(device=dev)
        windows.append(time.perf_counter() - t0)

    folder = tmp_path / "profile"
    folder.mkdir()
    raw = check_profile(backend, h.harness_profile(case=c, device=dev, run_steps=run_steps, folder=str(folder)))
    assert len(windows) == 1
    assert os.path.exists(raw["trace"]) and os.path.abspath(raw["trace"]).startswith(str(folder))
    total = sum(op["self_s"] for op in raw["ops"])
    assert 0 < total <= 1.15 * windows[0] + 1e-3, (total, windows[0])
    assert "convolution" in {categorise(op["name"], op.get("scope", "")) for op in raw["ops"]}
