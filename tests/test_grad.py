"""``corgi.grad`` and the engine pass it runs: totals for chosen nodes, nothing committed.

The engine part (``corgi.engine.backward(root, delta, targets)``) is tested here with fake
nodes and integer deltas, so that these tests hold for any scheduler that keeps the
signature; the array part checks ``corgi.grad`` against ``backward()``, finite differences
and many threads at once.
"""

from __future__ import annotations

import sys
import threading

import counters
import numpy as np
import pytest
from concurrency import run_threads

from corgi import Array, arr, concatenate, grad, no_grad, where
from corgi.engine import Node, backward, configure

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("engine_state")]

WORKERS = (0, 1, 2, 8)


def _diamond():
    """x feeds a and b (y = 3x + 4x through two paths, and 5x directly); z is a leaf the root never reaches."""
    x, z = Node(name="x"), Node(name="z")
    a = Node((x,), lambda d: (3 * d,), name="a", cost=10**6)
    b = Node((x,), lambda d: (4 * d,), name="b", cost=10**6)
    root = Node((a, b, x), lambda d: (d, d, 5 * d), name="root")
    return x, z, a, b, root


# ---------------------------------------------------------------- the engine's targets


@pytest.mark.parametrize("workers", WORKERS)
def test_targets_get_the_pass_totals_and_nothing_is_committed(workers):
    configure(workers=workers)
    x, z, a, b, root = _diamond()
    assert backward(root, 2, targets=[x, a, b, root, z]) == [24, 2, 2, 2, None]
    assert [n.gradient for n in (x, z, a, b, root)] == [None] * 5
    # without targets, the same pass commits and returns None, as before
    assert backward(root, 2) is None
    assert (x.gradient, a.gradient, root.gradient) == (24, 2, 2)
    assert backward(root, 1, targets=[x]) == [12]
    assert x.gradient == 24


@pytest.mark.parametrize("workers", WORKERS)
def test_targets_leave_no_counters_behind(workers):
    configure(workers=workers)
    x, _z, _a, _b, root = _diamond()
    backward(root, 1, targets=[x])
    counters.assert_none_left()


def test_a_target_that_gets_only_none_is_none():
    x, y = Node(name="x"), Node(name="y")
    root = Node((x, y), lambda d: (d, None), name="root")
    assert backward(root, 7, targets=[y, x]) == [None, 7]


@pytest.mark.parametrize("workers", WORKERS)
def test_a_failed_targeted_pass_raises_and_commits_nothing(workers):
    configure(workers=workers)
    x = Node(name="x")

    def boom(delta):
        raise ZeroDivisionError("inside a vjp")

    bad = Node((x,), boom, name="bad")
    root = Node((bad, x), lambda d: (d, d), name="root")
    with pytest.raises(ZeroDivisionError, match="inside a vjp"):
        backward(root, 1, targets=[x])
    assert x.gradient is None
    counters.assert_none_left()


# ---------------------------------------------------------------- corgi.grad


def test_grad_matches_backward_without_touching_gradients():
    x = Array(np.linspace(-1.0, 1.0, 6).reshape(2, 3)).tracked()
    w = arr(0.5, -2.0, 1.5).tracked()
    out = ((x * w).tanh().sum(axis=1) * arr(1.0, 3.0)).sum(axis=None)
    gx, gw = grad(out, [x, w])
    assert x.gradient() is None and w.gradient() is None and out.gradient() is None
    out.backward()
    assert gx == x.gradient() and gw == w.gradient()


def test_grad_of_an_intermediate_and_with_a_delta():
    x = arr(1.0, 2.0).tracked()
    h = x * x
    y = (h * 3.0).sum(axis=None)
    gh, gx = grad(y, [h, x], delta=arr(2.0))
    assert gh == arr(6.0, 6.0) and gx == arr(12.0, 24.0)
    assert grad(y, y) == arr(1.0)


def test_grad_of_an_input_the_output_does_not_depend_on_is_none():
    x, unused = arr(1.0).tracked(), arr(2.0).tracked()
    constant = arr(5.0)
    y = x * constant
    assert grad(y, [x, unused]) == [arr(5.0), None]
    # a new consumer of x made afterwards is not part of y's graph
    _ = x * 100.0
    assert grad(y, x) == arr(5.0)


def test_grad_through_the_new_operations_matches_finite_differences():
    rng = np.random.default_rng(4)
    x = Array(rng.uniform(-1.0, 1.0, (3, 4))).tracked()
    w = Array(rng.uniform(-1.0, 1.0, (4,))).tracked()

    def f(x, w):
        z = concatenate([x[:, ::2] * w[:2], x[1:, 1:3].T.reshape(2, 2)], axis=0)
        return where(z > 0.0, z, 0.1 * z).logsumexp(axis=1).mean()

    gx, gw = grad(f(x, w), [x, w])
    eps = 1e-6
    for array, g in ((x, gx), (w, gw)):
        numeric = np.zeros(array.dimensions)
        for i in range(array.size):
            for sign in (1, -1):
                moved = array.numpy().copy().reshape(-1)
                moved[i] += sign * eps
                args = {"x": x, "w": w}
                args["x" if array is x else "w"] = Array(moved.reshape(array.dimensions))
                numeric.reshape(-1)[i] += sign * f(args["x"], args["w"])[0] / (2 * eps)
        assert np.allclose(g.numpy(), numeric, rtol=1e-6, atol=1e-9)


def test_grad_keeps_each_inputs_dtype():
    x32 = Array([1.0, 2.0], dtype="float32").tracked()
    x64 = arr(3.0, 4.0).tracked()
    g32, g64 = grad((x32 * x64).sum(axis=None), [x32, x64])
    assert g32.dtype == np.float32 and g32 == Array([3.0, 4.0], dtype="float32")
    assert g64.dtype == np.float64 and g64 == arr(1.0, 2.0)


def test_grad_errors_name_the_problem():
    x = arr(1.0).tracked()
    y = x * 2.0
    with pytest.raises(ValueError, match="grad: input 1 was never tracked"):
        grad(y, [x, arr(1.0)])
    with pytest.raises(ValueError, match="grad: the output is not tracked"):
        grad(arr(1.0) * 2.0, x)
    with pytest.raises(TypeError, match="grad: input 0 must be an Array, got float"):
        grad(y, [1.0])
    with pytest.raises(TypeError, match="grad: output must be an Array"):
        grad(np.ones(1), x)
    with pytest.raises(TypeError, match="grad: inputs must be an Array or a sequence"):
        grad(y, "x")
    with pytest.raises(ValueError, match=r"grad: a delta of dimensions \(3,\) can't be summed down to \(2,\)"):
        grad(x * arr(1.0, 2.0), x, delta=np.ones(3))


def test_grad_inside_no_grad_still_differentiates_the_recorded_graph():
    x = arr(3.0).tracked()
    y = x * x
    with no_grad():
        assert grad(y, x) == arr(6.0)


@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_many_threads_asking_for_gradients_of_shared_graphs(workers, fast_switching):
    configure(workers=workers)
    rng = np.random.default_rng(9)
    w = Array(rng.uniform(-1, 1, (4, 4))).tracked()
    shared = (w @ w).tanh()  # an intermediate every thread's graph goes through
    inputs = [Array(rng.uniform(-1, 1, (2, 4))) for _ in range(8)]
    outputs = [(x @ shared).logsumexp(axis=1).sum(axis=None) for x in inputs]
    expected = []
    for out in outputs:
        w.clear_gradient()
        out.backward()
        expected.append(w.gradient().numpy().copy())
    for array in [w, shared, *outputs]:
        array.clear_gradient()
    results: dict[int, list] = {}
    errors = []

    def body(i):
        try:
            results[i] = [grad(outputs[(i + k) % 8], w).numpy() for k in range(8)]
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    run_threads(8, body)
    assert not errors
    for i, got in results.items():
        for k, g in enumerate(got):
            assert np.array_equal(g, expected[(i + k) % 8])
    assert w.gradient() is None and shared.gradient() is None


def test_grad_while_another_thread_trains_loses_no_gradient(fast_switching):
    # backward() commits into w while grad() asks about the same graph: grad changes nothing
    w = arr(1.0, 2.0).tracked()
    y = (w * w).sum(axis=None)
    stop = threading.Event()
    seen = []

    def ask():
        while not stop.is_set():
            seen.append(grad(y, w))

    thread = threading.Thread(target=ask)
    thread.start()
    try:
        for _ in range(200):
            y.backward()
    finally:
        stop.set()
        thread.join(10)
    assert w.gradient() == arr(400.0, 800.0)
    assert seen and all(g == arr(2.0, 4.0) for g in seen)
    assert sys.getswitchinterval() < 1e-3
