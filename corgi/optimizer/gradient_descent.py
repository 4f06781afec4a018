"""Plain gradient descent (corgi's ``GradientDescent``)."""

from __future__ import annotations

import numpy as np

from .base import OWN_STEPS, Optimizer, check_rate


class GradientDescent(Optimizer):
    """``w <- w - learning_rate * dw``.

    >>> from corgi import arr
    >>> w = arr(3.0).tracked()
    >>> (w * w).backward()          # dw = 6
    >>> GradientDescent(0.1).update([w])
    [Array([2.4], dimensions=(1,), tracked)]
    """

    hyperparameter_names = ("learning_rate",)

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = check_rate(learning_rate, "learning_rate", "GradientDescent")

    def step(self, position: int, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """``value - learning_rate * gradient``.

        >>> GradientDescent(0.5).step(0, np.array([1.0, 2.0]), np.array([4.0, -2.0])).tolist()
        [-1.0, 3.0]
        """
        result: np.ndarray = gradient * self.learning_rate
        if (result.dtype is value.dtype or result.dtype == value.dtype) and result.shape == value.shape:
            # ``value - result``, bit for bit, into the product's own buffer: one new array, not two
            np.subtract(value, result, out=result)
            return result
        other: np.ndarray = value - result  # (a learning rate of another float type: numpy's own rules)
        return other

    def __repr__(self) -> str:
        return f"GradientDescent({self.learning_rate})"


OWN_STEPS.add(GradientDescent.step)
