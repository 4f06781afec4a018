"""numpy's everyday operations on Arrays: their meanings where corgi's and numpy's meet, exact
gradients at kinks and ties (PyTorch's conventions), and the errors bad input gets.

Gradients over random shapes are swept in ``test_gradients_array_api.py``; this file pins the
decisions documented in ``docs/operations.md`` ("Where corgi and numpy meet").
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from corgi import Array, allclose, arr, concatenate, maximum, minimum, no_grad, split, stack, where

pytestmark = pytest.mark.timeout(60)


def grid(*shape, tracked=True):
    x = Array(np.arange(float(np.prod(shape))).reshape(shape))
    return x.tracked() if tracked else x


def gradient_of(f, x, delta=None):
    x = Array(x).tracked()
    f(x).backward(delta)
    return x.gradient()


# ---------------------------------------------------------------- indexing


def test_whole_numbers_alone_keep_corgis_meaning():
    x = grid(2, 3)
    assert x[4] == 4.0 and type(x[4]) is float  # flat, row-major
    assert x[1, 2] == 5.0 and x[np.int64(1), -1] == 5.0 and x[-1] == 5.0


def test_fewer_whole_numbers_than_dimensions_is_an_error_that_shows_the_numpy_form():
    x = grid(2, 3, 4)
    with pytest.raises(IndexError, match=r"index \(1, 2\) gives 2 whole numbers for dimensions \(2, 3, 4\).*a\[1, 2, \.\.\.\]"):
        x[1, 2]
    assert x[1, 2, ...] == Array([20.0, 21.0, 22.0, 23.0])
    with pytest.raises(IndexError, match="more whole numbers than dimensions"):
        x[0, 0, 0, 0]


def test_numpy_indices_give_tracked_arrays():
    x = grid(3, 4)
    for index in (slice(1, None), (slice(None), 1), (..., -1), (None, 0), [2, 0], np.array([1]), x > 5.0, (0, [1, 3])):
        out = x[index]
        assert isinstance(out, Array) and out.is_tracked
        assert np.array_equal(out.numpy(), np.reshape(x.numpy()[index], out.dimensions))
    assert x[1, ...].dimensions == (4,) and x[None, 1, 2].dimensions == (1,)  # 0-d results become (1,)


def test_slices_route_the_gradient_back_to_their_places():
    g = gradient_of(lambda a: a[1:, ::2] * 10.0, grid(3, 4, tracked=False))
    assert g == Array([[0, 0, 0, 0], [10, 0, 10, 0], [10, 0, 10, 0]])


def test_repeated_integer_indices_add_their_gradients():
    g = gradient_of(lambda a: a[[0, 2, 0, 0]], arr(1.0, 2.0, 3.0), delta=arr(1.0, 10.0, 100.0, 1000.0))
    assert g == arr(1101.0, 0.0, 10.0)
    g = gradient_of(lambda a: a[[1, 1], [0, 0]], grid(2, 2, tracked=False))
    assert g == Array([[0.0, 0.0], [2.0, 0.0]])


def test_a_mask_selects_and_its_gradient_goes_back_to_the_selected_places():
    x = arr(-1.0, 2.0, -3.0, 4.0)
    g = gradient_of(lambda a: a[a > 0.0] * arr(5.0, 7.0), x)
    assert g == arr(0.0, 5.0, 0.0, 7.0)
    assert x[[True, False, False, True]] == arr(-1.0, 4.0)


@pytest.mark.parametrize(
    "index, error, message",
    [
        (slice(5, None), IndexError, "selects no values"),
        ([3], IndexError, "out of bounds"),
        ((slice(None), 9), IndexError, "out of bounds"),
        (np.array([True, False]), IndexError, "boolean index did not match"),
        (arr(0.0), TypeError, "an Array holds floats and can't index"),
        (np.array([0.5]), TypeError, "must hold integers or booleans"),
        (True, TypeError, "Array indices"),
        ((slice(None), 1.5), TypeError, "Array indices"),
        ([], TypeError, "must hold integers or booleans"),
    ],
)
def test_bad_numpy_indices(index, error, message):
    with pytest.raises(error, match=message):
        grid(3, 2)[index]


# ---------------------------------------------------------------- shapes


def test_shape_operations_match_numpy():
    x = grid(2, 1, 3)
    v = x.numpy()
    assert np.array_equal(x.T.numpy(), v.T) and np.array_equal(x.transpose(2, 0, 1).numpy(), v.transpose(2, 0, 1))
    assert np.array_equal(x.swapaxes(-1, 0).numpy(), v.swapaxes(-1, 0))
    assert x.squeeze().dimensions == (2, 3) and x.squeeze(1).dimensions == (2, 3)
    assert x.expand_dims(-1).dimensions == (2, 1, 3, 1)
    assert x.flatten() == Array(v.reshape(-1)) and x.reshape(3, -1).dimensions == (3, 2)
    assert Array.zeros((1, 1)).squeeze().dimensions == (1,)  # no 0-d arrays


def test_arr_of_tracked_arrays_stacks_with_the_graph():
    w = arr(1.0, 2.0).tracked()
    rows = arr(w * 2.0, w * 3.0, arr(0.5, 0.5))
    assert rows.is_tracked and rows.dimensions == (3, 2)
    rows.backward(Array([[1.0, 1.0], [10.0, 10.0], [100.0, 100.0]]))
    assert w.gradient() == arr(32.0, 32.0)  # 2 + 30 each: the optimizer sees w's gradient
    assert not arr(arr(1.0), arr(2.0)).is_tracked
    mixed = arr(Array([1.0], dtype="float32").tracked(), arr(2.0))
    assert mixed.dtype == np.float64 and mixed.is_tracked


def test_concatenate_stack_split():
    a, b = grid(2, 2), grid(1, 2, tracked=False)
    joined = concatenate([a, b, np.ones((1, 2))])
    assert joined.dimensions == (4, 2) and joined.is_tracked
    joined.backward()
    assert a.gradient() == Array(np.ones((2, 2)))
    assert stack([arr(1.0), arr(2.0)], axis=-1) == Array([[1.0, 2.0]])
    pieces = split(grid(6), 3)
    assert [p.dimensions for p in pieces] == [(2,), (2,), (2,)] and all(p.is_tracked for p in pieces)
    assert [p.values.tolist() for p in split(grid(5), [-2, 4])] == [[0.0, 1.0, 2.0], [3.0], [4.0]]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: grid(2, 3).transpose(0, 0), ValueError, r"transpose: axes \(0, 0\) are not a permutation of 2"),
        (lambda: grid(2, 3).transpose(0, 1.5), TypeError, "transpose: axes must hold whole numbers"),
        (lambda: grid(2, 3).squeeze(0), ValueError, r"squeeze: axis 0 of dimensions \(2, 3\) is not of size 1"),
        (lambda: grid(2, 3).expand_dims(3), ValueError, "expand_dims: axis 3 is out of range for 3 dimensions"),
        (lambda: grid(2, 3).broadcast_to((3, 3)), ValueError, r"broadcast_to: can't broadcast dimensions \(2, 3\) to \(3, 3\)"),
        (lambda: grid(2, 3).broadcast_to((0, 3)), ValueError, "broadcast_to: every dimension must be at least 1"),
        (lambda: grid(2, 3).swapaxes(0, 2), ValueError, "swapaxes: axis 2 is out of range"),
        (lambda: grid(2, 3).reshape(4, -1), ValueError, r"reshape: can't reshape dimensions \(2, 3\) \(6 values\) to \(4, -1\)"),
        (lambda: concatenate([grid(2, 3), grid(2, 2)]), ValueError, r"concatenate: dimensions differ outside axis 0: \(2, 3\), \(2, 2\)"),
        (lambda: concatenate([]), TypeError, "concatenate: expects a non-empty list"),
        (lambda: concatenate(grid(2, 3)), TypeError, "concatenate: expects a non-empty list or tuple of Arrays, got Array"),
        (lambda: concatenate([grid(2), 1.0]), TypeError, "concatenate: item 1 must be an Array, got float"),
        (lambda: concatenate([grid(2)], axis=1), ValueError, "concatenate: axis 1 is out of range for 1 dimensions"),
        (lambda: stack([grid(2), grid(3)]), ValueError, r"stack: arrays of unequal dimensions can't stack: \[\(2,\), \(3,\)\]"),
        (lambda: split(grid(5), 2), ValueError, r"split: 2 sections do not divide axis 0 of dimensions \(5,\) equally"),
        (lambda: split(grid(5), [0, 3]), ValueError, "split: cutting axis 0 of dimensions .* leaves an empty piece"),
        (lambda: split(grid(5), 0), ValueError, "split: sections must be a whole number >= 1"),
        (lambda: split([1.0, 2.0], 2), TypeError, "split: expects an Array, got list"),
    ],
)
def test_shape_errors_name_the_function_and_what_arrived(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---------------------------------------------------------------- reductions


def test_sum_has_corgis_skip_count_form_and_numpys_axis_form():
    x = grid(2, 3, 2)
    assert x.sum().dimensions == (2, 3, 1) and x.sum(2).dimensions == (2, 1)  # corgi: last dims, one dim of 1
    assert x.sum(axis=1).dimensions == (2, 2) and x.sum(axis=(0, -1), keepdims=True).dimensions == (1, 3, 1)
    assert x.sum(axis=None) == arr(66.0) and x.sum(keepdims=True).dimensions == (1, 1, 1)
    assert np.array_equal(x.sum(axis=(-1, 0)).values, x.numpy().sum(axis=(0, 2)))
    with pytest.raises(TypeError, match="sum: give skip_count .* or axis/keepdims .*, not both"):
        x.sum(1, axis=0)


def test_every_axis_reduced_gives_dimensions_1_unless_keepdims():
    x = grid(2, 3)
    for name in ("sum", "mean", "var", "std", "max", "min", "prod", "logsumexp"):
        assert getattr(x, name)(axis=None).dimensions == (1,), name
        assert getattr(x, name)(axis=(0, 1)).dimensions == (1,), name
        assert getattr(x, name)(axis=None, keepdims=True).dimensions == (1, 1), name


@pytest.mark.parametrize(
    "axis, error, message",
    [
        (2, ValueError, "axis 2 is out of range for 2 dimensions"),
        (-3, ValueError, "axis -3 is out of range"),
        ((0, -2), ValueError, r"axis \(0, -2\) names an axis twice"),
        (1.0, TypeError, "axis must be a whole number"),
        ((0, "1"), TypeError, "axis must hold whole numbers"),
    ],
)
def test_bad_axes(axis, error, message):
    for name in ("sum", "mean", "var", "std", "max", "min", "prod", "logsumexp"):
        with pytest.raises(error, match=f"^{name}: {message}"):
            getattr(grid(2, 3), name)(axis=axis)


def test_keepdims_must_be_a_bool():
    with pytest.raises(TypeError, match="max: keepdims must be True or False, got 1"):
        grid(2).max(keepdims=1)


def test_tied_maxima_and_minima_share_the_gradient_evenly():
    x = arr(arr(1.0, 5.0, 5.0), arr(2.0, 2.0, 2.0))
    assert gradient_of(lambda a: a.max(axis=1), x, delta=arr(6.0, 3.0)) == Array([[0.0, 3.0, 3.0], [1.0, 1.0, 1.0]])
    assert gradient_of(lambda a: a.min(), x) == Array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert gradient_of(lambda a: a.min(axis=0), x) == Array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert gradient_of(lambda a: a.max(axis=0), x) == Array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_prod_gradients_at_zeros_are_exact():
    assert gradient_of(lambda a: a.prod(), arr(2.0, 0.0, 3.0)) == arr(0.0, 6.0, 0.0)
    assert gradient_of(lambda a: a.prod(), arr(0.0, 5.0, 0.0)) == arr(0.0, 0.0, 0.0)
    assert gradient_of(lambda a: a.prod(axis=0), Array([[0.0, 2.0], [3.0, 4.0]])) == Array([[3.0, 4.0], [0.0, 2.0]])


def test_mean_var_std_match_numpy_and_refuse_no_degrees_of_freedom():
    x = Array(np.random.default_rng(0).standard_normal((3, 4)))
    v = x.numpy()
    assert np.allclose(x.mean(axis=0).values, v.mean(axis=0), rtol=0, atol=1e-15)
    assert np.allclose(x.var(axis=1, ddof=1).values, v.var(axis=1, ddof=1), rtol=1e-14)
    assert np.allclose(x.std().values, v.std(), rtol=1e-14)
    with pytest.raises(ValueError, match="var: ddof=3 leaves no degrees of freedom for 3 values a group"):
        x.var(axis=0, ddof=3)
    with pytest.raises(ValueError, match="std: ddof must be a whole number >= 0"):
        x.std(ddof=-1)


def test_std_of_equal_values_has_a_zero_gradient_as_pytorchs():
    g = gradient_of(lambda a: a.std(axis=1), Array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]))
    assert np.all(np.isfinite(g.numpy())) and g.numpy()[0].tolist() == [0.0, 0.0, 0.0]
    assert np.allclose(g.numpy()[1], [-1.0, 0.0, 1.0] / (3.0 * np.sqrt(2.0 / 3.0)))
    assert gradient_of(lambda a: a.std(), arr(5.0)) == arr(0.0)


def test_argmax_and_argmin_are_numpys_indices_and_not_tracked():
    x = Array([[3.0, 9.0, 9.0], [7.0, 1.0, 0.0]]).tracked()
    assert x.argmax() == 1 and x[x.argmax()] == 9.0  # the flat index, so x[i] is the maximum
    assert x.argmax(axis=1).tolist() == [1, 0] and x.argmin(axis=0).tolist() == [0, 1, 1]
    assert x.argmax(axis=-1, keepdims=True).shape == (2, 1)
    assert isinstance(x.argmax(axis=0), np.ndarray)


# ---------------------------------------------------------------- elementwise


def test_kinks_follow_pytorch():
    assert gradient_of(lambda a: abs(a), arr(-2.0, 0.0, 3.0)) == arr(-1.0, 0.0, 1.0)  # sign(0) = 0
    assert gradient_of(lambda a: a.clip(0.0, 1.0), arr(-1.0, 0.0, 0.5, 1.0, 2.0)) == arr(0.0, 1.0, 1.0, 1.0, 0.0)
    assert gradient_of(lambda a: a.relu(), arr(-1.0, 0.0, 1.0)) == arr(0.0, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        assert gradient_of(lambda a: a.sqrt(), arr(0.0, 4.0)) == arr(np.inf, 0.25)  # as PyTorch: a pole


def test_maximum_and_minimum_split_ties_and_broadcast():
    x, y = arr(1.0, 2.0, 3.0).tracked(), arr(2.0).tracked()
    maximum(x, y).backward()
    assert x.gradient() == arr(0.0, 0.5, 1.0) and y.gradient() == arr(1.5)
    x.clear_gradient(), y.clear_gradient()
    minimum(y, x).backward()
    assert x.gradient() == arr(1.0, 0.5, 0.0) and y.gradient() == arr(1.5)
    assert maximum(2.0, arr(1.0, 3.0)) == arr(2.0, 3.0)


def test_clip_with_array_bounds_sends_the_gradient_to_the_bound_that_won():
    x = arr(-1.0, 0.5, 2.0).tracked()
    lo, hi = arr(0.0, 0.0, 0.0).tracked(), arr(1.0).tracked()
    x.clip(lo, hi).backward()
    assert x.gradient() == arr(0.0, 1.0, 0.0) and lo.gradient() == arr(1.0, 0.0, 0.0) and hi.gradient() == arr(1.0)
    with pytest.raises(ValueError, match="clip: give lo, hi or both"):
        x.clip()
    with pytest.raises(TypeError, match="clip: lo must be a number or an Array, got True"):
        x.clip(True, 1.0)


def test_where_selects_and_refuses_conditions_that_are_not_masks():
    a, b = arr(1.0, 2.0).tracked(), arr(10.0).tracked()
    out = where([True, False], a, b)
    assert out == arr(1.0, 10.0)
    out.backward()
    assert a.gradient() == arr(1.0, 0.0) and b.gradient() == arr(1.0)
    assert where(np.array(True), 1.0, 2.0) == arr(1.0)
    with pytest.raises(TypeError, match="where: the condition must be a boolean mask .*got an Array of floats"):
        where(arr(1.0, 0.0), a, b)
    with pytest.raises(TypeError, match="where: the condition must be a boolean mask .*got float64 values"):
        where(np.array([1.0, 0.0]), a, b)
    with pytest.raises(ValueError, match=r"where: a condition of \(3,\), \(2,\) and \(1,\) do not broadcast"):
        where([True, False, True], a, b)


def test_comparisons_are_numpy_masks_and_equality_stays_corgis():
    x = arr(1.0, 2.0, 3.0).tracked()
    for mask, expected in ((x < 2.0, [True, False, False]), (x <= 2.0, [True, True, False]),
                           (x > arr(2.0), [False, False, True]), (x >= np.array([3.0, 2.0, 1.0]), [False, True, True])):
        assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.tolist() == expected
    assert (2.0 < x).tolist() == [False, False, True]  # reflected
    assert (x == arr(1.0, 2.0, 3.0)) is True and (x != arr(1.0, 2.0, 3.0)) is False
    with pytest.raises(ValueError, match=r"<: dimensions \(3,\) and \(2,\) do not broadcast"):
        x < arr(1.0, 2.0)
    with pytest.raises(TypeError):
        x < "a"


def test_astype_keeps_the_graph_and_casts_the_gradient_back():
    x = arr(1.5, 2.5).tracked()
    assert x.astype("float64") is x and x.astype(np.float64) is x
    y = x.astype(np.float32)
    assert y.dtype == np.float32 and y.is_tracked
    (y * y).backward()
    assert x.gradient().dtype == np.float64 and x.gradient() == arr(3.0, 5.0)
    with pytest.raises(TypeError, match="astype: corgi arrays hold float32 or float64, got 'int32'"):
        x.astype("int32")


# ---------------------------------------------------------------- one value as a number


def test_float_item_format_and_bool_of_one_value():
    x = arr(2.0 / 3.0).tracked()
    assert float(x) == x.item() == 2.0 / 3.0 and type(x.item()) is float
    assert format(x, ".3f") == "0.667" and f"{x:.1e}" == "6.7e-01" and format(x) == repr(x)
    assert arr(1.0, 2.0).item(1) == 2.0 and grid(2, 2).item(1, 0) == 2.0
    assert bool(arr(0.5)) is True and bool(arr(0.0)) is False


def test_conversions_of_many_values_are_errors():
    x = arr(1.0, 2.0)
    with pytest.raises(TypeError, match=r"float: only an array of one value converts to a float, got dimensions \(2,\)"):
        float(x)
    with pytest.raises(ValueError, match=r"item: only an array of one value"):
        x.item()
    with pytest.raises(TypeError, match=r"format: a format spec such as '.3f' applies to an array of one value"):
        format(x, ".3f")
    with pytest.raises(ValueError, match=r"truth value of an Array of dimensions \(2,\) is ambiguous"):
        bool(x)
    with pytest.raises(TypeError, match="item: expects whole numbers"):
        x.item(0.5)


# ---------------------------------------------------------------- copying, pickling, no_grad


def test_pickle_and_deepcopy_keep_values_dtype_tracking_and_gradient():
    x = Array([[1.0, 2.0]], dtype="float32").tracked("x")
    y = (x * x).sum(axis=None)
    y.backward()
    for copied in (pickle.loads(pickle.dumps(x)), copy.deepcopy(x)):
        assert copied == x and copied.dtype == np.float32 and copied.is_tracked
        assert copied.gradient() == x.gradient() and copied.gradient().dtype == np.float32
        (copied * 3.0).sum(axis=None).backward()  # its own leaf: x is untouched
        assert copied.gradient() == x.gradient() + 3.0 and x.gradient() == Array([[2.0, 4.0]], dtype="float32")
    plain = pickle.loads(pickle.dumps(arr(1.0, 2.0)))
    assert plain == arr(1.0, 2.0) and not plain.is_tracked and plain.gradient() is None


def test_a_pickled_operation_result_comes_back_as_a_tracked_leaf():
    x = arr(2.0).tracked()
    y = x * x
    y.backward()
    again = pickle.loads(pickle.dumps(y))
    assert again == arr(4.0) and again.is_tracked and again.gradient() == arr(1.0)
    (again * 5.0).backward()  # no graph below it: nothing reaches x
    assert again.gradient() == arr(6.0) and x.gradient() == arr(4.0)


def test_an_untracked_array_keeps_its_gradient_through_a_pickle():
    w = arr(1.0).tracked()
    (w * 2.0).backward()
    w.stop_tracking()
    again = pickle.loads(pickle.dumps(w))
    assert not again.is_tracked and again.gradient() == arr(2.0)


def test_copy_is_the_array_itself_and_a_list_of_arrays_deep_copies():
    x = arr(1.0).tracked()
    assert copy.copy(x) is x
    y = x * 2.0
    copied = copy.deepcopy([x, y, x])
    assert copied[0] is copied[2] and copied[0] is not x and copied[1] == arr(2.0)


def test_values_written_after_unpickling_are_still_read_only_to_users():
    again = pickle.loads(pickle.dumps(arr(1.0, 2.0)))
    with pytest.raises(ValueError):
        again.numpy()[0] = 5.0


def test_new_operations_record_nothing_under_no_grad():
    x = grid(2, 3)
    with no_grad():
        outs = [x[0:1], x.T, x.mean(axis=0), x.max(), abs(x), x.clip(1.0, 2.0), maximum(x, 1.0),
                where(x > 1.0, x, 0.0), concatenate([x, x]), stack([x, x]), x.astype("float32"), arr(x, x)]
    assert not any(out.is_tracked for out in outs)
    assert all(out.is_tracked for out in (x[0:1], x.mean(axis=0), arr(x, x)))


def test_operations_never_modify_their_inputs():
    rng = np.random.default_rng(0)
    x = Array(rng.uniform(0.5, 2.0, size=(2, 3, 4))).tracked()
    y = Array(rng.uniform(0.5, 2.0, size=(3, 4))).tracked()
    before = [x.numpy().copy(), y.numpy().copy()]
    results = [
        x[:, 1:], x[[0, 0]], x[x > 1.0], x.T, x.swapaxes(0, 1), x.squeeze(), x.expand_dims(0), x.flatten(),
        x.broadcast_to((2, 2, 3, 4)), concatenate([x, x]), stack([y, y]), split(x, 2)[0], x.sum(axis=1),
        x.mean(), x.var(axis=0), x.std(), x.max(axis=-1), x.min(), x.prod(axis=(0, 2)), x.logsumexp(axis=1),
        abs(x), x.sqrt(), x.square(), x.sin(), x.cos(), x.log(), x.log1p(), x.expm1(), x.clip(1.0, 1.5),
        maximum(x, y), minimum(y, x), where(x > 1.0, x, y), x.astype("float32"),
    ]
    for result in results:
        result.backward()
        assert not result.numpy().flags.writeable
    assert np.array_equal(x.numpy(), before[0]) and np.array_equal(y.numpy(), before[1])
    assert allclose(y.gradient(), y.gradient())
