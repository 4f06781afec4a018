"""Receive buffers that a bucket reuses once no gradient cut from them is held any more.

Each step's summed gradients are pieces of the buffer a bucket received
into, handed over as the parameters' gradients. Gradients are values: no
one may see them change, so a buffer can take the next step's sums only
once nothing outside this pool refers to it or to any of its pieces (the
optimizer has made the new parameters, and the old ones, with their
gradients, are gone). CPython counts references exactly: a buffer whose
count and whose pieces' counts are back to what they were when it was made
is referred to by this pool alone. Otherwise a new buffer is made, and the
held one is left to its holders. Making a new array each step instead costs
an allocation of the bucket's size (page faults, where the allocator hands
big blocks back to the system) and new pieces each step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

# Exact reference counts: CPython with its global lock (a free-threaded build defers some counts)
EXACT_COUNTS = sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)()
# buffers a bucket keeps: the one the gradients in use were cut from, the next step's, one spare
KEEP = 3

Cut = tuple[int, int, int, "tuple[int, ...] | None"]  # position, start, stop, shape (None: 1-D already)


class Receipt:
    """One receive buffer and its pieces: read-only views shaped like the parameters, made once.

    >>> receipt = Receipt(5, np.dtype("float64"), [(0, 0, 4, (2, 2)), (1, 4, 5, None)])
    >>> receipt.buffer[:] = np.arange(5.0)
    >>> [piece.tolist() for piece in receipt.pieces]
    [[[0.0, 1.0], [2.0, 3.0]], [4.0]]
    >>> receipt.pieces[1].flags.writeable, receipt.free()
    (False, True)
    >>> held = receipt.pieces[0]
    >>> receipt.free()
    False
    """

    __slots__ = ("_count", "_counts", "buffer", "pieces", "positions")

    def __init__(self, size: int, dtype: np.dtype, cuts: Sequence[Cut]) -> None:
        self.buffer = np.empty(size, dtype=dtype)  # MPI writes here: it stays writable
        self.pieces: list[np.ndarray] = []
        self.positions = [position for position, _, _, _ in cuts]
        for _, start, stop, shape in cuts:
            self.pieces.append(self.buffer[start:stop] if shape is None else self.buffer[start:stop].reshape(shape))
            self.pieces[-1].setflags(write=False)
        # the counts when nothing else refers to them (each piece's view counts in the buffer's),
        # read the way free() reads them
        self._count = sys.getrefcount(self.buffer)
        self._counts = []
        for piece in self.pieces:
            self._counts.append(sys.getrefcount(piece))

    def free(self) -> bool:
        """Whether nothing but this receipt refers to the buffer or its pieces (always False without exact counts)."""
        if not EXACT_COUNTS or sys.getrefcount(self.buffer) != self._count:
            return False
        # (a plain loop, as __init__'s: zip or enumerate would hold the piece in their reused tuple)
        counts = iter(self._counts)
        for piece in self.pieces:
            if sys.getrefcount(piece) != next(counts):
                return False
        return True


class ReceivePool:
    """The receive buffers of one bucket: ``take()`` gives one that no gradient in use was cut from.

    >>> pool = ReceivePool(2, np.dtype("float32"), [(0, 0, 2, None)])
    >>> first = pool.take()
    >>> pool.take() is first                     # nothing holds its pieces: reused
    True
    >>> gradient = first.pieces[0]               # held (as a parameter's gradient is)
    >>> second = pool.take()
    >>> second is first, len(pool)
    (False, 2)
    >>> del gradient
    >>> pool.take() is first
    True
    """

    __slots__ = ("cuts", "dtype", "next", "receipts", "size")

    def __init__(self, size: int, dtype: np.dtype, cuts: Sequence[Cut]) -> None:
        self.size = size
        self.dtype = dtype
        self.cuts = list(cuts)
        self.receipts: list[Receipt] = []
        self.next = 0  # where to look first: after the last one taken (the one in use is likeliest held)

    def __len__(self) -> int:
        return len(self.receipts)

    def take(self) -> Receipt:
        """A receipt whose buffer and pieces nothing else refers to: a kept one, or a new one."""
        receipts = self.receipts
        count = len(receipts)
        for turn in range(count):
            index = (self.next + turn) % count
            if receipts[index].free():
                self.next = index + 1
                return receipts[index]
        receipt = Receipt(self.size, self.dtype, self.cuts)
        if count >= KEEP:
            # held by someone (a gradient kept past its step): theirs now; forget the oldest
            del receipts[0]
        receipts.append(receipt)
        self.next = len(receipts)
        return receipt
