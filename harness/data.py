"""Framework-neutral image-folder reading and preprocessing (Pillow + numpy only).

:func:`scan_folder` lists an ImageNet-layout folder (``root/<split>/<class>/<images>``)
and :class:`Preprocess` turns one image into a normalised ``float32`` CHW array.
Backends wrap these in their own loaders (a PyTorch ``Dataset`` in DataLoader
workers, a MindSpore ``GeneratorDataset``), so every framework sees the same
pixels for the same random generator. All randomness comes from the
``numpy.random.Generator`` passed in, never from global state.

The train-time transform follows torchvision's ``RandomResizedCrop(size)`` +
``RandomHorizontalFlip()`` + ``ColorJitter(0.4, 0.4, 0.4)`` (brightness, contrast,
saturation in that fixed order); the eval transform follows
``Resize(round(size / resize_ratio), BICUBIC)`` + ``CenterCrop(size)``.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance

from .errors import HarnessError, near

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["IMAGE_EXTENSIONS", "MEAN", "STD", "SKIPPED", "scan_folder", "scan_split", "Preprocess", "preprocess_for",
           "repeated_order", "epoch_order", "augment_rng", "repeat_synthetic", "shard_order", "synthetic_batches",
           "SyntheticStream", "eval_arrays"]

#: File extensions read as images (matched case-insensitively).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
#: ImageNet channel mean and standard deviation (RGB, on the 0..1 scale).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_RRC_SCALE = (0.08, 1.0)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_JITTER = 0.4  # brightness, contrast and saturation factor in [1 - 0.4, 1 + 0.4]
# AlexNet's PCA of ImageNet RGB (0..1 scale), for lighting noise.
LIGHTING_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float64)
LIGHTING_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                        [-0.5808, -0.0045, -0.8140],
                        [-0.5836, -0.6948, 0.4203]], dtype=np.float64)


def _listdir(root: str, path: str) -> list[os.DirEntry]:
    """Non-hidden entries of ``path``; an OSError becomes a one-line HarnessError."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        raise HarnessError(f"data_root '{root}': cannot read '{path}': {exc.strerror or exc}") from None


def scan_folder(root: str, split: str, ignored: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """List ``root/<split>/<class>/<image>`` files.

    Returns the sorted class names and ``(path, class_index)`` pairs sorted by
    class, then file name. Hidden entries and files without an image extension
    are ignored (the latter appended to ``ignored`` when given). Raises
    :class:`HarnessError` naming the folder at fault when ``root`` or
    ``root/<split>`` is missing, there are no class folders, or a class folder
    holds no images.
    """
    if not os.path.exists(root):
        raise HarnessError(f"data_root '{root}': no such folder")
    if not os.path.isdir(root):
        raise HarnessError(f"data_root '{root}': not a folder")
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        subdirs = sorted(e.name for e in _listdir(root, root) if e.is_dir())
        found = f"found: {', '.join(subdirs)}" if subdirs else "it has no sub-folders"
        what = "is not a folder" if os.path.exists(split_dir) else "is missing"
        raise HarnessError(f"data_root '{root}': split folder '{split_dir}' {what} ({found})"
                           f"{near(split, subdirs)}")
    classes = sorted(e.name for e in _listdir(root, split_dir) if e.is_dir())
    if not classes:
        raise HarnessError(f"data_root '{root}': '{split_dir}' has no class sub-folders "
                           f"(expected {split}/<class>/<images>)")
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        entries = [e for e in _listdir(root, class_dir) if e.is_file()]
        files = sorted(e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
        if ignored is not None:
            ignored.extend(sorted(e.path for e in entries if not e.name.lower().endswith(IMAGE_EXTENSIONS)))
        if not files:
            raise HarnessError(f"data_root '{root}': class folder '{class_dir}' has no images "
                               f"({', '.join(IMAGE_EXTENSIONS)})")
        samples.extend((os.path.join(class_dir, f), index) for f in files)
    return classes, samples


#: Per split, what :func:`scan_split` left out in this process: ``{"files", "skipped", "ignored", "examples"}``.
#: The worker copies it into the record (``metrics.data``).
SKIPPED: dict[str, dict[str, object]] = {}


_SCANS: dict[tuple[str, str], tuple[list[str], list[tuple[str, int]], list[str | None], list[str]]] = {}


def _header_error(path: str) -> str | None:
    """Why ``path`` is not a readable image (Pillow identifies the format and size from the header without
    decoding the pixels), or None."""
    try:
        with Image.open(path) as im:
            if im.width < 1 or im.height < 1:
                return "empty image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def scan_split(settings: Settings, split: str) -> tuple[list[str], list[tuple[str, int]], list[int]]:
    """:func:`scan_folder`, then each image file's header checked in parallel threads.

    Returns ``(classes, samples, bad)``: ``bad`` are the positions in ``samples`` of files that are not
    readable images; they are skipped with a warning on stderr and counted in :data:`SKIPPED` (files without an
    image extension are counted as ignored). Past ``max_bad_images`` (a fraction of the split, or a count when
    >= 1) it raises :class:`HarnessError` naming the first bad file. Backends leave the ``bad`` positions out of
    their samplers, so the remaining images keep their indices (MindSpore's folder reader lists the same files in
    the same order).
    """
    root = settings.data_root
    key = (os.path.abspath(root), split)
    fresh = key not in _SCANS  # a process reads a split once (an inference case reads val twice)
    if fresh:
        ignored: list[str] = []
        classes, samples = scan_folder(root, split, ignored)
        with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 4)) as pool:
            errors = list(pool.map(_header_error, (p for p, _ in samples), chunksize=256))
        _SCANS[key] = (classes, samples, errors, ignored)
    classes, samples, errors, ignored = _SCANS[key]
    bad = [i for i, e in enumerate(errors) if e is not None]
    limit = settings.max_bad_images if settings.max_bad_images >= 1 else settings.max_bad_images * len(samples)
    if bad:
        first = samples[bad[0]][0]
        what = f"{len(bad)} of {len(samples)} image files in '{os.path.join(root, split)}' are not readable images"
        if len(bad) > limit or len(bad) == len(samples):
            raise HarnessError(f"data_root '{root}': {what} (more than max_bad_images: {settings.max_bad_images}); "
                               f"first: {first}: {errors[bad[0]]}")
        if fresh:
            print(f"harness: warning: {what}, skipped (first: {first}: {errors[bad[0]]})", file=sys.stderr,
                  flush=True)
    if ignored and fresh:
        print(f"harness: warning: {len(ignored)} files without an image extension ignored in "
              f"'{os.path.join(root, split)}' (first: {ignored[0]})", file=sys.stderr, flush=True)
    SKIPPED[split] = {"files": len(samples) - len(bad), "skipped": len(bad), "ignored": len(ignored),
                      "examples": [f"{samples[i][0]}: {errors[i]}" for i in bad[:5]]}
    return classes, samples, bad


def _random_resized_crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params``: return ``(top, left, h, w)``."""
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(*_RRC_SCALE)
        aspect = math.exp(rng.uniform(*_RRC_LOG_RATIO))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: central crop with the aspect ratio clamped to the allowed range.
    in_ratio = width / height
    lo, hi = 3 / 4, 4 / 3
    if in_ratio < lo:
        w, h = width, int(round(width / lo))
    elif in_ratio > hi:
        w, h = int(round(height * hi)), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class Preprocess:
    """One image (PIL) to a normalised ``float32`` array of shape ``(3, size, size)``.

    * ``train and augment``: random-resized-crop (scale 0.08..1, ratio 3/4..4/3,
      BILINEAR), horizontal flip with p=0.5, brightness/contrast/saturation
      jitter of 0.4 each;
    * ``train and not augment``: BILINEAR resize straight to ``size x size``;
    * eval: BICUBIC resize of the shorter side to ``round(size / resize_ratio)``,
      then a centre crop of ``size``.

    Instances hold only numbers, so they pickle into DataLoader workers.
    """

    def __init__(self, image_size: int, train: bool, augment: bool = True,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                 resize_ratio: float = 0.875, jitter: float = _JITTER, hue: float = 0.0,
                 lighting: float = 0.0) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not 0 < resize_ratio <= 1:
            raise ValueError(f"resize_ratio must be in (0, 1], got {resize_ratio}")
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = bool(augment)
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {hue}")
        self.resize_ratio = float(resize_ratio)
        self.jitter, self.hue, self.lighting = float(jitter), float(hue), float(lighting)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __repr__(self) -> str:
        return (f"Preprocess(image_size={self.image_size}, train={self.train}, augment={self.augment}, "
                f"resize_ratio={self.resize_ratio}, jitter={self.jitter}, hue={self.hue}, lighting={self.lighting})")

    def transform(self, img: Image.Image, rng: np.random.Generator | None) -> Image.Image:
        """The geometric and colour transform alone: an RGB image of ``size x size``.

        ``rng`` may be None only when nothing is random (eval, or train without augment).
        """
        if img.mode != "RGB":
            img = img.convert("RGB")
        s = self.image_size
        if self.train and self.augment:
            if rng is None:
                raise ValueError("Preprocess(train=True, augment=True) needs a numpy Generator")
            top, left, h, w = _random_resized_crop_box(img.width, img.height, rng)
            img = img.crop((left, top, left + w, top + h)).resize((s, s), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.jitter > 0:
                for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                    img = enhance(img).enhance(rng.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter))
            if self.hue > 0:  # torchvision's adjust_hue: shift H in HSV, wrapping around
                h, sat, v = img.convert("HSV").split()
                shift = int(round(rng.uniform(-self.hue, self.hue) * 255))
                h = Image.fromarray((np.asarray(h, dtype=np.int16) + shift).astype(np.uint8), "L")
                img = Image.merge("HSV", (h, sat, v)).convert("RGB")
            return img
        if self.train:
            return img.resize((s, s), Image.Resampling.BILINEAR)
        short = int(round(s / self.resize_ratio))
        w, h = img.size
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        img = img.resize(size, Image.Resampling.BICUBIC)
        top = int(round((img.height - s) / 2.0))
        left = int(round((img.width - s) / 2.0))
        return img.crop((left, top, left + s, top + s))

    def __call__(self, img: Image.Image, rng: np.random.Generator | None) -> np.ndarray:
        """Transform ``img`` and normalise it to ``(x / 255 - mean) / std``, CHW float32."""
        pixels = np.asarray(self.transform(img, rng), dtype=np.uint8)
        x = np.array(pixels.transpose(2, 0, 1), dtype=np.float32, order="C")
        x /= np.float32(255)
        if self.train and self.augment and self.lighting > 0:  # AlexNet PCA lighting noise, on the 0..1 scale
            alpha = rng.normal(0.0, self.lighting, 3)
            x += (LIGHTING_EIGVEC @ (alpha * LIGHTING_EIGVAL)).astype(np.float32).reshape(3, 1, 1)
        x -= self.mean
        x /= self.std
        return x

    def load(self, path: str, rng: np.random.Generator | None) -> np.ndarray:
        """Open ``path`` with Pillow, convert to RGB and apply :meth:`__call__`."""
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise HarnessError(f"{path}: cannot decode image: {detail}") from None
        return self(img, rng)


def preprocess_for(settings: Settings, train: bool, mean: Sequence[float] = MEAN,
                   std: Sequence[float] = STD) -> Preprocess:
    """The :class:`Preprocess` a case's settings describe."""
    s = settings
    return Preprocess(s.image_size, train=train, augment=s.augment, mean=mean, std=std,
                      resize_ratio=s.eval_resize_ratio, jitter=s.color_jitter, hue=s.hue_jitter, lighting=s.lighting)


def repeated_order(n: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch of a repeated-augmentation sampler: a shuffled order of ``n`` indices, each yielded
    ``repeats`` times in a row, cut to ``n`` draws (so an epoch costs what a plain epoch costs)."""
    return np.repeat(rng.permutation(n), repeats)[:n]


def epoch_order(n: int, repeats: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Rank ``rank``'s train order for ``epoch``: a shuffle drawn from ``(seed, epoch)`` alone (each index
    ``repeats`` times in a row for repeated augmentation), sharded. Being a function of the epoch, not of a
    generator's history, it lets a resumed run pick up the very order it stopped in; every framework's train
    sampler uses it, so they see the same images in the same order."""
    order = repeated_order(n, repeats, np.random.default_rng([seed, epoch]))
    return shard_order(order, repeats, rank, world)


def augment_rng(seed: int, epoch: int, rank: int, position: int) -> np.random.Generator:
    """The generator of one train sample's augmentation: a function of where it falls in the run (not of which
    loader worker decodes it), so runs, resumed ones included, augment alike whatever the worker count."""
    return np.random.default_rng([seed, epoch, rank, position])


def shard_order(order: np.ndarray, repeats: int, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s share of an epoch order: whole groups of ``repeats`` copies, dealt round-robin, every rank
    the same count (the remainder is dropped, as a distributed sampler with drop_last does)."""
    if world == 1:
        return order
    groups = order[: len(order) // repeats * repeats].reshape(-1, repeats)
    per_rank = len(groups) // world
    return groups[rank::world][:per_rank].reshape(-1)


def repeat_synthetic(n: int, repeats: int) -> np.ndarray:
    """Positions of a synthetic batch of ``n`` built from ``n // repeats`` distinct samples, each repeated."""
    return np.repeat(np.arange(n // repeats), repeats)


#: Images per epoch of ImageNet-1k, the epoch length of synthetic data trained by epochs.
IMAGENET_TRAIN_IMAGES = 1_281_167
SYNTHETIC_EVAL_BATCHES = 10


def synthetic_batches(settings: Settings, split: str) -> int:
    """Batches per epoch of synthetic data, the same for every backend.

    Training by ``steps``: the whole run is one epoch (``warmup + steps``), so a
    schedule spans the run. Training by ``epochs``: an ImageNet-sized epoch.
    Evaluation: ``eval_batches``, or 10.
    """
    if split == "train":
        if settings.epochs is not None:
            return max(1, IMAGENET_TRAIN_IMAGES // settings.batch_size)
        return settings.warmup + settings.steps
    return settings.eval_batches or SYNTHETIC_EVAL_BATCHES


class SyntheticStream:
    """One batch, made once on the device, yielded ``n`` times per epoch (no host work per step)."""

    def __init__(self, batch: tuple[object, ...], n: int) -> None:
        self.batch, self.n = batch, n
        self.start = 0

    def __len__(self) -> int:
        return self.n

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume: the next epoch begins at ``batch`` (every epoch is the same batch)."""
        self.start = batch

    def __iter__(self):  # noqa: ANN204 - yields the backend's batch type
        start, self.start = self.start, 0
        for _ in range(start, self.n):
            yield self.batch


def eval_arrays(settings: Settings, batch: int, mean: Sequence[float] = MEAN,
                std: Sequence[float] = STD) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The eval split of ``settings.data_root`` as host batches ``(float32 NCHW images, int64 labels)``, in order,
    preprocessed exactly as the backends' eval streams (the last batch may be short). For runtimes that take
    host arrays, such as exported models."""
    _, samples, bad = scan_split(settings, "val")
    skip = set(bad)
    samples = [x for i, x in enumerate(samples) if i not in skip]
    pre = preprocess_for(settings, False, mean, std)
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        images = np.stack([pre.load(path, None) for path, _ in chunk]).astype(np.float32, copy=False)
        yield images, np.array([label for _, label in chunk], dtype=np.int64)
