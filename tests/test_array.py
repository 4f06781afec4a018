"""Arrays: construction, immutability, indexing, equality, dtypes and tracking semantics."""

import numpy as np
import pytest

from corgi import Array, allclose, arr
from corgi.numbers import default_float, set_default_float

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def float32_default():
    previous = set_default_float("float32")
    try:
        yield
    finally:
        set_default_float(previous)


# ---------------------------------------------------------------- construction


def test_a_number_is_one_value_of_dimensions_1():
    a = Array(5.0)
    assert a.dimensions == (1,) and a.values.tolist() == [5.0]
    assert arr(5.0).dimensions == (1,)


def test_nested_lists_give_their_dimensions():
    a = Array([[1, 2, 3], [4, 5, 6]])
    assert a.dimensions == a.shape == (2, 3)
    assert a.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert Array([[[1.0], [2.0]]]).dimensions == (1, 2, 1)


def test_flat_values_with_dimensions_are_row_major():
    a = Array([1, 2, 3, 4, 5, 6], dimensions=(3, 2))
    assert a.dimensions == (3, 2)
    assert a[1, 0] == 3.0 and a[2, 1] == 6.0
    assert Array([1.0, 2.0, 3.0], dimensions=3).dimensions == (3,)
    # a nested sequence with dimensions is read flat too
    assert Array([[1, 2], [3, 4]], dimensions=(4,)) == arr(1, 2, 3, 4)


def test_numpy_arrays_are_copied_and_keep_float32():
    source = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    a = Array(source)
    assert a.dtype == np.float32 and a.dimensions == (2, 2)
    source[0, 0] = 99.0
    assert a[0] == 1.0
    assert Array(np.array([1.0, 2.0])).dtype == np.float64
    assert Array(source, dtype="float64").dtype == np.float64


def test_ints_and_bools_become_the_default_float():
    for values in ([1, 2, 3], np.array([1, 2, 3], dtype=np.int32), np.array([1, 2, 3], dtype=np.uint8)):
        a = Array(values)
        assert a.dtype == np.float64 and a.values.tolist() == [1.0, 2.0, 3.0]
    assert arr(1, 2).dtype == np.float64
    assert Array([True, False]).values.tolist() == [1.0, 0.0]


def test_an_array_from_an_array_copies_values_not_tracking():
    a = arr(1.0, 2.0).tracked()
    b = Array(a)
    assert b == a and not b.is_tracked
    (b * 2.0).stop_tracking()
    assert a.gradient() is None


def test_arr_stacks_equal_arrays_under_a_new_leading_dimension():
    a = arr(arr(1, 2, 3), arr(4, 5, 6))
    assert a.dimensions == (2, 3)
    assert a.values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert arr(a, a, a).dimensions == (3, 2, 3)
    assert arr(arr(1.0)).dimensions == (1, 1)
    assert arr(Array([1, 2], dtype="float32"), Array([3, 4], dtype="float32")).dtype == np.float32


def test_zeros():
    z = Array.zeros((2, 3))
    assert z.dimensions == (2, 3) and z.values.tolist() == [0.0] * 6
    assert Array.zeros(4).dimensions == (4,)
    assert Array.zeros((2,), dtype="float32").dtype == np.float32


# ---------------------------------------------------------------- immutability


def test_values_and_numpy_are_read_only():
    a = arr(arr(1.0, 2.0), arr(3.0, 4.0))
    with pytest.raises(ValueError):
        a.values[0] = 5.0
    with pytest.raises(ValueError):
        a.numpy()[0, 0] = 5.0
    with pytest.raises(ValueError):
        np.asarray(a)[0, 0] = 5.0
    assert not a.values.flags.writeable and not a.numpy().flags.writeable
    assert a == arr(arr(1.0, 2.0), arr(3.0, 4.0))


def test_np_asarray_and_np_array():
    a = arr(arr(1.0, 2.0), arr(3.0, 4.0))
    view = np.asarray(a)
    assert view.shape == (2, 2) and view.dtype == np.float64 and not view.flags.writeable
    assert np.asarray(a, dtype=np.float32).dtype == np.float32
    copy = np.array(a)  # an explicit copy is the user's to write
    copy[0, 0] = 10.0
    assert a[0] == 1.0
    assert float(np.asarray(a).sum()) == 10.0


def test_operations_never_modify_their_inputs():
    rng = np.random.default_rng(0)
    x = Array(rng.uniform(0.5, 2.0, size=(2, 2, 4, 4))).tracked()
    y = Array(rng.uniform(0.5, 2.0, size=(4, 4))).tracked()
    w = Array(rng.uniform(-1.0, 1.0, size=(3, 2, 2, 2))).tracked()
    before = [x.numpy().copy(), y.numpy().copy(), w.numpy().copy()]
    results = [
        x + y, x - y, x * y, x / y, -x, x ** y, x.powf(1.5), x.reciprocal(), x.ln(), x.exp(),
        x.relu(), x.sigmoid(), x.tanh(), x.softmax(), x.sum(2), x.reshape((4, 16)), x.reshape(64),
        Array.axpy(2.0, x, y), Array.matmul((x, True), (y, False), y), x @ y, x.conv(w, (2, 1)),
        x.max_pool((2, 2), (1, 1)), 2.0 - x, 3.0 / x, 2.0 ** x,
    ]
    for result in results:
        result.backward()
    for array, saved in zip((x, y, w), before):
        assert np.array_equal(array.numpy(), saved)
    for result in results:
        assert not result.numpy().flags.writeable


def test_gradient_arrays_are_read_only_and_stay_put():
    a = arr(1.0, 2.0).tracked()
    (a * a).backward()
    first = a.gradient()
    with pytest.raises(ValueError):
        first.values[0] = 0.0
    with pytest.raises(ValueError):
        first.numpy()[0] = 0.0
    (a * a).backward()
    # accumulation makes a new gradient; the Array handed out before keeps its values
    assert first == arr(2.0, 4.0)
    assert a.gradient() == arr(4.0, 8.0)


def test_a_delta_written_after_backward_changes_nothing():
    a = arr(1.0, 2.0).tracked()
    delta = np.array([1.0, 1.0])
    a.backward(delta)
    delta[0] = 50.0
    assert a.gradient() == arr(1.0, 1.0)


# ---------------------------------------------------------------- indexing


def test_flat_and_multi_indices():
    a = arr(arr(1, 2, 3), arr(4, 5, 6))
    assert a[0] == 1.0 and a[4] == 5.0 and a[5] == 6.0
    assert a[1, 1] == 5.0 and a[0, 2] == 3.0
    assert a[np.int64(2)] == 3.0 and a[np.int32(1), np.int64(0)] == 4.0
    assert type(a[0]) is float and type(a[1, 2]) is float


def test_negative_indices_count_from_the_end():
    a = arr(arr(1, 2, 3), arr(4, 5, 6))
    assert a[-1] == 6.0 and a[-6] == 1.0
    assert a[-1, -1] == 6.0 and a[0, -3] == 1.0


@pytest.mark.parametrize("index", [6, -7, 100, (2, 0), (0, 3), (-3, 0), (0, 0, 0), (0,)])
def test_out_of_range_is_an_index_error(index):
    a = arr(arr(1, 2, 3), arr(4, 5, 6))
    with pytest.raises(IndexError, match=r"\(2, 3\)|6 values"):
        a[index]


@pytest.mark.parametrize("index", [1.0, "0", True, (0, 1.5), (slice(None), "a"), [0.5], np.array([1.0])])
def test_an_index_of_the_wrong_type_is_a_type_error(index):
    # (None, slices and integer lists are numpy's indices now: tests/test_indexing.py)
    with pytest.raises(TypeError, match="indices"):
        arr(arr(1.0, 2.0), arr(3.0, 4.0))[index]


# ---------------------------------------------------------------- equality, allclose, repr


def test_equality_needs_equal_dimensions_and_values():
    a = arr(arr(1, 2, 3), arr(4, 5, 6))
    assert a == Array([1, 2, 3, 4, 5, 6], dimensions=(2, 3))
    assert not a != Array([1, 2, 3, 4, 5, 6], dimensions=(2, 3))
    assert a != Array([1, 2, 3, 4, 5, 6], dimensions=(3, 2))
    assert a != Array([1, 2, 3, 4, 5, 7], dimensions=(2, 3))
    assert arr(1.0) != arr(1.0 + 1e-15)
    # tracking and dtype don't enter equality
    assert arr(1.0, 2.0).tracked() == arr(1.0, 2.0)
    assert Array([1.0, 2.0], dtype="float32") == arr(1.0, 2.0)


def test_equality_with_other_types_is_false_and_arrays_are_unhashable():
    a = arr(1.0)
    assert (a == [1.0]) is False and (a == None) is False and a != "a"
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize("number", [1.0, 1, True])
def test_equality_with_a_python_number_is_ambiguous_and_refused(number):
    # corgi's == gives one bool for two whole Arrays; against a number a user may mean a mask
    a = arr(1.0, 2.0)
    with pytest.raises(TypeError, match="==: compares two whole Arrays .* np.equal"):
        a == number
    with pytest.raises(TypeError, match="!=: compares two whole Arrays"):
        a != number


def test_equality_with_numpy_values_is_numpys_elementwise_mask():
    a = arr(1.0, 2.0)
    for mask in (a == np.array([1.0, 3.0]), np.array([1.0, 3.0]) == a, a == np.float64(1.0), np.equal(a, 1.0)):
        assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert (a == np.array([1.0, 3.0])).tolist() == [True, False]
    assert (a != np.array([1.0, 3.0])).tolist() == [False, True]


def test_allclose():
    a = arr(1.0, 2.0)
    assert allclose(a, arr(1.0, 2.0 + 1e-9))
    assert not allclose(a, arr(1.0, 2.1))
    assert allclose(a, arr(1.0, 2.1), atol=0.2)
    assert allclose(a, arr(1.0, 2.1), rtol=0.1, atol=0.0)
    assert not allclose(a, arr(arr(1.0, 2.0)))  # dimensions differ
    with pytest.raises(TypeError, match="allclose"):
        allclose(a, np.array([1.0, 2.0]))


def test_repr_shows_nested_values_dimensions_and_tracking_as_numpy_does():
    a = Array([1.0, 2.0, 3.0, 4.0], dimensions=(2, 2))
    assert repr(a) == "Array([[1., 2.],\n       [3., 4.]], dimensions=(2, 2))"
    assert repr(arr(0.5).tracked()) == "Array([0.5], dimensions=(1,), tracked)"
    # exactly numpy's layout (its summary above 1,000 values included), then dimensions and flags
    for values in (np.arange(2000.0).reshape(40, 50), np.linspace(-1, 1, 24).reshape(2, 3, 4), np.array([1e-9, 5.0])):
        # (numpy 2 adds its shape to a summarised repr; ours always ends with the dimensions)
        numpy_repr = repr(values).replace(f", shape={values.shape}", "")
        expected = numpy_repr[:-1].replace("array(", "Array(", 1) + f", dimensions={values.shape})"
        assert repr(Array(values)) == expected
    assert "..." in repr(Array(np.arange(2000.0))) and len(repr(Array(np.arange(2000.0)))) < 200
    with np.printoptions(precision=2):
        assert repr(arr(1.0 / 3.0)) == "Array([0.33], dimensions=(1,))"


def test_float32_repr_shows_float32_precision_and_the_dtype():
    # float32 0.1 is 0.100000001490116...; numpy prints the shortest float32 that reads back
    assert repr(Array([0.1, 1.0 / 3.0], dtype="float32")) == "Array([0.1       , 0.33333334], dimensions=(2,), dtype=float32)"
    assert repr(Array([0.1], dtype="float32").tracked()) == "Array([0.1], dimensions=(1,), dtype=float32, tracked)"


def test_sum_all_is_an_untracked_float():
    a = arr(arr(1, 2, 3), arr(4, 5, 6)).tracked()
    total = a.sum_all()
    assert type(total) is float and total == 21.0


# ---------------------------------------------------------------- dtypes


def test_float64_is_the_default():
    assert default_float() is np.float64
    assert arr(1.0).dtype == Array([[1, 2]]).dtype == Array.zeros(2).dtype == np.float64


def test_set_default_float_round_trip(float32_default):
    assert default_float() is np.float32
    a = Array([1, 2])
    assert a.dtype == np.float32 and arr(1.0).dtype == np.float32 and Array.zeros(3).dtype == np.float32
    assert Array(np.array([1.0, 2.0])).dtype == np.float64  # a float numpy array keeps its type
    assert Array([1.0], dtype="float64").dtype == np.float64
    t = a.tracked()
    out = (t * 2.0 + 1.0).exp()
    out.backward()
    assert out.dtype == np.float32 and t.gradient().dtype == np.float32


def test_the_default_is_restored():
    previous = set_default_float(np.float32)
    try:
        assert previous is np.float64
        assert Array([1.0]).dtype == np.float32
    finally:
        assert set_default_float(previous) is np.float32
    assert default_float() is np.float64 and Array([1.0]).dtype == np.float64


def test_float32_operations_with_numbers_stay_float32():
    a = Array([1.0, 2.0], dtype="float32")
    for out in (a + 1.0, 1 - a, a * 2.5, 3.0 / a, a**2, 2.0**a, -a, a.powf(0.5), Array.axpy(0.5, a, a)):
        assert out.dtype == np.float32
    assert (a + arr(1.0, 2.0)).dtype == np.float64  # float32 with float64 is float64, as in numpy


# ---------------------------------------------------------------- tracking


def test_untracked_operations_record_nothing():
    a, b = arr(1.0, 2.0), arr(3.0, 4.0)
    c = (a * b + a).exp().sum()
    assert not a.is_tracked and not c.is_tracked
    assert c.gradient() is None and a.gradient() is None
    with pytest.raises(ValueError, match="not tracked"):
        c.backward()


def test_one_tracked_input_makes_the_result_tracked():
    a, b = arr(1.0, 2.0).tracked(), arr(3.0, 4.0)
    assert (a * b).is_tracked and (b * a).is_tracked and (a + 1.0).is_tracked and (2.0 * a).is_tracked
    assert not (b * b).is_tracked
    c = a * b
    c.backward()
    assert a.gradient() == arr(3.0, 4.0) and b.gradient() is None


def test_tracked_untracked_return_the_same_array():
    a = arr(1.0)
    assert a.tracked() is a and a.is_tracked
    assert a.untracked() is a and not a.is_tracked
    assert a.start_tracking() is None and a.is_tracked
    assert a.stop_tracking() is None and not a.is_tracked


def test_stop_tracking_updates_a_parameter_without_recording():
    w = arr(1.0, 2.0).tracked()
    (w * 3.0).backward()
    assert w.gradient() == arr(3.0, 3.0)
    w.stop_tracking()
    step = w - 0.1 * w.gradient()
    assert not step.is_tracked
    assert w.gradient() == arr(3.0, 3.0)  # stopping keeps what was computed
    w.start_tracking()
    y = w * w
    assert y.is_tracked
    y.backward()
    assert w.gradient() == arr(5.0, 7.0)


def test_an_intermediate_untracked_later_is_cut_from_new_graphs():
    a = arr(2.0).tracked()
    b = a * a
    b.stop_tracking()
    assert not (b * 3.0).is_tracked
    # the graph recorded before is intact
    b.start_tracking()
    (b * 3.0).backward()
    assert a.gradient() == arr(12.0)


def test_only_reachable_consumers_count():
    a = arr(1.0, 2.0, 3.0).tracked()
    _b = a * a
    c = a * a
    unrelated = (_b * 5.0).exp()
    c.backward()
    assert a.gradient() == arr(2.0, 4.0, 6.0)
    assert _b.gradient() is None and unrelated.gradient() is None
    # and the unrelated branch can run its own pass later, adding to a
    _b.backward()
    assert a.gradient() == arr(4.0, 8.0, 12.0)


def test_consumers_made_after_a_pass_do_not_change_it():
    a = arr(3.0).tracked()
    c = a * a
    c.backward()
    d = c * a  # a new consumer of c and a
    assert a.gradient() == arr(6.0) and c.gradient() == arr(1.0)
    d.backward()
    assert a.gradient() == arr(6.0 + 27.0) and c.gradient() == arr(1.0 + 3.0)


def test_gradients_accumulate_and_clear():
    a = arr(1.0, 2.0).tracked()
    for _ in range(3):
        (a * 2.0).backward()
    assert a.gradient() == arr(6.0, 6.0)
    a.clear_gradient()
    assert a.gradient() is None
    (a * a).backward()
    assert a.gradient() == arr(2.0, 4.0)
    arr(1.0).clear_gradient()  # nothing to clear is fine


def test_backward_on_an_intermediate_and_on_a_leaf():
    a = arr(2.0, 3.0).tracked()
    b = a * a
    c = b * 2.0
    b.backward()
    assert a.gradient() == arr(4.0, 6.0) and c.gradient() is None
    a.backward(arr(1.0, 10.0))
    assert a.gradient() == arr(5.0, 16.0)


def test_backward_delta_forms():
    for delta in ([2.0, 3.0], np.array([2.0, 3.0]), arr(2.0, 3.0), np.array([2, 3]), (2, 3)):
        a = arr(1.0, 1.0).tracked()
        (a * 4.0).backward(delta)
        assert a.gradient() == arr(8.0, 12.0)


def test_backward_delta_with_extra_leading_dimensions_is_summed():
    a = arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0)).tracked()
    y = a * 2.0
    delta = np.arange(24.0).reshape(4, 2, 3)
    y.backward(delta)
    assert a.gradient() == Array(2.0 * delta.sum(axis=0))
    assert y.gradient() == Array(delta.sum(axis=0))


def test_backward_delta_broadcast_dimensions_are_summed():
    a = arr(arr(1.0, 2.0, 3.0)).tracked()  # (1, 3)
    (a * 1.0).backward(np.ones((5, 4, 3)))
    assert a.gradient() == arr(arr(20.0, 20.0, 20.0))


def test_scalar_delta_for_a_one_value_array():
    a = arr(3.0).tracked()
    (a * a).backward(2.0)
    assert a.gradient() == arr(12.0)


def test_a_root_gradient_is_the_delta():
    a = arr(1.0, 2.0).tracked()
    y = a * 3.0
    y.backward(arr(0.5, 0.25))
    assert y.gradient() == arr(0.5, 0.25)


def test_a_shared_input_used_twice_in_one_op():
    a = arr(1.0, -2.0).tracked()
    (a * a * a).backward()
    assert a.gradient() == arr(3.0, 12.0)
    b = arr(2.0).tracked()
    (b / b).backward()
    assert b.gradient() == arr(0.0)


def test_ndarray_on_the_left_of_a_tracked_array():
    a = arr(1.0, 2.0, 3.0).tracked()
    constant = np.array([2.0, 3.0, 4.0])
    for out in (constant * a, constant + a, constant - a, constant / a):
        assert isinstance(out, Array) and out.is_tracked
    (constant * a).backward()
    assert a.gradient() == arr(2.0, 3.0, 4.0)
    assert isinstance(constant * arr(1.0, 1.0, 1.0), Array)
    assert not (constant * arr(1.0, 1.0, 1.0)).is_tracked
    assert np.array_equal(constant, [2.0, 3.0, 4.0])


def test_numpy_scalars_are_numbers():
    a = arr(1.0, 2.0).tracked()
    out = np.float64(2.0) * a + np.int64(1)
    assert isinstance(out, Array) and out == arr(3.0, 5.0)


def test_len_and_iteration_follow_flat_indexing():
    # a[i] is the i-th value in row-major order, so len() counts values and iteration
    # yields them in that order, as floats; the sequence protocol stays consistent
    a = arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0))
    assert len(a) == 6
    assert list(a) == [a[i] for i in range(len(a))] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert all(type(v) is float for v in a)
    assert sum(arr(0.5, 1.5)) == 2.0
