"""Data streams for the PyTorch backend: synthetic tensors on the device, or an
ImageNet-layout folder decoded with Pillow in DataLoader workers (no torchvision)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from harness.config import Case
from harness.data import (Preprocess, SyntheticStream, preprocess_for, repeat_synthetic, repeated_order, scan_folder,
                          shard_order, synthetic_batches)
from harness.errors import HarnessError
from harness.models import check_batch, get_model

__all__ = ["make_stream", "RepeatedAugmentationSampler"]


class RepeatedAugmentationSampler(Sampler[int]):
    """Each index ``repeats`` times in a row (each copy augmented independently by the dataset),
    a new shuffle every epoch; an epoch is ``n`` draws (:func:`harness.data.repeated_order`)."""

    def __init__(self, n: int, repeats: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.repeats, self.rank, self.world = n, repeats, rank, world
        self.rng = np.random.default_rng(seed)  # the same seed on every rank: the same order, sharded

    def __len__(self) -> int:
        return len(shard_order(np.zeros(self.n, np.int64), self.repeats, self.rank, self.world))

    def __iter__(self) -> Iterator[int]:
        order = repeated_order(self.n, self.repeats, self.rng)
        return iter(shard_order(order, self.repeats, self.rank, self.world).tolist())


class FolderDataset(Dataset):
    def __init__(self, root: str, split: str, pre: Preprocess, seed: int) -> None:
        self.classes, self.samples = scan_folder(root, split)
        self.pre, self.seed = pre, seed
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def _generator(self) -> np.random.Generator:
        if self._rng is None:  # per worker: torch gives each worker (and epoch) its own seed
            info = get_worker_info()
            self._rng = np.random.default_rng(info.seed if info else self.seed)
        return self._rng

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[i]
        return self.pre.load(path, self._generator()), label


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class DeviceLoader:
    """Wraps a DataLoader: moves each batch to the device (and NHWC when asked)."""

    def __init__(self, loader: DataLoader, device: torch.device, channels_last: bool) -> None:
        self.loader, self.device, self.channels_last = loader, device, channels_last
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        sampler = self.loader.sampler
        if isinstance(sampler, DistributedSampler):  # a new shuffle each epoch
            sampler.set_epoch(self.epoch)
        self.epoch += 1
        for x, y in self.loader:
            yield (x.to(self.device, non_blocking=True, memory_format=fmt),
                   y.to(self.device, non_blocking=True))


def make_stream(case: Case, split: str, device: torch.device) -> Any:
    s = case.settings
    spec = get_model(case.model)
    train = split == "train"
    repeats = spec.repeats if train else 1
    check_batch(s.batch_size, repeats, case.model)
    if s.data == "synthetic":
        g = torch.Generator(device="cpu").manual_seed(s.seed + (0 if train else 1))
        x = torch.randn(s.batch_size, 3, s.image_size, s.image_size, generator=g)
        y = torch.randint(0, s.num_classes, (s.batch_size,), generator=g)
        if repeats > 1:  # whole instances, as the repeated-augmentation sampler gives
            pick = torch.from_numpy(repeat_synthetic(s.batch_size, repeats))
            x, y = x[pick], y[pick]
        x, y = x.to(device), y.to(device)
        if s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return SyntheticStream((x, y), synthetic_batches(s, split))
    pre = preprocess_for(s, train, spec.mean, spec.std)
    ds = FolderDataset(s.data_root, "train" if train else "val", pre, s.seed)
    if len(ds.classes) > s.num_classes:
        raise HarnessError(f"data_root '{s.data_root}' has {len(ds.classes)} classes but num_classes is {s.num_classes}")
    world, rank = _world()
    if repeats > 1:
        sampler = RepeatedAugmentationSampler(len(ds), repeats, s.seed, rank, world)
    elif train and world > 1:  # each rank its shard of a shuffle shared by all ranks
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=s.seed, drop_last=True)
    else:
        sampler = None
    loader = DataLoader(
        ds, batch_size=s.batch_size, shuffle=train and sampler is None, sampler=sampler, drop_last=train,
        num_workers=s.workers,
        pin_memory=device.type == "cuda", persistent_workers=s.workers > 0,
        generator=torch.Generator().manual_seed(s.seed),
    )
    return DeviceLoader(loader, device, s.channels_last)
