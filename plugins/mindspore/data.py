"""Data for the MindSpore backend: synthetic tensors, or an ImageNet-layout folder
through ``mindspore.dataset.ImageFolderDataset`` and vision transforms in
parallel workers, with the same preprocessing as the PyTorch backend
(:class:`harness.data.Preprocess`): random-resized-crop 0.08-1 / 3:4-4:3,
flip, colour jitter 0.4 for training; resize to size/0.875 (bicubic) and
centre crop for evaluation; ImageNet mean/std."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import vision
from mindspore.dataset.vision import Inter

from harness.config import Case
from harness.data import IMAGE_EXTENSIONS, SyntheticStream, scan_folder, synthetic_batches
from harness.errors import HarnessError
from harness.models import get_model

__all__ = ["make_stream"]


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


def _transforms(size: int, train: bool, augment: bool, mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    norm = [vision.Normalize([255 * m for m in mean], [255 * s for s in std]), vision.HWC2CHW()]
    if train and augment:
        return [vision.RandomCropDecodeResize(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                              interpolation=Inter.BILINEAR),
                vision.RandomHorizontalFlip(0.5),
                vision.RandomColorAdjust(brightness=0.4, contrast=0.4, saturation=0.4), *norm]
    if train:
        return [vision.Decode(), vision.Resize((size, size), Inter.BILINEAR), *norm]
    return [vision.Decode(), vision.Resize(int(round(size / 0.875)), Inter.BICUBIC), vision.CenterCrop(size), *norm]


def make_stream(case: Case, split: str, device: Any) -> Any:
    s = case.settings
    train = split == "train"
    if s.data == "synthetic":
        rng = np.random.default_rng(s.seed + (0 if train else 1))
        x = rng.standard_normal((s.batch_size, 3, s.image_size, s.image_size), dtype=np.float32)
        y = rng.integers(0, s.num_classes, s.batch_size).astype(np.int32)
        return SyntheticStream((ms.Tensor(x), ms.Tensor(y)), synthetic_batches(s, split))
    folder = "train" if train else "val"
    classes, _ = scan_folder(s.data_root, folder)  # the core's checks and messages, and its class order
    if len(classes) > s.num_classes:
        raise HarnessError(f"data_root '{s.data_root}' has {len(classes)} classes but num_classes is {s.num_classes}")
    ds.config.set_seed(s.seed)
    workers = max(1, s.workers)
    exts = sorted({e for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper())})
    data = ds.ImageFolderDataset(f"{s.data_root}/{folder}", shuffle=train, num_parallel_workers=workers,
                                 extensions=exts, class_indexing={c: i for i, c in enumerate(classes)})
    spec = get_model(case.model)
    data = data.map(operations=_transforms(s.image_size, train, s.augment, spec.mean, spec.std),
                    input_columns="image", num_parallel_workers=workers)
    data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label")
    data = data.batch(s.batch_size, drop_remainder=train)
    return FolderStream(data, train)
