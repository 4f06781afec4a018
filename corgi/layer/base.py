"""What every layer shares: ``forward``, a mode, and parameters that are replaced, never changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..array import Array
from ..numbers import FloatType, default_float, float_type

ExampleDimensions = tuple[int | None, ...]


class Layer:
    """A layer of a network: ``forward(x)`` and a fixed, ordered list of parameter Arrays.

    A subclass names its parameter attributes in ``parameter_names``. An
    optimizer never changes a parameter's values: it makes new Arrays and
    hands them to ``set_parameters``, so an Array someone holds stays as it was.

    A layer is in training mode (``training`` is True) until ``eval()``;
    ``train()`` switches it back. Layers that behave differently while
    training (``Dropout``; batch normalisation) read ``self.training``.
    Beside its parameters a layer may keep ``buffers`` (numpy arrays that are
    not trained, named in ``buffer_names``, such as running statistics) and
    an ``extra state`` (``get_extra_state``: plain data, such as a random
    generator's position); a checkpoint saves all three.

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
    >>> layer.eval().training, layer.train().training
    (False, True)
    """

    parameter_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    training: bool = True

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

    # -- modes ------------------------------------------------------------

    def train(self, mode: bool = True) -> Layer:
        """Switch to training mode (``mode=False``: evaluation mode); returns the layer.

        >>> from corgi.layer import Dropout
        >>> Dropout(0.5).train(False).training
        False
        """
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Switch to evaluation mode (``train(False)``); returns the layer.

        >>> from corgi.layer import Dropout
        >>> Dropout(0.5).eval().training
        False
        """
        return self.train(False)

    # -- what the layer takes ---------------------------------------------

    @property
    def input_dimensions(self) -> ExampleDimensions | None:
        """The dimensions of one example this layer takes (None where any size fits), or None if any.

        A training loop reads it to give the data the right shape: a Dense
        layer takes ``(input_size,)``, a Conv ``(depth, None, None)``.

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Conv, Dense, Pool
        >>> Dense(784, 10, make_he(rng=0)).input_dimensions, Conv((8, 1, 3, 3), (1, 1), make_he(rng=0)).input_dimensions
        ((784,), (1, None, None))
        >>> Pool().input_dimensions is None
        True
        """
        return None

    @property
    def dtype(self) -> np.dtype | None:
        """The dtype of the layer's parameters (None for a layer without any).

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Dense, Pool
        >>> Dense(2, 3, make_he(rng=0), dtype="float32").dtype, Pool().dtype
        (dtype('float32'), None)
        """
        parameters = self.parameters()
        return parameters[0].dtype if parameters else None

    # -- parameters -------------------------------------------------------

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

    def check_parameters(self, parameters: Sequence[Array]) -> list[Array]:
        """``parameters`` as a list if ``set_parameters`` would take them, else the error it would raise.

        Each must be an Array of the dimensions of the one it replaces, and
        all of one float type (a layer computes in one dtype).

        >>> from corgi.initializer import make_he
        >>> from corgi.layer import Dense
        >>> layer = Dense(2, 1, make_he(rng=0))
        >>> layer.check_parameters([Array([[1.0], [2.0]], dtype="float32"), Array([0.5])])
        Traceback (most recent call last):
        ...
        TypeError: Dense.set_parameters: the parameters mix float32 (weights) and float64 (biases)
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
        for name, new in zip(self.parameter_names[1:], parameters[1:]):
            if new.dtype != parameters[0].dtype:
                raise TypeError(
                    f"{where}: the parameters mix {parameters[0].dtype} ({self.parameter_names[0]}) "
                    f"and {new.dtype} ({name})"
                )
        return parameters

    def set_parameters(self, parameters: Sequence[Array]) -> None:
        """Replace the parameters with new Arrays of the same dimensions, in ``parameters()`` order.

        Everything is checked before anything is replaced.

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
        self._assign_parameters(self.check_parameters(parameters))

    def _assign_parameters(self, parameters: list[Array]) -> None:
        """Replace the parameters with ``parameters``, which ``check_parameters`` returned."""
        for name, new in zip(self.parameter_names, parameters):
            setattr(self, name, new)

    # -- buffers and extra state --------------------------------------------

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """``(name, numpy array)`` of every buffer, in ``buffer_names`` order (read-only views).

        >>> from corgi.layer import Dropout
        >>> Dropout(0.5).named_buffers()
        []
        """
        views = []
        for name in self.buffer_names:
            view = np.asarray(getattr(self, name)).view()
            view.flags.writeable = False
            views.append((name, view))
        return views

    def check_buffers(self, buffers: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Copies of ``buffers`` if ``set_buffers`` would take them, else the error it would raise.

        >>> Layer().check_buffers([np.zeros(2)])
        Traceback (most recent call last):
        ...
        ValueError: Layer.set_buffers: expects 0 arrays, got 1
        """
        where = f"{type(self).__name__}.set_buffers"
        buffers = list(buffers)
        if len(buffers) != len(self.buffer_names):
            raise ValueError(f"{where}: expects {len(self.buffer_names)} arrays, got {len(buffers)}")
        copies = []
        for name, new in zip(self.buffer_names, buffers):
            old = np.asarray(getattr(self, name))
            if not isinstance(new, np.ndarray) or new.shape != old.shape or new.dtype != old.dtype:
                shown = f"{new.dtype} {new.shape}" if isinstance(new, np.ndarray) else type(new).__name__
                raise ValueError(f"{where}: {name} is {old.dtype} {old.shape}, got {shown}")
            copies.append(np.array(new))
        return copies

    def set_buffers(self, buffers: Sequence[np.ndarray]) -> None:
        """Replace the buffers with copies of ``buffers`` (same dtypes and shapes), all or none.

        >>> Layer().set_buffers([])
        """
        for name, new in zip(self.buffer_names, self.check_buffers(buffers)):
            setattr(self, name, new)

    def get_extra_state(self) -> dict[str, Any]:
        """Plain data (JSON-able) a checkpoint keeps beside the parameters and buffers: none here.

        >>> Layer().get_extra_state()
        {}
        """
        return {}

    def check_extra_state(self, state: dict[str, Any]) -> None:
        """Raise the error ``set_extra_state(state)`` would raise, changing nothing.

        >>> Layer().check_extra_state({"unexpected": 1})
        Traceback (most recent call last):
        ...
        ValueError: Layer.set_extra_state: expects no state, got keys ['unexpected']
        """
        if state:
            raise ValueError(f"{type(self).__name__}.set_extra_state: expects no state, got keys {sorted(state)}")

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` returned; checked first, all or nothing.

        >>> Layer().set_extra_state({})
        """
        self.check_extra_state(state)


def new_parameter(values: Array, dtype: FloatType | None, where: str) -> Array:
    """``values`` as a new tracked Array in ``dtype`` (None: the default float type)."""
    wanted = float_type(default_float() if dtype is None else dtype, where)
    if values.dtype != wanted:
        values = Array(values, dtype=wanted)
    return values.tracked()


def check_input(x: object, parameter: Array, where: str) -> None:
    """A TypeError unless ``x`` is an Array of ``parameter``'s dtype (corgi never mixes float types)."""
    if not isinstance(x, Array):
        raise TypeError(f"{where}: expects an Array, got {type(x).__name__}")
    if x.dtype != parameter.dtype:
        raise TypeError(
            f"{where}: input is {x.dtype}, the layer's parameters are {parameter.dtype}; corgi does not "
            f"mix float types: convert the input (x.astype('{parameter.dtype}'), or "
            f"Array(values, dtype='{parameter.dtype}')) or build the layer with dtype='{x.dtype}'"
        )


def activation_name(activation: object) -> str:
    """A short name for an activation in a layer's repr."""
    return getattr(activation, "__name__", None) or repr(activation)
