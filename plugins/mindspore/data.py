"""Data for the MindSpore backend: the core's synthetic arrays as tensors, or an ImageNet-layout folder
decoded by ``mindspore.dataset`` vision transforms in parallel workers, with the same preprocessing as the
PyTorch backend (:class:`harness.data.images.Preprocess`): random-resized-crop 0.08-1 / 3:4-4:3,
flip, colour jitter/hue/lighting as set for training; resize to size/eval_resize_ratio (bicubic) and
centre crop for evaluation; ImageNet mean/std.

Training reads the folder with ``ImageFolderDataset`` in :func:`harness.data.orders.epoch_order`; evaluation reads
:func:`harness.data.splits.eval_samples` (in order, the last batch padded with :data:`harness.data.splits.PAD_LABEL`
images), so every eval batch is whole and a graph compiled for it is never recompiled for a short last batch."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import vision
from mindspore.dataset.vision import Inter
from PIL import Image

from harness.config import Case, Settings
from harness.data.folders import IMAGE_EXTENSIONS
from harness.data.images import LIGHTING_EIGVAL, LIGHTING_EIGVEC
from harness.data.orders import TrainOrder
from harness.data.splits import (
    PAD_LABEL,
    eval_samples,
    note_unreadable,
    scan_split,
    unreadable_files,
)
from harness.data.synthetic import SyntheticStream, synthetic_arrays, synthetic_batches
from harness.dist import place
from harness.errors import HarnessError, one_line
from harness.models.specs import get_model

__all__ = ["make_stream", "TrainSampler", "EvalFiles"]


class TrainSampler(ds.Sampler):
    """The core's train sampler (:class:`harness.data.orders.TrainOrder`) as a ``mindspore.dataset`` sampler: the
    same order the PyTorch backend reads. :meth:`start_at` resumes in the middle of an epoch."""

    def __init__(self, order: TrainOrder) -> None:
        super().__init__(num_samples=len(order))
        self.order = order
        self.rank, self.world = order.rank, order.world
        #: Files found undecodable while loading: index -> the sample read in its place (the next readable one,
        #: as the PyTorch backend's loader takes), so the order of the epoch stays as it was.
        self.replace: dict[int, int] = {}

    def start_at(self, epoch: int, position: int) -> None:
        self.order.start_at(epoch, position)

    def __iter__(self) -> Iterator[int]:
        _, items = self.order.next_pass()
        return iter([self.replace.get(i, i) for _, i in items])

    def __len__(self) -> int:
        return len(self.order)


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


class EvalFiles:
    """Random-access source of ``GeneratorDataset``: the encoded bytes and label of each of
    :func:`harness.data.splits.eval_samples` (decoded by the pipeline's ``Decode``, as ``ImageFolderDataset`` does)."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path, label = self.samples[i]
        return np.fromfile(path, dtype=np.uint8), np.array(label, dtype=np.int32)


_FAILED_FILE = re.compile(r"The corresponding data file is: (.+?)\. ")


class FolderStream:
    """Batches of ``(image float32 NCHW, label int32)`` Tensors; one pass per ``iter()``.

    A file that passed the scan but fails in the pipeline's decoder (MindSpore names it in its error) is counted
    against ``max_bad_images`` and named (:func:`harness.data.splits.note_unreadable`), the next readable sample is read
    in its place, and the pipeline is started again at the batch it had reached."""

    def __init__(self, dataset: Callable[[], ds.Dataset], train: bool, settings: Settings,
                 samples: list[tuple[str, int]], sampler: TrainSampler | None = None,
                 files: EvalFiles | None = None, scan_bad: list[int] | None = None) -> None:
        self.make, self.train, self.settings, self.samples = dataset, train, settings, samples
        self.scan_bad = set(scan_bad or ())
        self.sampler, self.files = sampler, files
        self.dataset = dataset()
        self.n: int = self.dataset.get_dataset_size()
        self._it: Iterator[Any] | None = None
        self._epoch = 0

    def __len__(self) -> int:
        return self.n

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume a train stream (before its first pass): the next pass is ``epoch`` from batch ``batch`` on."""
        if self.sampler is None or self._it is not None:
            raise HarnessError("this MindSpore stream cannot start mid-run (an eval stream, or already iterated)")
        self.sampler.start_at(epoch, batch * self.dataset.get_batch_size())
        self._epoch = epoch

    def _failed_file(self, exc: RuntimeError, done: int) -> str | None:
        """The file the pipeline failed on: MindSpore names it for a folder dataset; for the eval list (encoded
        bytes from a generator) the files after the batches already yielded are decoded with Pillow until one
        fails."""
        found = _FAILED_FILE.search(str(exc))
        if found:
            return found.group(1)
        if self.files is None:
            return None
        from harness.data.images import to_rgb

        for path, _ in self.files.samples[done * self.dataset.get_batch_size():]:
            try:
                with Image.open(path) as im:
                    to_rgb(im).load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                return path
        return None

    def _skip_bad(self, exc: RuntimeError, done: int) -> None:
        """Note the file MindSpore could not decode and read the next readable one in its place (evaluation: leave
        it out of the score, as a padding image), or raise."""
        failed = self._failed_file(exc, done)
        index = {path: i for i, (path, _) in enumerate(self.samples)}.get(failed) if failed else None
        if index is None:
            detail = next((line for line in str(exc).splitlines() if line.strip().startswith("[ERROR]")), exc)
            raise HarnessError(f"MindSpore's data pipeline failed: {one_line(detail, first_line=True)}") from None
        split = "train" if self.train else "val"
        note_unreadable(self.settings, split, [f"{failed}: cannot decode image: MindSpore's decoder failed"])
        bad = self.scan_bad | {i for i, (path, _) in enumerate(self.samples) if path in unreadable_files(split)}
        nxt = next((j % len(self.samples) for j in range(index + 1, index + 1 + len(self.samples))
                    if j % len(self.samples) not in bad), None)
        if nxt is None:
            raise HarnessError(f"no image of '{split}' can be decoded") from None
        if self.sampler is not None:
            self.sampler.replace[index] = nxt
        elif self.files is not None:  # eval: the padded list, a label of its own for each position
            self.files.samples = [(p, y) if p != failed else (self.samples[nxt][0], PAD_LABEL)
                                  for p, y in self.files.samples]

    def __iter__(self) -> Iterator[tuple[ms.Tensor, ms.Tensor]]:
        done = 0  # batches of this pass yielded
        while True:
            try:
                if self.train:  # one iterator for the whole run: the pipeline keeps prefetching across epochs
                    if self._it is None:
                        self._it = self.dataset.create_tuple_iterator(num_epochs=-1)
                    for x, y in self._it:  # stops at the end of each epoch, then goes on with the next
                        done += 1
                        yield x, y
                else:
                    for k, (x, y) in enumerate(self.dataset.create_tuple_iterator(num_epochs=1)):
                        if k >= done:  # after a restart, the batches already yielded are passed over
                            done += 1
                            yield x, y
                self._epoch += 1
                return
            except RuntimeError as exc:
                self._skip_bad(exc, done)
                self.dataset, self._it = self.make(), None  # a fresh pipeline, from the batch this pass reached
                if self.sampler is not None:
                    self.sampler.start_at(self._epoch, done * self.dataset.get_batch_size())


def _transforms(s: Settings, train: bool, mean: tuple[float, ...], std: tuple[float, ...]) -> list[Any]:
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
    return [vision.Decode(), vision.Resize(round(size / s.eval_resize_ratio), Inter.BICUBIC),
            vision.CenterCrop(size), *norm, *chw]


def make_stream(case: Case, split: str, device: Any) -> Any:
    s = case.settings
    train = split == "train"
    spec = get_model(case.model)
    repeats = spec.repeats if train else 1
    if s.data == "synthetic":  # the core's bytes (the same as every framework's), on the device once
        x, y = synthetic_arrays(s, split, repeats)
        return SyntheticStream((ms.Tensor(x), ms.Tensor(y.astype(np.int32))), synthetic_batches(s, split))
    folder = "train" if train else "val"
    # the core's checks and messages, its class order and file order (which ImageFolderDataset lists alike)
    classes, samples, bad = scan_split(s, folder)
    ds.config.set_seed(s.seed)
    workers = max(1, s.workers)
    sampler, files = None, None
    if train:  # each rank its shard of a shuffle shared by all ranks
        where = place()
        sampler = TrainSampler(TrainOrder(len(samples), bad, repeats, s.seed, where.rank, where.world))
    else:  # readable images in order, padded to whole batches (labels -1, not counted by the eval step)
        files = EvalFiles(eval_samples(s))

    def pipeline() -> ds.Dataset:
        if train:
            exts = sorted({e for ext in IMAGE_EXTENSIONS for e in (ext, ext.upper())})
            data = ds.ImageFolderDataset(f"{s.data_root}/{folder}", sampler=sampler, num_parallel_workers=workers,
                                         extensions=exts, class_indexing={c: i for i, c in enumerate(classes)})
            data = data.map(operations=ds.transforms.TypeCast(ms.int32), input_columns="label")
        else:
            data = ds.GeneratorDataset(files, column_names=["image", "label"], shuffle=False,
                                       num_parallel_workers=workers, python_multiprocessing=False)
        data = data.map(operations=_transforms(s, train, spec.mean, spec.std),
                        input_columns="image", num_parallel_workers=workers)
        return data.batch(s.batch_size, drop_remainder=train)

    return FolderStream(pipeline, train, s, samples, sampler, files, bad)
