"""Watching parameters' gradients become final during a pass: ``corgi.array.watch_gradients``.

Data-parallel training sends each gradient to the other processes as soon as
the engine has it final, while the pass computes the rest. It watches the
parameters through ``watch_gradients`` (the array package's face of the
engine's ready hooks, registered for many nodes in one step by
``engine.add_ready_hooks``). These tests check what it promises: each
watched parameter heard once per committing pass, with exactly what the pass
adds, read-only, before the commit, from whichever thread finished it; a
raising callback fails the whole pass; nothing heard after ``remove()``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import corgi
from corgi import Array, arr
from corgi.array import GradientWatch, watch_gradients
from corgi.engine import Node, add_ready_hook, add_ready_hooks, backward, configure, hooks, remove_ready_hooks

pytestmark = pytest.mark.usefixtures("engine_state")

WORKERS = (0, 1, 2, 8)


def _network(seed: int) -> tuple[list[Array], Array]:
    """Four parameters in two branches and a shared bias, and a scalar loss over them."""
    rng = np.random.default_rng(seed)
    x = Array(rng.standard_normal((16, 12)))
    w1, w2 = Array(rng.standard_normal((12, 8))).tracked(), Array(rng.standard_normal((12, 8))).tracked()
    b, v = Array(rng.standard_normal(8)).tracked(), Array(rng.standard_normal((8, 3))).tracked()
    left = ((x @ w1) + b).tanh() @ v
    right = ((x @ w2) + b).sigmoid() @ v
    return [w1, w2, b, v], (left * right).sum(axis=None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_each_parameter_is_heard_once_with_what_the_pass_adds_before_the_commit(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    for seed in range(5):
        parameters, loss = _network(seed)
        heard: dict[int, list[np.ndarray]] = {}
        threads = set()
        lock = threading.Lock()

        def callback(position, total, parameters=parameters, heard=heard, threads=threads, lock=lock):
            with lock:
                heard.setdefault(position, []).append(total)
                threads.add(threading.current_thread().name)
                # before the commit: the parameter has no gradient yet
                assert parameters[position].gradient() is None

        with watch_gradients(parameters, callback) as watch:
            assert isinstance(watch, GradientWatch)
            loss.backward()
        assert sorted(heard) == [0, 1, 2, 3]
        for position, totals in heard.items():
            assert len(totals) == 1
            total = totals[0]
            assert not total.flags.writeable
            # the first pass adds to no gradient: what it adds is the gradient itself, bit for bit
            assert np.array_equal(total, parameters[position].gradient().numpy())
        if workers == 0:
            assert threads == {threading.current_thread().name}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", (0, 2))
def test_the_total_is_what_the_pass_adds_to_a_gradient_already_there(workers):
    configure(workers=workers)
    w = arr(1.0, 2.0).tracked()
    (w * 10.0).sum().backward()
    heard = []
    with watch_gradients([w], lambda position, total: heard.append(total.tolist())):
        (w * w).sum().backward()
    assert heard == [[2.0, 4.0]]
    assert w.gradient().numpy().tolist() == [12.0, 14.0]


@pytest.mark.timeout(60)
def test_a_parameter_listed_twice_is_heard_at_both_positions_and_an_unreached_one_never():
    w, unused = arr(3.0).tracked(), arr(0.0).tracked()
    heard = []
    with watch_gradients([w, unused, w], lambda position, total: heard.append((position, total.tolist()))):
        (w * w).backward()
    assert sorted(heard) == [(0, [6.0]), (2, [6.0])]


@pytest.mark.timeout(60)
def test_a_parameter_reached_with_no_delta_is_heard_with_none():
    w = arr(1.0, 2.0).tracked()
    heard = []
    # the pass reaches w, but the only path to it sends nothing (a gradient that stops at where's condition)
    blocked = Array.op([w], lambda xs: xs[0] * 1.0, lambda children, tracked, delta: [None], name="block")
    with watch_gradients([w], lambda position, total: heard.append((position, total))):
        blocked.sum().backward()
    assert heard == [(0, None)]
    assert w.gradient() is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", (0, 1, 2))
def test_a_raising_callback_fails_the_pass_and_nothing_is_committed(workers):
    configure(workers=workers, handoff_cost=0)
    parameters, loss = _network(1)

    def refuse(position, total):
        if position == 2:
            raise FloatingPointError("refused on purpose")

    with watch_gradients(parameters, refuse), pytest.raises(FloatingPointError, match="refused on purpose"):
        loss.backward()
    assert all(parameter.gradient() is None for parameter in parameters)
    loss.backward()  # removed: the same graph runs again
    assert all(parameter.gradient() is not None for parameter in parameters)


@pytest.mark.timeout(60)
def test_no_call_for_corgi_grad_nor_after_remove():
    w = arr(2.0).tracked()
    heard = []
    watch = watch_gradients([w], lambda position, total: heard.append(position))
    assert corgi.grad(w * w, w).numpy().tolist() == [4.0]
    assert heard == []
    (w * w).backward()
    assert heard == [0]
    watch.remove()
    watch.remove()
    assert repr(watch) == "GradientWatch(removed)"
    (w * w).backward()
    assert heard == [0]
    assert w._node.seq not in (hooks.registered() or {})


@pytest.mark.timeout(60)
def test_watch_gradients_checks_its_arguments():
    w = arr(1.0).tracked()
    with pytest.raises(TypeError, match="watch_gradients: callback must be callable, got int"):
        watch_gradients([w], 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="watch_gradients: parameter 1 must be an Array, got ndarray"):
        watch_gradients([w, np.ones(1)], print)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="watch_gradients: parameter 1 is not tracked"):
        watch_gradients([w, arr(1.0)], print)
    assert w._node.seq not in (hooks.registered() or {})  # a refused watch registers nothing
    watch = watch_gradients([w, w], print)
    assert repr(watch) == "GradientWatch(1 parameters)"  # one node, two positions
    watch.remove()


# -- the engine side: many hooks in one step ------------------------------------------------


@pytest.mark.timeout(60)
def test_add_ready_hooks_registers_and_removes_many_in_one_step_beside_single_hooks():
    a, b = Node(name="a"), Node(name="b")
    heard = []
    single = add_ready_hook(a, lambda node, total: heard.append(("single", node.name, total)))
    many = add_ready_hooks([a, b], lambda node, total: heard.append(("many", node.name, total)))
    assert len(many) == 2 and [hook.seq for hook in many] == [a.seq, b.seq]
    backward(Node((a, b), lambda d: (2 * d, 3 * d)), 1)
    # hooks on one node run in the order they were added
    assert sorted(heard) == [("many", "a", 2), ("many", "b", 3), ("single", "a", 2)]
    assert [entry for entry in heard if entry[1] == "a"] == [("single", "a", 2), ("many", "a", 2)]
    remove_ready_hooks(many)
    remove_ready_hooks(many)
    left = hooks.registered() or {}
    assert left.get(a.seq) == (single,) and b.seq not in left
    single.remove()
    assert a.seq not in (hooks.registered() or {})


@pytest.mark.timeout(60)
def test_add_ready_hooks_checks_every_node_before_registering_any():
    first = Node()
    with pytest.raises(TypeError, match="add_ready_hooks: node 1 must be an engine Node, got str"):
        add_ready_hooks([first, "b"], print)
    with pytest.raises(TypeError, match="add_ready_hooks: callback must be callable"):
        add_ready_hooks([first], None)  # type: ignore[arg-type]
    assert first.seq not in (hooks.registered() or {})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", (0, 2))
def test_many_hooks_added_and_removed_from_threads_during_passes(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    parameters, loss = _network(2)
    stop = threading.Event()
    failures = []

    def churn():
        try:
            while not stop.is_set():
                remove_ready_hooks(add_ready_hooks([parameter._node for parameter in parameters], lambda n, t: None))
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):
            heard = []
            with watch_gradients(parameters, lambda position, total, heard=heard: heard.append(position)):
                loss.backward()
            assert sorted(heard) == [0, 1, 2, 3]  # the churn never loses nor doubles this watch's hooks
            for parameter in parameters:
                parameter.clear_gradient()
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert failures == []
    assert not {parameter._node.seq for parameter in parameters} & set(hooks.registered() or {})
