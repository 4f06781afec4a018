"""BatchNorm: gradients in both modes, running statistics (against PyTorch's where installed),
checkpoints, modes through Model, dtypes, input checks, and the all-or-nothing update."""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest
from sweep import check

from corgi import Array
from corgi.activation import make_softmax
from corgi.cost import make_cross_entropy
from corgi.initializer import make_he
from corgi.layer import BatchNorm, Conv, Dense, Flatten, Pool
from corgi.model import Model
from corgi.optimizer import Momentum

SHAPES = [(5, 3), (4, 3, 6), (3, 3, 4, 5)]  # dense, sequence, image: axis 1 is always the feature axis


def axes_of(shape):
    return (0,) + tuple(range(2, len(shape)))


def with_parameters(layer, scale, shift):
    layer.set_parameters([scale, shift])
    return layer


@pytest.mark.parametrize("shape", SHAPES)
def test_training_mode_gradcheck_through_the_batch_statistics(shape):
    rng = np.random.default_rng(0)
    layer = BatchNorm(3)
    x = Array(rng.normal(size=shape))
    scale, shift = Array(rng.uniform(0.5, 2.0, size=3)), Array(rng.normal(size=3))
    weights = Array(rng.normal(size=shape))  # a loss that is not a plain sum: the sum's gradient through x is 0

    def loss(a, s, t):
        return (with_parameters(layer, s, t).forward(a) * weights).reshape((1, -1)).sum(1)

    check(loss, x, scale, shift)


@pytest.mark.parametrize("shape", SHAPES)
def test_evaluation_mode_gradcheck_with_the_running_statistics(shape):
    rng = np.random.default_rng(1)
    layer = BatchNorm(3)
    layer.set_buffers([rng.normal(size=3), rng.uniform(0.5, 2.0, size=3), np.array(4)])
    layer.eval()
    x = Array(rng.normal(size=shape))
    scale, shift = Array(rng.uniform(0.5, 2.0, size=3)), Array(rng.normal(size=3))
    check(lambda a, s, t: with_parameters(layer, s, t).forward(a).tanh(), x, scale, shift)


@pytest.mark.parametrize("shape", SHAPES)
def test_values_and_running_statistics_follow_the_formulas(shape):
    rng = np.random.default_rng(2)
    layer = BatchNorm(3, eps=1e-3, momentum=0.25)
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.normal(2.0, 3.0, size=shape)
        out = layer(Array(x)).numpy()
        axes = axes_of(shape)
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
        view = (1, 3) + (1,) * (len(shape) - 2)
        expected = (x - batch_mean.reshape(view)) / np.sqrt(batch_var.reshape(view) + 1e-3)
        assert np.allclose(out, expected, rtol=1e-12, atol=1e-12)
        count = x.size // 3
        mean = 0.75 * mean + 0.25 * batch_mean
        var = 0.75 * var + 0.25 * batch_var * count / (count - 1)
        assert np.allclose(layer.running_mean, mean, rtol=1e-13) and np.allclose(layer.running_var, var, rtol=1e-13)
    assert int(layer.num_batches_tracked) == 3
    x = rng.normal(size=shape)
    view = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + 1e-3)
    assert np.allclose(layer.eval()(Array(x)).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert int(layer.num_batches_tracked) == 3  # evaluation changes nothing


def test_momentum_none_is_the_cumulative_mean_of_every_batch():
    rng = np.random.default_rng(3)
    layer = BatchNorm(2, momentum=None)
    batches = [rng.normal(size=(4, 2)) for _ in range(5)]
    for x in batches:
        layer(Array(x))
    assert np.allclose(layer.running_mean, np.mean([x.mean(axis=0) for x in batches], axis=0), rtol=1e-13)
    assert np.allclose(layer.running_var, np.mean([x.var(axis=0, ddof=1) for x in batches], axis=0), rtol=1e-13)


# -- against PyTorch ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_steps_match_torch_batchnorm(shape, momentum, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch is an optional oracle: pip install torch==2.13.0")
    rng = np.random.default_rng(4)
    reference = (torch.nn.BatchNorm1d if len(shape) < 4 else torch.nn.BatchNorm2d)(3, momentum=momentum)
    reference = reference.to(getattr(torch, dtype))
    layer = BatchNorm(3, momentum=momentum, dtype=dtype)
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-5, "atol": 2e-6}
    for step in range(4):
        x = rng.normal(1.0, 2.0, size=shape).astype(dtype)
        weights = rng.normal(size=shape).astype(dtype)
        a = Array(x).tracked()
        out = layer(a)
        (out * Array(weights)).reshape((1, -1)).sum(1).backward()
        t = torch.tensor(x, requires_grad=True)
        t_out = reference(t)
        (t_out * torch.tensor(weights)).sum().backward()
        assert np.allclose(out.numpy(), t_out.detach().numpy(), **tolerance), step
        assert np.allclose(a.gradient().numpy(), t.grad.numpy(), **tolerance), step
        assert np.allclose(layer.scale.gradient().numpy(), reference.weight.grad.numpy(), **tolerance)
        assert np.allclose(layer.shift.gradient().numpy(), reference.bias.grad.numpy(), **tolerance)
        assert np.allclose(layer.running_mean, reference.running_mean.numpy(), **tolerance), step
        assert np.allclose(layer.running_var, reference.running_var.numpy(), **tolerance), step
        assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked) == step + 1
        # one gradient-descent step on both
        scale = layer.scale.numpy() - 0.1 * layer.scale.gradient().numpy()
        shift = layer.shift.numpy() - 0.1 * layer.shift.gradient().numpy()
        layer.set_parameters([Array(scale).tracked(), Array(shift).tracked()])
        with torch.no_grad():
            reference.weight -= 0.1 * reference.weight.grad
            reference.bias -= 0.1 * reference.bias.grad
            reference.weight.grad = reference.bias.grad = None
    x = rng.normal(size=shape).astype(dtype)
    expected = reference.eval()(torch.tensor(x)).detach().numpy()
    assert np.allclose(layer.eval()(Array(x)).numpy(), expected, **tolerance)


# -- in a model: modes, checkpoints, pickling ---------------------------------------------


def cnn(seed=0, momentum=0.1):
    he = make_he(rng=seed)
    layers = [
        Conv((4, 1, 3, 3), (1, 1), he),
        BatchNorm(4, momentum=momentum),
        Pool(),
        Flatten(),
        Dense(144, 8, he),
        BatchNorm(8),
        Dense(8, 3, he, make_softmax()),
    ]
    return Model(layers, Momentum(0.05, 0.9), make_cross_entropy())


def batches(count=4, seed=5):
    rng = np.random.default_rng(seed)
    return [(Array(rng.normal(size=(6, 1, 14, 14))), Array(np.eye(3)[rng.integers(0, 3, 6)])) for _ in range(count)]


def train(model, data):
    for x, target in data:
        model.forward(x)
        model.backward(target)
        model.update()


def buffers(model):
    return [(name, buffer.copy()) for layer in model.layers for name, buffer in layer.named_buffers()]


def test_model_eval_and_predict_use_and_keep_the_running_statistics():
    model = cnn()
    train(model, batches())
    before = buffers(model)
    x = batches(1, seed=9)[0][0]
    evaluated = model.eval()(x).numpy()
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(before, buffers(model)))
    assert np.array_equal(model.predict(x), evaluated)  # predict evaluates in eval mode
    model.train()
    assert np.array_equal(model.predict(x), evaluated)  # ...and leaves the mode as it found it
    assert all(layer.training for layer in model.layers)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(before, buffers(model)))
    trained = model(x).numpy()  # training mode: the batch's own statistics, and one more update
    assert not np.allclose(trained, evaluated)
    assert int(model.layers[1].num_batches_tracked) == 5


def test_a_checkpoint_keeps_the_running_statistics_and_resumes_bitwise(tmp_path):
    data = batches(6)
    straight = cnn()
    train(straight, data)
    first = cnn()
    train(first, data[:3])
    path = first.save(tmp_path / "bn")
    archive = np.load(path)
    assert np.array_equal(archive["buffers.1.running_var"], first.layers[1].running_var)
    assert int(archive["buffers.5.num_batches_tracked"]) == 3
    resumed = cnn(seed=3).load(path)  # other initial values, other statistics
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(buffers(first), buffers(resumed)))
    train(resumed, data[3:])
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(buffers(straight), buffers(resumed)))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_a_pickled_layer_keeps_its_statistics_and_still_works():
    layer = BatchNorm(2)
    layer(Array([[1.0, 2.0], [3.0, 5.0]]))
    copy = pickle.loads(pickle.dumps(layer))
    assert np.array_equal(copy.running_var, layer.running_var)
    copy(Array([[0.0, 1.0], [1.0, 0.0]]))
    assert int(copy.num_batches_tracked) == 2 and int(layer.num_batches_tracked) == 1


# -- dtypes and input checks ----------------------------------------------------------------


def test_float32_layer_keeps_float32_and_refuses_float64_input():
    layer = BatchNorm(3, dtype="float32")
    assert layer.dtype == np.float32 and all(p.dtype == np.float32 for p in layer.parameters())
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32
    out = layer(Array(np.ones((2, 3, 2, 2)), dtype="float32"))
    assert out.dtype == np.float32 and layer.running_var.dtype == np.float32
    with pytest.raises(TypeError, match=r"BatchNorm.forward: input is float64, the layer's parameters are float32"):
        layer(Array(np.ones((2, 3))))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 4), r"BatchNorm.forward: expects \(batch, 3\) or \(batch, 3, ...\), got input \(2, 4\)"),
        ((3,), r"BatchNorm.forward: expects \(batch, 3\) or \(batch, 3, ...\), got input \(3,\)"),
        ((2, 2, 3, 3), r"got input \(2, 2, 3, 3\)"),
        ((1, 3), r"training needs more than one value per feature, got input \(1, 3\)"),
        ((1, 3, 1, 1), r"training needs more than one value per feature, got input \(1, 3, 1, 1\)"),
    ],
)
def test_bad_input_is_a_value_error_and_changes_nothing(shape, message):
    layer = BatchNorm(3)
    before = layer.named_buffers()
    with pytest.raises(ValueError, match=message):
        layer(Array(np.ones(shape)))
    assert all(a is b or np.array_equal(a, b) for (_, a), (_, b) in zip(before, layer.named_buffers()))
    assert int(layer.num_batches_tracked) == 0


def test_one_example_is_fine_in_evaluation_mode_and_an_image_batch_of_one_trains():
    layer = BatchNorm(3)
    assert layer.eval()(Array(np.ones((1, 3)))).dimensions == (1, 3)
    assert layer.train()(Array(np.arange(12.0).reshape(1, 3, 2, 2))).dimensions == (1, 3, 2, 2)


def test_a_non_array_input_is_a_type_error():
    with pytest.raises(TypeError, match="BatchNorm.forward: expects an Array, got ndarray"):
        BatchNorm(2)(np.ones((2, 2)))


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ((0,), ValueError, r"BatchNorm: features must be a whole number >= 1, got 0"),
        ((2.0,), TypeError, r"BatchNorm: features must be a whole number, got 2.0"),
        ((True,), TypeError, r"BatchNorm: features must be a whole number, got True"),
        ((2, 0.0), ValueError, r"BatchNorm: eps must be above 0, got 0.0"),
        ((2, "1e-5"), TypeError, r"BatchNorm: eps must be a number, got '1e-5'"),
        ((2, 1e-5, 1.5), ValueError, r"BatchNorm: momentum must be in \[0, 1\] or None, got 1.5"),
        ((2, 1e-5, "0.1"), TypeError, r"BatchNorm: momentum must be a number, got '0.1'"),
        ((2, 1e-5, 0.1, "int32"), (TypeError, ValueError), r"BatchNorm"),
    ],
)
def test_bad_arguments_are_refused(arguments, error, message):
    with pytest.raises(error, match=message):
        BatchNorm(*arguments)


def test_buffers_handed_out_never_change_and_bad_buffers_change_nothing():
    layer = BatchNorm(2)
    held = dict(layer.named_buffers())
    layer(Array([[1.0, 2.0], [3.0, 6.0]]))
    assert np.array_equal(held["running_mean"], [0.0, 0.0]) and int(held["num_batches_tracked"]) == 0
    current = buffers(Model([layer]))
    with pytest.raises(ValueError, match=r"BatchNorm.set_buffers: running_var is float64 \(2,\), got float64 \(3,\)"):
        layer.set_buffers([np.zeros(2), np.zeros(3), np.array(1)])
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(current, buffers(Model([layer]))))


@pytest.mark.timeout(60)
def test_concurrent_training_forwards_lose_no_update(engine_state):
    # the same batch from every thread: the updates commute, so the result is the serial one
    sys.setswitchinterval(1e-6)
    rng = np.random.default_rng(6)
    x = Array(rng.normal(size=(8, 4, 3, 3)))
    serial, shared = BatchNorm(4), BatchNorm(4)
    threads, rounds = 4, 25
    for _ in range(threads * rounds):
        serial(x)

    def run():
        for _ in range(rounds):
            shared(x)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert int(shared.num_batches_tracked) == threads * rounds
    assert np.allclose(shared.running_mean, serial.running_mean, rtol=1e-12)
    assert np.allclose(shared.running_var, serial.running_var, rtol=1e-12)
