"""Optimizer state: all or nothing under a failing step, saved and restored exactly."""

import copy
import os
import pickle
import signal

import numpy as np
import pytest

from corgi import Array
from corgi.optimizer import Adam, GradientDescent, Momentum

pytestmark = pytest.mark.timeout(60)

STATEFUL = [lambda: Momentum(0.1, momentum=0.8), lambda: Adam(0.05)]
ALL = [lambda: GradientDescent(0.1), *STATEFUL]


def parameters(seed=0):
    rng = np.random.default_rng(seed)
    return [Array(rng.normal(size=shape)).tracked() for shape in ((3, 2), (2,), (2, 1))]


def fill_gradients(params, seed):
    """A deterministic loss of every parameter: sum(c * p^2) with fixed random c."""
    rng = np.random.default_rng(seed)
    total = None
    for p in params:
        term = (p * p * Array(rng.uniform(0.5, 2.0, size=p.dimensions))).sum(len(p.dimensions))
        total = term if total is None else total + term
    total.backward()


def snapshot(optimizer):
    """Every number in the optimizer's state, copied."""
    return copy.deepcopy(optimizer.state_dict())


def same(a, b):
    """Two state_dicts hold bitwise the same numbers."""
    assert a["type"] == b["type"] and a["hyperparameters"] == b["hyperparameters"]
    assert sorted(a["state"]) == sorted(b["state"])
    for position, entry in a["state"].items():
        other = b["state"][position]
        assert sorted(entry) == sorted(other)
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == other[key].dtype and np.array_equal(value, other[key]), (position, key)
            else:
                assert value == other[key], (position, key)
    return True


def failing(optimizer, at, error):
    """The same optimizer whose step raises ``error`` at position ``at`` (once)."""
    original = optimizer.step
    calls = {"left": 1}

    def step(position, value, gradient):
        result = original(position, value, gradient)  # the state is staged before the failure
        if position == at and calls["left"]:
            calls["left"] -= 1
            raise error
        return result

    optimizer.step = step
    return optimizer


@pytest.mark.parametrize("make", STATEFUL)
@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_failing_step_leaves_the_state_and_the_gradients_as_they_were(make, at):
    optimizer, params = make(), parameters()
    for seed in range(3):  # some state to protect
        fill_gradients(params, seed)
        params = optimizer.update(params)
    before = snapshot(optimizer)
    fill_gradients(params, 10)
    gradients = [p.gradient().numpy().copy() for p in params]
    failing(optimizer, at, FloatingPointError("overflow in step"))
    with pytest.raises(FloatingPointError, match="overflow in step"):
        optimizer.update(params)
    assert same(snapshot(optimizer), before)
    assert all(np.array_equal(p.gradient().numpy(), g) for p, g in zip(params, gradients))
    # the retry steps exactly as an optimizer that never failed
    reference, reference_params = make(), parameters()
    for seed in range(3):
        fill_gradients(reference_params, seed)
        reference_params = reference.update(reference_params)
    fill_gradients(reference_params, 10)
    expected = reference.update(reference_params)
    retried = optimizer.update(params)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(retried, expected))
    assert same(snapshot(optimizer), snapshot(reference))


@pytest.mark.parametrize("make", STATEFUL)
def test_a_step_of_the_wrong_dimensions_leaves_the_state(make):
    optimizer, params = make(), parameters()
    fill_gradients(params, 0)
    params = optimizer.update(params)
    before = snapshot(optimizer)
    fill_gradients(params, 1)
    original = optimizer.step
    optimizer.step = lambda position, value, gradient: (
        original(position, value, gradient).reshape(-1) if position == 2 else original(position, value, gradient))
    with pytest.raises(ValueError, match="parameter 2 has dimensions \\(2, 1\\), but its new value has \\(2,\\)"):
        optimizer.update(params)
    assert same(snapshot(optimizer), before)


@pytest.mark.parametrize("make", STATEFUL)
def test_a_real_sigint_during_an_update_leaves_the_state(make):
    optimizer, params = make(), parameters()
    fill_gradients(params, 0)
    params = optimizer.update(params)
    before = snapshot(optimizer)
    fill_gradients(params, 1)
    original = optimizer.step

    def step(position, value, gradient):
        result = original(position, value, gradient)
        if position == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt at its next check
        return result

    optimizer.step = step
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            optimizer.update(params)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert same(snapshot(optimizer), before)
    assert all(p.gradient() is not None for p in params)


@pytest.mark.parametrize("make", ALL)
def test_state_dict_round_trips_and_both_continue_bitwise(make):
    optimizer, params = make(), parameters()
    for seed in range(4):
        fill_gradients(params, seed)
        params = optimizer.update(params)
    saved = optimizer.state_dict()
    restored = make()
    restored.load_state_dict(saved, params)
    assert same(restored.state_dict(), saved)
    twin = [Array(p.numpy()).tracked() for p in params]
    for seed in range(4, 7):
        fill_gradients(params, seed)
        fill_gradients(twin, seed)
        params, twin = optimizer.update(params), restored.update(twin)
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(params, twin))


def test_state_dict_holds_copies_and_names_pytorch_uses():
    optimizer, params = Adam(0.1), parameters()
    fill_gradients(params, 0)
    optimizer.update(params)
    saved = optimizer.state_dict()
    assert sorted(saved["state"][0]) == ["exp_avg", "exp_avg_sq", "step"] and saved["state"][0]["step"] == 1
    saved["state"][0]["exp_avg"][...] = 99.0
    assert not np.any(optimizer.state_dict()["state"][0]["exp_avg"] == 99.0)
    assert GradientDescent(0.3).state_dict() == {"type": "GradientDescent", "hyperparameters": {"learning_rate": 0.3},
                                                  "state": {}}


def test_load_state_dict_restores_the_settings():
    source = Momentum(0.02, momentum=0.5)
    target = Momentum(0.9, momentum=0.1)
    target.load_state_dict(source.state_dict())
    assert (target.learning_rate, target.momentum) == (0.02, 0.5)


def bad_states():
    params = parameters()
    adam = Adam(0.1)
    fill_gradients(params, 0)
    adam.update(params)
    good = adam.state_dict()

    def changed(change):
        state = copy.deepcopy(good)
        change(state)
        return state

    return [
        (Momentum(0.1).state_dict(), ValueError, "the state is of a Momentum optimizer, not a Adam"),
        (changed(lambda s: s["hyperparameters"].pop("beta2")), ValueError, "expects hyperparameters"),
        (changed(lambda s: s["hyperparameters"].update(beta1=1.5)), ValueError, "Adam: beta1 must be in"),
        (changed(lambda s: s["state"][0].pop("exp_avg")), ValueError, "parameter 0 needs step and"),
        (changed(lambda s: s["state"][1].update(step=-1)), ValueError, "parameter 1 has step -1"),
        (changed(lambda s: s["state"][2].update(exp_avg=np.zeros((1, 2)))), ValueError,
         "parameter 2's exp_avg is float64 \\(1, 2\\), the parameter is float64 \\(2, 1\\)"),
        (changed(lambda s: s["state"][2].update(exp_avg=np.zeros((2, 1), np.float32))), ValueError,
         "parameter 2's exp_avg is float32"),
        (changed(lambda s: s["state"].update({5: s["state"][0]})), ValueError, "state for parameter 5, but there are 3"),
        (changed(lambda s: s["state"].update({"x": s["state"][0]})), ValueError, "positions are whole numbers"),
        ({"type": "Adam"}, ValueError, "expects a mapping of type, hyperparameters and state"),
        ([1, 2], TypeError, "expects a mapping"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_a_bad_state_dict_is_refused_and_changes_nothing(case):
    state, kind, message = bad_states()[case]
    optimizer, params = Adam(0.2, beta1=0.8), parameters()
    fill_gradients(params, 3)
    optimizer.update(params)
    before = snapshot(optimizer)
    with pytest.raises(kind, match=message):
        optimizer.load_state_dict(state, params)
    assert same(snapshot(optimizer), before)


def test_a_stateless_optimizer_refuses_state():
    with pytest.raises(ValueError, match="a GradientDescent keeps no state, got state for 1 parameters"):
        GradientDescent(0.1).load_state_dict({"type": "GradientDescent", "hyperparameters": {"learning_rate": 0.1},
                                              "state": {0: {"step": 1}}})


@pytest.mark.parametrize("make", ALL)
def test_optimizers_pickle_and_copy_with_their_state(make):
    optimizer, params = make(), parameters()
    fill_gradients(params, 0)
    params = optimizer.update(params)
    for copied in (pickle.loads(pickle.dumps(optimizer)), copy.deepcopy(optimizer)):
        assert repr(copied) == repr(optimizer) and same(copied.state_dict(), optimizer.state_dict())
        twin = [Array(p.numpy()).tracked() for p in params]
        fill_gradients(twin, 1)
        ours = [Array(p.numpy()).tracked() for p in params]
        fill_gradients(ours, 1)
        assert all(np.array_equal(a.numpy(), b.numpy())
                   for a, b in zip(copied.update(twin), copy.deepcopy(optimizer).update(ours)))


def test_two_updates_of_one_optimizer_at_once_are_refused():
    params = parameters()
    fill_gradients(params, 0)
    inner = {}

    class Reentrant(Momentum):
        def step(self, position, value, gradient):
            if position == 0 and "tried" not in inner:
                inner["tried"] = True
                with pytest.raises(RuntimeError, match="an update is already in progress"):
                    self.update(params)
            return super().step(position, value, gradient)

    reentrant = Reentrant(0.1)
    reentrant.update(params)
    assert inner == {"tried": True}
    assert reentrant.state_dict()["state"][0]["step"] == 1  # the outer update counted once
