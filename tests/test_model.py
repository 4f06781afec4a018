"""corgi 0.9.2's model tests, ported, and the Model's parameters, save/load and helpers."""

import math

import numpy as np
import pytest

from corgi import Array, GradcheckError, arr
from corgi.activation import make_relu, make_sigmoid, make_softmax, make_tanh
from corgi.cost import make_cross_entropy, make_mse, make_softmax_cross_entropy
from corgi.datasets import load_digits, one_hot
from corgi.gradcheck import gradcheck_model
from corgi.initializer import make_he
from corgi.layer import Conv, Dense, Dropout, Flatten, Pool, Reshape
from corgi.model import Model
from corgi.optimizer import Adam, GradientDescent, Momentum

pytestmark = pytest.mark.timeout(60)


def corgi_norm_ratio(model: Model, input: Array, target: Array, epsilon: float = 1e-7) -> list[float]:
    """corgi's test_gradient criterion, per parameter: |g - num| / |g + num| over all its values."""
    model.forward(input)
    model.backward(target)
    ratios = []
    parameters = model.parameters()
    for position, parameter in enumerate(parameters):
        gradient = parameter.gradient().numpy()
        numeric = np.zeros(parameter.dimensions)
        for index in range(numeric.size):
            values = []
            for sign in (1.0, -1.0):
                shifted = parameter.numpy().copy()
                shifted.flat[index] += sign * epsilon
                trial = list(parameters)
                trial[position] = Array(shifted)
                model.set_parameters(trial)
                values.append(model.cost(model.forward(input), target).sum_all())
            numeric.flat[index] = (values[0] - values[1]) / (2 * epsilon)
        model.set_parameters(parameters)
        ratios.append(np.linalg.norm(gradient - numeric) / np.linalg.norm(gradient + numeric))
    return ratios


# -- ported from corgi 0.9.2 src/model.rs ----------------------------------------------


def test_dense_gradient():
    he = make_he(rng=0)
    l1 = Dense(2, 16, he, make_sigmoid())
    l2 = Dense(16, 2, he, make_softmax())
    model = Model([l1, l2], GradientDescent(0.0), make_cross_entropy())
    input, target = arr(0.5, -0.25), arr(0.0, 1.0)
    assert gradcheck_model(model, input, target)
    # corgi's own criterion (the 1-D input gives a (1, 2) output; the target broadcasts)
    assert max(corgi_norm_ratio(model, input, target)) < 1e-7
    assert model.forward(input).dimensions == (1, 2)


def test_conv_gradient():
    rng = np.random.default_rng(0)
    he = make_he(rng)
    l1 = Conv((16, 3, 3, 3), (2, 2), he, make_relu())
    l2 = Conv((1, 16, 2, 2), (2, 2), he, None)
    model = Model([l1, l2], GradientDescent(0.0), make_mse())
    input = Array(rng.uniform(-1.0, 1.0, size=243), dimensions=(3, 9, 9))
    target = Array(rng.uniform(0.0, 1.0, size=4), dimensions=(1, 2, 2))
    assert model.forward(input).dimensions == (1, 2, 2)
    assert gradcheck_model(model, input, target)
    assert max(corgi_norm_ratio(model, input, target)) < 1e-7


def test_model():
    rng = np.random.default_rng(1)
    he = make_he(rng)
    model = Model([Dense(2, 16, he, make_relu()), Dense(16, 2, he, None)], GradientDescent(0.1), make_mse())
    losses = []
    for _ in range(64):  # corgi ran 8 steps and asserted nothing; 64 show the loss falling
        xy = rng.uniform(-1.0, 1.0, size=(32, 2))
        target = np.stack([np.exp(xy[:, 0]), np.exp(xy[:, 0]) + np.sin(xy[:, 1])], axis=1)
        model.forward(Array(xy))
        losses.append(model.backward(Array(target)))
        model.update()
    assert all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[-8:]) < 0.25 * np.mean(losses[:8])


# -- ported from corgi 0.9.2 src/layer/{dense,conv}.rs -------------------------------------


def manual_sgd(parameters, learning_rate):
    """corgi's smoke-test update: w - lr * dw as a new tracked array, no gradient."""
    return [Array(p.numpy() - learning_rate * p.gradient().numpy()).tracked() for p in parameters]


class TestDense:
    def test_smoke(self):
        rng = np.random.default_rng(2)

        def initializer(dimensions, input_size):  # corgi's uniform +-1/sqrt(fan-in)
            bound = 1.0 / math.sqrt(input_size)
            return Array(rng.uniform(-bound, bound, size=dimensions))

        l1 = Dense(1, 16, initializer, make_sigmoid())
        l2 = Dense(16, 1, initializer, None)
        for _ in range(8):
            x = rng.uniform(-1.0, 1.0)
            error = (arr(math.exp(x)) - l2.forward(l1.forward(arr(arr(x))))).powf(2.0)
            assert error.dimensions == (1, 1)
            error.backward()
            new = manual_sgd(l1.parameters() + l2.parameters(), 0.01)
            l1.set_parameters(new[:2])
            l2.set_parameters(new[2:])
            assert all(p.gradient() is None for p in l1.parameters() + l2.parameters())


class TestConv:
    def test_smoke(self):
        rng = np.random.default_rng(3)
        he = make_he(rng)
        l1 = Conv((16, 3, 3, 3), (2, 2), he, make_relu())
        l2 = Conv((1, 16, 2, 2), (2, 2), he, None)
        for _ in range(8):
            input = Array(rng.uniform(-1.0, 1.0, size=243), dimensions=(3, 9, 9))
            target = Array(input.values[:4] / 2.0, dimensions=(1, 2, 2))
            error = (target - l2.forward(l1.forward(input))).powf(2.0)
            error.backward()
            new = manual_sgd(l1.parameters() + l2.parameters(), 0.01)
            l1.set_parameters(new[:2])
            l2.set_parameters(new[2:])
        assert [p.dimensions for p in l1.parameters() + l2.parameters()] == [
            (16, 3, 3, 3), (16, 1, 1), (1, 16, 2, 2), (1, 1, 1)]


# -- the seed README's fully-connected example, translated ---------------------------------


def test_readme_fully_connected_example():
    # The README's fully-connected example, with fewer iterations.
    digits = load_digits()
    rng = np.random.default_rng(0)
    learning_rate, batch_size, iterations = 0.5, 32, 300
    input_size, hidden_size, output_size = 64, 128, 10

    initializer = make_he(rng)
    relu = make_relu()
    softmax = make_softmax()
    ce = make_cross_entropy()
    gd = GradientDescent(learning_rate)
    l1 = Dense(input_size, hidden_size, initializer, relu)
    l2 = Dense(hidden_size, output_size, initializer, softmax)
    model = Model([l1, l2], gd, ce)

    losses = []
    for _ in range(iterations):
        rows = rng.integers(0, len(digits.train_images), size=batch_size)
        input = Array(digits.train_images[rows])
        target = Array(one_hot(digits.train_labels[rows]))
        _result = model.forward(input)
        loss = model.backward(target)
        model.update()
        losses.append(loss)
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:20])
    assert model.accuracy(digits.test_images, digits.test_labels) > 0.9


def test_digits_with_the_fused_cost_on_logits():
    # the same network without a softmax layer, trained with softmax cross-entropy on its
    # logits: the model outputs logits, predict returns them, and classify and accuracy read the largest one
    digits = load_digits()
    rng = np.random.default_rng(0)
    initializer = make_he(rng)
    model = Model([Dense(64, 128, initializer, make_relu()), Dense(128, 10, initializer, None)],
                  GradientDescent(0.5), make_softmax_cross_entropy())
    losses = []
    for _ in range(300):
        rows = rng.integers(0, len(digits.train_images), size=32)
        model.forward(Array(digits.train_images[rows]))
        losses.append(model.backward(Array(one_hot(digits.train_labels[rows]))))
        model.update()
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:20])
    logits = model.forward(Array(digits.test_images[:5]))
    assert not np.allclose(logits.numpy().sum(axis=1), 1.0)  # logits, not probabilities
    assert np.array_equal(model.predict(Array(digits.test_images[:5])), logits.numpy())
    assert np.array_equal(model.classify(Array(digits.test_images[:5])), logits.numpy().argmax(axis=1))
    assert model.accuracy(digits.test_images, digits.test_labels) > 0.9


# -- Model ------------------------------------------------------------------------------


def small_model(seed=0, optimizer=None):
    he = make_he(rng=seed)
    return Model([Dense(3, 5, he, make_tanh()), Dense(5, 4, he, make_softmax())],
                 optimizer or GradientDescent(0.1), make_cross_entropy())


def test_backward_returns_the_loss_and_update_replaces_parameters():
    model = small_model()
    x = Array(np.random.default_rng(0).normal(size=(6, 3)))
    target = Array(one_hot(np.array([0, 1, 2, 3, 0, 1]), 4))
    before = model.parameters()
    values = [p.numpy().copy() for p in before]
    output = model.forward(x)
    loss = model.backward(target)
    assert isinstance(loss, float) and loss == pytest.approx(make_cross_entropy()(output, target)[0])
    gradients = [p.gradient().numpy().copy() for p in before]
    model.update()
    after = model.parameters()
    assert all(a is not b for a, b in zip(after, before))
    assert all(np.array_equal(b.numpy(), v) for b, v in zip(before, values))  # held arrays never change
    assert all(p.gradient() is None and p.is_tracked for p in after + before)
    assert all(np.allclose(a.numpy(), v - 0.1 * g) for a, v, g in zip(after, values, gradients))


def test_backward_before_forward_is_an_error():
    with pytest.raises(ValueError, match="Model.backward: no output yet"):
        small_model().backward(arr(1.0, 0.0, 0.0, 0.0))


def test_model_rejects_bad_parts():
    with pytest.raises(TypeError, match="layer 1 needs forward"):
        Model([Dense(2, 2, make_he(rng=0)), object()], GradientDescent(0.1), make_mse())
    with pytest.raises(TypeError, match="optimizer needs update"):
        Model([], object(), make_mse())
    with pytest.raises(TypeError, match="cost must be callable"):
        Model([], GradientDescent(0.1), "mse")


def test_gradcheck_model_checks_a_cnn_and_restores_parameters():
    rng = np.random.default_rng(4)
    he = make_he(rng)
    model = Model([Conv((2, 1, 3, 3), (1, 1), he, make_tanh()), Pool((2, 2), (2, 2)), Reshape((8,)),
                   Dense(8, 3, he, make_softmax())], Momentum(0.1), make_cross_entropy())
    x = Array(rng.uniform(0, 1, size=(2, 1, 6, 6)))
    target = Array(one_hot(np.array([2, 0]), 3))
    before = model.parameters()
    assert gradcheck_model(model, x, target)
    assert all(a is b for a, b in zip(model.parameters(), before))


def test_gradcheck_model_names_the_parameter():
    class Broken:  # a layer whose bias gradient is half what it should be
        parameter_names = ("bias",)

        def __init__(self):
            self.bias = arr(arr(0.5, -0.5)).tracked()

        def forward(self, x):
            return Array.op([x, self.bias], lambda v: v[0] + v[1], lambda v, t, d: [d, d * 0.5])

        def parameters(self):
            return [self.bias]

        def named_parameters(self):
            return [("bias", self.bias)]

        def set_parameters(self, parameters):
            (self.bias,) = parameters

    model = Model([Dense(2, 2, make_he(rng=0)), Broken()], GradientDescent(0.1), make_mse())
    with pytest.raises(GradcheckError, match="gradient of parameter 1.bias at index"):
        gradcheck_model(model, arr(arr(1.0, 2.0)), arr(arr(0.0, 1.0)))


@pytest.mark.parametrize("optimizer", [GradientDescent(0.1), Momentum(0.1), Adam(0.01)])
def test_every_optimizer_lowers_the_loss(optimizer):
    model = small_model(seed=1, optimizer=optimizer)
    rng = np.random.default_rng(5)
    x = Array(rng.normal(size=(16, 3)))
    target = Array(one_hot(rng.integers(0, 4, size=16), 4))
    losses = []
    for _ in range(40):
        model.forward(x)
        losses.append(model.backward(target))
        model.update()
    assert losses[-1] < 0.8 * losses[0]


def test_save_load_round_trip(tmp_path):
    model = small_model(seed=0)
    x = Array(np.random.default_rng(6).normal(size=(4, 3)))
    model.forward(x)
    model.backward(Array(one_hot(np.array([0, 1, 2, 3]), 4)))
    model.update()
    model.save(tmp_path / "model.npz")
    copy = small_model(seed=9).load(tmp_path / "model.npz")
    assert all(a == b for a, b in zip(copy.parameters(), model.parameters()))
    assert all(p.is_tracked for p in copy.parameters())
    assert copy.forward(x) == model.forward(x)
    # the parameters are plain entries any numpy reads, beside corgi's own JSON entry
    saved = np.load(tmp_path / "model.npz")
    assert sorted(saved.files) == ["0.biases", "0.weights", "1.biases", "1.weights", "corgi.json"]
    assert np.array_equal(saved["0.weights"], model.parameters()[0].numpy())
    # a bare name gets .npz when saving and when loading: the path round-trips
    assert model.save(tmp_path / "bare") == tmp_path / "bare.npz"
    assert small_model(seed=9).load(tmp_path / "bare").forward(x) == model.forward(x)
    assert small_model(seed=9).load(str(tmp_path / "bare.npz")).forward(x) == model.forward(x)


def test_save_load_round_trip_float32_and_cnn(tmp_path):
    def make(seed):
        he = make_he(rng=seed)
        return Model([Conv((2, 1, 3, 3), (1, 1), he, make_relu()), Reshape((18,)), Dense(18, 2, he)],
                     GradientDescent(0.1), make_mse())

    model = make(0)
    model.set_parameters([Array(p.numpy(), dtype="float32").tracked() for p in model.parameters()])
    model.save(tmp_path / "cnn.npz")
    copy = make(1)
    copy.set_parameters([Array(p.numpy(), dtype="float32").tracked() for p in copy.parameters()])
    copy.load(tmp_path / "cnn.npz")
    assert all(a == b and a.dtype == np.float32 for a, b in zip(copy.parameters(), model.parameters()))


def test_load_rejects_another_architecture(tmp_path):
    small_model().save(tmp_path / "small.npz")
    he = make_he(rng=0)
    wider = Model([Dense(3, 6, he), Dense(6, 4, he)], GradientDescent(0.1), make_mse())
    with pytest.raises(ValueError, match="0.weights of dimensions \\(3, 5\\), the model has \\(3, 6\\)"):
        wider.load(tmp_path / "small.npz")
    deeper = Model([Dense(3, 5, he), Dense(5, 4, he), Dense(4, 4, he)], GradientDescent(0.1), make_mse())
    with pytest.raises(ValueError, match="holds parameters"):
        deeper.load(tmp_path / "small.npz")
    before = wider.parameters()
    assert all(a is b for a, b in zip(wider.parameters(), before))


def test_predict_and_accuracy():
    model = Model([Dense(2, 2, make_he(rng=0))], GradientDescent(0.1), make_mse())
    model.set_parameters([Array([[1.0, 0.0], [0.0, 1.0]]).tracked(), Array([0.0, 0.0]).tracked()])
    x = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 2.0]])
    assert model.predict(x).tolist() == x.tolist()  # the outputs: here the identity
    assert model.classify(x).tolist() == [0, 1, 0, 1]
    assert model.classify(Array(x), batch_size=3).tolist() == [0, 1, 0, 1]
    assert model.accuracy(x, [0, 1, 1, 1]) == 0.75
    assert model.accuracy(x, one_hot(np.array([0, 1, 0, 0]), 2)) == 0.75
    with pytest.raises(ValueError, match="4 predictions but labels of dimensions \\(3,\\)"):
        model.accuracy(x, [0, 1, 1])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)


# -- modes, inference and dtypes -------------------------------------------------------------


def dropout_model(seed=0):
    he = make_he(rng=seed)
    return Model([Dense(4, 16, he, make_relu()), Dropout(0.5, rng=seed), Dense(16, 3, he)],
                 GradientDescent(0.1), make_softmax_cross_entropy())


def test_train_and_eval_switch_every_layer_and_return_the_model():
    model = dropout_model()
    assert model.training and all(layer.training for layer in model.layers)
    assert model.eval() is model and not model.training and not any(layer.training for layer in model.layers)
    assert model.train() is model and model.training and all(layer.training for layer in model.layers)
    with pytest.raises(TypeError, match="Model.train: mode must be True or False, got 1"):
        model.train(1)


def test_dropout_is_active_in_training_and_off_in_evaluation():
    model = dropout_model()
    x = Array(np.random.default_rng(1).normal(size=(5, 4)))
    assert model(x) != model(x)  # a new mask each time
    model.eval()
    assert model(x) == model(x)
    expected = model(x).numpy()
    model.train()
    # predict, classify and accuracy evaluate in eval mode and give the mode back
    assert np.array_equal(model.predict(x), expected)
    assert np.array_equal(model.classify(x), expected.argmax(axis=1))
    assert model.training and all(layer.training for layer in model.layers)
    model.eval()
    model.predict(x)
    assert not model.layers[1].training


def test_predict_records_no_graph_and_restores_the_mode_after_an_error():
    model = dropout_model()
    outputs = model.predict(np.random.default_rng(2).normal(size=(6, 4)), batch_size=4)
    assert outputs.shape == (6, 3) and isinstance(outputs, np.ndarray)
    assert all(p.gradient() is None for p in model.parameters())
    x = Array(np.ones((2, 4)))
    with pytest.raises(ValueError, match="Dense.forward: expects inputs of 4 values"):
        model.predict(np.ones((2, 5)))
    assert model.training and model.layers[1].training
    assert model(x).is_tracked  # outside predict, a call records as usual


def test_a_model_for_inference_needs_no_optimizer_or_cost():
    he = make_he(rng=0)
    model = Model([Dense(2, 3, he, make_relu()), Dense(3, 2, he)])
    assert model(np.ones((1, 2))).dimensions == (1, 2)
    assert model.classify(np.ones((4, 2))).shape == (4,)
    model.forward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="Model.backward: the model has no cost"):
        model.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="Model.update: the model has no optimizer"):
        model.update()
    assert repr(model) == "Model([Dense(2, 3, activation=relu), Dense(3, 2)], None, None)"


def test_numpy_input_takes_the_models_dtype_and_an_array_must_have_it():
    he = make_he(rng=0)
    model = Model([Dense(3, 2, he, dtype="float32")], GradientDescent(0.1), make_mse())
    assert model.dtype == np.float32
    assert model(np.ones((2, 3))).dtype == np.float32  # numpy values become float32 Arrays
    assert model.predict(np.ones((2, 3))).dtype == np.float32
    with pytest.raises(TypeError, match="Dense.forward: input is float64, the layer's parameters are float32"):
        model(Array(np.ones((2, 3))))
    with pytest.raises(TypeError, match="input is float64, the layer's parameters are float32"):
        model.predict(Array(np.ones((2, 3))))
    assert Model([Reshape((4,))]).dtype is None


def test_classify_needs_a_batch_of_scores():
    model = Model([Reshape((4,)), Dense(4, 1, make_he(rng=0))])
    assert model.classify(np.ones((3, 2, 2))).tolist() == [0, 0, 0]
    flat = Model([Reshape((3,))])
    with pytest.raises(ValueError, match="Model.classify: the model's outputs have dimensions \\(3,\\)"):
        flat.classify(np.ones(3))


def test_input_dimensions_come_from_the_first_layer():
    he = make_he(rng=0)
    assert Model([Dense(784, 10, he)]).input_dimensions == (784,)
    assert Model([Conv((8, 3, 3, 3), (1, 1), he), Flatten()]).input_dimensions == (3, None, None)
    assert Model([Flatten(), Dense(4, 2, he)]).input_dimensions is None
    assert Model([]).input_dimensions is None


def test_the_last_output_is_not_part_of_a_pickled_model():
    model = Model([Reshape((2,)), Dropout(0.5, rng=3)], GradientDescent(0.1), make_mse())
    model.forward(Array(np.ones((3, 2))))
    assert model.output is not None
    import copy
    import pickle

    pickled, copied = pickle.loads(pickle.dumps(model)), copy.deepcopy(model)
    x = Array(np.ones((40, 2)))
    for twin in (pickled, copied):
        assert twin.output is None and repr(twin) == repr(model)
    # each copy carries the dropout generator's position: the same next mask as the original
    assert pickled(x) == copied(x) == model(x)


def test_gradcheck_model_checks_a_float32_model_in_float64_and_leaves_it_float32():
    model = Model([Dense(3, 2, make_he(rng=0), make_tanh(), dtype="float32")], GradientDescent(0.1), make_mse())
    before = [p.numpy().copy() for p in model.parameters()]
    x = Array(np.linspace(-1.0, 1.0, 6).reshape(2, 3), dtype="float32")
    assert gradcheck_model(model, x, Array(np.zeros((2, 2)), dtype="float32"))
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(np.array_equal(p.numpy(), b) for p, b in zip(model.parameters(), before))
