"""What every layer shares: ``forward``, and parameters that are replaced, never changed."""

from __future__ import annotations

from typing import Sequence

from ..array import Array


class Layer:
    """A layer of a network: ``forward(x)`` and a fixed, ordered list of parameter Arrays.

    A subclass names its parameter attributes in ``parameter_names``. An
    optimizer never changes a parameter's values: it makes new Arrays and
    hands them to ``set_parameters``, so an Array someone holds stays as it was.

    >>> from corgi import arr
    >>> class Scale(Layer):
    ...     parameter_names = ("factor",)
    ...     def __init__(self):
    ...         self.factor = arr(2.0).tracked()
    ...     def forward(self, x):
    ...         return x * self.factor
    >>> layer = Scale()
    >>> layer(arr(1.0, 3.0))
    Array([2., 6.], dimensions=(2,), tracked)
    >>> layer.set_parameters([arr(5.0)]); layer.parameters()
    [Array([5.], dimensions=(1,))]
    """

    parameter_names: tuple[str, ...] = ()

    def forward(self, x: Array) -> Array:
        """The layer's output for ``x``; a subclass defines it (see the class example).

        >>> Layer().forward(Array([1.0]))
        Traceback (most recent call last):
        ...
        NotImplementedError: Layer does not define forward
        """
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, x: Array) -> Array:
        return self.forward(x)

    def parameters(self) -> list[Array]:
        """The parameter Arrays, in a fixed order (empty for a layer without any).

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Dense, Pool
        >>> [p.dimensions for p in Dense(3, 2, make_he(rng=0)).parameters()], Pool().parameters()
        ([(3, 2), (2,)], [])
        """
        return [getattr(self, name) for name in self.parameter_names]

    def named_parameters(self) -> list[tuple[str, Array]]:
        """``(name, Array)`` pairs in the order of ``parameters()``.

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Dense
        >>> [(name, p.dimensions) for name, p in Dense(3, 2, make_he(rng=0)).named_parameters()]
        [('weights', (3, 2)), ('biases', (2,))]
        """
        return [(name, getattr(self, name)) for name in self.parameter_names]

    def set_parameters(self, parameters: Sequence[Array]) -> None:
        """Replace the parameters with new Arrays of the same dimensions, in ``parameters()`` order.

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Dense
        >>> layer = Dense(2, 1, make_he(rng=0))
        >>> layer.set_parameters([Array([[1.0], [2.0]]), Array([0.5])])
        >>> layer.forward(Array([[3.0, 4.0]]))        # 3 * 1 + 4 * 2 + 0.5
        Array([[11.5]], dimensions=(1, 1))
        >>> layer.set_parameters([Array([1.0, 2.0]), Array([0.5])])
        Traceback (most recent call last):
        ...
        ValueError: Dense.set_parameters: weights has dimensions (2, 1), got (2,)
        """
        where = f"{type(self).__name__}.set_parameters"
        parameters = list(parameters)
        if len(parameters) != len(self.parameter_names):
            raise ValueError(f"{where}: expects {len(self.parameter_names)} arrays, got {len(parameters)}")
        for name, new in zip(self.parameter_names, parameters):
            if not isinstance(new, Array):
                raise TypeError(f"{where}: {name} must be an Array, got {type(new).__name__}")
            old = getattr(self, name)
            if new.dimensions != old.dimensions:
                raise ValueError(f"{where}: {name} has dimensions {old.dimensions}, got {new.dimensions}")
        for name, new in zip(self.parameter_names, parameters):
            setattr(self, name, new)


def activation_name(activation: object) -> str:
    """A short name for an activation in a layer's repr."""
    return getattr(activation, "__name__", repr(activation))
