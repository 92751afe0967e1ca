"""harness.data.host_batches: the core's host batches, the same pixels in the same order as the torch backend's own
pipeline."""
from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
from conftest import have

from harness.config import Case, Settings
from harness.data.host_batches import HostStream, device_stream
from harness.data.splits import PAD_LABEL
from harness.data.synthetic import synthetic_arrays
from harness.data.tiny import make_tiny_dataset

# 21 readable train images (5 batches of 4, one image dropped) and an unreadable one both streams leave out; 9 val
# images (3 batches, the last padded with 3)
BATCH, VAL_IMAGES = 4, 9


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    made = make_tiny_dataset(str(tmp_path_factory.mktemp("tiny") / "tiny"), classes=3, train_per_class=7,
                             val_per_class=3, size=24)
    root = tmp_path_factory.mktemp("data") / "tiny"
    shutil.copytree(made, root)
    (root / "train" / "class_01" / "img_broken.JPEG").write_bytes(b"not an image")
    return str(root)


def settings(root: str | None = None, **kw) -> Settings:
    base = dict(batch_size=BATCH, image_size=16, width=0.125, num_classes=3, workers=0, seed=3, threads=1,
                max_bad_images=2)
    if root is not None:
        base.update(data="folder", data_root=root)
    return Settings(**{**base, **kw})


def epochs(stream, n: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [[(np.asarray(x), np.asarray(y)) for x, y in stream] for _ in range(n)]


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (x1, y1), (x2, y2) in zip(a, b):
        assert x1.shape == x2.shape and x1.dtype == x2.dtype == np.float32
        assert np.array_equal(y1, y2)
        assert np.max(np.abs(x1 - x2)) <= 1e-6


@pytest.mark.skipif(not have("torch"), reason="torch is not installed")
@pytest.mark.parametrize("split", ["train", "eval"])
def test_the_host_stream_matches_the_torch_backends_own_pipeline(root, split, one_torch_thread):
    from harness.backends.loading import load_backend

    s = settings(root)  # augment on (the default), workers=0 in both
    hook = load_backend("torch").hook
    case = Case("c", "gluon_resnet50_v1b", "torch", "cpu", s)
    dev = hook.harness_setup(case=case)
    native = hook.harness_data(case=case, split=split, device=dev)
    host = HostStream(s, split)
    assert len(native) == len(host) == (5 if split == "train" else 3)
    ours, theirs = epochs(host, 2), epochs(native, 2)
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    if split == "train":  # a new shuffle each epoch
        assert not all(np.array_equal(a[1], b[1]) for a, b in zip(ours[0], ours[1]))


def test_start_at_resumes_where_an_uninterrupted_stream_is(root):
    whole = epochs(HostStream(settings(root), "train"), 3)
    resumed = HostStream(settings(root), "train")
    resumed.start_at(1, 2)
    assert_same(epochs(resumed, 1)[0], whole[1][2:])
    assert_same(epochs(resumed, 1)[0], whole[2])  # the next epoch starts at its beginning


def test_workers_give_the_same_batches_as_the_main_process(root):
    with HostStream(settings(root, workers=2), "train") as parallel:
        parallel.start_at(1, 1)
        got = epochs(parallel, 2)
        pids = list(parallel._pools[0]._processes)  # decoded in worker processes
    assert len(pids) == 2 and not parallel._pools
    for pid in pids:  # closed: joined and gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    plain = HostStream(settings(root), "train")
    plain.start_at(1, 1)
    for a, b in zip(got, epochs(plain, 2)):
        assert_same(a, b)


def test_synthetic_batches_are_the_cores_arrays_made_once():
    s = settings(warmup=1, steps=3)
    train = HostStream(s, "train")
    batches = list(train)
    assert len(train) == len(batches) == 4 and all(b is batches[0] for b in batches)
    assert all(np.array_equal(a, b) for a, b in zip(batches[0], synthetic_arrays(s, "train")))
    assert len(HostStream(s, "eval")) == 10 and len(HostStream(dataclasses.replace(s, eval_batches=2), "eval")) == 2
    six = dataclasses.replace(s, batch_size=6)
    repeated = HostStream(six, "train", repeats=3).synthetic
    assert all(np.array_equal(a, b) for a, b in zip(repeated, synthetic_arrays(six, "train", 3)))
    assert len(HostStream(s, "train", batches=7)) == 7

    moves = []
    stream = device_stream(train, lambda arrays: moves.append(arrays) or ("on device", len(moves)))
    stream.start_at(0, 1)
    assert list(stream) == [("on device", 1)] * 3 and list(stream) == [("on device", 1)] * 4
    assert len(stream) == 4 and len(moves) == 1


def test_eval_batches_are_full_and_padded_with_the_pad_label(root):
    batches = list(HostStream(settings(root), "eval"))
    assert [len(y) for _, y in batches] == [BATCH] * 3
    labels = np.concatenate([y for _, y in batches])
    assert np.sum(labels >= 0) == VAL_IMAGES and labels[VAL_IMAGES:].tolist() == [PAD_LABEL] * 3
    images = np.concatenate([x for x, _ in batches])
    assert all(np.array_equal(images[i], images[VAL_IMAGES - 1]) for i in range(VAL_IMAGES, len(images)))

    moved = device_stream(HostStream(settings(root), "train"), lambda a: (a[0] * 0, a[1]))
    assert len(moved) == 5 and all(not x.any() for x, _ in moved)
