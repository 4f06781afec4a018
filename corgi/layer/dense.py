"""A fully-connected layer: ``y = activation(x W + b)``."""

from __future__ import annotations

from ..activation import Activation, ReLU, Sigmoid, Softmax, Tanh
from ..array import Array
from ..array.operation import ternary
from ..checks import whole_number
from ..initializer import Initializer
from ..numbers import FloatType
from .base import ExampleDimensions, Layer, activation_name, check_input, new_parameter

# corgi's activations (these exact classes) that a Dense layer records in its product's node: each
# is one primitive of one operand, called as ``x.<name>()``, so the node computes what two would
_ONE_NODE: dict[type, str] = {ReLU: "relu", Sigmoid: "sigmoid", Tanh: "tanh", Softmax: "softmax"}


class Dense(Layer):
    """A fully-connected layer from ``input_size`` to ``output_size`` values.

    ``weights`` are (input_size, output_size) and ``biases`` (output_size,),
    both drawn by ``initializer`` with fan-in ``input_size``, held in
    ``dtype`` (default: corgi's default float type) and tracked. The input is
    (batch, input_size) or one example (input_size,), of the parameters'
    dtype (another float type is a TypeError: corgi never mixes them); the
    product, bias included, is a single matmul node.

    >>> from corgi import arr
    >>> from corgi.activation import make_relu
    >>> from corgi.initializer import make_he
    >>> layer = Dense(3, 2, make_he(rng=0), make_relu())
    >>> layer
    Dense(3, 2, activation=relu)
    >>> [p.dimensions for p in layer.parameters()]
    [(3, 2), (2,)]
    >>> layer.forward(arr(arr(1.0, 2.0, 3.0), arr(0.0, 0.0, 0.0))).dimensions
    (2, 2)
    """

    parameter_names = ("weights", "biases")

    def __init__(
        self,
        input_size: int,
        output_size: int,
        initializer: Initializer,
        activation: Activation | None = None,
        dtype: FloatType | None = None,
    ) -> None:
        self.input_size = whole_number(input_size, "input_size", "Dense", minimum=1)
        self.output_size = whole_number(output_size, "output_size", "Dense", minimum=1)
        self.weights = new_parameter(initializer((input_size, output_size), input_size), dtype, "Dense")
        self.biases = new_parameter(initializer((output_size,), input_size), dtype, "Dense")
        self.activation = activation

    @property
    def input_dimensions(self) -> ExampleDimensions:
        """``(input_size,)``: one example is a row of ``input_size`` values.

        >>> from corgi.initializer import make_he
        >>> Dense(3, 2, make_he(rng=0)).input_dimensions
        (3,)
        """
        return (self.input_size,)

    def forward(self, x: Array) -> Array:
        """``activation(x @ weights + biases)``.

        >>> from corgi.activation import make_relu
        >>> from corgi.initializer import make_he
        >>> layer = Dense(2, 1, make_he(rng=0), make_relu())
        >>> layer.set_parameters([Array([[1.0], [2.0]]), Array([0.5])])
        >>> layer.forward(Array([[3.0, 4.0], [-3.0, 1.0]]))    # relu(11.5), relu(-0.5)
        Array([[11.5],
              [ 0. ]], dimensions=(2, 1))
        >>> layer.forward(Array([[3.0, 4.0]], dtype="float32"))
        Traceback (most recent call last):
        ...
        TypeError: Dense.forward: input is float32, the layer's parameters are float64; corgi does not mix float \
types: convert the input (x.astype('float64'), or Array(values, dtype='float64')) or build the layer with dtype='float32'
        """
        weights = self.weights
        biases = self.biases
        if (
            type(x) is Array
            and type(weights) is Array
            and type(biases) is Array
            and x._values.dtype is weights._values.dtype
            and x._values.shape[-1] == self.input_size
        ):
            # what the checks below let through, and Array.matmul's own: one call to the product
            # (a training step runs this once per layer; the general path cost twice as many calls)
            fused = _ONE_NODE.get(type(self.activation))  # corgi's own: product and activation as one node
            result = ternary("matmul", x, weights, biases, fused)
            if fused is not None:
                return result
        else:
            check_input(x, weights, "Dense.forward")
            if x.dimensions[-1] != self.input_size:
                raise ValueError(
                    f"Dense.forward: expects inputs of {self.input_size} values in the last dimension, "
                    f"got dimensions {x.dimensions}"
                )
            result = Array.matmul((x, False), (weights, False), biases)
        activation = self.activation
        return result if activation is None else activation(result)

    def __repr__(self) -> str:
        suffix = "" if self.activation is None else f", activation={activation_name(self.activation)}"
        return f"Dense({self.input_size}, {self.output_size}{suffix})"
