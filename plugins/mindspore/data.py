"""Data for the MindSpore backend: synthetic tensors, or an ImageNet-layout folder
through ``mindspore.dataset.ImageFolderDataset`` and vision transforms in
parallel workers, with the same preprocessing as the PyTorch backend
(:class:`harness.data.Preprocess`): random-resized-crop 0.08-1 / 3:4-4:3,
flip, colour jitter/hue/lighting as set for training; resize to size/eval_resize_ratio (bicubic) and
centre crop for evaluation; ImageNet mean/std."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import vision
from mindspore.dataset.vision import Inter

from harness.config import Case, Settings
from harness.data import (IMAGE_EXTENSIONS, LIGHTING_EIGVAL, LIGHTING_EIGVEC, SyntheticStream, repeat_synthetic,
                          repeated_order, scan_folder, shard_order, synthetic_batches)
from harness.errors import HarnessError
from harness.models import check_batch, get_model

__all__ = ["make_stream", "RepeatedAugmentationSampler"]


class RepeatedAugmentationSampler(ds.Sampler):
    """Each index ``repeats`` times in a row (each copy augmented independently by the pipeline), a new
    shuffle every epoch; an epoch is ``n`` draws (:func:`harness.data.repeated_order`)."""

    def __init__(self, n: int, repeats: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.count = len(shard_order(np.zeros(n, np.int64), repeats, rank, world))
        super().__init__(num_samples=self.count)
        self.n, self.repeats, self.rank, self.world = n, repeats, rank, world
        self.rng = np.random.default_rng(seed)  # the same seed on every rank: the same order, sharded

    def __iter__(self) -> Iterator[int]:
        order = repeated_order(self.n, self.repeats, self.rng)
        return iter(shard_order(order, self.repeats, self.rank, self.world).tolist())

    def __len__(self) -> int:
        return self.count


class _Lighting:
    """AlexNet PCA lighting noise on a normalised HWC image: ``x + (eigvec @ (alpha * eigval)) / std``."""

    def __init__(self, std: float, channel_std: tuple[float, ...], seed: int) -> None:
        self.std, self.seed = std, seed
        self.scale = 1.0 / np.asarray(channel_std, np.float32)
        self.rng: np.random.Generator | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.rng is None:  # one generator per worker process
            self.rng = np.random.default_rng([self.seed, os.getpid()])
        alpha = self.rng.normal(0.0, self.std, 3)
        return (x + (LIGHTING_EIGVEC @ (alpha * LIGHTING_EIGVAL)).astype(np.float32) * self.scale).astype(np.float32)


class FolderStream:
    """Batches of ``(image float32 NCHW, label int32)`` Tensors; one pass per ``iter()``."""

    def __init__(self, dataset: ds.Dataset, train: bool) -> None:
        self.dataset, self.train = dataset, train
        self.n = dataset.get_dataset_size()
        self._it: Iterator[Any] | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[ms.Tensor, ms.Tensor]]:
        if self.train:  # one iterator for the whole run: the pipeline keeps prefetching across epochs
            if self._it is None:
                self._it = self.dataset.create_tuple_iterator(num_epochs=-1)
            for x, y in self._it:  # stops at the end of each epoch, then goes on with the next
                yield x, y
        else:
            for x, y in self.dataset.create_tuple_iterator(num_epochs=1):
                yield x, y


def _transforms(s: Settings, train: bool, mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    size = s.image_size
    norm = [vision.Normalize([255 * m for m in mean], [255 * v for v in std])]
    chw = [vision.HWC2CHW()]
    if train and s.augment:
        ops = [vision.RandomCropDecodeResize(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                             interpolation=Inter.BILINEAR),
               vision.RandomHorizontalFlip(0.5)]
        if s.color_jitter > 0 or s.hue_jitter > 0:
            j = s.color_jitter
            ops.append(vision.RandomColorAdjust(brightness=(max(0.0, 1 - j), 1 + j), contrast=(max(0.0, 1 - j), 1 + j),
                                                saturation=(max(0.0, 1 - j), 1 + j), hue=s.hue_jitter))
        lighting = [_Lighting(s.lighting, std, s.seed)] if s.lighting > 0 else []
        return [*ops, *norm, *lighting, *chw]
    if train:
        return [vision.Decode(), vision.Resize((size, size), Inter.BILINEAR), *norm, *chw]
    return [vision.Decode(), vision.Resize(int(round(size / s.eval_resize_ratio)), Inter.BICUBIC),
            vision.CenterCrop(size), *norm, *chw]


def _world() -> tuple[int, int]:
    if int(os.environ.get("RANK_SIZE", "1")) > 1:
        from mindspore.communication import get_group_size, get_rank

        return get_group_size(), get_rank()
    return 1, 0


def make_stream(case: Case, split: str, device: Any) -> Any:
    s = case.settings
    train = split == "train"
    spec = get_model(case.model)
    repeats = spec.repeats if train else 1
    check_batch(s.batch_size, repeats, case.model)
    if s.data == "synthetic":
        rng = np.random.default_rng(s.seed + (0 if train else 1))
        x = rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32)
        y = rng.integers(0, s.num_classes, s.batch_size).astype(np.int32)
        if repeats > 1:  # whole instances, as the repeated-augmentation sampler gives
            pick = repeat_synthetic(s.batch_size, repeats)
            x, y = x[pick], y[pick]
        return SyntheticStream((ms.Tensor(x), ms.Tensor(y)), synthetic_batches(s, split))
    folder = "train" if train else "val"
    classes, samples = scan_folder(s.data_root, folder)  # the core's checks and messages, and its class order
    if len(classes) > s.num_classes:
        raise HarnessError(f"data_root '{s.data_root}' has {len(classes)} classes but num_classes is {s.num_classes}")
    ds.config.set_seed(s.seed)
    workers = max(1, s.workers)
    exts = sorted({e for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper())})
    world, rank = _world()
    shards = {}
    if repeats > 1:
        sampler = RepeatedAugmentationSampler(len(samples), repeats, s.seed, rank, world)
    else:
        sampler = None
        if train and world > 1:  # each rank its shard
            shards = {"num_shards": world, "shard_id": rank}
    data = ds.ImageFolderDataset(f"{s.data_root}/{folder}", shuffle=None if sampler else train, sampler=sampler,
                                 num_parallel_workers=workers, extensions=exts,
                                 class_indexing={c: i for i, c in enumerate(classes)}, **shards)
    data = data.map(operations=_transforms(s, train, spec.mean, spec.std),
                    input_columns="image", num_parallel_workers=workers)
    data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label")
    data = data.batch(s.batch_size, drop_remainder=train)
    return FolderStream(data, train)
