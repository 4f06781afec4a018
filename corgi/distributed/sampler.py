"""Each rank's share of the same shuffled global batches.

Every rank draws the same permutation of the examples from a shared seed and
the epoch number, cuts it into the same global batches, and takes its own
part of each: ``numpy.array_split`` of the batch into ``size`` parts, the
first ranks taking one example more when the batch does not divide evenly.
So over an epoch the ranks together see every example exactly once, and a
short last batch is split like any other (a rank may get no example of it;
``DataParallel.step`` then takes part with weight zero). No communication:
the ranks agree because they compute the same thing (with the same numpy).
"""

from __future__ import annotations

import numpy as np

from ..checks import whole_number


class ShardedSampler:
    """The indices of rank ``rank`` of ``size`` in each global batch of ``batch_size`` of ``count`` examples.

    ``seed`` must be the same on every rank; ``shuffle=False`` keeps the
    examples in order.

    >>> sampler = ShardedSampler(10, batch_size=4, rank=1, size=2, seed=0)
    >>> len(sampler), [len(part) for part in sampler.batches(epoch=0)]    # global batches of 4, 4, 2
    (3, [2, 2, 1])
    >>> shares = [ShardedSampler(10, 4, rank, 2, seed=0).batches(epoch=0) for rank in (0, 1)]
    >>> [np.concatenate(pair).tolist() for pair in zip(*shares)] == [
    ...     batch.tolist() for batch in sampler.global_batches(epoch=0)]
    True
    """

    def __init__(self, count: int, batch_size: int, rank: int = 0, size: int = 1, *, seed: int = 0, shuffle: bool = True) -> None:
        where = "ShardedSampler"
        self.count = whole_number(count, "count", where, minimum=1)
        self.batch_size = whole_number(batch_size, "batch_size", where, minimum=1)
        self.size = whole_number(size, "size", where, minimum=1)
        self.rank = whole_number(rank, "rank", where, minimum=0)
        if self.rank >= self.size:
            raise ValueError(f"{where}: rank must be below size {self.size}, got {self.rank}")
        self.seed = whole_number(seed, "seed", where, minimum=0)
        if not isinstance(shuffle, bool):
            raise TypeError(f"{where}: shuffle must be True or False, got {shuffle!r}")
        self.shuffle = shuffle

    def __repr__(self) -> str:
        return (
            f"ShardedSampler({self.count}, batch_size={self.batch_size}, rank={self.rank}, size={self.size}, "
            f"seed={self.seed}, shuffle={self.shuffle})"
        )

    def __len__(self) -> int:
        """Global batches per epoch, the last one possibly short (the same on every rank).

        >>> len(ShardedSampler(100, 32)), len(ShardedSampler(96, 32))
        (4, 3)
        """
        return (self.count + self.batch_size - 1) // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """Every example's index, in this epoch's order (the same on every rank).

        >>> ShardedSampler(5, 2, shuffle=False).order(3).tolist()
        [0, 1, 2, 3, 4]
        >>> bool((ShardedSampler(5, 2).order(0) == ShardedSampler(5, 2).order(0)).all())
        True
        """
        epoch = whole_number(epoch, "epoch", "ShardedSampler.order", minimum=0)
        if not self.shuffle:
            return np.arange(self.count)
        return np.random.default_rng([self.seed, epoch]).permutation(self.count)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's global batches: what one process would train on, batch by batch.

        >>> [batch.tolist() for batch in ShardedSampler(5, 2, shuffle=False).global_batches(0)]
        [[0, 1], [2, 3], [4]]
        """
        order = self.order(epoch)
        return [order[start : start + self.batch_size] for start in range(0, self.count, self.batch_size)]

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's part of each global batch of the epoch (an empty array where it gets none).

        >>> sampler = ShardedSampler(5, 2, rank=1, size=3, shuffle=False)
        >>> [part.tolist() for part in sampler.batches(0)]
        [[1], [3], []]
        """
        return [np.array_split(batch, self.size)[self.rank] for batch in self.global_batches(epoch)]
