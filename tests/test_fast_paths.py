"""The Model path's short cuts (issue 14, round two) give the general path's results, bit for bit.

Each short cut skips calls, never changes an operation: the value, the node (inputs, vjps,
saved), the deltas and the gradients must be the same bytes as the general path's.
"""

import itertools

import numpy as np
import pytest

from corgi import Array
from corgi.activation import ReLU, make_relu, make_sigmoid, make_softmax, make_tanh
from corgi.array import nonlinearity, step_parameters
from corgi.array.nodes import ActivatedNode
from corgi.array.operation import apply, ternary
from corgi.array.registry import sum_to
from corgi.initializer import make_he
from corgi.layer import Dense


def same_bytes(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tracked", list(itertools.product([False, True], repeat=3)))
def test_ternary_records_what_apply_records(dtype, tracked):
    rng = np.random.default_rng(1)
    x, w, b = (Array(rng.standard_normal(shape), dtype=dtype) for shape in ((5, 3), (3, 4), (4,)))
    for array, on in zip((x, w, b), tracked):
        if on:
            array.start_tracking()
    fast, general = ternary("matmul", x, w, b), apply("matmul", (x, w, b))
    assert same_bytes(fast.numpy(), general.numpy())
    assert fast.is_tracked == general.is_tracked == any(tracked)
    if any(tracked):
        f, g = fast._node, general._node
        assert f.inputs == g.inputs and f.vjps == g.vjps and f.name == g.name and f.cost == g.cost
        assert f.saved[2:] == g.saved[2:] and all(s is t for s, t in zip(f.saved[:2], g.saved[:2]))
        delta = np.asarray(rng.standard_normal((5, 4)), dtype=dtype)
        for d, e in zip(f.deltas(delta), g.deltas(delta), strict=True):
            assert same_bytes(d, e)


def test_ternary_keeps_the_primitive_s_error():
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: \(2, 3\) and \(4, 5\)"):
        ternary("matmul", Array(np.ones((2, 3))), Array(np.ones((4, 5))), Array(np.ones(5)))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(6, 3), (3,)])
def test_dense_forward_records_its_product_and_activation_as_one_node_with_the_same_bits(activation, dtype, shape):
    make = {"relu": make_relu, "sigmoid": make_sigmoid, "tanh": make_tanh, "softmax": make_softmax}[activation]
    layer = Dense(3, 4, make_he(rng=0), make(), dtype=dtype)
    x = Array(np.random.default_rng(2).standard_normal(shape) * 2.0, dtype=dtype)
    for tracked_input in (False, True):
        if tracked_input:
            x.start_tracking()
        out = layer.forward(x)
        product = Array.matmul((x, False), (layer.weights, False), layer.biases)
        reference = getattr(product, activation)()
        assert same_bytes(out.numpy(), reference.numpy())
        node = out._node
        assert type(node) is ActivatedNode and node.name == f"matmul+{activation}"
        assert node.inputs == product._node.inputs and node.vjps == product._node.vjps  # one node, not two
        delta = Array(np.random.default_rng(3).standard_normal(out.dimensions), dtype=dtype)
        leaves = [layer.weights._node, layer.biases._node] + ([x._node] if tracked_input else [])
        out.backward(delta)
        fast = [leaf.take_gradient() for leaf in leaves]
        reference.backward(delta)
        slow = [leaf.take_gradient() for leaf in leaves]
        assert all(same_bytes(a, b) for a, b in zip(fast, slow, strict=True))


def test_dense_with_another_activation_keeps_two_nodes():
    class Doubled(ReLU):  # not corgi's own class: called as it is, after the product
        def __call__(self, x):
            return x.relu() * 2.0

    layer = Dense(3, 2, make_he(rng=0), Doubled())
    out = layer.forward(Array(np.ones((2, 3))))
    assert out._node.name == "mul" and type(out._node.inputs[0]) is not ActivatedNode


def test_dense_forward_still_checks_what_it_short_cuts():
    layer = Dense(3, 2, make_he(rng=0))
    with pytest.raises(TypeError, match="Dense.forward: input is float32, the layer's parameters are float64"):
        layer.forward(Array(np.ones((2, 3)), dtype="float32"))
    with pytest.raises(ValueError, match=r"Dense.forward: expects inputs of 3 values .* got dimensions \(2, 4\)"):
        layer.forward(Array(np.ones((2, 4))))
    with pytest.raises(TypeError, match="Dense.forward: expects an Array, got ndarray"):
        layer.forward(np.ones((2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_backward_in_place_is_the_formula_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    out = np.tanh(rng.standard_normal((7, 5))).astype(dtype)
    for g in (rng.standard_normal((7, 5)).astype(dtype),
              np.broadcast_to(np.asarray([[1.5]], dtype=dtype), (7, 5)),  # a sum's delta: read-only, stride 0
              rng.standard_normal((7, 5)).astype(np.float64)):  # another dtype: numpy's own promotion
        assert same_bytes(nonlinearity._tanh_dx(g, out), g * (1 - out * out))
    assert out.flags.writeable  # the saved output is read, never written


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weights_shape", [(4, 3), (1, 3)])
def test_cross_entropy_backward_is_its_composition_bit_for_bit(dtype, weights_shape):
    rng = np.random.default_rng(4)
    shifted = rng.random((4, 3)).astype(dtype) + dtype(1e-12)
    weights = -rng.random(weights_shape).astype(dtype) / 4
    g = np.asarray([0.75], dtype=dtype)
    composed = (np.broadcast_to(g.reshape(1, 1), shifted.shape) * weights) / shifted
    assert same_bytes(nonlinearity._cross_entropy_dp(g, (shifted, weights, (1, 1))), composed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_bias_delta_sums_over_the_batch_as_numpy_s_sum(dtype):
    delta = np.random.default_rng(5).standard_normal((129, 10)).astype(dtype)
    assert same_bytes(sum_to(delta, (10,)), delta.sum(axis=0))


def test_a_stepped_parameter_is_a_new_tracked_leaf_as_tracked_makes_it():
    w = Array([1.0, 2.0]).tracked("w")
    (w * 3.0).sum().backward()
    (new,) = step_parameters([w], lambda position, value, gradient: value - 0.5 * gradient)
    reference = Array(new.numpy()).tracked()
    node, expected = new._node, reference._node
    assert new.is_tracked and new is not w and w.gradient() is None
    assert (node.inputs, node.name, node.cost, node.gradient, node.shape, node.dtype) == (
        expected.inputs, expected.name, expected.cost, expected.gradient, expected.shape, expected.dtype)
    assert node.seq > w._node.seq and node.vjp is None


def test_binary_hands_an_array_subclass_to_the_general_path_with_the_same_result():
    # (the general path took a subclass's operand for its values: a recursion, and untracked)
    class Tagged(Array):
        __slots__ = ()

    for left_tagged in (True, False):
        plain_a, plain_b = Array([1.0, -2.0]).tracked(), Array([3.0, 4.0]).tracked()
        other_a, other_b = Array([1.0, -2.0]).tracked(), Array([3.0, 4.0]).tracked()
        tagged = Tagged([1.0, -2.0]).tracked() if left_tagged else Tagged([3.0, 4.0]).tracked()
        a, b = (tagged, other_b) if left_tagged else (other_a, tagged)
        for make in (lambda x, y: x * y, lambda x, y: y - x, lambda x, y: x + 2.0, lambda x, y: 0.5 * y):
            got, expected = make(a, b), make(plain_a, plain_b)
            assert same_bytes(got.numpy(), expected.numpy()) and got.is_tracked
            got.sum().backward()
            expected.sum().backward()
        counterpart = plain_a if left_tagged else plain_b
        assert same_bytes(tagged.gradient().numpy(), counterpart.gradient().numpy())
    assert Tagged([2.0]).tracked().relu().is_tracked
