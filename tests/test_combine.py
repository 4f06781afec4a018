"""A node with many consumers adds their deltas into one buffer (issue 11, item 8).

Before: eight or more deltas were stacked and reduced,
``np.add.reduce(np.stack(deltas), axis=0)``, so the sum cost a second copy
of every delta (a 100 MB leaf with 16 consumers: +3.2 GB at the peak). Now
they are added in the same order into one buffer. These tests prove the
bits are the same as before for every dtype, shape and count, including
signed zeros, infinities and NaNs, and measure the memory.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corgi import Array
from corgi.array.nodes import ArrayNode
from corgi.engine import configure

pytestmark = pytest.mark.usefixtures("engine_state")


def stacked_sum(deltas):
    """How a node added its deltas before issue 11 (the reference for the bits)."""
    if len(deltas) < 8:
        total = deltas[0]
        for delta in deltas[1:]:
            total = total + delta
        return total
    return np.add.reduce(np.stack(deltas), axis=0)


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 5e-324, 1.0, -1.0]
SHAPES = [(1,), (1, 1), (2,), (3,), (1, 3), (3, 1), (4, 4), (7,), (8,), (16,), (2, 3, 4), (1, 1, 5), (5, 1, 1), (300,)]


@st.composite
def delta_lists(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16]))
    shape = draw(st.sampled_from(SHAPES))
    count = draw(st.sampled_from([1, 2, 7, 8, 9, 15, 16, 17, 40, 129]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    special = draw(st.booleans())
    deltas = []
    for _ in range(count):
        if special:
            values = rng.choice(SPECIAL, size=shape)
        else:
            values = rng.standard_normal(shape) * 10.0 ** rng.uniform(-30, 30, size=shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float16 overflows to inf: fine, that is a value too
            delta = values.astype(dtype)
        if draw(st.booleans()) and delta.ndim == 2:
            delta = np.asfortranarray(delta)  # another memory layout, same values
        deltas.append(delta)
    return deltas


@pytest.mark.timeout(240)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deltas=delta_lists())
def test_the_sum_has_the_same_bits_as_the_stacked_reduction(deltas):
    with np.errstate(all="ignore"):
        expected = stacked_sum(deltas)
        got = ArrayNode().combine(list(deltas))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


def _peak_of(add, deltas):
    """Peak bytes that ``add(deltas)`` allocates beyond what is live when it starts."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        total = add(deltas)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return total, peak


@pytest.mark.timeout(120)
def test_sixteen_large_deltas_cost_one_buffer_not_a_stack():
    size = 250_000  # 2 MB of float64 per delta
    rng = np.random.default_rng(0)
    one = size * 8
    reference, stack_peak = _peak_of(stacked_sum, [rng.standard_normal(size) for _ in range(16)])
    # The list is handed over (the engine builds a fresh one for each node):
    # combine may drop each delta once it has been added.
    total, peak = _peak_of(ArrayNode().combine, [rng.standard_normal(size) for _ in range(16)])
    assert stack_peak >= 16 * one  # the control: the old way made a stacked copy of all 16
    assert peak < 1.5 * one, f"combine used {peak / one:.2f} deltas' worth of memory"
    assert total.shape == reference.shape


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_a_leaf_with_many_consumers_gets_the_stacked_bits(workers):
    configure(workers=workers, handoff_cost=0)
    rng = np.random.default_rng(3)
    x = Array(rng.standard_normal((4, 5))).tracked()
    scales = [float(s) for s in rng.uniform(-3, 3, size=20)]
    total = x * scales[0]
    for scale in scales[1:]:
        total = total + (x * scale).tanh()
    total.sum().backward()
    # The deltas x receives, in the engine's canonical order (consumer creation
    # order): d(x * s) = s for the first, s * (1 - tanh(x s)^2) for the others.
    values = x.numpy()
    deltas = [np.full(values.shape, scales[0])]
    deltas += [scale * (1.0 - np.tanh(values * scale) ** 2) for scale in scales[1:]]
    assert x.gradient().numpy().tobytes() == stacked_sum(deltas).tobytes()
