"""Data streams for the PyTorch backend: the core's synthetic arrays on the device, or an
ImageNet-layout folder decoded with Pillow in DataLoader workers (no torchvision).

The eval split is :func:`harness.data.splits.eval_samples`: every batch full, the last one padded with images labelled
:data:`harness.data.splits.PAD_LABEL` that the eval step does not count."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from harness.config import Case, Settings
from harness.data.images import Preprocess, preprocess_for
from harness.data.orders import TrainOrder, augment_rng
from harness.data.splits import eval_samples, load_or_next, note_unreadable, scan_split
from harness.data.synthetic import SyntheticStream, synthetic_arrays, synthetic_batches
from harness.models.specs import get_model

__all__ = ["make_stream", "TrainSampler"]


class TrainSampler(Sampler[tuple[int, int, int, int]]):
    """The core's train sampler (:class:`harness.data.orders.TrainOrder`) as a DataLoader sampler.

    Yields ``(index, epoch, rank, position)``: the dataset seeds the sample's augmentation from where it falls
    in the run (:func:`harness.data.orders.augment_rng`), not from the loader worker. :meth:`start_at` resumes in the
    middle of an epoch."""

    def __init__(self, order: TrainOrder) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def start_at(self, epoch: int, position: int) -> None:
        self.order.start_at(epoch, position)

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        epoch, items = self.order.next_pass()
        return ((i, epoch, self.order.rank, pos) for pos, i in items)


class FolderDataset(Dataset[tuple[np.ndarray, int, str]]):
    def __init__(self, samples: list[tuple[str, int]], pre: Preprocess, seed: int) -> None:
        self.samples, self.pre, self.seed = samples, pre, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int, int, int]) -> tuple[np.ndarray, int, str]:
        if isinstance(key, tuple):  # a train sample: (index, epoch, rank, position)
            i, epoch, rank, position = key
            rng = augment_rng(self.seed, epoch, rank, position)
        else:
            i, rng = key, None
        return load_or_next(self.pre, self.samples, i, rng, scored=rng is None and not self.pre.train)


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class DeviceLoader:
    """Wraps a DataLoader: moves each batch to the device (and NHWC when asked)."""

    def __init__(self, loader: DataLoader[Any], device: torch.device, channels_last: bool, settings: Settings,
                 split: str) -> None:
        self.loader, self.device, self.channels_last = loader, device, channels_last
        self.settings, self.split = settings, split

    def __len__(self) -> int:
        return len(self.loader)

    def start_at(self, epoch: int, batch: int) -> None:
        """Resume a train stream: the next pass is ``epoch`` from its batch ``batch`` on."""
        sampler, batch_size = self.loader.sampler, self.loader.batch_size
        assert isinstance(sampler, TrainSampler) and batch_size is not None, "a train stream"
        sampler.start_at(epoch, batch * batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y, bad in self.loader:
            if any(bad):  # files whose data failed to decode in a worker: counted, named, max_bad_images applies
                note_unreadable(self.settings, self.split, bad)
            yield (x.to(self.device, non_blocking=True, memory_format=fmt),
                   y.to(self.device, non_blocking=True))


def make_stream(case: Case, split: str, device: torch.device) -> Any:
    s = case.settings
    spec = get_model(case.model)
    train = split == "train"
    repeats = spec.repeats if train else 1
    if s.data == "synthetic":  # the core's arrays (the same bytes in every framework), on the device once
        images, labels = synthetic_arrays(s, split, repeats)
        x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
        if s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return SyntheticStream((x, y), synthetic_batches(s, split))
    pre = preprocess_for(s, train, spec.mean, spec.std)
    _, samples, bad = scan_split(s, "train" if train else "val")
    sampler: Any = None
    if train:  # each rank its shard of a shuffle shared by all ranks, over the readable images
        world, rank = _world()
        sampler = TrainSampler(TrainOrder(len(samples), bad, repeats, s.seed, rank, world))
    else:  # the readable images in order, padded to whole batches with PAD_LABEL copies (the eval step skips them)
        samples = eval_samples(s)
    loader = DataLoader(
        FolderDataset(samples, pre, s.seed), batch_size=s.batch_size, sampler=sampler, drop_last=train,
        num_workers=s.workers, pin_memory=device.type == "cuda", persistent_workers=s.workers > 0,
    )
    return DeviceLoader(loader, device, s.channels_last, s, "train" if train else "val")
