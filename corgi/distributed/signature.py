"""What every rank must agree on before training together, and the first place they don't.

Ranks that wrap different models would exchange buffers of different sizes:
MPI would then mix up gradients or wait forever. So at wrap time each rank
sends a small signature (parameter names, dimensions, dtypes, and the
options that decide the buckets) to every other, and all of them compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..array import Array


@dataclass(frozen=True)
class Signature:
    """A rank's parameters (names, dimensions, dtype names) and the exchange options, comparable and small.

    >>> from corgi import arr
    >>> Signature.of([("w", arr(1.0, 2.0))], bucket_bytes=64).shapes
    ((2,),)
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    options: tuple[tuple[str, object], ...]

    @classmethod
    def of(cls, named: Sequence[tuple[str, Array]], **options: object) -> Signature:
        """The signature of ``(name, parameter)`` pairs and the given options.

        >>> from corgi import arr
        >>> Signature.of([("w", arr(1.0))], reduction="allreduce").options
        (('reduction', 'allreduce'),)
        """
        return cls(
            tuple(name for name, _ in named),
            tuple(tuple(parameter.dimensions) for _, parameter in named),
            tuple(parameter.dtype.name for _, parameter in named),
            tuple(sorted(options.items())),
        )


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(str(rank) for rank in ranks)


def first_difference(signatures: Sequence[Signature]) -> str | None:
    """None if every rank's signature (in rank order) equals rank 0's; else the first difference, with the ranks.

    >>> from corgi import Array
    >>> def sig(*shapes, dtype="float64"):
    ...     return Signature.of([(f"0.{i}", Array.zeros(s, dtype=dtype)) for i, s in enumerate(shapes)])
    >>> first_difference([sig((2, 3), (3,)), sig((2, 3), (3,))]) is None
    True
    >>> first_difference([sig((2, 3), (3,)), sig((2, 3), (3,)), sig((2, 4), (4,))])
    "parameter 0 ('0.0') has dimensions (2, 3) on rank 0 but (2, 4) on rank 2"
    >>> first_difference([sig((2, 3)), sig((2, 3), dtype="float32"), sig((2, 3), dtype="float32")])
    "parameter 0 ('0.0') has dtype float64 on rank 0 but float32 on ranks 1, 2"
    >>> first_difference([sig((2, 3), (3,)), sig((2, 3))])
    'rank 0 has 2 parameters but rank 1 has 1'
    """
    reference = signatures[0]
    if all(signature == reference for signature in signatures):
        return None
    counts = [rank for rank, signature in enumerate(signatures) if len(signature.names) != len(reference.names)]
    if counts:
        count = len(signatures[counts[0]].names)
        verb = "has" if len(counts) == 1 else "have"
        return f"rank 0 has {len(reference.names)} parameters but {_ranks(counts)} {verb} {count}"
    for position, name in enumerate(reference.names):
        for field, label in (("names", "name"), ("shapes", "dimensions"), ("dtypes", "dtype")):
            ours: object = getattr(reference, field)[position]
            ranks = [rank for rank, signature in enumerate(signatures) if getattr(signature, field)[position] != ours]
            if ranks:
                theirs: object = getattr(signatures[ranks[0]], field)[position]
                if field == "names":
                    ours, theirs = repr(ours), repr(theirs)
                return f"parameter {position} ({name!r}) has {label} {ours} on rank 0 but {theirs} on {_ranks(ranks)}"
    for key, option in reference.options:
        ranks = [rank for rank, signature in enumerate(signatures) if dict(signature.options).get(key) != option]
        if ranks:
            other = dict(signatures[ranks[0]].options).get(key)
            return f"{key} is {option!r} on rank 0 but {other!r} on {_ranks(ranks)}"
    return "their signatures differ"  # not reached while the checks above cover every field
