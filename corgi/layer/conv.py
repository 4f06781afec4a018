"""A convolutional layer: ``y = activation(x.conv(filters, stride) + b)``."""

from __future__ import annotations

from typing import Optional

from ..activation import Activation
from ..array import Array
from ..checks import whole_numbers
from ..initializer import Initializer
from .base import Layer, activation_name


class Conv(Layer):
    """A valid convolution with ``filter_dimensions`` (count, depth, rows, cols) and a stride.

    ``filters`` are (count, depth, rows, cols) and ``biases`` (count, 1, 1),
    one per output channel, both drawn by ``initializer`` with fan-in
    ``depth * rows * cols`` and tracked. The input is (..., depth, rows, cols)
    and the output (..., count, out_rows, out_cols).

    >>> from corgi import Array
    >>> from corgi.activation import make_relu
    >>> from corgi.initializer import make_he
    >>> layer = Conv((8, 1, 3, 3), (1, 1), make_he(rng=0), make_relu())
    >>> layer
    Conv((8, 1, 3, 3), (1, 1), activation=relu)
    >>> layer.forward(Array.zeros((5, 1, 8, 8))).dimensions
    (5, 8, 6, 6)
    """

    parameter_names = ("filters", "biases")

    def __init__(
        self,
        filter_dimensions: tuple[int, int, int, int],
        stride_dimensions: tuple[int, int],
        initializer: Initializer,
        activation: Optional[Activation] = None,
    ) -> None:
        self.filter_dimensions = whole_numbers(filter_dimensions, "filter_dimensions", "Conv", count=4)
        self.stride_dimensions = whole_numbers(stride_dimensions, "stride_dimensions", "Conv", count=2)
        count, depth, rows, cols = self.filter_dimensions
        input_size = depth * rows * cols
        self.filters = initializer(self.filter_dimensions, input_size).tracked()
        self.biases = initializer((count, 1, 1), input_size).tracked()
        self.activation = activation

    def forward(self, x: Array) -> Array:
        """``activation(x.conv(filters, stride) + biases)``.

        >>> from corgi.initializer import make_he
        >>> layer = Conv((1, 1, 2, 2), (2, 2), make_he(rng=0))
        >>> layer.set_parameters([Array.zeros((1, 1, 2, 2)) + 1.0, Array([[[0.5]]])])
        >>> layer.forward(Array(list(range(16)), dimensions=(1, 4, 4)))    # each 2x2 block's sum + 0.5
        Array([[[10.5, 18.5],
                [42.5, 50.5]]], dimensions=(1, 2, 2))
        """
        if not isinstance(x, Array):
            raise TypeError(f"Conv.forward: expects an Array, got {type(x).__name__}")
        result = x.conv(self.filters, self.stride_dimensions) + self.biases
        return result if self.activation is None else self.activation(result)

    def __repr__(self) -> str:
        suffix = "" if self.activation is None else f", activation={activation_name(self.activation)}"
        return f"Conv({self.filter_dimensions}, {self.stride_dimensions}{suffix})"

