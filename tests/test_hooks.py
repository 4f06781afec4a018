"""Two engine APIs other work builds on: ``backward(..., targets=...)`` and gradient-ready hooks.

``targets`` returns each target's total for the pass and commits nothing
(``corgi.grad`` is built on it). ``add_ready_hook(node, callback)`` calls
``callback(node, total)`` once per committing pass, as soon as the node's
total is final and before the commit (issue 13's data-parallel training
starts its allreduce there).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

import counters
import numpy as np
import pytest
from concurrency import run_threads
from test_engine import random_dag, reference

from corgi import Array
from corgi.engine import (
    Node,
    add_ready_hook,
    backward,
    configure,
    hooks,
    set_yield_point,
)

pytestmark = pytest.mark.usefixtures("engine_state")

WORKERS = (0, 1, 2, 8)


class Boom(Exception):
    pass


# -- targets -----------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_targets_get_the_pass_totals_and_nothing_is_committed(workers):
    configure(workers=workers, handoff_cost=0)
    for seed in range(10):
        nodes, root, edges = random_dag(seed, ops=40, costly_rate=0.4)
        expected = reference(nodes, root, edges, 3)
        unreached = Node(name="elsewhere")
        totals = backward(root, 3, targets=[*nodes, unreached, nodes[0]])
        assert totals == [expected.get(node) for node in nodes] + [None, expected.get(nodes[0])]
        assert all(node.gradient is None for node in nodes)
        counters.assert_none_left()


@pytest.mark.timeout(60)
def test_targets_are_checked_and_a_failed_pass_raises():
    x = Node(name="x")
    y = Node((x,), lambda d: (2 * d,))
    with pytest.raises(TypeError, match="backward: target 1 must be an engine Node, got int"):
        backward(y, 1, targets=[x, 5])
    broken = Node((x,), lambda d: (_ for _ in ()).throw(Boom("no")))
    with pytest.raises(Boom):
        backward(broken, 1, targets=[x])
    assert x.gradient is None
    counters.assert_none_left()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_targets_on_arrays_match_the_committed_gradients(workers):
    configure(workers=workers, handoff_cost=0)
    rng = np.random.default_rng(1)
    w = Array(rng.standard_normal((3, 4))).tracked()
    b = Array(rng.standard_normal((4,))).tracked()
    x = Array(rng.standard_normal((5, 3)))
    hidden = (x @ w + b).tanh()
    loss = (hidden * hidden).sum(skip_count=2)
    delta = np.ones(loss.dimensions)
    totals = backward(loss._node, delta, targets=[w._node, b._node, hidden._node])
    assert w.gradient() is None and hidden.gradient() is None
    loss.backward()
    assert [t.tobytes() for t in totals] == [a.gradient().numpy().tobytes() for a in (w, b, hidden)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_targets_passes_run_beside_committing_passes(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(4, ops=40, costly_rate=0.5)
    expected = reference(nodes, root, edges, 1)
    results = []

    def work(i):
        for _ in range(20):
            if i % 2:
                results.append(backward(root, 1, targets=nodes))
            else:
                backward(root, 1)

    run_threads(4, work)
    assert all(totals == [expected.get(node) for node in nodes] for totals in results)
    assert [node.gradient for node in nodes] == [None if n not in expected else 40 * expected[n] for n in nodes]


# -- ready hooks -------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_a_hook_gets_the_final_total_once_before_the_commit(workers):
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(8, ops=60, costly_rate=0.5)
    expected = reference(nodes, root, edges, 2)
    calls = []
    lock = threading.Lock()

    def seen(node, total):
        with lock:
            # before the commit: the node's gradient is still what it was
            calls.append((node, total, node.gradient, threading.current_thread().name))

    reached = [node for node in nodes if node in expected]
    handles = [add_ready_hook(node, seen) for node in nodes]
    backward(root, 2)
    assert sorted((n.seq, t) for n, t, _, _ in calls) == sorted((n.seq, expected[n]) for n in reached) + sorted(
        (n.seq, None) for n in _reached_without_delta(nodes, root, expected)
    )
    assert all(before is None for _, _, before, _ in calls)
    for handle in handles:
        handle.remove()
    calls.clear()
    backward(root, 2)
    assert calls == []


def _reached_without_delta(nodes, root, expected):
    """Nodes the pass reaches whose total is None (only "no delta" arrived)."""
    reached, stack = {root}, [root]
    while stack:
        for node in stack.pop().inputs:
            if node not in reached:
                reached.add(node)
                stack.append(node)
    return [node for node in nodes if node in reached and node not in expected]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", WORKERS)
def test_a_node_is_final_before_anything_it_feeds(workers):
    # A chain: each node's hook runs before the hook of the node it was computed from,
    # on any thread, because a node's total is final only once its consumer has run.
    configure(workers=workers, handoff_cost=0)
    chain = [Node(name="n0")]
    for k in range(1, 30):
        chain.append(Node((chain[-1],), lambda d: (d + 1,), name=f"n{k}", cost=1 << 20))
    order = []
    handles = [add_ready_hook(node, lambda node, total: order.append((node.name, total))) for node in chain]
    backward(chain[-1], 0)
    assert order == [(f"n{k}", 29 - k) for k in range(29, -1, -1)]
    for handle in handles:
        handle.remove()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("where", ["root", "middle", "leaf"])
def test_a_raising_hook_fails_the_whole_pass(workers, where):
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(2, ops=30, costly_rate=0.5, none_rate=0.0)
    backward(root, 1)
    before = [node.gradient for node in nodes]
    expected = reference(nodes, root, edges, 1)
    reached = [node for node in nodes if node in expected]
    middles = [node for node in reached if node.inputs and node is not root]
    leaves = [node for node in reached if not node.inputs]
    victim = {"root": root, "middle": middles[len(middles) // 2], "leaf": leaves[0]}[where]
    error = Boom(f"hook on {where}")

    def refuse(node, total):
        raise error

    handle = add_ready_hook(victim, refuse)
    with pytest.raises(Boom) as info:
        backward(root, 1)
    assert info.value is error
    assert [node.gradient for node in nodes] == before
    counters.assert_none_left()
    handle.remove()
    backward(root, 1)
    assert [node.gradient for node in nodes] == [None if g is None else 2 * g for g in before]


@pytest.mark.timeout(60)
def test_hooks_do_not_fire_for_target_passes_and_may_call_corgi():
    configure(workers=2, handoff_cost=0)
    x = Node(name="x")
    y = Node((x, x), lambda d: (d, d), name="y")
    side = Node(name="side")
    calls = []

    def hook(node, total):
        backward(Node((side,), lambda d: (d,)), 1)  # a whole pass from inside a hook
        calls.append((total, x.gradient))  # a read: the pass has not committed yet

    handle = add_ready_hook(x, hook)
    assert backward(y, 1, targets=[x]) == [2] and calls == []
    backward(y, 1)
    assert calls == [(2, None)] and x.gradient == 2 and side.gradient == 1
    handle.remove()


@pytest.mark.timeout(60)
def test_hooks_keep_no_node_alive_and_vanish_with_it():
    before = len(hooks.registered() or {})
    node = Node(name="short-lived")
    handle = add_ready_hook(node, lambda n, t: None)
    ref = weakref.ref(node)
    assert len(hooks.registered()) == before + 1
    del node
    gc.collect()
    assert ref() is None
    assert len(hooks.registered() or {}) == before
    handle.remove()  # harmless once the node is gone


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKERS)
def test_hooks_added_and_removed_from_many_threads_during_passes(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    set_yield_point(lambda where: time.sleep(0))
    leaves = [Node(name=f"leaf{i}") for i in range(8)]
    root = Node(tuple(leaves), lambda d: tuple(range(1, 9)), name="root")
    counts = [0] * 8
    lock = threading.Lock()

    def counter(i):
        def count(node, total):
            with lock:
                counts[i] += total

        return count

    permanent = [add_ready_hook(leaf, counter(i)) for i, leaf in enumerate(leaves)]
    churned = [0]

    def work(i):
        if i == 0:
            for _ in range(100):
                backward(root, 1)
        else:
            for _ in range(200):
                handle = add_ready_hook(leaves[i], lambda node, total: None)
                handle.remove()
                with lock:
                    churned[0] += 1

    run_threads(4, work)
    for handle in permanent:
        handle.remove()
    assert counts == [100 * (i + 1) for i in range(8)]
    assert churned[0] == 600
    assert all(not hooks.registered() or leaf.seq not in hooks.registered() for leaf in leaves)


@pytest.mark.timeout(60)
def test_add_ready_hook_checks_its_arguments():
    with pytest.raises(TypeError, match="add_ready_hook: callback must be callable, got int"):
        add_ready_hook(Node(), 3)
    with pytest.raises(TypeError, match="add_ready_hook: node must be an engine Node, got str"):
        add_ready_hook("x", print)


@pytest.mark.timeout(60)
def test_a_pass_reads_no_registry_when_no_hook_exists(monkeypatch):
    # "One cheap check": with no hook anywhere a pass never looks a node up.
    from corgi.engine import scheduler

    assert hooks.registered() is None
    looked_up = []
    monkeypatch.setattr(scheduler._Pass, "announce", lambda self, node, total: looked_up.append(node))
    nodes, root, _ = random_dag(1, ops=50)
    backward(root, 1)
    assert looked_up == []
    handle = add_ready_hook(nodes[0], lambda n, t: None)
    backward(root, 1)
    assert looked_up  # with one hook registered, the pass does look
    handle.remove()
