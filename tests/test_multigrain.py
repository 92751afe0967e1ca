"""Multigrain: GeM pooling, the mixed margin loss, repeated augmentation, in both frameworks.

The loss is checked on hand-computed cases (numbers worked out in the comments), then each
backend against the NumPy reference on the same inputs and sampling noise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import needs_mindspore

from harness.config import Case, Settings
from harness.data.orders import TrainOrder, repeat_synthetic, repeated_order
from harness.errors import HarnessError
from harness.models.multigrain import (
    margin_loss,
    multigrain_loss,
    negative_scores,
    pair_indices,
    sample_negatives,
)
from harness.models.specs import MULTIGRAIN_LOSS, check_batch, get_model
from harness_torch.data import TrainSampler, make_stream
from harness_torch.models import GeM, build_model
from harness_torch.train import make_criterion, make_train_step

MODEL = "multigrain_resnet50"


def small_case(**kw) -> Case:
    base = dict(width=0.25, image_size=32, num_classes=10, batch_size=6, steps=2, warmup=1)
    base.update(kw)
    return Case(name="mg", model=MODEL, backend="torch", device="cpu", settings=Settings(**base))


# --- GeM -------------------------------------------------------------------------------------------

def test_gem_with_p_1_is_average_pooling():
    x = torch.rand(3, 5, 7, 7)
    assert torch.allclose(GeM(1.0)(x), x.mean((2, 3)), atol=1e-7)


def test_gem_with_p_3_by_hand():
    # one channel holding 1 and 2: ((1 + 8) / 2) ** (1/3) = 4.5 ** (1/3) = 1.6510
    x = torch.tensor([1.0, 2.0]).reshape(1, 1, 1, 2)
    assert GeM(3.0)(x).item() == pytest.approx(4.5 ** (1 / 3), rel=1e-6)
    # negatives are clamped to 1e-6 before the power
    assert GeM(3.0)(-torch.ones(1, 1, 2, 2)).item() == pytest.approx(1e-6, rel=1e-4)


def test_multigrain_model_uses_gem_with_fixed_p_3():
    model = build_model(get_model(MODEL, width=0.25, num_classes=10, image_size=32))
    assert isinstance(model.global_pool, GeM)
    assert float(model.global_pool.p) == 3.0
    assert "global_pool.p" in model.state_dict()  # saved with the weights
    assert all(n != "global_pool.p" for n, _ in model.named_parameters())  # but not trained


def test_outputs_are_embedding_logits_and_normalised_embedding():
    model = build_model(get_model(MODEL, width=0.25, num_classes=10, image_size=32)).eval()
    with torch.no_grad():
        x = torch.randn(4, 3, 32, 32)
        emb, logits, norm = model.outputs(x)
        assert emb.shape == (4, 512) and logits.shape == (4, 10) and norm.shape == (4, 512)
        assert torch.allclose(logits, model(x))
        assert torch.allclose(norm, emb / (emb.norm(dim=1, keepdim=True) + 1e-6))
        assert torch.allclose(norm.norm(dim=1), torch.ones(4), atol=1e-4)


# --- the loss by hand ------------------------------------------------------------------------------

def test_pairs_are_the_other_copies_of_each_instance():
    anchors, positives = pair_indices(6, 3)
    assert list(zip(anchors.tolist(), positives.tolist())) == [
        (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (3, 5), (4, 3), (4, 5), (5, 3), (5, 4)]


def test_hand_computed_loss_two_instances():
    # Instance A: three copies at (1, 0); instance B: three copies at (0.6, 0.8). Every positive
    # distance is sqrt(0 + 1e-8) = 1e-4; every negative distance is sqrt(0.16 + 0.64 + 1e-8) = 0.894427.
    # With beta 1.2, margin 0.2: positive terms relu(1e-4 - 1.0) = 0; negative terms
    # relu(1.2 - 0.894427 + 0.2) = 0.505573 each, 12 of them non-zero -> margin loss 0.505573.
    emb = np.array([[1, 0]] * 3 + [[0.6, 0.8]] * 3, dtype=np.float64)
    noise = np.random.default_rng(0).random((6, 6))
    anchors, positives = pair_indices(6, 3)
    negatives = sample_negatives(emb, 3, noise)
    assert all((a < 3) != (n < 3) for a, n in zip(anchors, negatives))  # always the other instance
    expected_margin = 1.4 - math.sqrt(0.8 + 1e-8)
    assert margin_loss(emb, anchors, positives, negatives, 1.2) == pytest.approx(expected_margin, rel=1e-9)
    # Mixed with lambda 0.5 and a CE of log(10) (all-zero logits over 10 classes):
    logits = np.zeros((6, 10))
    total = multigrain_loss(logits, np.arange(6), emb * 5.0, noise, 1.2, 3)  # scale is normalised away
    assert total == pytest.approx(0.5 * math.log(10) + 0.5 * expected_margin, rel=1e-6)


def test_hand_computed_positive_term_and_nonzero_count():
    # Copies of A at (1, 0), (1, 0), (0.8, 0.6): d = sqrt(0.04 + 0.36) = 0.632456 between the odd one and
    # the others. With beta 0.5: positive terms relu(0.632456 - 0.5 + 0.2) = 0.332456 for the 4 pairs
    # that involve copy 2, and relu(1e-4 - 0.3) = 0 for the 2 pairs (0,1), (1,0).
    # Negatives (B at (-1, 0), distance 2 or 1.897 from A; B to A likewise) give relu(0.5 - d + 0.2) = 0.
    emb = np.array([[1, 0], [1, 0], [0.8, 0.6], [-1, 0], [-1, 0], [-1, 0]], dtype=np.float64)
    anchors, positives = pair_indices(6, 3)
    negatives = np.array([3, 4, 3, 4, 3, 4, 0, 1, 0, 2, 1, 2])
    d = math.sqrt(0.4 + 1e-8)
    assert margin_loss(emb, anchors, positives, negatives, 0.5) == pytest.approx((d - 0.3), rel=1e-9)


def test_distance_weighting_prefers_the_weighted_band_and_never_the_same_instance():
    # Anchor 0's candidates: instance 1 inside the cutoff band, instance 2 beyond 1.4 (weight 0).
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0])
    near = np.array([0.6, 0.8, 0.0])      # distance 0.894 < 1.4: weighted
    far = np.array([-1.0, 0.0, 0.0])      # distance 2.0 >= 1.4: zero weight
    emb = np.stack([a, a, a, near, near, near, far, far, far])
    scores = negative_scores(emb, 3)
    assert scores[0, 1] < scores[0, 6] < scores[0, 3]
    for _ in range(20):
        neg = sample_negatives(emb, 3, rng.random((9, 9))).reshape(9, 2)
        assert set(neg[0]) <= {3, 4, 5}  # two weighted candidates exist, so only they are taken
        assert all(n // 3 != i // 3 for i, row in enumerate(neg) for n in row)


def test_torch_criterion_equals_the_reference():
    case = small_case(batch_size=9)
    torch.manual_seed(0)
    model = build_model(get_model(MODEL, width=0.25, num_classes=10, image_size=32)).train()
    crit = make_criterion(case, torch.device("cpu"))
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.standard_normal((9, 3, 32, 32), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 9))
    noise = torch.from_numpy(rng.random((9, 9)).astype(np.float32))
    with torch.no_grad():
        out = model.outputs(x)
        got = float(crit(out, y, noise))
    want = multigrain_loss(out[1].numpy(), y.numpy(), out[0].numpy(), noise.numpy(), MULTIGRAIN_LOSS.beta_init, 3)
    assert got == pytest.approx(want, rel=1e-5)


def test_beta_gradient_by_hand_and_no_weight_decay_on_beta():
    # The first hand case: every negative term is active (d_an = 0.894 < beta + margin), no positive is.
    # d(loss)/d(beta) = (1 - lambda) * (+1 per active negative term) / (12 active terms) * 12 = 0.5.
    case = small_case(weight_decay=0.5, lr=0.1)
    model = build_model(get_model(MODEL, width=0.25, num_classes=10, image_size=32)).train()
    step = make_train_step(case, model, torch.device("cpu"), 3, 3)
    crit = step.criterion
    norm = torch.tensor([[1.0, 0.0]] * 3 + [[0.6, 0.8]] * 3)
    loss = crit((norm, torch.zeros(6, 10), norm), torch.arange(6), torch.rand(6, 6))
    loss.backward()
    assert float(crit.beta.grad) == pytest.approx(0.5, rel=1e-6)
    decay, no_decay = step.optimizer.param_groups
    assert any(p is crit.beta for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert not any(p is crit.beta for p in decay["params"])
    rng = np.random.default_rng(0)
    batch = (torch.from_numpy(rng.standard_normal((6, 3, 32, 32), dtype=np.float32)),
             torch.from_numpy(rng.integers(0, 10, 6)))
    assert math.isfinite(float(step(batch)))


# --- repeated augmentation -------------------------------------------------------------------------

def test_repeated_order_gives_consecutive_copies_and_a_new_shuffle_each_epoch():
    rng = np.random.default_rng(0)
    a, b = repeated_order(30, 3, rng), repeated_order(30, 3, rng)
    assert len(a) == 30
    groups = a.reshape(10, 3)
    assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 10
    assert not np.array_equal(a, b)


def test_torch_sampler_epochs_and_synthetic_batches_hold_whole_instances():
    # 14 samples, 2 of them unreadable: the torch sampler yields the core's TrainOrder, epoch after epoch
    sampler = TrainSampler(TrainOrder(14, [5, 9], 3, seed=0))
    first, second = [k[0] for k in sampler], [k[0] for k in sampler]  # keys: (index, epoch, rank, position)
    assert len(first) == 12 and first != second and not {5, 9} & set(first + second)
    assert all(first[i] == first[i + 1] == first[i + 2] for i in range(0, 12, 3))
    core = TrainOrder(14, [5, 9], 3, seed=0)
    assert (first, second) == (core.order(0).tolist(), core.order(1).tolist())
    assert repeat_synthetic(6, 3).tolist() == [0, 0, 0, 1, 1, 1]
    x, y = next(iter(make_stream(small_case(), "train", torch.device("cpu"))))
    assert torch.equal(x[0], x[2]) and not torch.equal(x[2], x[3]) and y[0] == y[1] == y[2]


@pytest.mark.parametrize("batch", [4, 16, 3])
def test_batch_not_a_multiple_of_3_is_refused(batch):
    # 3 is a multiple of 3 but one image's copies only: no negatives for the margin loss (the stricter rule)
    with pytest.raises(HarnessError, match=r"batch_size .*multiple of 3 holding at least 2 different") as info:
        check_batch(batch, 3, MODEL)
    assert "\n" not in str(info.value)
    check_batch(6, 3, MODEL)
    check_batch(3, 1, "gluon_resnet50_v1b")


@pytest.mark.parametrize("batch,fix", [(16, 18), (3, 6)])
def test_suite_refuses_a_batch_repeated_augmentation_cannot_fill(tmp_path, batch, fix):
    # The rule is checked once, when the suite loads (the data streams take the batch as given).
    from harness.run.suite import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(f"models: [{MODEL}]\nbackends: [torch]\ndevices: [cpu]\nsettings: {{batch_size: {batch}}}\n")
    with pytest.raises(HarnessError) as info:
        load_suite(path, check_backends=False)
    msg = str(info.value)
    assert msg.startswith(str(path)) and f"batch_size {batch}" in msg and "multiple of 3" in msg
    assert f"(e.g. {fix})" in msg


# --- MindSpore -------------------------------------------------------------------------------------

@needs_mindspore
def test_mindspore_gem_and_loss_equal_the_reference():
    # harness_mindspore first: it sets the environment MindSpore reads when it is imported
    import harness_mindspore  # noqa: I001
    import mindspore as ms
    from harness_mindspore.models import GeM as MsGeM
    from harness_mindspore.models import build_model as ms_build
    from harness_mindspore.train import make_train_step as ms_step

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    harness_mindspore.absorb_numpy_abi_first_failure()
    x = np.random.default_rng(0).random((2, 4, 5, 5)).astype(np.float32)
    assert np.allclose(MsGeM(1.0)(ms.Tensor(x)).asnumpy(), x.mean((2, 3)), atol=1e-6)
    ms.set_seed(0)
    net = ms_build(get_model(MODEL, width=0.25, num_classes=10, image_size=32))
    case = Case(name="mg", model=MODEL, backend="mindspore", device="cpu",
                settings=Settings(width=0.25, image_size=32, num_classes=10, batch_size=9))
    step = ms_step(case, net, None, 2, 2)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((9, 3, 32, 32), dtype=np.float32)
    ys = rng.integers(0, 10, 9).astype(np.int32)
    noise = rng.random((9, 9)).astype(np.float32)
    net.set_train(False)  # BN in inference so the outputs read below are the ones the loss sees
    emb, logits, _ = (t.asnumpy() for t in net.outputs(ms.Tensor(xs)))
    got = float(step.with_loss(ms.Tensor(xs), ms.Tensor(ys), ms.Tensor(noise)).asnumpy())
    assert got == pytest.approx(multigrain_loss(logits, ys, emb, noise, 1.2, 3), rel=1e-5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from harness.data.tiny import make_tiny_dataset

    return make_tiny_dataset(str(tmp_path_factory.mktemp("mg") / "tiny"), classes=4, train_per_class=6,
                             val_per_class=2, size=40)


def _groups_of_three(labels: np.ndarray) -> bool:
    g = labels.reshape(-1, 3)
    return bool((g == g[:, :1]).all())


def test_torch_folder_stream_yields_consecutive_copies_augmented_independently(tiny):
    c = small_case(data="folder", data_root=tiny, workers=0)
    stream = make_stream(c, "train", torch.device("cpu"))
    x, y = next(iter(stream))
    assert _groups_of_three(y.numpy())
    assert not torch.equal(x[0], x[1])  # same image, two random crops


@needs_mindspore
def test_mindspore_folder_stream_yields_consecutive_copies(tiny):
    import harness_mindspore  # noqa: F401, I001 - environment fixes before mindspore
    import mindspore as ms
    from harness_mindspore.data import make_stream as ms_stream

    ms.set_device("CPU")
    c = Case(name="mg", model=MODEL, backend="mindspore", device="cpu",
             settings=Settings(width=0.25, image_size=32, num_classes=10, batch_size=6, data="folder",
                               data_root=tiny, workers=1))
    stream = ms_stream(c, "train", None)
    assert len(stream) == 24 // 6
    epochs = [[y.asnumpy() for _, y in stream] for _ in range(2)]
    for epoch in epochs:
        assert len(epoch) == 4 and all(_groups_of_three(y) for y in epoch)
