"""Bad input is a ValueError, IndexError or TypeError whose message names the operation and what arrived.

Never a wrong answer, never a bare numpy message without the operation.
"""

import re

import numpy as np
import pytest

from corgi import Array, arr
from corgi.initializer import make_he
from corgi.layer import Conv, Dense, Pool, Reshape
from corgi.numbers import set_default_float

pytestmark = pytest.mark.timeout(60)


def names(*parts):
    """A regex that finds every part, in order, in the message (shapes as written by Python)."""
    return ".*".join(re.escape(str(p)) for p in parts)


def ones(*dimensions):
    return Array(np.ones(dimensions))


# ---------------------------------------------------------------- construction


def test_dimensions_and_value_count_disagree():
    with pytest.raises(ValueError, match=names("Array", "(2, 2)", "4", "3")):
        Array([1, 2, 3], dimensions=(2, 2))
    with pytest.raises(ValueError, match=names("Array", "(5,)", "6")):
        Array([[1, 2, 3], [4, 5, 6]], dimensions=5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Array([], dimensions=(0,)),
        lambda: Array([]),
        lambda: Array([[]]),
        lambda: Array(np.zeros((2, 0))),
        lambda: Array([1.0], dimensions=(1, 0)),
        lambda: Array.zeros((2, 0)),
        lambda: Array.zeros(()),
        lambda: Array([1.0], dimensions=(-1,)),
    ],
)
def test_a_zero_or_negative_dimension_is_refused(make):
    with pytest.raises(ValueError, match=r"(Array|zeros): every dimension must be at least 1"):
        make()


@pytest.mark.parametrize("values", [[[1, 2], [3]], [1, [2, 3]], [[[1.0], [2.0]], [[3.0, 4.0]]]])
def test_ragged_nested_lists(values):
    with pytest.raises(ValueError, match="Array: values are not a rectangular array"):
        Array(values)


@pytest.mark.parametrize("values", [["a", "b"], "abc", [None], None, [1j, 2.0], {"a": 1}, object()])
def test_non_numeric_values(values):
    with pytest.raises(TypeError, match="Array: values must be real numbers"):
        Array(values)


@pytest.mark.parametrize("dtype", ["int32", np.int64, "complex128", "float16", "nonsense"])
def test_only_float32_and_float64(dtype):
    with pytest.raises(TypeError, match=names("Array", "float32 or float64", dtype)):
        Array([1.0], dtype=dtype)
    with pytest.raises(TypeError, match="set_default_float"):
        set_default_float(dtype)


@pytest.mark.parametrize("dimensions", [(2.5, 2), ("a",), [None]])
def test_dimensions_must_be_whole_numbers(dimensions):
    with pytest.raises((TypeError, ValueError), match="dimensions"):
        Array([1.0, 2.0, 3.0, 4.0], dimensions=dimensions)


def test_arr_with_unequal_arrays():
    with pytest.raises(ValueError, match=names("arr", "(2,)", "(3,)")):
        arr(arr(1.0, 2.0), arr(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=names("arr", "(1, 2)", "(2,)")):
        arr(arr(1.0, 2.0), arr(arr(1.0, 2.0)))


def test_arr_needs_items_of_one_kind():
    with pytest.raises(ValueError, match="arr: needs at least one item"):
        arr()
    with pytest.raises(TypeError, match="arr: mix of Arrays and numbers"):
        arr(arr(1.0), 2.0)


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize(
    "op, name",
    [
        (lambda x, y: x + y, "add"),
        (lambda x, y: x - y, "sub"),
        (lambda x, y: x * y, "mul"),
        (lambda x, y: x / y, "div"),
        (lambda x, y: x**y, "pow"),
        (lambda x, y: Array.axpy(2.0, x, y), "mul|add"),
    ],
)
@pytest.mark.parametrize("shapes", [((2, 3), (4,)), ((2, 3), (3, 2)), ((4, 2, 3), (2, 2, 3))])
def test_dimensions_that_do_not_broadcast(op, name, shapes):
    x, y = ones(*shapes[0]), ones(*shapes[1]).tracked()
    with pytest.raises(ValueError, match=rf"^({name}): .*{re.escape(str(shapes[0]))}.*{re.escape(str(shapes[1]))}"):
        op(x, y)


@pytest.mark.parametrize("other", ["a", None, [1.0, 2.0], True, 1j, {1: 2}])
def test_operands_that_are_not_arrays_or_numbers(other):
    a = arr(1.0, 2.0)
    for op, name in ((lambda: a + other, "add"), (lambda: other * a, "mul"), (lambda: a / other, "div")):
        with pytest.raises(TypeError, match=rf"^{name}: expects an Array or a number, got"):
            op()


def test_powf_needs_a_real_exponent():
    with pytest.raises(TypeError, match="powf: the exponent must be a real number"):
        arr(1.0).powf("2")
    with pytest.raises(TypeError, match="powf"):
        arr(1.0).powf(1j)


# ---------------------------------------------------------------- linalg


@pytest.mark.parametrize(
    "a, ta, b, tb",
    [
        ((2, 3), False, (2, 3), False),
        ((2, 3), True, (2, 3), True),
        ((2, 3), False, (4, 2), True),
        ((3,), False, (2,), False),
        ((5, 2, 3), False, (4, 2), False),
    ],
)
def test_matmul_inner_dimensions_differ(a, ta, b, tb):
    with pytest.raises(ValueError, match=names("matmul: inner dimensions differ", a, b)):
        Array.matmul((ones(*a).tracked(), ta), (ones(*b), tb))


def test_matmul_operator_inner_dimensions_differ():
    with pytest.raises(ValueError, match=names("matmul", "(2, 3)", "(2, 3)")):
        ones(2, 3) @ ones(2, 3)
    with pytest.raises(ValueError, match=names("matmul", "(3,)", "(2,)")):
        ones(3) @ ones(2)


def test_matmul_leading_dimensions_do_not_broadcast():
    with pytest.raises(ValueError, match=names("matmul: leading dimensions do not broadcast", "(2, 2, 3)", "(3, 3, 4)")):
        Array.matmul((ones(2, 2, 3), False), (ones(3, 3, 4), False))


@pytest.mark.parametrize("c", [(3,), (2, 3, 2), (4, 1, 1), (2, 2), (1, 3, 2)])
def test_matmul_c_that_does_not_broadcast_to_the_product(c):
    with pytest.raises(ValueError, match=names("matmul: c of dimensions", c, "(3, 2)")):
        Array.matmul((ones(3, 4), False), (ones(4, 2), False), ones(*c))


def test_matmul_operands_must_be_pairs_of_arrays():
    with pytest.raises(TypeError, match="matmul: a must be a pair"):
        Array.matmul(ones(2, 2), (ones(2, 2), False))
    with pytest.raises(TypeError, match="matmul: b must be an Array"):
        Array.matmul((ones(2, 2), False), (np.ones((2, 2)), False))
    with pytest.raises(TypeError, match="matmul: c must be an Array"):
        Array.matmul((ones(2, 2), False), (ones(2, 2), False), 1.0)


def test_matmul_operator_with_a_non_array():
    with pytest.raises(TypeError):
        ones(2, 2) @ [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(TypeError):
        ones(2, 2) @ 2.0
    # a numpy array is a constant operand, on either side, as with the other operators
    assert ones(2, 2) @ np.ones((2, 2)) == np.ones((2, 2)) @ ones(2, 2) == Array(np.full((2, 2), 2.0))


@pytest.mark.parametrize("target", [(4,), (2, 2), (7,), (3, 3)])
def test_reshape_must_keep_the_count(target):
    with pytest.raises(ValueError, match=names("reshape", "(2, 3)", "6", target)):
        ones(2, 3).tracked().reshape(target)


def test_reshape_dimensions_must_be_positive_whole_numbers():
    with pytest.raises(ValueError, match=names("reshape: every dimension must be at least 1", "(6, 0)")):
        ones(2, 3).reshape((6, 0))
    with pytest.raises(ValueError, match="reshape"):
        ones(2, 3).reshape((-2, 3))
    with pytest.raises(ValueError, match="reshape"):
        ones(2, 3).reshape((-1, -1))
    with pytest.raises(ValueError, match=names("reshape", "(2, 3)", "(-1, 4)")):
        ones(2, 3).reshape((-1, 4))
    assert ones(2, 3).reshape((-1, 6)).dimensions == (1, 6)  # -1: whatever is left, as numpy
    with pytest.raises(TypeError, match="reshape: dimensions must hold whole numbers"):
        ones(2, 3).reshape(("a", 6))


@pytest.mark.parametrize("skip_count", [-1, 3, 10])
def test_sum_skip_count_out_of_range(skip_count):
    with pytest.raises(ValueError, match=names("sum: skip_count", "(2, 3)", skip_count)):
        ones(2, 3).tracked().sum(skip_count)


@pytest.mark.parametrize("skip_count", [1.0, "1", None])
def test_sum_skip_count_must_be_whole(skip_count):
    with pytest.raises(TypeError, match="sum: skip_count must be a whole number"):
        ones(2, 3).sum(skip_count)


# ---------------------------------------------------------------- image


@pytest.mark.parametrize(
    "image, filters",
    [
        ((2, 5, 5), (1, 3, 3, 3)),  # depth differs
        ((2, 5, 5), (3, 3, 3)),  # a single filter of the wrong depth
        ((1, 2, 5), (1, 1, 3, 3)),  # filter taller than the input
        ((1, 5, 2), (4, 1, 1, 3)),  # filter wider than the input
        ((3, 3, 2, 4, 4), (2, 3, 2, 2)),  # batched input, depth differs
    ],
)
def test_conv_filters_that_do_not_fit(image, filters):
    with pytest.raises(ValueError, match=names("conv", image, filters)):
        ones(*image).tracked().conv(ones(*filters))


@pytest.mark.parametrize("image, filters", [((5, 5), (1, 1, 2, 2)), ((1, 5, 5), (2, 2)), ((1, 5, 5), (1, 1, 1, 2, 2))])
def test_conv_needs_an_image_and_filters(image, filters):
    with pytest.raises(ValueError, match=names("conv", image, filters)):
        ones(*image).conv(ones(*filters))


@pytest.mark.parametrize("stride", [(0, 1), (1, -1), (1,), (1, 2, 3)])
def test_conv_stride_must_be_a_positive_pair(stride):
    with pytest.raises(ValueError, match=names("conv", "stride")):
        ones(1, 4, 4).conv(ones(1, 1, 2, 2), stride)


@pytest.mark.parametrize("stride", ["ab", 2, (1.5, 1), (True, 1)])
def test_conv_stride_of_the_wrong_type_is_a_type_error(stride):
    with pytest.raises(TypeError, match=names("conv", "stride")):
        ones(1, 4, 4).conv(ones(1, 1, 2, 2), stride)


def test_conv_filters_must_be_an_array():
    with pytest.raises(TypeError, match="conv: filters must be an Array"):
        ones(1, 4, 4).conv(np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("biases", [(3,), (2, 1), (2, 1, 1, 1), (1, 2, 1), (2, 2, 2)])
def test_conv_biases_must_be_one_per_filter(biases):
    with pytest.raises(ValueError, match=names("conv: biases must be one per filter, (2,) or (2, 1, 1)", biases)):
        ones(1, 4, 4).tracked().conv(ones(2, 1, 2, 2), biases=ones(*biases))


def test_conv_biases_must_be_an_array():
    with pytest.raises(TypeError, match="conv: biases must be an Array, got list"):
        ones(1, 4, 4).conv(ones(2, 1, 2, 2), biases=[1.0, 2.0])


@pytest.mark.parametrize("image, pool", [((2, 3), (3, 3)), ((4, 1), (2, 2)), ((3, 3, 1, 5), (2, 1)), ((5,), (2, 2))])
def test_max_pool_that_does_not_fit(image, pool):
    with pytest.raises(ValueError, match=names("max_pool", pool, image)):
        ones(*image).tracked().max_pool(pool, (1, 1))


@pytest.mark.parametrize("pool, stride", [((0, 2), (2, 2)), ((2, 2), (0, 1)), ((2,), (2, 2))])
def test_max_pool_pool_and_stride_must_be_positive_pairs(pool, stride):
    with pytest.raises(ValueError, match=r"max_pool: (pool|stride)"):
        ones(4, 4).max_pool(pool, stride)


def test_max_pool_stride_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"max_pool: stride"):
        ones(4, 4).max_pool((2, 2), "x")


# ---------------------------------------------------------------- backward


def test_backward_on_an_untracked_array():
    with pytest.raises(ValueError, match="backward: the array is not tracked"):
        (arr(1.0) * arr(2.0)).backward()


@pytest.mark.parametrize("delta", [np.ones(3), np.ones((2, 3)), np.ones((1, 3)), np.ones((2, 2, 3)), np.ones(2), 1.0, [1.0]])
def test_backward_delta_of_the_wrong_dimensions(delta):
    a = ones(1, 2).tracked()
    y = a * 2.0
    with pytest.raises(ValueError, match=names("backward", np.shape(delta) or "(1,)", "(1, 2)")):
        y.backward(delta)
    assert a.gradient() is None


def test_backward_delta_of_broadcast_dimensions_is_summed_not_refused():
    # (SPEC section 3) a delta (2, 2) for dimensions (1, 2) is a broadcast delta
    a = ones(1, 2).tracked()
    (a * 2.0).backward(np.ones((3, 2, 2)))
    assert a.gradient() == Array([[12.0, 12.0]])


@pytest.mark.parametrize("delta", [np.array([1j, 2j]), np.array(["a", "b"]), ["a", "b"], np.array([None, None])])
def test_backward_delta_of_the_wrong_dtype(delta):
    a = arr(1.0, 2.0).tracked()
    with pytest.raises(TypeError, match="backward: a delta of dtype"):
        (a * 2.0).backward(delta)
    assert a.gradient() is None


def test_backward_float64_delta_for_a_float32_array_is_cast():
    a = Array([1.0, 2.0], dtype="float32").tracked()
    (a * 2.0).backward(np.array([1.0, 1.0]))
    assert a.gradient().dtype == np.float32


def test_backward_ragged_delta():
    a = arr(1.0, 2.0).tracked()
    with pytest.raises(ValueError, match="backward: delta is not a rectangular array"):
        (a * 2.0).backward([[1.0], [1.0, 2.0]])


# ---------------------------------------------------------------- user-defined operations


def _mul(xs):
    return Array(xs[0].numpy() * xs[1].numpy())


@pytest.mark.parametrize(
    "backward_op, error, message",
    [
        (lambda xs, t, d: [d * xs[1]], ValueError, "op: backward_op returned 1 gradients for 2 inputs"),
        (lambda xs, t, d: [d, d, d], ValueError, "op: backward_op returned 3 gradients for 2 inputs"),
        (lambda xs, t, d: [d * xs[1], d.sum()], ValueError, names("op: gradient 1 has dimensions", "(1,)", "(2,)")),
        (lambda xs, t, d: [d.reshape((2, 1)), d], ValueError, names("op: gradient 0 has dimensions", "(2, 1)", "(2,)")),
        (lambda xs, t, d: [d, np.ones(2)], TypeError, "op: gradient 1 must be an Array or None, got ndarray"),
        (lambda xs, t, d: None, TypeError, "op: backward_op must return a list, got NoneType"),
    ],
)
def test_custom_op_backward_answers_are_checked(backward_op, error, message):
    a, b = arr(1.0, 2.0).tracked(), arr(3.0, 4.0).tracked()
    out = Array.op([a, b], _mul, backward_op)
    with pytest.raises(error, match=message):
        out.backward()
    # the failed pass wrote no gradient anywhere
    assert a.gradient() is None and b.gradient() is None and out.gradient() is None


def test_a_failed_custom_pass_leaves_earlier_gradients_alone():
    a = arr(1.0, 2.0).tracked()
    (a * 3.0).backward()
    bad = Array.op([a], lambda xs: xs[0] * 1.0, lambda xs, t, d: [Array.zeros(5)], name="bad")
    consumer = bad + a * 2.0
    with pytest.raises(ValueError, match=names("bad: gradient 0 has dimensions", "(5,)", "(2,)")):
        consumer.backward()
    assert a.gradient() == arr(3.0, 3.0)
    # the graph still works: a correct pass after the failure
    (a * 5.0).backward()
    assert a.gradient() == arr(8.0, 8.0)


def test_custom_op_forward_and_inputs_are_checked():
    with pytest.raises(TypeError, match="op: forward_op must return an Array, got ndarray"):
        Array.op([arr(1.0)], lambda xs: xs[0].numpy())
    with pytest.raises(TypeError, match="square: input 1 must be an Array, got float"):
        Array.op([arr(1.0), 2.0], lambda xs: xs[0], name="square")


def test_custom_op_backward_exception_propagates_with_its_type():
    class Boom(RuntimeError):
        pass

    def explode(xs, t, d):
        raise Boom("from the user's backward")

    a = arr(1.0).tracked()
    out = Array.op([a], lambda xs: xs[0] * 2.0, explode)
    with pytest.raises(Boom, match="from the user's backward"):
        out.backward()
    assert a.gradient() is None


# ---------------------------------------------------------------- whole numbers, one rule


@pytest.mark.parametrize(
    "make",
    [
        lambda bad: Dense(bad, 3, make_he(rng=0)),
        lambda bad: Pool((bad, 2)),
        lambda bad: Reshape((bad,)),
        lambda bad: Conv((bad, 1, 3, 3), (1, 1), make_he(rng=0)),
        lambda bad: make_he(rng=0)((2, 2), bad),
        lambda bad: ones(2, 3).sum(bad),
    ],
)
def test_a_wrong_type_is_a_type_error_and_a_wrong_value_a_value_error(make):
    for wrong_type in (2.0, "2", True, None):
        with pytest.raises(TypeError, match="whole number"):
            make(wrong_type)
    with pytest.raises(ValueError):
        make(-1)
