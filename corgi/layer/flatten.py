"""Flatten: each example of a batch into one row."""

from __future__ import annotations

import math

from ..array import Array
from .base import Layer


class Flatten(Layer):
    """Turn a batch ``(batch, d1, d2, ...)`` into ``(batch, d1 * d2 * ...)``; no parameters.

    The first dimension is the batch, as in PyTorch's ``nn.Flatten()``, so
    the input must be a batch (at least 2-D). The gradient is reshaped back.

    >>> from corgi import Array
    >>> Flatten().forward(Array.zeros((5, 16, 13, 13))).dimensions
    (5, 2704)
    >>> Flatten().forward(Array.zeros(3))
    Traceback (most recent call last):
    ...
    ValueError: Flatten.forward: expects a batch (batch, ...), got dimensions (3,)
    """

    def forward(self, x: Array) -> Array:
        """``x`` reshaped to ``(batch, rest)``.

        >>> from corgi import Array
        >>> Flatten().forward(Array(list(range(8)), dimensions=(2, 2, 2)))
        Array([[0., 1., 2., 3.],
              [4., 5., 6., 7.]], dimensions=(2, 4))
        """
        if not isinstance(x, Array):
            raise TypeError(f"Flatten.forward: expects an Array, got {type(x).__name__}")
        shape = x.dimensions
        if len(shape) < 2:
            raise ValueError(f"Flatten.forward: expects a batch (batch, ...), got dimensions {shape}")
        if len(shape) == 2:
            return x
        return x.reshape((shape[0], math.prod(shape[1:])))

    def __repr__(self) -> str:
        return "Flatten()"
