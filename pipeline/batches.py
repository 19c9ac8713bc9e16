"""Training batches that do not depend on who loads them: the epoch's order, each item's random
draws, and each process's share of every global batch.

Every training (detector, finetune) draws its epoch order from ``(seed, epoch)`` and each item's
augmentation from ``(seed, epoch, index)``, so that loader workers and training processes change
nothing: several processes take, batch by batch, the items that one process takes.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

ItemKey = tuple[int, int]   # (epoch, index)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of ``n`` items in epoch ``epoch``: int64 [n]."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one item in one epoch, whichever process or worker loads it."""
    return np.random.default_rng([seed, epoch, index])


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This process's share of every global batch of an epoch, as lists of ``(epoch, index)`` keys.

    The epoch's order (:func:`epoch_order`) is cut into global batches of ``batch_size`` items
    (a multiple of ``world_size``), and process ``rank`` takes its contiguous slice of each. A last
    batch that does not split evenly is, with ``pad_last``, topped up with the epoch's first items
    to a multiple of ``world_size`` (as DistributedSampler pads: equal shares, for a loss averaged
    per process); without it, it is split as evenly as it goes (for a loss normalized over the
    global batch), and left out when it has fewer items than processes. With one process the
    epoch is taken whole either way. Call :meth:`set_epoch` before iterating.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 pad_last: bool = False):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} training processes: "
                             "each takes an equal share of every batch")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world_size, self.pad_last = rank, world_size, pad_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[np.ndarray]:
        order = epoch_order(self.seed, self.epoch, self.n_items)
        batches = [order[i:i + self.batch_size] for i in range(0, self.n_items, self.batch_size)]
        if self.pad_last:
            return [np.concatenate([b, np.resize(order, -len(b) % self.world_size)]) for b in batches]
        return [b for b in batches if len(b) >= self.world_size]

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for batch in self.global_batches():
            share = np.array_split(batch, self.world_size)[self.rank]
            yield [(self.epoch, int(i)) for i in share]

    def __len__(self) -> int:
        return len(self.global_batches())
