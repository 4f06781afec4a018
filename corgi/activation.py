"""Activations: the differentiable non-linearities a layer applies to its output.

An activation is a callable from an Array to an Array; each ``make_*``
returns a fresh one (corgi's ``Activation`` closures). The ones here are
small objects rather than closures, so a layer that holds one can be
pickled and deep-copied; any other callable works too.
"""

from __future__ import annotations

from collections.abc import Callable

from .array import Array

Activation = Callable[[Array], Array]


class Elementwise:
    """An activation applied value by value (or row by row); its repr is its name (``relu``).

    Two activations of the same kind are equal, so a copied layer compares
    equal to its original.

    >>> import copy, pickle
    >>> relu = make_relu()
    >>> relu, pickle.loads(pickle.dumps(relu)) == relu, copy.deepcopy(relu) == relu
    (relu, True, True)
    """

    name = ""

    def __call__(self, x: Array) -> Array:
        """The activation of ``x``; each subclass defines it.

        >>> from corgi import arr
        >>> make_tanh()(arr(0.0))
        Array([0.], dimensions=(1,))
        """
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


class ReLU(Elementwise):
    """``max(x, 0)`` elementwise.

    >>> from corgi import arr
    >>> ReLU()(arr(-1.0, 2.0))
    Array([0., 2.], dimensions=(2,))
    """

    name = "relu"

    def __call__(self, x: Array) -> Array:
        return x.relu()


class Sigmoid(Elementwise):
    """``1 / (1 + e^-x)`` elementwise, finite for any input.

    >>> from corgi import arr
    >>> Sigmoid()(arr(0.0, -1000.0))
    Array([0.5, 0. ], dimensions=(2,))
    """

    name = "sigmoid"

    def __call__(self, x: Array) -> Array:
        return x.sigmoid()


class Tanh(Elementwise):
    """The hyperbolic tangent, elementwise.

    >>> from corgi import arr
    >>> Tanh()(arr(0.0))
    Array([0.], dimensions=(1,))
    """

    name = "tanh"

    def __call__(self, x: Array) -> Array:
        return x.tanh()


class Softmax(Elementwise):
    """The softmax over the last dimension (each row of a batch sums to 1).

    >>> from corgi import arr
    >>> Softmax()(arr(arr(0.0, 0.0), arr(1000.0, -1000.0)))
    Array([[0.5, 0.5],
       [1. , 0. ]], dimensions=(2, 2))
    """

    name = "softmax"

    def __call__(self, x: Array) -> Array:
        return x.softmax()


def make_relu() -> Activation:
    """``max(x, 0)`` elementwise.

    >>> from corgi import arr
    >>> make_relu()(arr(-1.0, 2.0))
    Array([0., 2.], dimensions=(2,))
    """
    return ReLU()


def make_sigmoid() -> Activation:
    """``1 / (1 + e^-x)`` elementwise, finite for any input.

    >>> from corgi import arr
    >>> make_sigmoid()(arr(0.0, -1000.0))
    Array([0.5, 0. ], dimensions=(2,))
    """
    return Sigmoid()


def make_tanh() -> Activation:
    """The hyperbolic tangent, elementwise.

    >>> from corgi import arr
    >>> make_tanh()(arr(0.0))
    Array([0.], dimensions=(1,))
    """
    return Tanh()


def make_softmax() -> Activation:
    """The softmax over the last dimension (each row of a batch sums to 1).

    >>> from corgi import arr
    >>> make_softmax()(arr(arr(0.0, 0.0), arr(1000.0, -1000.0)))
    Array([[0.5, 0.5],
           [1. , 0. ]], dimensions=(2, 2))
    """
    return Softmax()
