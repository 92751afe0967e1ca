"""Tests for harness.data.folders (folder scanning, preprocessing) and harness.data.tiny."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import harness.data.tiny as tinydata
from harness.data.folders import IMAGE_EXTENSIONS, scan_folder
from harness.data.images import MEAN, STD, Preprocess
from harness.data.tiny import make_tiny_dataset
from harness.errors import HarnessError

SMALL = dict(classes=3, train_per_class=4, val_per_class=2, size=32)


def assert_one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    """The error message is one line and contains every part (paths, hints)."""
    msg = str(exc.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default tiny dataset (10 classes, 32 train + 10 val per class)."""
    return make_tiny_dataset(str(tmp_path_factory.mktemp("data") / "tiny"))


# --- scan_folder ----------------------------------------------------------------------------

def test_scan_tiny_dataset(tiny: str) -> None:
    for split, per_class in (("train", 32), ("val", 10)):
        classes, samples = scan_folder(tiny, split)
        assert classes == [f"class_{c:02d}" for c in range(10)]
        assert len(samples) == 10 * per_class
        labels = [label for _, label in samples]
        assert labels == sorted(labels)
        assert np.bincount(labels).tolist() == [per_class] * 10
        for path, label in samples:
            assert Path(path).parent == Path(tiny, split, classes[label])
        assert [p for p, _ in samples] == sorted(p for p, _ in samples)


def test_scan_ignores_hidden_and_other_files(tmp_path: Path) -> None:
    for cls in ("b", "a"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for name in ("z.JPEG", "y.png", "x.Jpg", "notes.txt", ".hidden.jpg"):
            (tmp_path / "train" / cls / name).write_bytes(b"")
    (tmp_path / "train" / ".cache").mkdir()
    (tmp_path / "train" / "README.md").write_text("not a class")
    classes, samples = scan_folder(str(tmp_path), "train")
    assert classes == ["a", "b"]
    assert [(Path(p).relative_to(tmp_path).as_posix(), c) for p, c in samples] == [
        ("train/a/x.Jpg", 0), ("train/a/y.png", 0), ("train/a/z.JPEG", 0),
        ("train/b/x.Jpg", 1), ("train/b/y.png", 1), ("train/b/z.JPEG", 1)]


def test_scan_missing_root(tmp_path: Path) -> None:
    root = str(tmp_path / "nope")
    with pytest.raises(HarnessError) as exc:
        scan_folder(root, "train")
    assert str(exc.value) == f"data_root '{root}': no such folder"


def test_scan_root_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "file.tar"
    root.write_bytes(b"x")
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(root), "train")
    assert_one_line(exc, str(root), "not a folder")


def test_scan_missing_split_lists_subfolders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "valid").mkdir()
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(tmp_path), "val")
    assert_one_line(exc, str(tmp_path / "val"), "train, valid", "did you mean 'valid'")


def test_scan_missing_split_in_empty_root(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(tmp_path), "train")
    assert_one_line(exc, str(tmp_path / "train"), "no sub-folders")


def test_scan_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "img.jpg").write_bytes(b"")
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(tmp_path), "val")
    assert_one_line(exc, str(tmp_path / "val"), "no class sub-folders")


def test_scan_class_without_images(tmp_path: Path) -> None:
    (tmp_path / "train" / "ant").mkdir(parents=True)
    (tmp_path / "train" / "ant" / "a.jpeg").write_bytes(b"")
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(HarnessError) as exc:
        scan_folder(str(tmp_path), "train")
    assert_one_line(exc, f"class folder '{tmp_path / 'train' / 'cat'}' has no images", *IMAGE_EXTENSIONS)


# --- Preprocess -----------------------------------------------------------------------------

def expected_normalised(rgb: tuple[int, int, int]) -> np.ndarray:
    x = np.asarray(rgb, np.float32) / np.float32(255)
    return (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)


@pytest.mark.parametrize("train,augment", [(False, True), (True, False), (True, True)])
def test_preprocess_constant_colour(train: bool, augment: bool) -> None:
    rgb = (200, 30, 90)
    pre = Preprocess(24, train=train, augment=augment)
    out = pre(Image.new("RGB", (57, 31), rgb), np.random.default_rng(0))
    assert out.shape == (3, 24, 24) and out.dtype == np.float32 and out.flags.c_contiguous
    if train and augment:  # colour jitter moves the values, but the image stays uniform
        assert np.ptp(out.reshape(3, -1), axis=1).max() < 0.05
    else:
        np.testing.assert_allclose(out, np.broadcast_to(expected_normalised(rgb)[:, None, None], out.shape),
                                   rtol=0, atol=1e-6)


def test_preprocess_accepts_other_modes_and_tiny_images() -> None:
    rng = np.random.default_rng(0)
    for img in (Image.new("L", (10, 7), 128), Image.new("RGBA", (5, 40), (1, 2, 3, 4)), Image.new("P", (1, 1))):
        for pre in (Preprocess(16, train=True), Preprocess(16, train=False)):
            out = pre(img, rng)
            assert out.shape == (3, 16, 16) and np.isfinite(out).all()


def noise_image(w: int = 90, h: int = 70, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_train_augment_is_deterministic_per_seed() -> None:
    img, pre = noise_image(), Preprocess(32, train=True)
    a = pre(img, np.random.default_rng(7))
    b = pre(img, np.random.default_rng(7))
    c = pre(img, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (3, 32, 32) and a.dtype == np.float32


def test_without_augment_ignores_the_rng() -> None:
    img = noise_image()
    for pre in (Preprocess(32, train=True, augment=False), Preprocess(32, train=False)):
        np.testing.assert_array_equal(pre(img, np.random.default_rng(1)), pre(img, np.random.default_rng(2)))


def test_train_without_augment_resizes_whole_image() -> None:
    # Left half red, right half blue: a direct resize keeps both halves (no crop).
    arr = np.zeros((40, 100, 3), np.uint8)
    arr[:, :50, 0] = 255
    arr[:, 50:, 2] = 255
    out = Preprocess(20, train=True, augment=False, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(arr), None)
    assert out[0, :, :9].min() == 1.0 and out[2, :, 11:].min() == 1.0


def coordinate_image(w: int, h: int) -> Image.Image:
    """Red encodes the column, green the row (both < 256)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
    arr[..., 1] = np.arange(h, dtype=np.uint8)[:, None]
    return Image.fromarray(arr)


@pytest.mark.parametrize("w,h,left,top", [(100, 50, 25, 0), (50, 100, 0, 25),
                                          (103, 50, 26, 0),  # round(26.5) == 26, as torchvision
                                          (101, 50, 26, 0)])  # round(25.5) == 26
def test_eval_center_crop_geometry(w: int, h: int, left: int, top: int) -> None:
    pre = Preprocess(50, train=False, resize_ratio=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out = np.rint(pre(coordinate_image(w, h), None) * 255).astype(int)
    np.testing.assert_array_equal(out[0], np.broadcast_to(np.arange(left, left + 50), (50, 50)))
    np.testing.assert_array_equal(out[1], np.broadcast_to(np.arange(top, top + 50)[:, None], (50, 50)))


def test_eval_resize_then_center_crop_marked_region() -> None:
    # 200x100 -> shorter side round(40 / 0.8) = 50 -> 100x50 -> crop 40 at left 30, top 5.
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[40:60, 80:120] = 255  # lands at rows 15..24, columns 10..29 of the output
    out = Preprocess(40, train=False, resize_ratio=0.8, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(arr), None)
    rows, cols = np.nonzero(out[0] > 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 24, 10, 29)


def test_load_decodes_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 30), (10, 20, 30)).save(good)
    pre = Preprocess(16, train=False)
    np.testing.assert_allclose(pre.load(str(good), None)[:, 8, 8], expected_normalised((10, 20, 30)), atol=1e-6)
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg\n")
    with pytest.raises(HarnessError) as exc:
        pre.load(str(bad), np.random.default_rng(0))
    assert_one_line(exc, f"{bad}: cannot decode image: ")


# --- tiny dataset ---------------------------------------------------------------------------

def test_tiny_is_deterministic(tmp_path: Path) -> None:
    a = files_of(Path(make_tiny_dataset(str(tmp_path / "a"), seed=3, **SMALL)))
    b = files_of(Path(make_tiny_dataset(str(tmp_path / "b"), seed=3, **SMALL)))
    c = files_of(Path(make_tiny_dataset(str(tmp_path / "c"), seed=4, **SMALL)))
    assert len(a) == 3 * (4 + 2) + 1 and "train/class_02/img_0003.JPEG" in a and "val/class_00/img_0001.JPEG" in a
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".JPEG"))
    with Image.open(tmp_path / "a" / "val" / "class_01" / "img_0000.JPEG") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (32, 32))


def test_tiny_is_idempotent(tmp_path: Path) -> None:
    root = str(tmp_path / "tiny")
    assert make_tiny_dataset(root, **SMALL) == root
    before = {p: p.stat().st_mtime_ns for p in Path(root).rglob("*")}
    assert make_tiny_dataset(root, **SMALL) == root
    assert {p: p.stat().st_mtime_ns for p in Path(root).rglob("*")} == before
    assert sorted(os.listdir(tmp_path)) == ["tiny"]  # no temporary folders left behind


def test_tiny_replaces_its_own_dataset_with_other_parameters(tmp_path: Path) -> None:
    root = str(tmp_path / "tiny")
    make_tiny_dataset(root, **SMALL)
    make_tiny_dataset(root, **{**SMALL, "classes": 2})
    assert scan_folder(root, "train")[0] == ["class_00", "class_01"]
    assert sorted(os.listdir(tmp_path)) == ["tiny"]


def test_tiny_uses_an_existing_empty_folder(tmp_path: Path) -> None:
    make_tiny_dataset(str(tmp_path), **SMALL)
    assert len(scan_folder(str(tmp_path), "val")[1]) == 6


def test_tiny_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "thesis.txt").write_text("precious")
    (tmp_path / "train").mkdir()
    with pytest.raises(HarnessError) as exc:
        make_tiny_dataset(str(tmp_path), **SMALL)
    assert_one_line(exc, f"'{tmp_path}'", "thesis.txt")
    assert (tmp_path / "thesis.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["thesis.txt", "train"] and not os.listdir(tmp_path / "train")


def test_tiny_refuses_a_file(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    root.write_text("x")
    with pytest.raises(HarnessError) as exc:
        make_tiny_dataset(str(root), **SMALL)
    assert_one_line(exc, str(root), "not a folder")


def test_tiny_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = tinydata._picture, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tinydata, "_picture", flaky)
    root = str(tmp_path / "tiny")
    with pytest.raises(KeyboardInterrupt):
        make_tiny_dataset(root, **SMALL)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(tinydata, "_picture", real)
    make_tiny_dataset(root, **SMALL)
    assert len(scan_folder(root, "train")[1]) == 12


def test_tiny_rejects_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as exc:
        make_tiny_dataset(str(tmp_path / "t"), classes=1)
    assert_one_line(exc, str(tmp_path / "t"), "classes")


def hue_direction(x: np.ndarray) -> np.ndarray:
    """Unit vector of the mean chroma (opponent colour) of a normalised CHW image."""
    rgb = x * np.asarray(STD, np.float32)[:, None, None] + np.asarray(MEAN, np.float32)[:, None, None]
    r, g, b = rgb.reshape(3, -1).mean(axis=1)
    v = np.array([r - (g + b) / 2, np.sqrt(3) / 2 * (g - b)])
    return v / (np.linalg.norm(v) + 1e-12)


def test_tiny_is_learnable_by_hue_after_augmentation(tiny: str) -> None:
    pre, rng = Preprocess(64, train=True, augment=True), np.random.default_rng(0)
    feats = {}
    for split in ("train", "val"):
        _, samples = scan_folder(tiny, split)
        feats[split] = (np.stack([hue_direction(pre.load(p, rng)) for p, _ in samples]),
                        np.array([label for _, label in samples]))
    x, y = feats["train"]
    centroids = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    xv, yv = feats["val"]
    accuracy = float(((xv @ centroids.T).argmax(axis=1) == yv).mean())
    assert accuracy >= 0.9, accuracy


# --- unreadable files: skipped with a count and a warning, an error past max_bad_images ----------------------

def _spoil(root: str, n: int) -> list[str]:
    """Turn the first ``n`` train images into files that are not images; add a stray text file."""
    paths = [p for p, _ in scan_folder(root, "train")[1][:n]]
    for p in paths:
        Path(p).write_bytes(b"this is not a JPEG")
    Path(root, "train", "class_00", "notes.txt").write_text("x")
    return paths


def test_unreadable_images_are_skipped_with_a_count_and_a_warning(tmp_path: Path, capfd) -> None:
    from harness.config import Settings
    from harness.data.splits import scan_split, scan_summary

    root = make_tiny_dataset(str(tmp_path / "tiny"), **SMALL)  # 12 train images
    bad_paths = _spoil(root, 2)
    _classes, samples, bad = scan_split(Settings(data="folder", data_root=root, max_bad_images=2), "train")
    assert len(samples) == 12 and [samples[i][0] for i in bad] == bad_paths
    err = capfd.readouterr().err.splitlines()
    assert err[0].startswith(f"harness: warning: 2 of 12 image files in '{root}/train' are not readable images, "
                             f"skipped (first: {bad_paths[0]}: cannot identify image file")
    assert err[1] == (f"harness: warning: 1 files without an image extension ignored in '{root}/train' "
                      f"(first: {root}/train/class_00/notes.txt)")
    summary = scan_summary()["train"]
    assert summary["files"] == 10 and summary["skipped"] == 2 and summary["ignored"] == 1


def test_too_many_unreadable_images_fail_in_one_line(tmp_path: Path) -> None:
    from harness.config import Settings
    from harness.data.splits import scan_split

    root = make_tiny_dataset(str(tmp_path / "tiny"), **SMALL)
    bad_paths = _spoil(root, 3)
    for limit in (0.2, 2):  # a fraction (20% of 12 = 2.4) or a count
        with pytest.raises(HarnessError) as exc:
            scan_split(Settings(data="folder", data_root=root, max_bad_images=limit), "train")
        assert_one_line(exc, f"data_root '{root}': 3 of 12 image files", f"more than max_bad_images: {limit}",
                        f"first: {bad_paths[0]}")
