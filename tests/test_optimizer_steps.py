"""corgi's own optimizer steps get the arrays themselves (no read-only views): they must neither write
into them nor keep them; anyone else's step gets read-only views. GradientDescent's one-buffer step
equals ``value - learning_rate * gradient`` bit for bit."""

import sys

import numpy as np
import pytest

from corgi import Array
from corgi.optimizer import Adam, GradientDescent, Momentum
from corgi.optimizer.base import OWN_STEPS


@pytest.mark.parametrize("make", [lambda: GradientDescent(0.1), lambda: Momentum(0.1, 0.9), lambda: Adam(0.01)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_steps_write_nothing_and_keep_nothing(make, dtype):
    optimizer = make()
    assert type(optimizer).step in OWN_STEPS
    rng = np.random.default_rng(0)
    value, gradient = rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    before = value.copy(), gradient.copy()
    value.flags.writeable = gradient.flags.writeable = False  # a write would raise
    references = sys.getrefcount(value), sys.getrefcount(gradient)
    for _ in range(3):  # stateful steps: past their first
        result = optimizer.step(0, value, gradient)
        assert result is not value and result is not gradient and not np.shares_memory(result, gradient)
    assert (sys.getrefcount(value), sys.getrefcount(gradient)) == references  # nothing kept them
    assert value.tobytes() == before[0].tobytes() and gradient.tobytes() == before[1].tobytes()


def test_a_subclass_step_gets_read_only_views():
    seen = []

    class Recording(GradientDescent):
        def step(self, position, value, gradient):
            seen.append((value.flags.writeable, gradient.flags.writeable))
            return value - self.learning_rate * gradient

    w = Array([1.0, 2.0]).tracked()
    (w * w).sum().backward()
    Recording(0.1).update([w])
    assert seen == [(False, False)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.01, np.float64(0.3), np.float32(0.3)])
def test_gradient_descent_step_is_value_minus_rate_times_gradient_bitwise(dtype, rate):
    rng = np.random.default_rng(1)
    value, gradient = rng.standard_normal(50).astype(dtype), rng.standard_normal(50).astype(dtype)
    optimizer = GradientDescent(0.5)
    optimizer.learning_rate = rate  # as a schedule sets it
    result = optimizer.step(0, value, gradient)
    expected = value - rate * gradient
    assert result.dtype == expected.dtype and result.tobytes() == expected.tobytes()
