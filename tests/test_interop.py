"""numpy on Arrays never detaches a tracked array: its functions run corgi's operations or refuse."""

from __future__ import annotations

import numpy as np
import pytest

from corgi import Array, allclose, arr, concatenate, no_grad, stack
from corgi.array.interop import FUNCTIONS, UFUNCS, VALUES_ONLY

pytestmark = pytest.mark.timeout(60)


def tracked_matrix():
    return Array(np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])).tracked()


UFUNC_CASES = [
    (lambda x: np.exp(x), lambda x: x.exp()),
    (lambda x: np.log(abs(x)), lambda x: abs(x).ln()),
    (lambda x: np.log1p(abs(x)), lambda x: abs(x).log1p()),
    (lambda x: np.expm1(x), lambda x: x.expm1()),
    (lambda x: np.sqrt(abs(x)), lambda x: abs(x).sqrt()),
    (lambda x: np.square(x), lambda x: x * x),
    (lambda x: np.sin(x) + np.cos(x), lambda x: x.sin() + x.cos()),
    (lambda x: np.tanh(x), lambda x: x.tanh()),
    (lambda x: np.abs(x), lambda x: abs(x)),
    (lambda x: np.negative(x) + np.positive(x) * 2.0, lambda x: x),
    (lambda x: np.reciprocal(x), lambda x: x.reciprocal()),
    (lambda x: np.add(x, 1.0) * np.multiply(2.0, x), lambda x: (x + 1.0) * (2.0 * x)),
    (lambda x: np.subtract(np.ones(3), x) / np.true_divide(x, 4.0), lambda x: (1.0 - x) / (x / 4.0)),
    (lambda x: np.power(abs(x), 1.5) + np.power(2.0, x), lambda x: abs(x).powf(1.5) + 2.0**x),
    (lambda x: np.maximum(x, 0.3) - np.minimum(0.1, x), lambda x: x.clip(0.3, None) - x.clip(None, 0.1)),
    (lambda x: np.matmul(x, np.ones((3, 2))) + np.ones(2) @ x[:, :2], lambda x: x @ Array(np.ones((3, 2))) + Array(np.ones(2)) @ x[:, :2]),
    (lambda x: np.ones((2, 3)) * x + np.ones(3) - x * np.float64(2.0), lambda x: x + 1.0 - x * 2.0),
]


def check_same_value_and_gradient(numpy_form, corgi_form):
    """numpy's spelling on a tracked Array gives a tracked Array with corgi's spelling's value and gradient."""
    x, y = tracked_matrix(), tracked_matrix()
    out = numpy_form(x)
    assert isinstance(out, Array) and out.is_tracked
    expected = corgi_form(y)
    assert allclose(out, expected, rtol=1e-14, atol=1e-15)
    out.backward()
    expected.backward()
    assert allclose(x.gradient(), y.gradient(), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("numpy_form, corgi_form", UFUNC_CASES)
def test_ufuncs_on_a_tracked_array_run_corgis_differentiable_operations(numpy_form, corgi_form):
    check_same_value_and_gradient(numpy_form, corgi_form)


FUNCTION_CASES = [
    (lambda x: np.sum(x), lambda x: x.sum(axis=None)),
    (lambda x: np.sum(x, axis=1, keepdims=True), lambda x: x.sum(axis=1, keepdims=True)),
    (lambda x: np.mean(x, 0), lambda x: x.mean(0)),
    (lambda x: np.var(x, axis=1, ddof=1) + np.std(x), lambda x: x.var(axis=1, ddof=1) + x.std()),
    (lambda x: np.max(x, axis=0) + np.amin(x), lambda x: x.max(axis=0) + x.min()),
    (lambda x: np.prod(x, axis=-1), lambda x: x.prod(axis=-1)),
    (lambda x: np.clip(x, -0.5, 1.0), lambda x: x.clip(-0.5, 1.0)),
    (lambda x: np.concatenate([x, x * 2.0], axis=1), lambda x: concatenate([x, x * 2.0], 1)),
    (lambda x: np.stack([x, x]), lambda x: stack([x, x])),
    (lambda x: np.split(x, 3, axis=1)[2], lambda x: x[:, 2:]),
    (lambda x: np.transpose(x) + np.swapaxes(x, 0, 1), lambda x: x.T * 2.0),
    (lambda x: np.squeeze(np.expand_dims(x, 0)), lambda x: x),
    (lambda x: np.broadcast_to(x, (4, 2, 3)), lambda x: x.broadcast_to((4, 2, 3))),
    (lambda x: np.reshape(x, (3, -1)) + np.ravel(x)[:2], lambda x: x.reshape(3, 2) + x.flatten()[:2]),
    (lambda x: np.where(x > 0.0, x, np.zeros((2, 3))), lambda x: x.relu()),
]


@pytest.mark.parametrize("numpy_form, corgi_form", FUNCTION_CASES)
def test_numpy_functions_on_a_tracked_array_run_corgis_operations(numpy_form, corgi_form):
    check_same_value_and_gradient(numpy_form, corgi_form)


def test_numpys_sum_is_numpys_not_corgis_skip_count():
    x = Array(np.ones((2, 3)))
    assert np.sum(x) == arr(6.0) and x.sum() == Array([[3.0], [3.0]])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: np.median(x), "numpy.median"),
        (lambda x: np.cumsum(x), "numpy.cumsum"),
        (lambda x: np.floor(x), "numpy.floor"),
        (lambda x: np.arctan(x), "numpy.arctan"),
        (lambda x: np.add.reduce(x), "numpy.add.reduce"),
        (lambda x: np.exp(x, out=np.empty((2, 3))), "numpy.exp"),
        (lambda x: np.sum(x, dtype=np.float32), "numpy.sum"),
        (lambda x: np.dot(x, np.ones(3)), "numpy.dot"),
        (lambda x: np.concatenate([x, np.ones((1, 3))], out=np.empty((3, 3))), "numpy.concatenate"),
        (lambda x: np.linalg.norm(x), "numpy.linalg.norm"),
    ],
)
def test_anything_else_on_a_tracked_array_is_a_type_error_that_says_how_to_proceed(call, name):
    x = tracked_matrix()
    with pytest.raises(TypeError, match=rf"^{name} on a tracked Array") as raised:
        call(x)
    message = str(raised.value)
    assert "np.asarray(x)" in message and "docs/operations.md" in message and "lose the graph" in message


def test_the_same_functions_run_on_the_values_of_an_untracked_array_or_under_no_grad():
    x = Array(np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))
    values = x.numpy()
    assert np.median(x) == np.median(values) and np.array_equal(np.floor(x), np.floor(values))
    assert np.array_equal(np.cumsum(x), np.cumsum(values)) and np.array_equal(np.add.reduce(x), values.sum(axis=0))
    t = tracked_matrix()
    with no_grad():
        assert np.median(t) == np.median(values)


def test_functions_without_a_gradient_answer_about_the_values():
    x = tracked_matrix()
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6
    assert np.allclose(x, x.numpy()) and np.isclose(x, x.numpy()).all() and np.array_equal(x, x.numpy())
    assert np.argmax(x) == 2 and np.argmin(x, axis=1).tolist() == [1, 2]
    assert np.count_nonzero(np.greater(x, 0.0)) == 4 and np.isfinite(x).all() and not np.isnan(x).any()
    assert np.equal(x, 2.0).tolist() == [[False, False, True], [False, False, False]]
    assert (np.ones(3) == arr(1.0, 0.0, 1.0)).tolist() == [True, False, True]
    assert (np.zeros(3) < arr(1.0, -1.0, 1.0)).tolist() == [True, False, True]


def test_asarray_and_array_stay_the_explicit_way_to_the_values():
    x = tracked_matrix()
    view = np.asarray(x)
    assert isinstance(view, np.ndarray) and not view.flags.writeable
    assert isinstance(np.array(x), np.ndarray) and np.array(x).flags.writeable


def test_an_ndarray_on_the_left_of_an_operator_records_the_graph():
    x = tracked_matrix()
    out = np.full((2, 3), 2.0) * x - np.ones(3) / x + np.ones((3, 2)).T ** 2.0
    assert isinstance(out, Array) and out.is_tracked


def test_in_place_numpy_on_arrays_is_refused():
    x = tracked_matrix()
    target = np.zeros((2, 3))
    with pytest.raises(TypeError, match="lose the graph"):
        target += x
    with pytest.raises(TypeError, match="Arrays are immutable; out= can't name one"):
        np.add(np.ones(3), np.ones(3), out=arr(0.0, 0.0, 0.0))


def test_the_tables_cover_the_issues_operations():
    for ufunc in (np.add, np.subtract, np.multiply, np.true_divide, np.exp, np.log, np.sqrt, np.abs, np.maximum, np.minimum, np.matmul, np.sin, np.cos):
        assert ufunc in UFUNCS
    for function in (np.concatenate, np.stack, np.split, np.transpose, np.mean, np.clip, np.sum, np.var, np.std, np.max, np.min, np.prod, np.where, np.squeeze, np.expand_dims, np.broadcast_to, np.reshape):
        assert function in FUNCTIONS
    assert not (set(UFUNCS) | set(FUNCTIONS)) & VALUES_ONLY
