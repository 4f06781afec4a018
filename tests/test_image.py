"""The fast convolution and max-pool paths of ``corgi/array/image.py`` against plain references.

``conv`` runs as im2col plus one BLAS product per direction and col2im by shifted adds;
``max_pool`` as one ``np.maximum`` per window offset (windows of up to 25 values) or an argmax
over a copy of the windows (larger ones). The sweeps in ``test_gradients.py`` gradcheck both
on distinct values; these tests pin what a finite difference cannot see: ties and NaN go to
the first maximum in row-major order (as ``argmax`` and corgi 0.9.2 pick), an infinite delta
stays infinite at the maximum and zero elsewhere, dtypes are kept, the large-window path is
exact, and the gradients of a small CNN are bitwise identical at every worker count.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sweep import check, distinct
from test_gradients import conv_reference  # the cross-correlation written as its sum over windows

from corgi import Array, engine

WORKERS = (0, 1, 2, 8)


def windows(x: np.ndarray, pool: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(..., out_rows, out_cols, pool_rows * pool_cols), a copy made by loops."""
    out_rows = (x.shape[-2] - pool[0]) // stride[0] + 1
    out_cols = (x.shape[-1] - pool[1]) // stride[1] + 1
    result = np.empty(x.shape[:-2] + (out_rows, out_cols, pool[0] * pool[1]), dtype=x.dtype)
    for i in range(out_rows):
        for j in range(out_cols):
            window = x[..., i * stride[0] : i * stride[0] + pool[0], j * stride[1] : j * stride[1] + pool[1]]
            result[..., i, j, :] = window.reshape(x.shape[:-2] + (-1,))
    return result


def pool_reference(x: np.ndarray, g: np.ndarray, pool: tuple[int, int], stride: tuple[int, int]):
    """Each window's value at its first argmax, and g routed there (overlapping windows add)."""
    flat = windows(x, pool, stride)
    first = flat.argmax(axis=-1)  # the first NaN if any, else the first maximum
    out = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    dx = np.zeros(x.shape, dtype=g.dtype)
    for index in np.ndindex(*first.shape):
        *lead, i, j = index
        r, c = divmod(int(first[index]), pool[1])
        dx[(*lead, i * stride[0] + r, j * stride[1] + c)] += g[index]
    return out, dx


def pool_gradient(x: np.ndarray, g: np.ndarray, pool: tuple[int, int], stride: tuple[int, int]):
    a = Array(x).tracked()
    out = a.max_pool(pool, stride)
    out.backward(Array(g))
    return out.numpy(), a.gradient().numpy()


# unrolled (up to 25 values) and large windows, disjoint, tiling and overlapping
POOLS = [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (3, 2)), ((5, 5), (2, 2)), ((1, 28), (1, 1)), ((6, 5), (3, 4))]


@pytest.mark.parametrize("pool, stride", POOLS)
def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order(pool, stride):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 3, 13, 30)).astype(np.float64)  # many windows hold their maximum twice
    g = rng.uniform(0.5, 2.0, size=windows(x, pool, stride).shape[:-1])
    out, dx = pool_gradient(x, g, pool, stride)
    expected_out, expected_dx = pool_reference(x, g, pool, stride)
    assert np.array_equal(out, expected_out)
    assert np.allclose(dx, expected_dx, rtol=1e-15, atol=0)  # the same shares, added in another order


@pytest.mark.parametrize("pool, stride", POOLS)
def test_max_pool_of_a_window_holding_nan_is_nan_and_its_first_nan_takes_the_delta(pool, stride):
    rng = np.random.default_rng(4)
    x = rng.uniform(-1.0, 1.0, size=(2, 13, 30))
    x[rng.uniform(size=x.shape) < 0.1] = np.nan
    x[0, 0, :3] = np.inf
    g = rng.uniform(0.5, 2.0, size=windows(x, pool, stride).shape[:-1])
    out, dx = pool_gradient(x, g, pool, stride)
    expected_out, expected_dx = pool_reference(x, g, pool, stride)
    assert np.isnan(out).any() and np.array_equal(out, expected_out, equal_nan=True)
    assert np.allclose(dx, expected_dx, rtol=1e-15, atol=0)


@pytest.mark.parametrize("pool, stride", POOLS)
def test_max_pool_infinite_delta_stays_at_the_maximum_and_zero_elsewhere(pool, stride):
    rng = np.random.default_rng(5)
    x = rng.permutation(2 * 13 * 30).reshape(2, 13, 30).astype(np.float64)
    g = rng.uniform(0.5, 2.0, size=windows(x, pool, stride).shape[:-1])
    g[0, 0, 0], g[-1, -1, -1] = np.inf, -np.inf
    _, dx = pool_gradient(x, g, pool, stride)
    _, expected_dx = pool_reference(x, g, pool, stride)
    assert not np.isnan(dx).any()
    assert np.allclose(dx, expected_dx, rtol=1e-15, atol=0)


@pytest.mark.parametrize("pool, stride", [((1, 28), (1, 1)), ((6, 5), (3, 4)), ((5, 6), (1, 2))])
def test_max_pool_large_windows_gradcheck(pool, stride):
    rng = np.random.default_rng(6)
    check(lambda a: a.max_pool(pool, stride), distinct(rng, (2, 11, 30)))


def test_max_pool_without_leading_dimensions_and_with_several():
    rng = np.random.default_rng(8)
    for shape in [(6, 6), (1, 6, 6), (2, 3, 2, 6, 6)]:
        x = rng.uniform(size=shape)
        g = rng.uniform(size=shape[:-2] + (3, 3))
        out, dx = pool_gradient(x, g, (2, 2), (2, 2))
        expected_out, expected_dx = pool_reference(x, g, (2, 2), (2, 2))
        assert np.array_equal(out, expected_out) and np.array_equal(dx, expected_dx)


@pytest.mark.parametrize("layout", [(0, 1, 2, 3), (1, 0, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1), "sliced"])
@pytest.mark.parametrize("pool, stride", [((2, 2), (2, 2)), ((2, 3), (3, 3)), ((1, 2), (2, 2))])
def test_max_pool_routes_the_delta_alike_whatever_the_input_layout(layout, pool, stride):
    # disjoint windows remember each window's first maximum and scatter the delta into a gradient laid
    # out as the input is (a convolution's output is channels first in memory): the values must not care
    rng = np.random.default_rng(13)
    values = rng.integers(0, 3, size=(3, 4, 9, 10)).astype(np.float64)  # ties in most windows
    if layout == "sliced":
        source = Array(np.pad(values, 1)).tracked()
        x = source[1:-1, 1:-1, 1:-1, 1:-1]
    else:
        source = Array(np.ascontiguousarray(values.transpose(layout))).tracked()
        x = source.transpose(*np.argsort(layout))
        assert x._values.flags.c_contiguous == (layout == (0, 1, 2, 3))  # the input really is laid out so
    g = rng.uniform(0.5, 2.0, size=windows(values, pool, stride).shape[:-1])
    out = x.max_pool(pool, stride)
    out.backward(Array(g))
    dx = source.gradient().numpy()
    dx = dx[1:-1, 1:-1, 1:-1, 1:-1] if layout == "sliced" else dx.transpose(np.argsort(layout))
    expected_out, expected_dx = pool_reference(values, g, pool, stride)
    assert np.array_equal(out.numpy(), expected_out) and np.array_equal(dx, expected_dx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_and_max_pool_keep_the_dtype_of_their_inputs(dtype):
    rng = np.random.default_rng(9)
    x = Array(rng.uniform(size=(3, 2, 9, 9)).astype(dtype)).tracked()
    w = Array(rng.uniform(size=(4, 2, 3, 3)).astype(dtype)).tracked()
    out = x.conv(w, (2, 1)).max_pool((2, 2), (1, 2))
    out.backward()
    assert out.numpy().dtype == x.gradient().numpy().dtype == w.gradient().numpy().dtype == dtype


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (3, 1)])
def test_conv_at_the_cnn_sizes_matches_the_sum_over_windows(stride):
    # the main job's sizes: 16 images of 1 x 28 x 28 through 8 filters of 5 x 5, then 8 -> 16 channels
    rng = np.random.default_rng(10)
    x, w1, w2 = rng.normal(size=(16, 1, 28, 28)), rng.normal(size=(8, 1, 5, 5)), rng.normal(size=(16, 8, 3, 3))
    first = Array(x).conv(Array(w1), stride).numpy()
    assert np.allclose(first, conv_reference(x, w1, stride), rtol=1e-12, atol=1e-12)
    second = Array(first).conv(Array(w2), stride).numpy()
    assert np.allclose(second, conv_reference(first, w2, stride), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_conv_with_biases_is_the_convolution_plus_one_bias_per_filter(lead):
    # the biases ride in the product (a column of the filters times a row of ones); the output is
    # laid out channels first in memory, and what reads it (relu, max_pool, reshape) sees the same values
    rng = np.random.default_rng(12)
    x, w, b = rng.normal(size=lead + (2, 9, 8)), rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4)
    expected = conv_reference(x, w, (1, 1)) + b[:, None, None]
    for biases in (b, b.reshape(4, 1, 1)):
        out = Array(x).conv(Array(w), biases=Array(biases))
        assert out.dimensions == expected.shape
        assert np.allclose(out.numpy(), expected, rtol=1e-13, atol=1e-13)
        pooled = out.relu().max_pool().reshape((-1,)).numpy()
        assert np.array_equal(pooled, Array(np.maximum(out.numpy(), 0)).max_pool().reshape((-1,)).numpy())


def _cnn_gradients(workers: int, x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> list[np.ndarray]:
    engine.configure(workers=workers)
    images, f1, f2 = Array(x).tracked(), Array(w1).tracked(), Array(w2).tracked()
    b1 = Array(np.linspace(-0.5, 0.5, w1.shape[0])).tracked()
    hidden = images.conv(f1, biases=b1).relu().max_pool()
    # two branches share the hidden layer: their deltas meet at one node, from any thread
    branch_a = hidden.conv(f2).max_pool((3, 3), (1, 1))
    branch_b = hidden.max_pool((2, 2), (1, 1)) * 0.5
    batch = x.shape[0]
    total = (branch_a * branch_a).reshape((batch, -1)).sum(1) + branch_b.reshape((batch, -1)).sum(1)
    total.backward()
    return [images.gradient().numpy(), f1.gradient().numpy(), b1.gradient().numpy(), f2.gradient().numpy()]


@pytest.mark.timeout(120)
def test_cnn_gradients_are_bitwise_identical_at_every_worker_count(engine_state):
    rng = np.random.default_rng(11)
    x, w1, w2 = rng.normal(size=(4, 2, 14, 14)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(5, 3, 2, 2))
    reference = _cnn_gradients(0, x, w1, w2)
    sys.setswitchinterval(1e-6)
    for workers in WORKERS[1:]:
        for _ in range(3):
            gradients = _cnn_gradients(workers, x, w1, w2)
            assert all(np.array_equal(a, b) for a, b in zip(gradients, reference)), workers
