"""Sample orders, the same in every framework: the train order per epoch (repeated augmentation), its shard per
rank, the seed of each sample's augmentation, and :class:`TrainOrder`, the train sampler every data stream (the
core's host batches, each backend's own) reads its epochs from; :func:`forever`, any stream's batches across
epochs."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from harness.errors import HarnessError

__all__ = ["repeated_order", "epoch_order", "augment_rng", "shard_order", "repeat_synthetic", "TrainOrder", "forever"]

T = TypeVar("T")


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


class TrainOrder:
    """The train sampler, in one place: over the ``n`` samples of a split less the unreadable positions ``bad``,
    rank ``rank``'s :func:`epoch_order` of each epoch in turn, resumable mid-epoch. A backend's sampler (a
    framework ``Sampler`` class) wraps one and only turns its positions into what its loader takes.

    Each :meth:`next_pass` is the next epoch (or the rest of the one :meth:`start_at` names); ``len()`` is the
    samples of one epoch for this rank (the same every epoch)."""

    def __init__(self, n: int, bad: Sequence[int], repeats: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.keep = np.delete(np.arange(n), np.asarray(bad, dtype=np.int64))
        self.repeats, self.seed, self.rank, self.world = repeats, seed, rank, world
        self.count = len(shard_order(np.zeros(len(self.keep), np.int64), repeats, rank, world))
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.count

    def order(self, epoch: int) -> np.ndarray:
        """Sample indices (into the split's samples, unreadable ones left out) of ``epoch`` for this rank."""
        order: np.ndarray = self.keep[epoch_order(len(self.keep), self.repeats, self.seed, epoch, self.rank,
                                                  self.world)]
        return order

    def start_at(self, epoch: int, position: int) -> None:
        """Resume: the next pass is ``epoch`` from its sample ``position`` on."""
        self.epoch, self.start = epoch, position

    def next_pass(self) -> tuple[int, Iterator[tuple[int, int]]]:
        """The next pass's epoch and its ``(position in the epoch, sample index)`` pairs; the pass after it is
        the following epoch from its start."""
        epoch, start = self.epoch, self.start
        self.epoch, self.start = epoch + 1, 0
        order = self.order(epoch).tolist()
        return epoch, ((pos, order[pos]) for pos in range(start, len(order)))


def forever(stream: Iterable[T]) -> Iterator[T]:
    """Batches of a stream across epochs (each iteration of it starts the next); a stream with no batches is an
    error."""
    while True:
        empty = True
        for batch in stream:
            empty = False
            yield batch
        if empty:
            raise HarnessError("the data stream yielded no batches (dataset smaller than one batch?)")
