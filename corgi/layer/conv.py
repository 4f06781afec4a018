"""A convolutional layer: ``y = activation(x.conv(filters, stride, biases))``."""

from __future__ import annotations

from ..activation import Activation
from ..array import Array
from ..checks import whole_numbers
from ..initializer import Initializer
from ..numbers import FloatType
from .base import ExampleDimensions, Layer, activation_name, check_input, new_parameter


class Conv(Layer):
    """A valid convolution with ``filter_dimensions`` (count, depth, rows, cols) and a stride.

    ``filters`` are (count, depth, rows, cols) and ``biases`` (count, 1, 1),
    one per output channel, both drawn by ``initializer`` with fan-in
    ``depth * rows * cols``, held in ``dtype`` (default: corgi's default
    float type) and tracked. The input is (..., depth, rows, cols), of the
    parameters' dtype, and the output (..., count, out_rows, out_cols).

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
        activation: Activation | None = None,
        dtype: FloatType | None = None,
    ) -> None:
        self.filter_dimensions = whole_numbers(filter_dimensions, "filter_dimensions", "Conv", count=4)
        stride_rows, stride_cols = whole_numbers(stride_dimensions, "stride_dimensions", "Conv", count=2)
        self.stride_dimensions = (stride_rows, stride_cols)
        count, depth, rows, cols = self.filter_dimensions
        input_size = depth * rows * cols
        self.filters = new_parameter(initializer(self.filter_dimensions, input_size), dtype, "Conv")
        self.biases = new_parameter(initializer((count, 1, 1), input_size), dtype, "Conv")
        self.activation = activation

    @property
    def input_dimensions(self) -> ExampleDimensions:
        """``(depth, None, None)``: one example is ``depth`` images of any size the filters fit.

        >>> from corgi.initializer import make_he
        >>> Conv((8, 3, 3, 3), (1, 1), make_he(rng=0)).input_dimensions
        (3, None, None)
        """
        return (self.filter_dimensions[1], None, None)

    def forward(self, x: Array) -> Array:
        """``activation(x.conv(filters, stride) + biases)``, the biases added inside the convolution's product.

        >>> from corgi.initializer import make_he
        >>> layer = Conv((1, 1, 2, 2), (2, 2), make_he(rng=0))
        >>> layer.set_parameters([Array.zeros((1, 1, 2, 2)) + 1.0, Array([[[0.5]]])])
        >>> layer.forward(Array(list(range(16)), dimensions=(1, 4, 4)))    # each 2x2 block's sum + 0.5
        Array([[[10.5, 18.5],
                [42.5, 50.5]]], dimensions=(1, 2, 2))
        """
        check_input(x, self.filters, "Conv.forward")
        result = x.conv(self.filters, self.stride_dimensions, biases=self.biases)
        return result if self.activation is None else self.activation(result)

    def __repr__(self) -> str:
        suffix = "" if self.activation is None else f", activation={activation_name(self.activation)}"
        return f"Conv({self.filter_dimensions}, {self.stride_dimensions}{suffix})"

