"""The registry of primitives, and un-broadcasting done once for all of them.

A primitive is a numpy forward function and one vector-Jacobian product
(vjp) per operand, registered together under a name:

    # d(xy) = y dx + x dy
    @register("mul", lambda g, s: g * s[1], lambda g, s: g * s[0])
    def mul(x, y):
        return x * y, (x, y)

The forward ``f(*operands, **params)`` returns ``(value, saved)`` or
``(value, saved, cost)``: the value, whatever its vjps need later, and
optionally an estimate of the work its backward does (default: the number
of output elements). Vjp ``i`` maps the delta arriving at the output, and
``saved``, to the delta of operand ``i``. Vjps are module-level functions,
not closures made per call, so a recorded operation costs one small tuple
of saved arrays. A vjp may return a delta in the broadcast shape;
``sum_to`` brings it back to its operand's shape, so no primitive repeats
that logic.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

Vjp = Callable[[np.ndarray, Any], np.ndarray]


class Primitive(NamedTuple):
    """A forward function and the vjp of each operand.

    ``subsets[mask]`` holds the vjps of the operands whose bits are set in
    ``mask`` (bit i for operand i), precomputed so that recording an
    operation picks its tuple by index and every node shares it.
    """

    forward: Callable[..., tuple]
    vjps: tuple[Vjp, ...]
    subsets: tuple[tuple[Vjp, ...], ...]


PRIMITIVES: dict[str, Primitive] = {}


def register(name: str, *vjps: Vjp) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Add a primitive under ``name`` (the tracer and the docs use the name)."""

    def add(forward: Callable[..., tuple]) -> Callable[..., tuple]:
        if name in PRIMITIVES:
            raise ValueError(f"a primitive named {name!r} is registered already")
        subsets = tuple(
            tuple(vjp for i, vjp in enumerate(vjps) if mask >> i & 1) for mask in range(1 << len(vjps))
        )
        PRIMITIVES[name] = Primitive(forward, vjps, subsets)
        return forward

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
    if delta.shape[1:] == shape:  # one leading axis added: a bias over a batch
        return delta.sum(axis=0)
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
