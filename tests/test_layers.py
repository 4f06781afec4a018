"""Dropout, Flatten, training and evaluation modes, layer dtypes, buffers and extra state."""

import copy
import pickle

import numpy as np
import pytest

from corgi import Array, gradcheck
from corgi.activation import make_relu, make_sigmoid, make_softmax, make_tanh
from corgi.cost import make_cross_entropy, make_mse, make_softmax_cross_entropy
from corgi.initializer import make_he
from corgi.layer import Conv, Dense, Dropout, Flatten, Layer, Pool, Reshape

pytestmark = pytest.mark.timeout(60)


def ones(*dimensions, dtype="float64"):
    return Array(np.ones(dimensions), dtype=dtype)


# -- Dropout ---------------------------------------------------------------------------


def test_dropout_keeps_each_value_with_probability_one_minus_rate_and_scales_it():
    layer = Dropout(0.3, rng=1)
    out = layer.forward(ones(400, 500)).numpy()
    kept = out != 0
    assert np.allclose(out[kept], 1 / 0.7, rtol=0, atol=1e-15)
    # 200,000 draws: the kept fraction is 0.7 within 5 standard deviations (0.001 each)
    assert abs(kept.mean() - 0.7) < 0.005
    assert abs(out.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation


def test_dropout_draws_a_new_mask_each_call_and_a_seed_repeats_them():
    layer = Dropout(0.5, rng=3)
    first, second = layer.forward(ones(4, 8)), layer.forward(ones(4, 8))
    assert first != second
    again = Dropout(0.5, rng=3)
    assert again.forward(ones(4, 8)) == first and again.forward(ones(4, 8)) == second


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dropout_in_eval_mode_is_the_identity_and_records_nothing_new(dtype):
    layer = Dropout(0.9, rng=0).eval()
    x = Array(np.random.default_rng(0).normal(size=(3, 5)), dtype=dtype).tracked()
    assert layer.forward(x) is x
    assert layer(x) is x
    state = layer.get_extra_state()
    layer.forward(x)
    assert layer.get_extra_state() == state  # no mask drawn in eval mode
    out = layer.train().forward(x)
    assert out.dtype == np.dtype(dtype) and out.is_tracked and out != x


def test_dropout_gradient_with_a_fixed_mask():
    # a fresh generator of the same seed in every call gives the same mask: f is a function
    def f(x):
        return Dropout(0.4, rng=7).forward(x)

    x = Array(np.random.default_rng(2).normal(size=(6, 5)))
    assert gradcheck(f, [x])
    tracked = Array(x).tracked()
    out = f(tracked)
    out.backward()
    mask = out.numpy() / x.numpy()  # 0 or 1 / 0.6 where kept
    assert np.allclose(tracked.gradient().numpy(), mask)
    assert set(np.round(mask, 12).ravel().tolist()) == {0.0, round(1 / 0.6, 12)}


def test_dropout_in_a_network_gradchecks_through_every_layer():
    he = make_he(rng=4)
    dense, second = Dense(4, 6, he, make_tanh()), Dense(6, 3, he)

    def f(x, w1, b1, w2, b2):
        dense.set_parameters([w1, b1])
        second.set_parameters([w2, b2])
        return second.forward(Dropout(0.5, rng=11).forward(dense.forward(x)))

    x = Array(np.random.default_rng(5).normal(size=(5, 4)))
    assert gradcheck(f, [x, *dense.parameters(), *second.parameters()])


def test_dropout_rate_is_checked():
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match=f"Dropout: rate must be in \\[0, 1\\), got {bad}"):
            Dropout(bad)
    with pytest.raises(TypeError, match="Dropout: rate must be a number, got '0.5'"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="Dropout: rate must be a number, got True"):
        Dropout(True)
    with pytest.raises(TypeError, match="Dropout.forward: expects an Array, got ndarray"):
        Dropout(0.5).forward(np.ones(3))
    assert Dropout(0.0).forward(ones(2, 2)) == ones(2, 2)


def test_dropout_extra_state_restores_the_masks_to_come():
    layer = Dropout(0.5, rng=5)
    layer.forward(ones(3, 3))
    state = copy.deepcopy(layer.get_extra_state())
    expected = [layer.forward(ones(3, 3)) for _ in range(3)]
    other = Dropout(0.5, rng=99)
    other.set_extra_state(state)
    assert [other.forward(ones(3, 3)) for _ in range(3)] == expected


@pytest.mark.parametrize(
    "state, message",
    [
        ({}, "expects {'generator': <bit generator state>}"),
        ({"generator": 5}, "expects {'generator'"),
        ({"generator": {"bit_generator": "MT19937"}}, "the state is of a MT19937 generator, the layer draws from a PCG64"),
        ({"generator": {"bit_generator": "os.system"}}, "the state is of a os.system generator"),
        ({"generator": {"bit_generator": "PCG64", "state": {"state": "x"}}}, "not a valid PCG64 state"),
    ],
)
def test_a_bad_dropout_state_is_refused_and_changes_nothing(state, message):
    layer = Dropout(0.5, rng=5)
    before = copy.deepcopy(layer.get_extra_state())
    with pytest.raises(ValueError, match=f"Dropout.set_extra_state: {message}"):
        layer.set_extra_state(state)
    assert layer.get_extra_state() == before


# -- Flatten -------------------------------------------------------------------------------


def test_flatten_keeps_the_batch_and_gradchecks():
    x = Array(np.random.default_rng(6).normal(size=(3, 2, 4, 5)))
    assert Flatten().forward(x).dimensions == (3, 40)
    assert np.array_equal(Flatten().forward(x).numpy(), x.numpy().reshape(3, 40))
    assert gradcheck(Flatten().forward, [x])
    batch = ones(2, 7)
    assert Flatten().forward(batch) is batch
    assert Flatten().parameters() == [] and Flatten().input_dimensions is None


# -- modes ---------------------------------------------------------------------------------


def test_every_layer_starts_in_training_mode_and_switches():
    he = make_he(rng=0)
    layers = [Dense(2, 2, he), Conv((1, 1, 2, 2), (1, 1), he), Pool(), Reshape(4), Flatten(), Dropout(0.5)]
    for layer in layers:
        assert layer.training is True
        assert layer.eval() is layer and layer.training is False
        assert layer.train() is layer and layer.training is True
        assert layer.train(False).training is False
    with pytest.raises(TypeError, match="Dense.train: mode must be True or False, got 'no'"):
        layers[0].train("no")


# -- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layers_take_a_dtype(dtype):
    he = make_he(rng=0)
    dense = Dense(3, 2, he, make_relu(), dtype=dtype)
    conv = Conv((2, 1, 2, 2), (1, 1), he, dtype=dtype)
    for layer in (dense, conv):
        assert layer.dtype == np.dtype(dtype)
        assert all(p.dtype == np.dtype(dtype) and p.is_tracked for p in layer.parameters())
    assert dense.forward(ones(4, 3, dtype=dtype)).dtype == np.dtype(dtype)
    assert conv.forward(ones(4, 1, 3, 3, dtype=dtype)).dtype == np.dtype(dtype)
    # the same draws in either dtype
    assert np.allclose(Dense(3, 2, make_he(rng=1), dtype=dtype).weights.numpy(),
                       Dense(3, 2, make_he(rng=1)).weights.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "layer, x",
    [
        (Dense(3, 2, make_he(rng=0)), ones(4, 3, dtype="float32")),
        (Dense(3, 2, make_he(rng=0), dtype="float32"), ones(4, 3)),
        (Conv((2, 1, 2, 2), (1, 1), make_he(rng=0)), ones(1, 1, 3, 3, dtype="float32")),
        (Conv((2, 1, 2, 2), (1, 1), make_he(rng=0), dtype="float32"), ones(1, 1, 3, 3)),
    ],
)
def test_mixed_dtypes_are_refused_naming_both(layer, x):
    name = type(layer).__name__
    mine, theirs = str(layer.dtype), str(x.dtype)
    with pytest.raises(TypeError) as error:
        layer.forward(x)
    message = str(error.value)
    assert message.startswith(f"{name}.forward: input is {theirs}, the layer's parameters are {mine}; ")
    assert f"x.astype('{mine}')" in message and f"Array(values, dtype='{mine}')" in message
    assert f"build the layer with dtype='{theirs}'" in message


def test_a_bad_layer_dtype_is_a_type_error():
    with pytest.raises(TypeError, match="Dense: corgi arrays hold float32 or float64, got 'int32'"):
        Dense(2, 2, make_he(rng=0), dtype="int32")
    with pytest.raises(TypeError, match="Conv: corgi arrays hold float32 or float64, got 'float16'"):
        Conv((1, 1, 2, 2), (1, 1), make_he(rng=0), dtype="float16")


def test_set_parameters_refuses_mixed_dtypes_within_a_layer_and_changes_nothing():
    layer = Dense(2, 1, make_he(rng=0))
    before = layer.parameters()
    with pytest.raises(TypeError, match="the parameters mix float64 \\(weights\\) and float32 \\(biases\\)"):
        layer.set_parameters([Array([[1.0], [2.0]]), Array([0.5], dtype="float32")])
    assert all(a is b for a, b in zip(layer.parameters(), before))
    # a whole layer may change its float type at once
    layer.set_parameters([Array([[1.0], [2.0]], dtype="float32"), Array([0.5], dtype="float32")])
    assert layer.dtype == np.float32


# -- buffers and extra state of a layer that keeps some ------------------------------------


class Counter(Layer):
    """A layer with a buffer: it counts the examples it has seen while training."""

    buffer_names = ("seen",)

    def __init__(self):
        self.seen = np.zeros(1)

    def forward(self, x):
        if self.training:
            self.seen = self.seen + x.dimensions[0]
        return x


def test_buffers_are_read_only_views_and_replaced_all_or_nothing():
    layer = Counter()
    layer.forward(ones(5, 2))
    [(name, seen)] = layer.named_buffers()
    assert name == "seen" and seen.tolist() == [5.0]
    with pytest.raises(ValueError, match="read-only"):
        seen[0] = 1.0
    with pytest.raises(ValueError, match="Counter.set_buffers: seen is float64 \\(1,\\), got float32 \\(1,\\)"):
        layer.set_buffers([np.zeros(1, np.float32)])
    with pytest.raises(ValueError, match="Counter.set_buffers: expects 1 arrays, got 2"):
        layer.set_buffers([np.zeros(1), np.zeros(1)])
    assert layer.seen.tolist() == [5.0]
    source = np.array([9.0])
    layer.set_buffers([source])
    source[0] = 0.0  # the layer keeps a copy
    assert layer.seen.tolist() == [9.0]
    layer.eval().forward(ones(3, 2))
    assert layer.seen.tolist() == [9.0]


# -- pickling and copying --------------------------------------------------------------------


def test_activations_costs_and_initializers_pickle_and_copy():
    for make in (make_relu, make_sigmoid, make_tanh, make_softmax, make_mse, make_cross_entropy,
                 make_softmax_cross_entropy):
        function = make()
        for copied in (pickle.loads(pickle.dumps(function)), copy.deepcopy(function)):
            assert copied == function and repr(copied) == repr(function)
    x = Array([[0.5, -1.0, 2.0]])
    assert pickle.loads(pickle.dumps(make_softmax()))(x) == x.softmax()
    target = Array([[0.0, 0.0, 1.0]])
    assert pickle.loads(pickle.dumps(make_softmax_cross_entropy()))(x, target) == x.softmax_cross_entropy(target)
    he = make_he(rng=3)
    he((2, 2), 2)
    twin = pickle.loads(pickle.dumps(he))
    assert twin((3, 3), 3) == he((3, 3), 3)  # the generator's position travels with it


def test_parameterless_layers_pickle_and_copy():
    for layer in (Pool((2, 2), (1, 1)), Reshape((4,)), Flatten(), Dropout(0.25, rng=2).eval()):
        for copied in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            assert type(copied) is type(layer) and repr(copied) == repr(layer)
            assert copied.training == layer.training
    dropout = Dropout(0.5, rng=8)
    twin = pickle.loads(pickle.dumps(dropout))
    assert twin.forward(ones(4, 4)) == dropout.forward(ones(4, 4))  # same generator position


def test_layers_with_parameters_pickle_and_copy():
    he = make_he(rng=0)
    for layer, x in ((Dense(3, 2, he, make_relu(), dtype="float32"), ones(2, 3, dtype="float32")),
                     (Conv((2, 1, 2, 2), (1, 1), he, make_tanh()), ones(1, 1, 3, 3))):
        for copied in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
            assert repr(copied) == repr(layer) and copied.dtype == layer.dtype
            assert all(a == b and b.is_tracked for a, b in zip(layer.parameters(), copied.parameters()))
            assert copied.forward(x) == layer.forward(x)
