"""What the registry-wide gradient sweep shares: the coverage record, the check, the value makers.

``tests/test_gradients.py`` (corgi 0.9.2's operations) and ``tests/test_gradients_array_api.py``
(numpy's everyday operations) declare the operations each test gradchecks with ``@covers``;
the coverage tests in ``test_gradients.py`` import both and fail on any operation of
``corgi.array.PRIMITIVES`` or ``corgi.array.COMPOSED`` without a case.
"""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from corgi import Array, allclose, gradcheck

SWEEP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RTOL, ATOL = 1e-5, 1e-7

COVERED: dict[str, list[str]] = {}


def covers(*names):
    """Record that the decorated test gradchecks the operations ``names``."""

    def mark(test):
        for name in names:
            COVERED.setdefault(name, []).append(test.__name__)
        return test

    return mark


def check(f, *inputs, rtol=RTOL, atol=ATOL, eps=1e-6):
    assert gradcheck(f, list(inputs), eps=eps, rtol=rtol, atol=atol)


def uniform(rng, shape, low=-2.0, high=2.0):
    return Array(rng.uniform(low, high, size=shape))


def away_from_zero(rng, shape, low=0.5, high=2.0):
    """Values with |x| in [low, high] and a random sign."""
    return Array(rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape))


def distinct(rng, shape, spacing=0.1):
    """Values at least ``spacing`` apart (a shuffled ladder): no ties, and no finite-difference step reorders them."""
    return Array(rng.permutation(int(np.prod(shape))).reshape(shape) * spacing - 1.0)


seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=4, max_side=3)


def check_float32(f, inputs, float64_out=True):
    """``f`` on float32 ``inputs`` stays float32, value and gradients, and agrees with float64 to float32 precision.

    ``float64_out``: whether ``f`` on float64 inputs gives float64 (not for a function that casts to float32 itself).
    """
    inputs = [x.tracked() for x in inputs]
    out = f(*inputs)
    assert out.dtype == np.float32
    out.backward()
    for x in inputs:
        assert x.gradient() is not None and x.gradient().dtype == np.float32
    inputs64 = [Array(x.numpy(), dtype="float64").tracked() for x in inputs]
    out64 = f(*inputs64)
    assert (out64.dtype == np.float64) == float64_out
    out64.backward()
    assert allclose(Array(out.numpy(), dtype="float64"), out64, rtol=1e-5, atol=1e-6)
    for x32, x64 in zip(inputs, inputs64):
        assert allclose(Array(x32.gradient().numpy(), dtype="float64"), x64.gradient(), rtol=1e-4, atol=1e-5)
