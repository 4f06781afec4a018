"""The registry of primitives, and un-broadcasting done once for all of them.

A primitive is a numpy function ``f(*operands, **params)`` returning
``(value, vjps)`` or ``(value, vjps, cost)``: the forward value, one
vector-Jacobian product per operand (a function of the delta arriving at the
output), and optionally an estimate of the work its backward does (default:
the number of output elements). A vjp may return a delta in the broadcast
shape; ``sum_to`` brings it back to its operand's shape, so no primitive
repeats that logic.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Primitive = Callable[..., tuple]

PRIMITIVES: dict[str, Primitive] = {}


def register(name: str) -> Callable[[Primitive], Primitive]:
    """Add a primitive under ``name`` (the tracer and the docs use the name)."""

    def add(function: Primitive) -> Primitive:
        if name in PRIMITIVES:
            raise ValueError(f"a primitive named {name!r} is registered already")
        PRIMITIVES[name] = function
        return function

    return add


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
    return delta.sum(axis=tuple(axes)).reshape(shape)
