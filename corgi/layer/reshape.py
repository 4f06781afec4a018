"""A layer that reshapes each example, keeping the batch dimensions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..array import Array
from ..checks import whole_numbers
from .base import Layer


class Reshape(Layer):
    """Replace an input's trailing dimensions with ``dimensions``; no parameters.

    The trailing dimensions replaced are the fewest whose product equals the
    product of ``dimensions``; the leading (batch) dimensions stay. So
    ``Reshape((72,))`` turns (batch, 8, 3, 3) into (batch, 72) for any batch,
    one included, and (8, 3, 3) into (72,).

    >>> from corgi import Array
    >>> flatten = Reshape((72,))
    >>> flatten.forward(Array.zeros((5, 8, 3, 3))).dimensions
    (5, 72)
    >>> flatten.forward(Array.zeros((1, 8, 3, 3))).dimensions
    (1, 72)
    >>> flatten.forward(Array.zeros((8, 3, 3))).dimensions
    (72,)
    """

    def __init__(self, dimensions: int | Sequence[int]) -> None:
        if isinstance(dimensions, int) and not isinstance(dimensions, bool):
            dimensions = (dimensions,)
        self.dimensions = dims = whole_numbers(dimensions, "dimensions", "Reshape")
        if not dims:
            raise ValueError("Reshape: dimensions must hold at least one whole number, got ()")
        self.size = math.prod(dims)

    def forward(self, x: Array) -> Array:
        """``x`` with its trailing dimensions replaced by ``dimensions``.

        >>> Reshape(4).forward(Array(list(range(12)), dimensions=(3, 2, 2)))[1, 2]
        6.0
        >>> Reshape(4).forward(Array.zeros((3, 3)))
        Traceback (most recent call last):
        ...
        ValueError: Reshape.forward: no trailing dimensions of (3, 3) hold 4 values for (4,)
        """
        if not isinstance(x, Array):
            raise TypeError(f"Reshape.forward: expects an Array, got {type(x).__name__}")
        shape = x.dimensions
        for keep in range(len(shape), -1, -1):
            if math.prod(shape[keep:]) == self.size:
                return x.reshape(shape[:keep] + self.dimensions)
            if math.prod(shape[keep:]) > self.size:
                break
        raise ValueError(
            f"Reshape.forward: no trailing dimensions of {shape} hold {self.size} values for {self.dimensions}"
        )

    def __repr__(self) -> str:
        return f"Reshape({self.dimensions})"
