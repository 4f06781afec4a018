"""Adam (Kingma and Ba, 2015), with bias correction."""

from __future__ import annotations

import numpy as np

from .base import OWN_STEPS, Optimizer, State, check_rate


class Adam(Optimizer):
    """Adaptive moments: per parameter, with t counting its updates,

    ``m <- b1 m + (1 - b1) dw``, ``v <- b2 v + (1 - b2) dw^2``,
    ``w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + epsilon)``.

    The moments (``exp_avg`` and ``exp_avg_sq``, PyTorch's names) and t are
    per-parameter state: ``state_dict()`` saves them, and a failed update
    leaves them as they were.

    >>> from corgi import arr
    >>> w = arr(1.0, -1.0).tracked()
    >>> (w * arr(4.0, -0.5)).backward()
    >>> Adam(0.1).update([w])     # the first step moves each value by lr, against its gradient
    [Array([ 0.9, -0.9], dimensions=(2,), tracked)]
    """

    state: State
    hyperparameter_names = ("learning_rate", "beta1", "beta2", "epsilon")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        self.learning_rate = check_rate(learning_rate, "learning_rate", "Adam")
        self.beta1 = check_rate(beta1, "beta1", "Adam", high=1.0)
        self.beta2 = check_rate(beta2, "beta2", "Adam", high=1.0)
        self.epsilon = check_rate(epsilon, "epsilon", "Adam")
        if self.epsilon == 0.0:
            raise ValueError("Adam: epsilon must be above 0, got 0")
        self.state = State("Adam.update", ("exp_avg", "exp_avg_sq"))

    def step(self, position: int, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """Advance both moments at ``position`` and take a bias-corrected step.

        >>> adam = Adam(0.1)
        >>> [round(v, 6) for v in adam.step(0, np.array([1.0, -1.0]), np.array([4.0, -0.5])).tolist()]
        [0.9, -0.9]
        >>> adam.state.get(0, np.zeros(2)).step      # t at position 0
        1
        """
        count, (first, second) = self.state.get(position, value)
        first = self.beta1 * first + (1 - self.beta1) * gradient
        second = self.beta2 * second + (1 - self.beta2) * gradient * gradient
        t = count + 1
        self.state.put(position, t, (first, second))
        corrected_first = first / (1 - self.beta1**t)
        corrected_second = second / (1 - self.beta2**t)
        result: np.ndarray = value - self.learning_rate * corrected_first / (np.sqrt(corrected_second) + self.epsilon)
        return result

    def __repr__(self) -> str:
        return f"Adam({self.learning_rate}, beta1={self.beta1}, beta2={self.beta2}, epsilon={self.epsilon})"


OWN_STEPS.add(Adam.step)
