"""The registry of operations, and un-broadcasting done once for all of them.

A primitive is a numpy forward function and one vector-Jacobian product
(vjp) per operand, registered together under a name:

    # d(xy) = y dx + x dy
    @register("mul", _mul_dx, _mul_dy)
    def mul(x, y):
        return x * y, (x, y)

The forward ``f(*operands, **params)`` returns ``(value, saved)`` or
``(value, saved, cost)``: the value, whatever its vjps need later, and
optionally an estimate of the work its backward does (default: the number
of output elements). Vjp ``i`` maps the delta arriving at the output, and
``saved``, to the delta of operand ``i``. Vjps are module-level functions,
not closures made per call, so a recorded operation costs one small tuple
of saved arrays; a vjp reads what it needs from ``saved`` by name (a
NamedTuple, or a tuple it unpacks), never by position. A vjp may return a
delta in the broadcast shape; ``sum_to`` brings it back to its operand's
shape, so no primitive repeats that logic.

A variadic primitive (``concatenate``) takes any number of operands; it
registers one function ``vjp_at(position)`` that makes the vjp of the
operand at ``position``.

Operations built from primitives, with no gradient code of their own
(``mean`` is ``sum`` and ``mul``), are registered in ``COMPOSED`` with what
they are made of, so that tests sweep them and the docs list them beside
the primitives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

# what a primitive computes with: numpy arrays, and Python floats for constants
Values = np.ndarray | float
Vjp = Callable[[np.ndarray, Any], np.ndarray]
# a forward returns (value, saved) or (value, saved, cost)
Forward = Callable[..., tuple[Any, ...]]
F = TypeVar("F", bound=Callable[..., Any])
_add_reduce = np.add.reduce


class _Subsets:
    """The vjps of the operands whose bits are set in ``mask``, for a variadic primitive."""

    __slots__ = ("vjp_at",)

    def __init__(self, vjp_at: Callable[[int], Vjp]) -> None:
        self.vjp_at = vjp_at

    def __getitem__(self, mask: int) -> tuple[Vjp, ...]:
        vjps = []
        position = 0
        while mask:
            if mask & 1:
                vjps.append(self.vjp_at(position))
            mask >>= 1
            position += 1
        return tuple(vjps)


class Primitive(NamedTuple):
    """A forward function and the vjp of each operand.

    ``subsets[mask]`` holds the vjps of the operands whose bits are set in
    ``mask`` (bit i for operand i), precomputed so that recording an
    operation picks its tuple by index and every node shares it. A variadic
    primitive has no fixed ``vjps``; its ``subsets`` makes each tuple on
    demand from ``vjp_at``.
    """

    forward: Forward
    vjps: tuple[Vjp, ...]
    subsets: tuple[tuple[Vjp, ...], ...] | _Subsets
    variadic: bool = False


PRIMITIVES: dict[str, Primitive] = {}

# name -> what the operation is composed of (the primitives or other compositions it calls)
COMPOSED: dict[str, str] = {}


def register(name: str, *vjps: Vjp) -> Callable[[Forward], Forward]:
    """Add a primitive under ``name`` (the tracer and the docs use the name)."""

    def add(forward: Forward) -> Forward:
        _check_free(name)
        subsets = tuple(
            tuple(vjp for i, vjp in enumerate(vjps) if mask >> i & 1) for mask in range(1 << len(vjps))
        )
        PRIMITIVES[name] = Primitive(forward, vjps, subsets)
        return forward

    return add


def register_variadic(name: str, vjp_at: Callable[[int], Vjp]) -> Callable[[Forward], Forward]:
    """Add a primitive of any number of operands; ``vjp_at(i)`` makes operand i's vjp (cached)."""
    cached = functools.lru_cache(maxsize=None)(vjp_at)

    def add(forward: Forward) -> Forward:
        _check_free(name)
        PRIMITIVES[name] = Primitive(forward, (), _Subsets(cached), True)
        return forward

    return add


def composed(name: str, of: Sequence[str]) -> Callable[[F], F]:
    """Record that the decorated function is the operation ``name``, composed of ``of``."""

    def add(function: F) -> F:
        _check_free(name)
        COMPOSED[name] = ", ".join(of)
        return function

    return add


def _check_free(name: str) -> None:
    if name in PRIMITIVES or name in COMPOSED:
        raise ValueError(f"an operation named {name!r} is registered already")


def sum_to(delta: np.ndarray, shape: tuple[int, ...], where: str = "backward") -> np.ndarray:
    """Sum ``delta`` over the dimensions broadcasting added or stretched.

    >>> sum_to(np.ones((4, 2, 3)), (3, 2)).tolist()
    Traceback (most recent call last):
    ...
    ValueError: backward: a delta of dimensions (4, 2, 3) can't be summed down to (3, 2)
    >>> sum_to(np.ones((4, 2, 3)), (1, 3)).tolist()
    [[8.0, 8.0, 8.0]]
    """
    if delta.shape == shape:
        return delta
    if delta.shape[1:] == shape:  # one leading axis added: a bias over a batch
        # (``delta.sum(axis=0)`` without the Python wrapper numpy's ``sum`` method goes through)
        return _add_reduce(delta, 0)  # type: ignore[no-any-return]
    lead = delta.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"{where}: a delta of dimensions {delta.shape} can't be summed down to {shape}")
    axes = list(range(lead))
    for axis, size in enumerate(shape):
        have = delta.shape[lead + axis]
        if have != size:
            if size != 1:
                raise ValueError(f"{where}: a delta of dimensions {delta.shape} can't be summed down to {shape}")
            axes.append(lead + axis)
    return delta.sum(axis=tuple(axes)).reshape(shape)  # type: ignore[no-any-return]
