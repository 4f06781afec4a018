"""Activations: the differentiable non-linearities a layer applies to its output.

An activation is a function from an Array to an Array; each ``make_*``
returns a fresh one (corgi's ``Activation`` closures).
"""

from __future__ import annotations

from typing import Callable

from .array import Array

Activation = Callable[[Array], Array]


def make_relu() -> Activation:
    """``max(x, 0)`` elementwise.

    >>> from corgi import arr
    >>> make_relu()(arr(-1.0, 2.0))
    Array([0., 2.], dimensions=(2,))
    """

    def relu(x: Array) -> Array:
        return x.relu()

    return relu


def make_sigmoid() -> Activation:
    """``1 / (1 + e^-x)`` elementwise, finite for any input.

    >>> from corgi import arr
    >>> make_sigmoid()(arr(0.0, -1000.0))
    Array([0.5, 0. ], dimensions=(2,))
    """

    def sigmoid(x: Array) -> Array:
        return x.sigmoid()

    return sigmoid


def make_tanh() -> Activation:
    """The hyperbolic tangent, elementwise.

    >>> from corgi import arr
    >>> make_tanh()(arr(0.0))
    Array([0.], dimensions=(1,))
    """

    def tanh(x: Array) -> Array:
        return x.tanh()

    return tanh


def make_softmax() -> Activation:
    """The softmax over the last dimension (each row of a batch sums to 1).

    >>> from corgi import arr
    >>> make_softmax()(arr(arr(0.0, 0.0), arr(1000.0, -1000.0)))
    Array([[0.5, 0.5],
           [1. , 0. ]], dimensions=(2, 2))
    """

    def softmax(x: Array) -> Array:
        return x.softmax()

    return softmax
