"""Whole models pickle and deep-copy: a copy trains on exactly as the original does (issue 11, item 10)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from corgi import Array
from corgi.activation import make_relu
from corgi.cost import make_softmax_cross_entropy
from corgi.initializer import make_he
from corgi.layer import Dense, Dropout
from corgi.model import Model
from corgi.optimizer import Adam, GradientDescent, Momentum


def make_model(optimizer):
    he = make_he(rng=0)
    layers = [Dense(6, 8, he, make_relu()), Dropout(0.25, rng=1), Dense(8, 3, he)]
    return Model(layers, optimizer, make_softmax_cross_entropy())


def batch(step):
    rng = np.random.default_rng(100 + step)
    x = Array(rng.normal(size=(5, 6)))
    target = Array(np.eye(3)[rng.integers(0, 3, size=5)])
    return x, target


def train(model, steps, start=0):
    losses = []
    for step in range(start, start + steps):
        x, target = batch(step)
        model.forward(x)
        losses.append(model.backward(target))
        model.update()
    return losses


def values(model):
    return [p.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("make_optimizer", [lambda: GradientDescent(0.1), lambda: Momentum(0.05), lambda: Adam(0.01)])
@pytest.mark.parametrize("duplicate", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy])
def test_a_copied_model_trains_on_bitwise_like_the_original(make_optimizer, duplicate):
    original = make_model(make_optimizer())
    train(original, 3)  # optimizer state and the dropout generator have moved
    twin = duplicate(original)
    assert twin is not original and twin.parameters()[0] is not original.parameters()[0]
    assert all(np.array_equal(a, b) for a, b in zip(values(twin), values(original)))
    assert train(twin, 4, start=3) == train(original, 4, start=3)
    assert all(np.array_equal(a, b) for a, b in zip(values(twin), values(original)))


def test_a_copy_keeps_tracking_and_accumulated_gradients_but_not_the_last_output():
    model = make_model(GradientDescent(0.1))
    x, target = batch(0)
    model.forward(x)
    model.backward(target)  # gradients filled, not yet applied
    twin = pickle.loads(pickle.dumps(model))
    for mine, theirs in zip(model.parameters(), twin.parameters()):
        assert theirs.is_tracked
        assert theirs.gradient() == mine.gradient()
    # the last output belongs to this process's training step, not to the model: it is not copied
    assert twin.output is None
    with pytest.raises(ValueError, match="no output yet"):
        twin.backward(target)


def test_the_copy_and_the_original_do_not_share_state():
    original = make_model(Momentum(0.05))
    train(original, 2)
    twin = copy.deepcopy(original)
    train(twin, 2, start=2)  # only the copy moves on
    assert not all(np.array_equal(a, b) for a, b in zip(values(twin), values(original)))
    again = copy.deepcopy(original)
    assert all(np.array_equal(a, b) for a, b in zip(values(again), values(original)))
