"""A registry-wide gradient sweep: every operation against central finite differences.

Every test that gradchecks an operation declares it with ``@covers(...)``;
``test_every_operation_has_a_gradcheck_case`` fails when a name in
``corgi.array.PRIMITIVES`` or ``corgi.array.COMPOSED`` has none, so an
operation can't be added untested. This file sweeps corgi 0.9.2's
operations; ``test_gradients_array_api.py`` numpy's everyday ones.
Shapes come from hypothesis (broadcasting, size-1 dimensions, leading batch
dimensions); values come from a numpy generator seeded by hypothesis and are
kept away from kinks (relu at 0), poles (ln, reciprocal, div) and ties
(max_pool), so that a finite difference is a fair judge. Every parameter that
enters a derivative is drawn too: powf and pow exponents, matmul transposes,
``c`` and 1-D operands, sum ``skip_count``, conv stride and filter sizes,
max_pool pool and stride, axpy ``alpha``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sweep import COVERED, SWEEP, away_from_zero, check, check_float32, covers, pairs, seeds, shapes, uniform

from corgi import Array, allclose, arr
from corgi.array import COMPOSED, PRIMITIVES

pytestmark = pytest.mark.timeout(120)


def _all_cases():
    import test_gradients_array_api

    return test_gradients_array_api.FLOAT32_CASES


def test_every_operation_has_a_gradcheck_case():
    _all_cases()
    operations = set(PRIMITIVES) | set(COMPOSED)
    assert len(operations) > 50  # the registry is filled
    missing = sorted(operations - set(COVERED))
    assert not missing, f"operations without a gradcheck case: {missing}"


def test_every_operation_has_a_float32_case():
    names = {name for name, _, _ in FLOAT32_CASES + _all_cases()}
    missing = sorted((set(PRIMITIVES) | set(COMPOSED)) - names)
    assert not missing, f"operations without a float32 case: {missing}"


# ---------------------------------------------------------------- elementwise


@covers("add", "sub", "mul", "neg")
@SWEEP
@given(pairs, seeds)
def test_add_sub_mul_neg_broadcast(shapes_, seed):
    rng = np.random.default_rng(seed)
    x, y = (uniform(rng, s) for s in shapes_.input_shapes)
    check(lambda a, b: a + b, x, y)
    check(lambda a, b: a - b, x, y)
    check(lambda a, b: a * b, x, y)
    check(lambda a, b: -a * b, x, y)
    # the same primitives with Python numbers on either side
    check(lambda a: 2.5 + a - 1.5 * a * a - 0.5 - a * 3.0, x)


@covers("div", "reciprocal")
@SWEEP
@given(pairs, seeds)
def test_div_reciprocal_broadcast(shapes_, seed):
    rng = np.random.default_rng(seed)
    x = uniform(rng, shapes_.input_shapes[0])
    y = away_from_zero(rng, shapes_.input_shapes[1])
    check(lambda a, b: a / b, x, y)
    check(lambda b: b.reciprocal(), y)
    check(lambda b: 3.0 / b, y)
    check(lambda a: a / 4.0, x)


@covers("powf")
@SWEEP
@given(shapes, seeds, st.floats(-3.0, 3.0).filter(lambda e: abs(e) > 1e-3))
def test_powf_any_exponent_on_positive_bases(shape, seed, exponent):
    x = uniform(np.random.default_rng(seed), shape, 0.5, 2.0)
    check(lambda a: a.powf(exponent), x)
    check(lambda a: a**exponent, x)


@covers("powf")
@SWEEP
@given(shapes, seeds, st.sampled_from([1, 2, 3, 4, -1, -2]))
def test_powf_whole_exponents_on_any_sign(shape, seed, exponent):
    x = away_from_zero(np.random.default_rng(seed), shape)
    check(lambda a: a.powf(exponent), x)


@covers("pow")
@SWEEP
@given(pairs, seeds)
def test_pow_array_exponents(shapes_, seed):
    rng = np.random.default_rng(seed)
    base = uniform(rng, shapes_.input_shapes[0], 0.5, 2.0)
    exponent = uniform(rng, shapes_.input_shapes[1], -2.0, 2.0)
    check(lambda b, e: b**e, base, exponent)
    check(lambda e: 1.7**e, exponent)


@covers("exp", "ln", "tanh")
@SWEEP
@given(shapes, seeds)
def test_exp_ln_tanh(shape, seed):
    rng = np.random.default_rng(seed)
    check(lambda a: a.exp(), uniform(rng, shape))
    check(lambda a: a.ln(), uniform(rng, shape, 0.3, 3.0))
    check(lambda a: a.tanh(), uniform(rng, shape, -3.0, 3.0))


@covers("relu")
@SWEEP
@given(shapes, seeds)
def test_relu_away_from_the_kink(shape, seed):
    check(lambda a: a.relu(), away_from_zero(np.random.default_rng(seed), shape, 0.1, 2.0))


@covers("sigmoid")
@SWEEP
@given(shapes, seeds)
def test_sigmoid(shape, seed):
    check(lambda a: a.sigmoid(), uniform(np.random.default_rng(seed), shape, -6.0, 6.0))


@covers("sigmoid")
def test_sigmoid_saturated():
    x = arr(50.0, -50.0, 30.0, -30.0, 0.0, 700.0, -700.0, -1000.0)
    out = x.sigmoid()
    assert np.all(np.isfinite(out.values)) and np.all((out.values >= 0) & (out.values <= 1))
    check(lambda a: a.sigmoid(), x, atol=1e-12)
    t = x.tracked()
    t.sigmoid().backward()
    assert np.all(np.isfinite(t.gradient().values))


@covers("softmax")
@SWEEP
@given(shapes, seeds, st.sampled_from([0.0, 30.0, -30.0, 500.0, -500.0, 1e4]))
def test_softmax_with_large_inputs(shape, seed, offset):
    x = Array(np.random.default_rng(seed).uniform(-3.0, 3.0, size=shape) + offset)
    out = x.softmax()
    assert np.all(np.isfinite(out.values))
    assert np.allclose(out.numpy().sum(axis=-1), 1.0)
    check(lambda a: a.softmax(), x)


@covers("softmax")
def test_softmax_extreme_spread():
    x = arr(arr(1000.0, 0.0, -1000.0), arr(800.0, 800.0, -800.0))
    assert allclose(x.softmax(), arr(arr(1.0, 0.0, 0.0), arr(0.5, 0.5, 0.0)), atol=0.0)
    check(lambda a: a.softmax(), x)


@SWEEP
@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 3), seeds, st.booleans())
def test_row_max_matches_numpy(rows, k, lead, seed, special):
    # the softmax family's fast row maximum (a transposed copy for many short rows)
    from corgi.array.nonlinearity import _row_max

    x = np.random.default_rng(seed).standard_normal((lead, rows, k))
    if special:
        x[0, 0, 0], x[-1, -1, -1] = np.nan, np.inf
    expected = x.max(axis=-1, keepdims=True)
    for values in (x, x[0], x.astype(np.float32)):
        assert np.array_equal(_row_max(values), values.max(axis=-1, keepdims=True), equal_nan=True)
    assert _row_max(x).shape == expected.shape


@SWEEP
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40), seeds, st.booleans())
def test_row_sum_matches_numpy(shape, seed, one_hot):
    # the softmax family's row sums (a product with ones)
    from corgi.array.nonlinearity import _row_sum

    rng = np.random.default_rng(seed)
    x = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])] if one_hot else rng.standard_normal(shape)
    for values in (x, x.astype(np.float32), np.broadcast_to(x, (2,) + x.shape)):
        got, expected = _row_sum(values), values.sum(axis=-1, keepdims=True)
        assert got.shape == expected.shape and got.dtype == values.dtype
        if one_hot:  # whole numbers: exact in any order
            assert np.array_equal(got, expected)
        else:
            assert np.allclose(got, expected, rtol=1e-5 if values.dtype == np.float32 else 1e-12, atol=1e-5)
    with np.errstate(invalid="ignore"):
        special = np.array([[1.0, np.inf], [np.nan, 1.0], [np.inf, -np.inf]])
        assert np.array_equal(_row_sum(special), special.sum(axis=-1, keepdims=True), equal_nan=True)


@covers("log_softmax")
@SWEEP
@given(shapes, seeds, st.sampled_from([0.0, 30.0, -500.0, 1e4]))
def test_log_softmax_with_large_inputs(shape, seed, offset):
    values = np.random.default_rng(seed).uniform(-3.0, 3.0, size=shape) + offset
    out = Array(values).log_softmax()
    shifted = values - values.max(axis=-1, keepdims=True)
    expected = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    assert np.all(np.isfinite(out.values)) and np.allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert np.allclose(np.exp(out.numpy()).sum(axis=-1), 1.0)
    check(lambda a: a.log_softmax(), Array(values))
    # each output depends on every input of its row: weight them differently
    weights = Array(np.random.default_rng(seed + 1).uniform(0.5, 1.5, size=shape))
    check(lambda a: a.log_softmax() * weights, Array(values))


@covers("log_softmax")
def test_log_softmax_is_exact_where_softmax_underflows():
    x = arr(arr(1000.0, 0.0, -1000.0), arr(0.0, 0.0, 0.0))
    third = -np.log(3.0)
    assert allclose(x.log_softmax(), arr(arr(0.0, -1000.0, -2000.0), arr(third, third, third)), atol=1e-12)
    with np.errstate(divide="ignore"):
        assert not np.isfinite(x.softmax().ln().values).all()  # the composition it replaces
    check(lambda a: a.log_softmax() * arr(arr(1.0, 2.0, 3.0), arr(1.0, 2.0, 3.0)), x)


def _one_hot_rows(rng, shape):
    """Targets: one-hot rows over the last axis, or arbitrary weights for other shapes."""
    classes = shape[-1]
    return Array(np.eye(classes)[rng.integers(0, classes, size=shape[:-1])])


@covers("cross_entropy")
@SWEEP
@given(shapes, seeds, st.booleans(), st.sampled_from(["float64", "float32"]))
def test_cross_entropy_on_probabilities_is_its_composition_bitwise(shape, seed, row_target, dtype):
    rng = np.random.default_rng(seed)
    z = Array(rng.uniform(-3.0, 3.0, size=shape), dtype=dtype)
    target_shape = (1,) * (len(shape) - 1) + shape[-1:] if row_target else shape
    t = rng.uniform(0.0, 1.0, size=target_shape).astype(dtype)
    batch = shape[0] if len(shape) >= 2 else 1
    p = z.softmax().tracked()
    fused = p.cross_entropy(t)
    fused.backward()
    q = z.softmax().tracked()
    composed = (((q + 1e-12).ln()) * (t * (-1.0 / batch))).sum(len(shape))  # make_cross_entropy before issue 14
    composed.backward()
    assert fused.dimensions == (1,) and fused.values.tobytes() == composed.values.tobytes()
    assert p.gradient().values.tobytes() == q.gradient().values.tobytes()
    if dtype == "float64":
        check(lambda a: (a.abs() + 0.1).cross_entropy(t), z)


def test_cross_entropy_refuses_a_tracked_target_and_a_wrong_one():
    p = Array([[0.5, 0.5]]).tracked()
    with pytest.raises(ValueError, match="cross_entropy: the target is tracked"):
        p.cross_entropy(Array([[1.0, 0.0]]).tracked())
    with pytest.raises(TypeError, match="cross_entropy: the target must be an Array or a numpy array, got list"):
        p.cross_entropy([[1.0, 0.0]])
    with pytest.raises(ValueError, match="cross_entropy: "):
        p.cross_entropy(np.ones((3, 2)))


@covers("softmax_cross_entropy")
@SWEEP
@given(shapes, seeds, st.sampled_from([0.0, 40.0, -1e3]), st.booleans())
def test_softmax_cross_entropy(shape, seed, offset, soft_target):
    rng = np.random.default_rng(seed)
    z = Array(rng.uniform(-3.0, 3.0, size=shape) + offset)
    t = Array(rng.uniform(0.0, 1.0, size=shape)) if soft_target else _one_hot_rows(rng, shape)
    batch = shape[0] if len(shape) >= 2 else 1
    loss = z.softmax_cross_entropy(t)
    assert loss.dimensions == (1,)
    # the composition it fuses, and the exact expected gradient
    composed = (z.log_softmax() * t).sum(len(shape)) * (-1.0 / batch)
    assert np.allclose(loss.values, composed.values, rtol=1e-12, atol=1e-12)
    zt, tt = Array(z).tracked(), Array(t).tracked()
    zt.softmax_cross_entropy(tt).backward()
    zc, tc = Array(z).tracked(), Array(t).tracked()
    ((zc.log_softmax() * tc).sum(len(shape)) * (-1.0 / batch)).backward()
    assert allclose(zt.gradient(), zc.gradient(), rtol=1e-10, atol=1e-12)
    assert allclose(tt.gradient(), tc.gradient(), rtol=1e-10, atol=1e-12)
    p = z.softmax().numpy()
    expected = (p * t.numpy().sum(axis=-1, keepdims=True) - t.numpy()) / batch
    assert np.allclose(zt.gradient().numpy(), expected, rtol=1e-10, atol=1e-12)
    check(lambda a: a.softmax_cross_entropy(t), z)
    check(lambda b: z.softmax_cross_entropy(b), t)


@covers("softmax_cross_entropy")
def test_softmax_cross_entropy_broadcast_target_and_errors():
    z = arr(arr(1.0, 2.0, 3.0), arr(0.5, -1.0, 2.0))
    row = arr(0.0, 1.0, 0.0)  # one target for every example
    check(lambda a, b: a.softmax_cross_entropy(b), z, row)
    assert allclose(z.softmax_cross_entropy(row), z.softmax_cross_entropy(arr(arr(0.0, 1.0, 0.0), arr(0.0, 1.0, 0.0))))
    # a numpy target takes the logits' dtype
    z32 = Array(z, dtype="float32")
    assert z32.softmax_cross_entropy(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])).dtype == np.float32
    with pytest.raises(ValueError, match="softmax_cross_entropy: a target of dimensions \\(2, 2, 3\\) does not match logits of \\(2, 3\\)"):
        z.softmax_cross_entropy(Array.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="softmax_cross_entropy: incompatible dimensions"):
        z.softmax_cross_entropy(Array.zeros((2, 2)))
    with pytest.raises(TypeError, match="the target must be an Array or a numpy array, got list"):
        z.softmax_cross_entropy([[0.0, 1.0, 0.0]] * 2)


# ---------------------------------------------------------------- linalg


@covers("sum")
@SWEEP
@given(shapes, seeds, st.data())
def test_sum_every_skip_count(shape, seed, data):
    skip_count = data.draw(st.integers(0, len(shape)), label="skip_count")
    x = uniform(np.random.default_rng(seed), shape)
    out = x.sum(skip_count)
    lead = shape[: len(shape) - skip_count]
    assert out.dimensions == (lead + (1,) if skip_count else shape)
    assert np.allclose(out.values, x.numpy().reshape(lead + (-1,)).sum(axis=-1).reshape(-1))
    check(lambda a: a.sum(skip_count), x)
    # weight the groups differently, so each must get its own delta
    check(lambda a: a.sum(skip_count) * Array(np.arange(1.0, out.values.size + 1).reshape(out.dimensions)), x)


@covers("reshape")
@SWEEP
@given(shapes, seeds, st.data())
def test_reshape(shape, seed, data):
    size = int(np.prod(shape))
    factor = data.draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0]), label="factor")
    target = data.draw(st.sampled_from([(size,), (1, size), (factor, size // factor), shape[::-1]]), label="to")
    x = uniform(np.random.default_rng(seed), shape)
    assert x.reshape(target).values.tolist() == x.values.tolist()
    weights = Array(np.arange(1.0, size + 1).reshape(target))
    check(lambda a: a.reshape(target) * weights, x)


@st.composite
def matmul_cases(draw):
    """Operands of ``Array.matmul`` with their transposes, an optional ``c``, and the expected value."""
    m, k, n = (draw(st.integers(1, 3), label=name) for name in "mkn")
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    batch_a, batch_b = batch.input_shapes
    ta, tb = draw(st.booleans(), label="ta"), draw(st.booleans(), label="tb")
    vector_a, vector_b = draw(st.booleans(), label="1-D a"), draw(st.booleans(), label="1-D b")
    dot = vector_a and vector_b and not ta and not tb
    # a 1-D operand is a row (1, len), a column when transposed; two plain 1-D operands are a dot product
    if vector_a:
        batch_a = ()
        if ta:
            k = 1
        else:
            m = 1
    if vector_b:
        batch_b = ()
        if dot or tb:
            n = 1
        else:
            k = 1
    rng = np.random.default_rng(draw(seeds, label="seed"))
    left = rng.uniform(-2, 2, size=batch_a + (m, k))  # the effective operands, after transposes
    right = rng.uniform(-2, 2, size=batch_b + (k, n))
    a = left.reshape(-1) if vector_a else (np.swapaxes(left, -1, -2) if ta else left)
    b = right.reshape(-1) if vector_b else (np.swapaxes(right, -1, -2) if tb else right)
    expected = np.matmul(left, right)
    c = None
    if draw(st.booleans(), label="with c"):
        # c broadcasts to the product: fewer leading dimensions, or 1 in place of any
        product = np.broadcast_shapes(batch_a, batch_b) + (m, n)
        kept = product[draw(st.integers(0, len(product) - 1), label="c dropped") :]
        c_shape = tuple(draw(st.sampled_from([1, d]), label="c side") for d in kept)
        c = rng.uniform(-2, 2, size=c_shape)
        expected = expected + c
    if vector_a and vector_b and expected.shape == (1, 1):
        expected = expected.reshape(1)  # a dot product; a 1-D column times a 1-D row stays 2-D
    return Array(a), ta, Array(b), tb, None if c is None else Array(c), expected


@covers("matmul")
@SWEEP
@given(matmul_cases())
def test_matmul_transposes_vectors_batches_and_c(case):
    a, ta, b, tb, c, expected = case
    out = Array.matmul((a, ta), (b, tb), c)
    assert out.dimensions == expected.shape
    assert np.allclose(out.numpy(), expected)
    if c is None:
        check(lambda x, y: Array.matmul((x, ta), (y, tb)), a, b)
    else:
        check(lambda x, y, z: Array.matmul((x, ta), (y, tb), z), a, b, c)


@st.composite
def numpy_matmul_shapes(draw):
    """Shapes that ``numpy.matmul`` accepts, 1-D operands included."""
    shapes_ = draw(hnp.mutually_broadcastable_shapes(signature="(m?,k),(k,n?)->(m?,n?)", max_dims=4, max_side=3))
    return shapes_.input_shapes


@covers("matmul")
@SWEEP
@given(numpy_matmul_shapes(), seeds)
def test_matmul_operator_follows_numpy(shapes_, seed):
    rng = np.random.default_rng(seed)
    a, b = (uniform(rng, s) for s in shapes_)
    expected = np.matmul(a.numpy(), b.numpy())
    out = a @ b
    assert out.dimensions == (expected.shape or (1,))
    assert np.allclose(out.values, np.reshape(expected, -1))
    check(lambda x, y: x @ y, a, b)


@covers("axpy")
@SWEEP
@given(pairs, seeds, st.floats(-3.0, 3.0))
def test_axpy_any_alpha(shapes_, seed, alpha):
    rng = np.random.default_rng(seed)
    x, y = (uniform(rng, s) for s in shapes_.input_shapes)
    check(lambda p, q: Array.axpy(alpha, p, q), x, y)
    xt, yt = Array(x).tracked(), Array(y).tracked()
    Array.axpy(alpha, xt, yt).backward()
    out_size = int(np.prod(np.broadcast_shapes(x.dimensions, y.dimensions)))
    # d/dx sums alpha over the elements each x value was broadcast to
    assert np.allclose(xt.gradient().sum_all(), alpha * out_size)
    assert np.allclose(yt.gradient().sum_all(), out_size)


# ---------------------------------------------------------------- image


def conv_reference(x, w, stride):
    single = w.ndim == 3
    w = w[None] if single else w
    count, _, f_rows, f_cols = w.shape
    out_rows = (x.shape[-2] - f_rows) // stride[0] + 1
    out_cols = (x.shape[-1] - f_cols) // stride[1] + 1
    out = np.zeros(x.shape[:-3] + (count, out_rows, out_cols))
    for i in range(out_rows):
        for j in range(out_cols):
            window = x[..., i * stride[0] : i * stride[0] + f_rows, j * stride[1] : j * stride[1] + f_cols]
            out[..., :, i, j] = np.einsum("...drc,kdrc->...k", window, w)
    return out


@covers("conv")
@SWEEP
@given(
    st.integers(1, 2),  # depth
    st.integers(1, 2),  # count
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # filter rows, cols
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # stride
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # output rows, cols
    st.tuples(st.integers(0, 2), st.integers(0, 2)),  # leftover rows, cols the stride skips
    hnp.array_shapes(min_dims=0, max_dims=2, max_side=2),  # leading batch dims
    st.booleans(),  # a single 3-D filter
    st.sampled_from([None, "vector", "column"]),  # no biases, (count,) or (count, 1, 1)
    seeds,
)
def test_conv_strides_and_filter_sizes(depth, count, size, stride, out_size, extra, batch, single, biases, seed):
    rng = np.random.default_rng(seed)
    rows = (out_size[0] - 1) * stride[0] + size[0] + min(extra[0], stride[0] - 1)
    cols = (out_size[1] - 1) * stride[1] + size[1] + min(extra[1], stride[1] - 1)
    x = uniform(rng, batch + (depth, rows, cols))
    w = uniform(rng, ((depth,) if single else (count, depth)) + size)
    filters = 1 if single else count
    expected = conv_reference(x.numpy(), w.numpy(), stride)
    if biases is None:
        out = x.conv(w, stride)
        check(lambda a, f: a.conv(f, stride), x, w)
    else:
        b = uniform(rng, (filters,) if biases == "vector" else (filters, 1, 1))
        out = x.conv(w, stride, biases=b)
        expected += b.numpy().reshape(filters, 1, 1)
        check(lambda a, f, c: a.conv(f, stride, biases=c), x, w, b)
    assert out.dimensions == expected.shape == batch + (filters,) + out_size
    assert np.allclose(out.numpy(), expected)


@covers("conv")
def test_conv_overlapping_windows():
    # stride < filter: every interior pixel belongs to several windows, and each adds its share
    rng = np.random.default_rng(7)
    x, w = uniform(rng, (2, 7, 7)), uniform(rng, (3, 2, 3, 3))
    for stride in [(1, 1), (2, 2), (1, 2), (2, 1)]:
        check(lambda a, f: a.conv(f, stride), x, w)


@covers("max_pool")
@SWEEP
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # pool
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # stride
    st.tuples(st.integers(1, 3), st.integers(1, 3)),  # output rows, cols
    hnp.array_shapes(min_dims=0, max_dims=2, max_side=2),
    seeds,
)
def test_max_pool_pool_and_stride(pool, stride, out_size, batch, seed):
    rng = np.random.default_rng(seed)
    rows = (out_size[0] - 1) * stride[0] + pool[0]
    cols = (out_size[1] - 1) * stride[1] + pool[1]
    shape = batch + (rows, cols)
    # distinct values 0.1 apart: no ties, and no finite-difference step can reorder them
    values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0
    x = Array(values)
    out = x.max_pool(pool, stride)
    assert out.dimensions == batch + out_size
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            window = values[..., i * stride[0] : i * stride[0] + pool[0], j * stride[1] : j * stride[1] + pool[1]]
            assert np.array_equal(out.numpy()[..., i, j], window.max(axis=(-2, -1)))
    check(lambda a: a.max_pool(pool, stride), x)


# ---------------------------------------------------------------- user-defined operations


def _sin_mul(xs):
    return Array(np.sin(xs[0].numpy()) * xs[1].numpy())


def _sin_mul_backward(xs, is_tracked, delta):
    x, y = xs[0].numpy(), xs[1].numpy()
    return [
        delta * Array(np.cos(x) * y) if is_tracked[0] else None,
        delta * Array(np.sin(x)) if is_tracked[1] else None,
    ]


@SWEEP
@given(shapes, seeds)
def test_custom_op(shape, seed):
    rng = np.random.default_rng(seed)
    x, y = uniform(rng, shape), uniform(rng, shape)
    check(lambda a, b: Array.op([a, b], _sin_mul, _sin_mul_backward), x, y)
    # inside a larger graph, next to built-in operations and sharing an input
    check(lambda a, b: (Array.op([a * b, b], _sin_mul, _sin_mul_backward) + a).tanh(), x, y)


def test_custom_op_with_an_untracked_input():
    x, y = arr(0.5, -1.0).tracked(), arr(2.0, 3.0)
    Array.op([x, y], _sin_mul, _sin_mul_backward).backward()
    assert allclose(x.gradient(), Array(np.cos([0.5, -1.0]) * [2.0, 3.0]))
    assert y.gradient() is None


# ---------------------------------------------------------------- fused primitives vs compositions


def _values_and_gradients(f, inputs):
    tracked = [Array(x).tracked() for x in inputs]
    out = f(*tracked)
    out.backward(np.random.default_rng(1).uniform(0.5, 1.5, size=out.dimensions))
    return out, [t.gradient() for t in tracked]


@SWEEP
@given(pairs, seeds)
def test_fused_primitives_match_their_compositions(shapes_, seed):
    rng = np.random.default_rng(seed)
    x = uniform(rng, shapes_.input_shapes[0])
    y = away_from_zero(rng, shapes_.input_shapes[1])
    for fused, composed in [
        (lambda a, b: a - b, lambda a, b: a + (-b)),
        (lambda a, b: a / b, lambda a, b: a * b.reciprocal()),
        (lambda a, b: Array.axpy(-0.7, a, b), lambda a, b: -0.7 * a + b),
        (lambda a, b: a.sigmoid() * b, lambda a, b: (1.0 + (-a).exp()).reciprocal() * b),
        (lambda a, b: a.tanh() * b, lambda a, b: ((2.0 * a).exp() - 1.0) / ((2.0 * a).exp() + 1.0) * b),
        (lambda a, b: a.softmax() * b, lambda a, b: a.exp() / a.exp().sum(1) * b),
        (lambda a, b: a.powf(2.0) * b, lambda a, b: a * a * b),
    ]:
        out_f, grads_f = _values_and_gradients(fused, [x, y])
        out_c, grads_c = _values_and_gradients(composed, [x, y])
        assert allclose(out_f, out_c, rtol=1e-12, atol=1e-12)
        for g_f, g_c in zip(grads_f, grads_c):
            assert allclose(g_f, g_c, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- float32 in, float32 out


def _f32(*shapes_):
    rng = np.random.default_rng(3)
    return [Array(rng.uniform(0.5, 2.0, size=s), dtype="float32") for s in shapes_]


FLOAT32_CASES = [
    ("add", lambda a, b: a + b + 1.0, [(2, 3), (3,)]),
    ("sub", lambda a, b: 2.0 - a - b, [(2, 3), (1, 3)]),
    ("mul", lambda a, b: 3.0 * a * b, [(2, 3), (2, 1)]),
    ("div", lambda a, b: a / b / 2.0, [(2, 3), (3,)]),
    ("neg", lambda a: -a, [(2, 3)]),
    ("powf", lambda a: a.powf(2.5) + a**3, [(2, 3)]),
    ("pow", lambda a, b: a**b + 2.0**a, [(2, 3), (3,)]),
    ("reciprocal", lambda a: a.reciprocal(), [(2, 3)]),
    ("exp", lambda a: a.exp(), [(2, 3)]),
    ("ln", lambda a: a.ln(), [(2, 3)]),
    ("relu", lambda a: (a - 1.0).relu(), [(2, 3)]),
    ("sigmoid", lambda a: a.sigmoid(), [(2, 3)]),
    ("tanh", lambda a: a.tanh(), [(2, 3)]),
    ("softmax", lambda a: a.softmax(), [(2, 3)]),
    ("log_softmax", lambda a: a.log_softmax() * 2.0, [(2, 3)]),
    ("softmax_cross_entropy", lambda a, b: a.softmax_cross_entropy(b), [(2, 3), (2, 3)]),
    ("sum", lambda a: a.sum(2), [(2, 3, 2)]),
    ("reshape", lambda a: a.reshape((3, 2)), [(2, 3)]),
    ("matmul", lambda a, b, c: Array.matmul((a, False), (b, True), c), [(2, 2, 3), (4, 3), (4,)]),
    ("matmul", lambda a, b: a @ b, [(3,), (2, 3, 2)]),
    ("conv", lambda a, f: a.conv(f, (1, 2)), [(2, 2, 5, 5), (3, 2, 2, 2)]),
    ("conv", lambda a, f: a.conv(f), [(2, 4, 4), (2, 3, 3)]),
    ("conv", lambda a, f, b: a.conv(f, biases=b), [(3, 2, 4, 4), (2, 2, 3, 3), (2, 1, 1)]),
    ("max_pool", lambda a: a.max_pool((2, 2), (1, 1)), [(2, 4, 4)]),
    ("axpy", lambda a, b: Array.axpy(0.3, a, b), [(2, 3), (3,)]),
    ("op", lambda a, b: Array.op([a, b], _sin_mul, _sin_mul_backward), [(2, 3), (2, 3)]),
]


@pytest.mark.parametrize("name, f, input_shapes", FLOAT32_CASES, ids=[c[0] for c in FLOAT32_CASES])
def test_float32_in_float32_out(name, f, input_shapes):
    check_float32(f, _f32(*input_shapes))


def test_float32_gradient_of_a_float64_mix_keeps_each_dtype():
    x32 = Array([1.0, 2.0], dtype="float32").tracked()
    x64 = arr(3.0, 4.0).tracked()
    out = x32 * x64
    assert out.dtype == np.float64
    out.backward()
    assert x32.gradient().dtype == np.float32 and x32.gradient() == Array([3.0, 4.0], dtype="float32")
    assert x64.gradient().dtype == np.float64 and x64.gradient() == arr(1.0, 2.0)
