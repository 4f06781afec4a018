"""Initializers, activations, costs, layers and optimizers (SPEC section 6)."""

import math

import numpy as np
import pytest

import corgi
from corgi import Array, GradcheckError, allclose, arr, gradcheck
from corgi.activation import make_relu, make_sigmoid, make_softmax, make_tanh
from corgi.cost import make_cross_entropy, make_mse, make_softmax_cross_entropy
from corgi.initializer import make_he
from corgi.layer import Conv, Dense, Layer, Pool, Reshape
from corgi.optimizer import Adam, GradientDescent, Momentum

pytestmark = pytest.mark.timeout(60)


def random(rng, *dimensions, low=-1.0, high=1.0):
    return Array(rng.uniform(low, high, size=dimensions))


# -- initializer ---------------------------------------------------------------


def test_he_is_normal_with_variance_two_over_fan_in():
    values = make_he(rng=0)((200, 250), 50).numpy()
    assert abs(values.mean()) < 0.01
    assert values.std() == pytest.approx(math.sqrt(2 / 50), rel=0.02)
    # normal, not corgi 0.9.2's uniform: about 4.6% of draws lie beyond 2 standard deviations
    assert np.mean(np.abs(values) > 2 * math.sqrt(2 / 50)) == pytest.approx(0.0455, abs=0.005)


def test_he_seed_reproduces_and_generator_is_shared():
    assert make_he(rng=7)((4, 3), 3) == make_he(rng=7)((4, 3), 3)
    generator = np.random.default_rng(1)
    he = make_he(generator)
    first, second = he((5,), 2), he((5,), 2)
    assert first != second  # the generator advances between draws
    again = make_he(np.random.default_rng(1))
    assert again((5,), 2) == first and again((5,), 2) == second


def test_he_rejects_bad_fan_in():
    with pytest.raises(ValueError, match="input_size"):
        make_he(rng=0)((2, 2), 0)


def test_layers_draw_through_the_seeded_generator():
    a = Dense(3, 4, make_he(rng=3))
    b = Dense(3, 4, make_he(rng=3))
    assert all(x == y for x, y in zip(a.parameters(), b.parameters()))
    assert all(p.is_tracked for p in a.parameters())


# -- activations -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, expected",
    [
        (make_relu, lambda x: np.maximum(x, 0)),
        (make_sigmoid, lambda x: 1 / (1 + np.exp(-x))),
        (make_tanh, np.tanh),
        (make_softmax, lambda x: np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)),
    ],
)
def test_activation_values_and_gradients(make, expected):
    rng = np.random.default_rng(0)
    x = random(rng, 3, 4, low=-2, high=2)
    assert np.allclose(make()(x).numpy(), expected(x.numpy()))
    assert gradcheck(make(), [x])


def test_activations_are_finite_when_saturated():
    x = arr(arr(1000.0, -1000.0, 0.0)).tracked()
    for make in (make_relu, make_sigmoid, make_tanh, make_softmax):
        y = make()(x)
        y.backward()
        assert np.isfinite(y.numpy()).all() and np.isfinite(x.gradient().numpy()).all()
        x.clear_gradient()


# -- costs ---------------------------------------------------------------------------


def test_mse_is_the_mean_over_every_value():
    output = arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0))
    target = arr(arr(1.0, 0.0, 3.0), arr(4.0, 5.0, 9.0))
    assert make_mse()(output, target) == arr((4.0 + 9.0) / 6)


def test_cross_entropy_is_the_batch_mean():
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    t = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    loss = make_cross_entropy()(Array(p), Array(t))
    assert loss.dimensions == (1,)
    assert loss[0] == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.5)) / 3, rel=1e-9)


def test_cross_entropy_of_one_example_divides_by_one():
    # a 1-D output is one example (corgi divided by dims[0], the class count, for 1-D outputs)
    loss = make_cross_entropy()(arr(0.25, 0.75), arr(0.0, 1.0))
    assert loss[0] == pytest.approx(-math.log(0.75), rel=1e-9)


@pytest.mark.parametrize("make", [make_mse, make_cross_entropy])
def test_cost_gradients(make):
    rng = np.random.default_rng(1)
    output = random(rng, 4, 3, low=0.1, high=0.9)
    target = Array(rng.uniform(0, 1, size=(4, 3)))
    assert gradcheck(lambda o: make()(o, target), [output])
    # a cost depends on its target too (for mse, in both directions)
    if make is make_mse:
        assert gradcheck(lambda t: make()(output, t), [target])


def test_softmax_cross_entropy_gradient_is_p_minus_t_over_batch():
    rng = np.random.default_rng(2)
    logits = random(rng, 5, 4, low=-3, high=3).tracked()
    target = Array(np.eye(4)[[0, 3, 1, 1, 2]])
    loss = make_cross_entropy()(logits.softmax(), target)
    loss.backward()
    expected = (logits.softmax().numpy() - target.numpy()) / 5
    assert np.allclose(logits.gradient().numpy(), expected, atol=1e-9)
    assert gradcheck(lambda x: make_cross_entropy()(x.softmax(), target), [logits])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_is_finite_for_saturated_softmax(dtype):
    logits = Array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, -1000.0]], dtype=dtype).tracked()
    target = Array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    loss = make_cross_entropy()(logits.softmax(), target)
    loss.backward()
    assert math.isfinite(loss[0]) and loss[0] == pytest.approx(-math.log(1e-12) / 2, rel=1e-3)
    assert np.isfinite(logits.gradient().numpy()).all()
    probabilities = Array([[1.0, 0.0], [0.0, 1.0]]).tracked()
    direct = make_cross_entropy()(probabilities, Array([[0.0, 1.0], [0.0, 1.0]]))
    direct.backward()
    assert math.isfinite(direct[0]) and np.isfinite(probabilities.gradient().numpy()).all()


def test_softmax_cross_entropy_matches_the_composed_cost():
    rng = np.random.default_rng(4)
    logits = random(rng, 6, 5, low=-4, high=4)
    target = Array(np.eye(5)[[0, 4, 2, 2, 1, 3]])
    fused_logits, composed_logits = Array(logits).tracked(), Array(logits).tracked()
    fused = make_softmax_cross_entropy()(fused_logits, target)
    composed = make_cross_entropy()(composed_logits.softmax(), target)
    assert fused[0] == pytest.approx(composed[0], rel=1e-9)
    fused.backward()
    composed.backward()
    assert allclose(fused_logits.gradient(), composed_logits.gradient(), rtol=1e-8, atol=1e-12)
    assert gradcheck(lambda x: make_softmax_cross_entropy()(x, target), [logits])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_cross_entropy_is_exact_for_saturated_logits(dtype):
    # where make_cross_entropy clips the loss at -ln(1e-12) and its gradient vanishes
    logits = Array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, -1000.0]], dtype=dtype).tracked()
    target = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    loss = make_softmax_cross_entropy()(logits, target)
    assert loss.dtype == np.dtype(dtype) and loss[0] == pytest.approx(2000.0 / 2, rel=1e-6)
    loss.backward()
    expected = (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) - target) / 2
    assert np.array_equal(logits.gradient().numpy(), expected.astype(dtype))


@pytest.mark.parametrize("make", [make_mse, make_cross_entropy, make_softmax_cross_entropy])
def test_cost_rejects_mismatched_target(make):
    with pytest.raises(ValueError, match="target of dimensions \\(3,\\) does not match an output of \\(2, 2\\)"):
        make()(Array.zeros((2, 2)) + 0.5, Array.zeros(3))
    with pytest.raises(TypeError, match="target"):
        make()(Array.zeros((2, 2)), [[0.0, 1.0], [1.0, 0.0]])


# -- layers ------------------------------------------------------------------------


def test_dense_forward_is_x_w_plus_b_in_one_node():
    layer = Dense(3, 2, make_he(rng=0))
    x = arr(arr(1.0, 2.0, 3.0), arr(-1.0, 0.5, 0.0))
    expected = x.numpy() @ layer.weights.numpy() + layer.biases.numpy()
    out = layer.forward(x)
    assert np.allclose(out.numpy(), expected)
    assert layer.weights.dimensions == (3, 2) and layer.biases.dimensions == (2,)
    with corgi.engine.trace() as recorded:
        out.backward()
    fired = {event.node[0] for event in recorded.events if event.kind == "fire"}
    assert fired - {"leaf"} == {"matmul"}  # the product and the bias are one node


def test_dense_gradcheck_input_and_parameters():
    rng = np.random.default_rng(3)
    layer = Dense(4, 3, make_he(rng), make_tanh())
    x = random(rng, 5, 4)

    def f(x, w, b):
        layer.set_parameters([w, b])
        return layer.forward(x)

    assert gradcheck(f, [x, layer.weights, layer.biases])


def test_dense_rejects_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="Dense: input_size"):
        Dense(0, 2, make_he(rng=0))
    with pytest.raises(ValueError, match="Dense.forward: expects inputs of 3 values"):
        Dense(3, 2, make_he(rng=0)).forward(Array.zeros((2, 4)))
    with pytest.raises(TypeError, match="Dense.forward"):
        Dense(3, 2, make_he(rng=0)).forward(np.zeros((2, 3)))


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 2)])
def test_conv_gradcheck_input_and_parameters(stride):
    rng = np.random.default_rng(4)
    layer = Conv((3, 2, 2, 3), stride, make_he(rng), make_sigmoid())
    x = random(rng, 2, 2, 5, 6)
    assert layer.filters.dimensions == (3, 2, 2, 3) and layer.biases.dimensions == (3, 1, 1)

    def f(x, w, b):
        layer.set_parameters([w, b])
        return layer.forward(x)

    assert gradcheck(f, [x, layer.filters, layer.biases])


def test_conv_forward_values():
    layer = Conv((1, 1, 2, 2), (1, 1), make_he(rng=0))
    layer.set_parameters([arr(arr(arr(arr(3.0, 5.0), arr(2.0, 6.0)))), Array([[[1.0]]])])
    image = arr(arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0), arr(7.0, 8.0, 9.0)))
    # corgi's test_conv values, plus the bias
    assert layer.forward(image) == arr(arr(arr(52.0, 68.0), arr(100.0, 116.0)))


def test_conv_rejects_bad_dimensions():
    with pytest.raises(ValueError, match="filter_dimensions"):
        Conv((1, 2, 3), (1, 1), make_he(rng=0))
    with pytest.raises(ValueError, match="stride_dimensions"):
        Conv((1, 1, 2, 2), (0, 1), make_he(rng=0))
    with pytest.raises(ValueError, match="conv"):
        Conv((1, 3, 2, 2), (1, 1), make_he(rng=0)).forward(Array.zeros((1, 2, 4, 4)))


def test_pool_values_and_gradcheck():
    rng = np.random.default_rng(5)
    assert Pool((2, 2), (2, 2)).forward(Array(list(range(16)), dimensions=(1, 4, 4))) == arr(
        arr(arr(5.0, 7.0), arr(13.0, 15.0))
    )
    x = Array(rng.permutation(48).astype(float).reshape(3, 4, 4))  # distinct values: no ties
    assert gradcheck(Pool((2, 2), (2, 2)).forward, [x])
    assert gradcheck(Pool((3, 3), (1, 1)).forward, [x])  # overlapping windows add their shares
    assert Pool().parameters() == []
    with pytest.raises(ValueError, match="Pool: pool"):
        Pool((0, 2))


def test_reshape_keeps_the_batch_and_gradchecks():
    flatten = Reshape((72,))
    assert flatten.forward(Array.zeros((4, 8, 3, 3))).dimensions == (4, 72)
    assert flatten.forward(Array.zeros((1, 8, 3, 3))).dimensions == (1, 72)
    assert flatten.forward(Array.zeros((8, 3, 3))).dimensions == (72,)
    assert Reshape((2, 3)).forward(Array.zeros((5, 6))).dimensions == (5, 2, 3)
    x = random(np.random.default_rng(6), 2, 3, 4)
    assert gradcheck(Reshape(12).forward, [x])
    with pytest.raises(ValueError, match="Reshape.forward: no trailing dimensions of \\(2, 5\\)"):
        Reshape((3,)).forward(Array.zeros((2, 5)))
    with pytest.raises(ValueError, match="Reshape: dimensions"):
        Reshape((0,))


def test_set_parameters_checks_count_and_dimensions():
    layer = Dense(2, 3, make_he(rng=0))
    with pytest.raises(ValueError, match="expects 2 arrays, got 1"):
        layer.set_parameters([layer.weights])
    with pytest.raises(ValueError, match="weights has dimensions \\(2, 3\\), got \\(3, 2\\)"):
        layer.set_parameters([Array.zeros((3, 2)), layer.biases])
    with pytest.raises(TypeError, match="biases must be an Array"):
        layer.set_parameters([layer.weights, np.zeros(3)])
    assert isinstance(layer, Layer) and [n for n, _ in layer.named_parameters()] == ["weights", "biases"]


# -- optimizers ------------------------------------------------------------------------


def quadratic_gradient(w: Array, scale: Array) -> None:
    """Fill w's gradient with d/dw sum(scale * w^2 / 2) = scale * w."""
    (scale * w * w * 0.5).backward()


def test_gradient_descent_step_by_hand():
    w = arr(1.0, -2.0).tracked()
    quadratic_gradient(w, arr(3.0, 0.5))  # gradient (3, -1)
    [new] = GradientDescent(0.1).update([w])
    assert allclose(new, arr(1.0 - 0.3, -2.0 + 0.1))


def test_momentum_steps_by_hand():
    optimizer = Momentum(0.1, momentum=0.9)
    w = arr(1.0).tracked()
    history = []
    for _ in range(3):
        (w * w).backward()  # gradient 2w
        [w] = optimizer.update([w])
        history.append(w[0])
    # v1 = 2, w1 = 0.8; v2 = 1.8 + 1.6 = 3.4, w2 = 0.46; v3 = 3.06 + 0.92 = 3.98, w3 = 0.062
    assert history == pytest.approx([0.8, 0.46, 0.062])


def test_adam_steps_by_hand():
    optimizer = Adam(0.1, beta1=0.5, beta2=0.75, epsilon=1e-8)
    w = arr(1.0).tracked()
    values = []
    for _ in range(2):
        (w * w).backward()  # gradient 2w
        [w] = optimizer.update([w])
        values.append(w[0])
    # t=1: g=2, m=1, v=1, m^=2, v^=4 -> w = 1 - 0.1 * 2 / 2 = 0.9
    # t=2: g=1.8 (to within the epsilon), m=0.5+0.9=1.4, v=0.75+0.25*3.24=1.56, m^=1.4/0.75, v^=1.56/0.4375
    m_hat, v_hat = 1.4 / 0.75, 1.56 / 0.4375
    first = 1 - 0.1 * 2 / (2 + 1e-8)
    assert values == pytest.approx([first, first - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)], rel=1e-9)


@pytest.mark.parametrize("optimizer", [GradientDescent(0.1), Momentum(0.1), Adam(0.1)])
def test_update_makes_new_arrays_and_clears_gradients(optimizer):
    w, b, untouched = arr(1.0, 2.0).tracked(), arr(3.0).tracked(), arr(4.0).tracked()
    held = [w.numpy().copy(), b.numpy().copy()]
    ((w * b).sum() * 2.0).backward()
    new = optimizer.update([w, b, untouched])
    assert new[0] is not w and new[1] is not b and new[2] is untouched
    assert w.numpy().tolist() == held[0].tolist() and b.numpy().tolist() == held[1].tolist()
    assert w.gradient() is None and b.gradient() is None
    assert all(p.is_tracked and p.gradient() is None for p in new)
    assert not np.allclose(new[0].numpy(), held[0])


def test_update_keeps_the_dtype():
    w = Array([1.0, 2.0], dtype="float32").tracked()
    (w * w).backward()
    assert GradientDescent(0.1).update([w])[0].dtype == np.float32


def test_a_step_that_changes_the_dimensions_is_refused():
    from corgi.optimizer.base import Optimizer

    class Flatten(Optimizer):
        def step(self, position, value, gradient):
            return value.reshape(-1)

    w = Array([[1.0, 2.0]]).tracked()
    (w * w).backward()
    with pytest.raises(ValueError, match="Flatten.update: parameter 0 has dimensions \\(1, 2\\), but its new value has \\(2,\\)"):
        Flatten().update([w])
    assert w.gradient() is not None  # nothing was cleared


def test_a_step_that_raises_clears_no_gradient():
    from corgi.optimizer.base import Optimizer

    class FailsOnSecond(Optimizer):
        def step(self, position, value, gradient):
            if position == 1:
                raise FloatingPointError("step 1 overflowed")
            return value - gradient

    a, b = arr(1.0).tracked(), arr(2.0).tracked()
    (a * b).backward()
    with pytest.raises(FloatingPointError, match="step 1 overflowed"):
        FailsOnSecond().update([a, b])
    assert a.gradient() == arr(2.0) and b.gradient() == arr(1.0)  # both kept for a retry


def test_a_step_may_return_another_float_type_or_a_list():
    from corgi.optimizer.base import Optimizer

    class Widen(Optimizer):
        def step(self, position, value, gradient):
            return value.astype(np.float64) if position == 0 else (value - gradient).tolist()

    a, b = Array([1.0], dtype="float32").tracked(), arr(3.0, 4.0).tracked()
    (a.sum() + b.sum()).backward()
    new_a, new_b = Widen().update([a, b])
    assert new_a.dtype == np.float32 and new_a == Array([1.0], dtype="float32")  # the parameter's dtype is kept
    assert new_b == arr(2.0, 3.0) and new_b.is_tracked


def test_stateful_optimizers_check_the_parameter_order():
    optimizer = Momentum(0.1)
    a, b = arr(1.0).tracked(), arr(1.0, 2.0).tracked()
    ((a * 2.0) + b.sum()).backward()
    a, b = optimizer.update([a, b])
    ((a * 2.0) + b.sum()).backward()
    with pytest.raises(ValueError, match="parameter 0 has dimensions \\(2,\\) but had \\(1,\\)"):
        optimizer.update([b, a])


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="GradientDescent: learning_rate"):
        GradientDescent(-0.1)
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        GradientDescent("fast")
    with pytest.raises(ValueError, match="Momentum: momentum"):
        Momentum(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="Adam: beta2"):
        Adam(beta2=1.5)
    with pytest.raises(TypeError, match="parameter 0 must be an Array"):
        GradientDescent(0.1).update([np.zeros(2)])


def test_gradcheck_still_names_the_worst_input():
    with pytest.raises(GradcheckError, match="gradient of input 1 at index 2"):
        gradcheck(lambda x, y: Array.op([x, y], lambda v: v[0] * v[1], lambda v, t, d: [d * v[1], d]),
                  [arr(1.0, 2.0, 3.0), arr(1.0, 2.0, 3.0)])


def test_cross_entropy_of_a_tracked_target_has_its_gradient():
    # the usual target is a constant; a tracked one still receives -ln(p + eps) / batch
    p = Array([[0.25, 0.75], [0.5, 0.5]]).tracked()
    t = Array([[0.0, 1.0], [1.0, 0.0]]).tracked()
    loss = make_cross_entropy()(p, t)
    loss.backward()
    expected = -np.log(np.array([[0.25, 0.75], [0.5, 0.5]]) + 1e-12) / 2
    np.testing.assert_allclose(t.gradient().numpy(), expected, rtol=1e-12)
    assert gradcheck(lambda p, t: make_cross_entropy()(p, t), [Array([[0.3, 0.7]]), Array([[1.0, 0.0]])])
