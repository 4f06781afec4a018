"""Gradient descent with momentum (the heavy-ball form PyTorch's SGD uses)."""

from __future__ import annotations

import numpy as np

from .base import OWN_STEPS, Optimizer, State, check_rate


class Momentum(Optimizer):
    """``v <- momentum * v + dw``, then ``w <- w - learning_rate * v`` (v starts at 0).

    The velocities (``momentum_buffer``, PyTorch's name) and step counts are
    per-parameter state: ``state_dict()`` saves them, and a failed update
    leaves them as they were.

    >>> from corgi import arr
    >>> optimizer = Momentum(0.1, momentum=0.5)
    >>> w = arr(1.0).tracked()
    >>> (w * 2.0).backward()        # dw = 2, v = 2
    >>> [w] = optimizer.update([w]); w
    Array([0.8], dimensions=(1,), tracked)
    >>> (w * 2.0).backward()        # v = 0.5 * 2 + 2 = 3
    >>> optimizer.update([w])
    [Array([0.5], dimensions=(1,), tracked)]
    """

    state: State
    hyperparameter_names = ("learning_rate", "momentum")

    def __init__(self, learning_rate: float, momentum: float = 0.9) -> None:
        self.learning_rate = check_rate(learning_rate, "learning_rate", "Momentum")
        self.momentum = check_rate(momentum, "momentum", "Momentum", high=1.0)
        self.state = State("Momentum.update", ("momentum_buffer",))

    def step(self, position: int, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """Advance the velocity at ``position`` and move against it.

        >>> optimizer = Momentum(0.5, momentum=0.5)
        >>> optimizer.step(0, np.array([1.0]), np.array([2.0])).tolist()    # v = 2
        [0.0]
        >>> optimizer.step(0, np.array([0.0]), np.array([2.0])).tolist()    # v = 0.5 * 2 + 2 = 3
        [-1.5]
        """
        count, (velocity,) = self.state.get(position, value)
        velocity = self.momentum * velocity + gradient
        self.state.put(position, count + 1, (velocity,))
        result: np.ndarray = value - self.learning_rate * velocity
        return result

    def __repr__(self) -> str:
        return f"Momentum({self.learning_rate}, momentum={self.momentum})"


OWN_STEPS.add(Momentum.step)
