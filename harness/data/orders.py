"""Sample orders, the same in every framework: the train order per epoch (repeated augmentation), its shard per
rank, and the seed of each sample's augmentation."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass

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


