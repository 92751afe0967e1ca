"""Synthetic data: batches per epoch and the arrays of a synthetic batch, the same for every backend."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from harness.data.orders import repeat_synthetic

if TYPE_CHECKING:
    from harness.config import Settings

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
        assert settings.steps is not None, "steps or epochs"
        return settings.warmup + settings.steps
    return settings.eval_batches or SYNTHETIC_EVAL_BATCHES


def synthetic_arrays(settings: Settings, split: str, repeats: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic batch of ``split``: ``(float32 NCHW images, int64 labels)`` drawn from ``(seed, split)``
    alone, so every framework trains and evaluates on the same bytes. With ``repeats`` > 1 the batch holds whole
    instances, as the repeated-augmentation sampler gives."""
    s = settings
    rng = np.random.default_rng([s.seed, 0 if split == "train" else 1])
    images = rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32)
    labels = rng.integers(0, s.num_classes, s.batch_size, dtype=np.int64)
    if repeats > 1:
        pick = repeat_synthetic(s.batch_size, repeats)
        images, labels = images[pick], labels[pick]
    return np.ascontiguousarray(images), labels


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

    def __iter__(self) -> Iterator[tuple[object, ...]]:
        start, self.start = self.start, 0
        for _ in range(start, self.n):
            yield self.batch


