"""What every optimizer shares: new parameter Arrays from old ones and their gradients."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..array import Array, step_parameters


class Optimizer:
    """Turns parameters and their gradients into new, tracked parameter Arrays.

    ``update(parameters)`` returns one Array per parameter, in the same order:
    a new one for each parameter that has a gradient (its gradient is then
    cleared), the same one for a parameter without. The values of an Array
    are never changed. Stateful optimizers keep their state by position, so
    pass the parameters in the same order every time (corgi's rule).
    A subclass defines ``step(position, value, gradient) -> new value``.

    >>> from corgi import arr
    >>> class Halve(Optimizer):
    ...     def step(self, position, value, gradient):
    ...         return value / 2
    >>> w = arr(4.0).tracked()
    >>> (w * w).backward()
    >>> [new] = Halve().update([w])
    >>> new, w, w.gradient()
    (Array([2.], dimensions=(1,), tracked), Array([4.], dimensions=(1,), tracked), None)
    """

    def step(self, position: int, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """The new value of the parameter at ``position``; a subclass defines it (see the class example).

        >>> Optimizer().step(0, np.array([1.0]), np.array([2.0]))
        Traceback (most recent call last):
        ...
        NotImplementedError: Optimizer does not define step
        """
        raise NotImplementedError(f"{type(self).__name__} does not define step")

    def update(self, parameters: Sequence[Array]) -> list[Array]:
        """New parameter Arrays, one per parameter, in order; gradients are cleared.

        A parameter without a gradient comes back as the same Array.

        >>> from corgi import arr
        >>> from corgi.optimizer import GradientDescent
        >>> w, b = arr(1.0).tracked(), arr(5.0).tracked()
        >>> (w * 3.0).backward()                  # dw = 3; b gets no gradient
        >>> new_w, new_b = GradientDescent(0.5).update([w, b])
        >>> new_w, new_b is b, w.gradient()
        (Array([-0.5], dimensions=(1,), tracked), True, None)
        """
        return step_parameters(parameters, self.step, f"{type(self).__name__}.update")


def check_rate(value: object, what: str, where: str, low: float = 0.0, high: float = math.inf) -> float:
    """``value`` as a float in [low, high), or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{where}: {what} must be a number, got {value!r}")
    number = float(value)
    if not (low <= number < high):
        raise ValueError(f"{where}: {what} must be in [{low}, {high}), got {value!r}")
    return number


class State:
    """Per-position numpy buffers of an optimizer, checked against the parameter's dimensions."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.buffers: dict[int, tuple[np.ndarray, ...]] = {}

    def get(self, position: int, value: np.ndarray, count: int) -> tuple[np.ndarray, ...]:
        """The buffers at ``position`` (zeros the first time)."""
        buffers = self.buffers.get(position)
        if buffers is None:
            return tuple(np.zeros(value.shape, dtype=value.dtype) for _ in range(count))
        if buffers[0].shape != value.shape:
            raise ValueError(
                f"{self.where}: parameter {position} has dimensions {value.shape} but had {buffers[0].shape}; "
                "pass the parameters in the same order every update"
            )
        return buffers
