"""The step's status, summed across ranks in the tail of the last gradient bucket, exactly.

Besides the gradients, every step's exchange must tell each rank three
things: per parameter, how many ranks had a gradient for it (a parameter no
rank used gets none); each rank's loss share (``extra``, summed into the
global loss); and which ranks failed. They travel in the last bucket's
buffer, after its gradients, so a step makes no collective operation of its
own for them: the status costs a few more elements in a reduction that runs
anyway, not a further meeting of the ranks.

The tail is in the bucket's dtype (float32 or float64), and the reduction
sums it. For ``P`` parameters and ``S`` ranks it holds ``P + 5 S`` values:

- ``P`` use flags: 1 where this rank has the parameter's gradient, else 0.
  Their sum is the number of ranks that used it: an integer from 0 to ``S``,
  and so is every partial sum, in whatever order MPI adds, so every addition
  is exact as long as ``S <= 2**24`` in float32 (every integer up to ``2**24``
  is a float32; ``2**53`` in float64). ``Status`` refuses more ranks.
- ``S`` failure marks, one per rank, and ``S`` groups of four ``extra``
  words, one per rank: ``extra``, a float64, as its 64 bits cut into four
  16-bit integers (each at most 65535, exact in either dtype). Rank r writes
  only its own mark and words, and zeros stand in every other's, so each of
  these sums is rank r's value plus zeros: exactly the value. Every rank
  rebuilds every rank's ``extra`` bit for bit and sums them with
  ``math.fsum`` (the correctly rounded sum, so the same on every rank and,
  for two ranks, the very ``a + b`` a float64 reduction gives).
"""

from __future__ import annotations

import math

import numpy as np

RECORD = 5  # per rank: a failure mark, and its ``extra`` as four 16-bit integers


def status_size(parameters: int, ranks: int) -> int:
    """How many values the status takes in the last bucket: a use flag per parameter, a mark and four words per rank.

    >>> status_size(4, 2)
    14
    """
    return parameters + RECORD * ranks


class Status:
    """This rank's view of the status tail it sends, and the reading of the tail every rank receives.

    ``tail`` is the part of the last bucket's send buffer after its
    gradients (``status_size(parameters, ranks)`` values, zeros at first).

    >>> tail = np.zeros(status_size(2, 3), dtype=np.float32)
    >>> status = Status(tail, parameters=2, rank=1, ranks=3, where="here")
    >>> status.flags[1] = 0.0                  # parameter 1: no gradient on this rank
    >>> status.mark(extra=0.1, failed=False)
    >>> status.read(tail), status.unused(tail)   # (what one rank's sum would be)
    (([], 0.1), [1])
    >>> Status(tail, 2, 0, 2**24 + 1, "here")
    Traceback (most recent call last):
    ...
    ValueError: here: float32 gradients count at most 16777216 ranks exactly, got 16777217
    """

    def __init__(self, tail: np.ndarray, parameters: int, rank: int, ranks: int, where: str) -> None:
        # every integer up to 2**(mantissa bits + 1) is exact: the use counts stay exact up to there
        limit = 2 ** (np.finfo(tail.dtype).nmant + 1)
        if ranks > limit:
            raise ValueError(f"{where}: {tail.dtype} gradients count at most {limit} ranks exactly, got {ranks}")
        self.parameters = parameters
        self.ranks = ranks
        self.tail = tail
        self.flags = tail[:parameters]
        self.flags.fill(1.0)
        self.marks = parameters, parameters + ranks  # where the failure marks are
        self.mine = parameters + rank  # this rank's mark
        start = parameters + ranks + 4 * rank
        self.words = tail[start : start + 4]  # this rank's extra
        # extra's float64, and the same 8 bytes as four little-endian 16-bit words
        self._bits = np.zeros(1, dtype="<f8")
        self._chunks = self._bits.view("<u2")

    def mark(self, extra: float, failed: bool) -> None:
        """Write this rank's failure mark and ``extra``, bit for bit.

        >>> tail = np.zeros(status_size(0, 1))
        >>> Status(tail, 0, 0, 1, "here").mark(-2.5, failed=True)
        >>> tail.tolist()                     # -2.5 is 0xC004000000000000
        [1.0, 0.0, 0.0, 0.0, 49156.0]
        """
        self.tail[self.mine] = 1.0 if failed else 0.0
        self._bits[0] = extra
        np.copyto(self.words, self._chunks)

    def read(self, tail: np.ndarray) -> tuple[list[int], float]:
        """From a received (summed) tail: the failed ranks, and the sum of every rank's ``extra``.

        >>> tail = np.zeros(status_size(1, 2))
        >>> Status(tail, 1, 0, 2, "here").mark(1.5, failed=False)
        >>> Status(tail, 1, 1, 2, "here").mark(2.25, failed=True)    # (as if summed)
        >>> Status(tail, 1, 0, 2, "here").read(tail)
        ([1], 3.75)
        """
        marks = tail[self.marks[0] : self.marks[1]].tolist()
        failed = [rank for rank, mark in enumerate(marks) if mark] if any(marks) else []
        extras = self.extras(tail)
        try:
            return failed, math.fsum(extras)
        except (ValueError, OverflowError):  # inf - inf, or a sum beyond float64: as a plain sum would say
            return failed, sum(extras)

    def extras(self, tail: np.ndarray) -> list[float]:
        """From a received (summed) tail: every rank's ``extra``, bit for bit, in rank order.

        >>> tail = np.zeros(status_size(0, 1), dtype=np.float32)
        >>> Status(tail, 0, 0, 1, "here").mark(0.1, failed=False)
        >>> Status(tail, 0, 0, 1, "here").extras(tail) == [0.1]
        True
        """
        # the words are exact integers: back to 16-bit words, then to the float64s they were
        extras: list[float] = tail[self.marks[1] :].astype("<u2").view("<f8").tolist()
        return extras

    def unused(self, tail: np.ndarray) -> list[int]:
        """From a received (summed) tail: the parameters no rank had a gradient for.

        >>> tail = np.zeros(status_size(3, 1))
        >>> status = Status(tail, 3, 0, 1, "here")
        >>> status.flags[1] = 0.0
        >>> status.unused(tail)
        [1]
        """
        unused: list[int] = np.flatnonzero(tail[: self.parameters] == 0).tolist()
        return unused
