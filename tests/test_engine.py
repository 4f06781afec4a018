"""The engine alone: fake nodes whose deltas are integers (or other values with ``+``).

The engine knows no numpy, so these tests build ``Node`` graphs by hand and
compare every gradient with a serial reference computed here, independently
of the engine. Every concurrency test has a timeout: a deadlock is a failure.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import threading
import time
import traceback

import counters
import pytest
from concurrency import run_threads

from corgi.engine import (
    Node,
    Settings,
    backward,
    configure,
    set_yield_point,
    settings,
    trace,
)
from corgi.engine import pool as engine_pool

pytestmark = pytest.mark.usefixtures("engine_state")

DEFAULT_HANDOFF = engine_pool.DEFAULT_HANDOFF_COST
WORKER_COUNTS = (0, 1, 2, 8, 32)


# -- helpers -----------------------------------------------------------------


def scale(*coefficients):
    """A vjp sending ``c * delta`` to each input (``None`` sends no delta)."""

    def vjp(delta):
        return tuple(None if c is None else c * delta for c in coefficients)

    return vjp


class Perm:
    """A permutation of 0..4 whose ``+`` is composition: a sum that depends on order.

    Integer sums hide the order in which a node adds its deltas; sums of
    permutations reveal it, so equal permutation gradients mean equal order.
    """

    __slots__ = ("p",)

    def __init__(self, p):
        self.p = tuple(p)

    def __add__(self, other):
        return Perm(other.p[i] for i in self.p)

    def __eq__(self, other):
        return isinstance(other, Perm) and self.p == other.p

    def __hash__(self):
        return hash(self.p)

    def __repr__(self):
        return f"Perm{self.p}"


def random_dag(seed, leaves=4, ops=40, max_arity=3, none_rate=0.1, perms=False, costly_rate=0.0):
    """Leaves, then ops whose inputs are earlier nodes (repeats make x*x double edges).

    Returns (nodes, root, edges) where ``edges[node]`` lists (input, coefficient)
    per position, for the reference computation.
    """
    rng = random.Random(seed)
    nodes = [Node(name=f"leaf{i}") for i in range(leaves)]
    edges = {}
    for k in range(ops + 1):
        if k < ops:
            arity = rng.randint(1, max_arity)
            inputs = tuple(rng.choice(nodes) for _ in range(arity))
        else:  # the root gathers the last few nodes: fan-in
            inputs = tuple(nodes[-min(len(nodes), 5):])
        if perms:
            coefficients = tuple(
                None if rng.random() < none_rate else Perm(rng.sample(range(5), 5)) for _ in inputs
            )
            vjp = _perm_vjp(coefficients)
        else:
            coefficients = tuple(None if rng.random() < none_rate else rng.randint(-3, 3) for _ in inputs)
            vjp = scale(*coefficients)
        cost = 10 * DEFAULT_HANDOFF if rng.random() < costly_rate else 0
        node = Node(inputs, vjp, name="root" if k == ops else f"op{k}", cost=cost)
        edges[node] = list(zip(inputs, coefficients))
        nodes.append(node)
    return nodes, nodes[-1], edges


def _perm_vjp(coefficients):
    def vjp(delta):
        return tuple(None if c is None else delta + c for c in coefficients)

    return vjp


def reference(nodes, root, edges, delta):
    """Serial gradients: nodes are in creation order, so reversed order is topological.

    Each node sums what it receives ordered by (consumer sequence id, position):
    the engine's canonical order, which only matters for order-sensitive deltas.
    """
    received = {root: [(-1, 0, delta)]}
    gradients = {}
    for node in reversed(nodes):
        reports = received.get(node)
        if not reports:
            continue
        total = None
        for _, _, d in sorted(reports, key=lambda r: (r[0], r[1])):
            if d is not None:
                total = d if total is None else total + d
        if total is None:
            # Reached, but only "no delta" arrived: it sends "no delta" on.
            for position, (target, _) in enumerate(edges.get(node, ())):
                received.setdefault(target, []).append((node.seq, position, None))
            continue
        gradients[node] = total
        for position, (target, c) in enumerate(edges.get(node, ())):
            sent = None if c is None else (total + c if isinstance(c, Perm) else c * total)
            received.setdefault(target, []).append((node.seq, position, sent))
    return gradients


def gradients_of(nodes):
    return [n.gradient for n in nodes]


def assert_no_pending(nodes):
    """No pass of this test kept counters (they live in each pass's table, not on ``nodes``)."""
    counters.assert_none_left()


# -- shapes of graphs ----------------------------------------------------------


@pytest.mark.timeout(120)
def test_chain_of_a_million_nodes_needs_no_recursion():
    configure(workers=2)
    leaf = Node(name="leaf")
    node = leaf
    step = scale(1)
    for _ in range(1_000_000):
        node = Node((node,), step, name="step")
    backward(node, 3)  # about 1 s on the 2-core reference machine; the timeout catches a quadratic walk
    assert leaf.gradient == 3 and node.gradient == 3
    assert_no_pending([leaf, node])
    # Freeing the chain must not recurse either.
    del node, step
    gc.collect()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "workers, handoff_cost", [(0, DEFAULT_HANDOFF), (2, DEFAULT_HANDOFF), (2, 0)]
)
def test_wide_fan_in(workers, handoff_cost):
    width = 100_000 if handoff_cost else 10_000  # every hand-off is a pool submit at cost 0
    configure(workers=workers, handoff_cost=handoff_cost)
    leaves = [Node(name="leaf") for _ in range(width)]
    root = Node(tuple(leaves), lambda d: tuple(range(1, width + 1)), name="gather")
    backward(root, 1)
    assert [leaf.gradient for leaf in leaves] == list(range(1, width + 1))
    assert_no_pending(leaves)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers, handoff_cost", [(0, DEFAULT_HANDOFF), (2, 0), (8, 0)])
def test_wide_fan_out_sums_every_consumer(workers, handoff_cost):
    width = 20_000
    configure(workers=workers, handoff_cost=handoff_cost)
    leaf = Node(name="leaf")
    consumers = [Node((leaf,), scale(i), name="use") for i in range(width)]
    root = Node(tuple(consumers), lambda d: (d,) * width, name="gather")
    backward(root, 2)
    assert leaf.gradient == 2 * sum(range(width))
    assert all(c.gradient == 2 for c in consumers)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_diamond_and_double_edges(workers):
    configure(workers=workers, handoff_cost=0)
    x = Node(name="x")
    a = Node((x,), scale(2), name="a")
    b = Node((x,), scale(3), name="b")
    c = Node((a, b), scale(5, 7), name="c")  # c = 5a + 7b
    square = Node((c, c), scale(1, 1), name="c*c-like")  # both edges report to c
    backward(square, 1)
    assert c.gradient == 2
    assert (a.gradient, b.gradient) == (10, 14)
    assert x.gradient == 2 * 10 + 3 * 14
    assert_no_pending([x, a, b, c, square])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_x_times_x_reports_twice(workers):
    configure(workers=workers, handoff_cost=0)
    x = Node(name="x")
    y = Node((x, x), scale(3, 4), name="y")
    with trace() as t:
        backward(y, 1)
    assert x.gradient == 7
    counts = {e.node[0]: e.detail for e in t.events if e.kind == "count"}
    assert counts["x"] == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(6))
def test_pool_of_one_finishes_every_graph(seed):
    configure(workers=1, handoff_cost=0)
    nodes, root, edges = random_dag(seed, ops=200, max_arity=4)
    backward(root, 1)
    expected = reference(nodes, root, edges, 1)
    assert gradients_of(nodes) == [expected.get(n) for n in nodes]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("handoff_cost", [0, DEFAULT_HANDOFF])
def test_every_worker_count_gives_the_serial_result(handoff_cost):
    for seed in range(8):
        results = {}
        for workers in WORKER_COUNTS:
            configure(workers=workers, handoff_cost=handoff_cost)
            nodes, root, edges = random_dag(seed, ops=80, costly_rate=0.3)
            backward(root, 1)
            results[workers] = gradients_of(nodes)
            assert results[workers] == [reference(nodes, root, edges, 1).get(n) for n in nodes]
        assert all(r == results[0] for r in results.values()), f"seed {seed}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("handoff_cost", [0, DEFAULT_HANDOFF])
def test_summation_order_is_canonical_for_every_worker_count(handoff_cost, fast_switching):
    # Permutation deltas: "+" is composition, so a node's gradient records the
    # order in which it added its deltas. It must not depend on thread timing.
    identity = Perm(range(5))
    for seed in range(5):
        outcomes = []
        for workers in WORKER_COUNTS:
            configure(workers=workers, handoff_cost=handoff_cost)
            nodes, root, edges = random_dag(seed, ops=60, perms=True, costly_rate=0.5)
            backward(root, identity)
            got = gradients_of(nodes)
            assert got == [reference(nodes, root, edges, identity).get(n) for n in nodes]
            outcomes.append(got)
        assert all(o == outcomes[0] for o in outcomes)


# -- concurrent passes -------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_concurrent_passes_on_shared_leaves_and_intermediates(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    threads = 32
    x, y = Node(name="x"), Node(name="y")
    shared = Node((x, y, x), scale(2, 3, 5), name="shared")  # reported to by every pass
    other = Node((shared, y), scale(1, 4), name="other")
    roots = [Node((shared, other, x), scale(i, 1, 1), name=f"root{i}") for i in range(threads)]
    run_threads(threads, lambda i: backward(roots[i], 1))
    # Serial, root i gives shared i + 1, x 7(i + 1) + 1, y 3(i + 1) + 4.
    total = sum(i + 1 for i in range(threads))
    assert shared.gradient == total
    assert other.gradient == threads
    assert x.gradient == 7 * total + threads
    assert y.gradient == 3 * total + 4 * threads
    assert_no_pending([x, y, shared, other, *roots])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_concurrent_passes_from_one_root(workers, fast_switching):
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(11, ops=60, costly_rate=0.5)
    expected = reference(nodes, root, edges, 1)
    threads = 32
    run_threads(threads, lambda i: backward(root, 1))
    assert gradients_of(nodes) == [None if n not in expected else threads * expected[n] for n in nodes]
    assert_no_pending(nodes)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_only_reachable_consumers_count(workers):
    configure(workers=workers, handoff_cost=0)
    a = Node(name="a")
    c = Node((a, a), scale(1, 1), name="c")
    unrelated = Node((a, a), scale(100, 100), name="_b")  # never backwarded
    with trace() as t:
        backward(c, 1)
    assert a.gradient == 2 and unrelated.gradient is None
    assert [e.detail for e in t.events if e.kind == "count" and e.node[0] == "a"] == [2]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_none_deltas_still_complete_the_pass(workers):
    configure(workers=workers, handoff_cost=0)
    x, y, z = Node(name="x"), Node(name="y"), Node(name="z")
    dead = Node((z,), scale(9), name="dead")  # receives only "no delta"
    half = Node((x, y), scale(None, 2), name="half")
    root = Node((half, dead, x), scale(1, None, 3), name="root")
    backward(root, 1)
    assert (x.gradient, y.gradient, z.gradient) == (3, 2, None)
    assert (dead.gradient, half.gradient) == (None, 1)
    backward(root, None)  # a pass of no delta at all also finishes
    assert (x.gradient, y.gradient, root.gradient) == (3, 2, 1)
    assert_no_pending([x, y, z, dead, half, root])


@pytest.mark.timeout(60)
def test_each_node_fires_once_per_pass(fast_switching):
    configure(workers=8, handoff_cost=0)
    calls = {}
    lock = threading.Lock()
    nodes, root, _ = random_dag(5, ops=120, max_arity=4)
    for node in nodes:
        if node.vjp is not None:
            node.vjp = _counting(node.vjp, node, calls, lock)
    backward(root, 1)
    assert set(calls.values()) == {1}


def _counting(vjp, node, calls, lock):
    def counted(delta):
        with lock:
            calls[node] = calls.get(node, 0) + 1
        time.sleep(0)
        return vjp(delta)

    return counted


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2, 8])
def test_staged_gradients_stay_with_their_nodes_under_chaos(workers, chaos):
    # Fifty nodes made ready at once, each receiving a different delta, run on
    # the caller and the workers; each must keep exactly the delta it received.
    configure(workers=workers, handoff_cost=0)
    for _ in range(20):
        leaf = Node(name="leaf")
        mids = [Node((leaf,), scale(1), name=f"m{k}") for k in range(50)]
        root = Node(tuple(mids), lambda d: tuple(k * d for k in range(50)), name="root")
        backward(root, 1)
        assert leaf.gradient == sum(range(50))
        assert [m.gradient for m in mids] == list(range(50))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 2, 8])
def test_totals_survive_chaos_at_every_shared_update(workers, chaos):
    # Yield points in every counter-map and container operation, eight
    # concurrent passes: every leaf total stays exact.
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(21, ops=40, costly_rate=0.5)
    for node in nodes:
        if node.vjp is not None:
            node.vjp = chaos.vjp(node.vjp)
    expected = reference(nodes, root, edges, 1)
    threads = 8
    run_threads(threads, lambda i: backward(root, 1))
    leaves = [n for n in nodes if n.is_leaf]
    assert [n.gradient for n in leaves] == [None if n not in expected else threads * expected[n] for n in leaves]
    assert_no_pending(nodes)
    assert chaos.chaos.pauses > 1000


# -- errors ------------------------------------------------------------------


class Boom(Exception):
    pass


class Abort(BaseException):
    """A KeyboardInterrupt-style exception: not an Exception."""


def _raising(error):
    def exploding_vjp(delta):
        time.sleep(0.001)
        raise error

    return exploding_vjp


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
@pytest.mark.parametrize("kind", [Boom, Abort, KeyboardInterrupt])
def test_exception_in_a_vjp_ends_the_pass_cleanly(workers, kind, pool_probe):
    configure(workers=workers, handoff_cost=0)
    nodes, root, _ = random_dag(3, ops=60, costly_rate=0.5)
    backward(root, 1)
    before = gradients_of(nodes)
    victim = next(n for n in reversed(nodes[:-1]) if n.vjp is not None and n.gradient is not None)
    original = victim.vjp
    error = kind("vjp failed")
    victim.vjp = _raising(error)
    threads_before = threading.active_count()
    with pytest.raises(kind) as info:
        backward(root, 1)
    assert info.value is error
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "exploding_vjp" in frames and "backward" in frames
    # A failed pass changes no gradient and leaves no counter behind.
    assert gradients_of(nodes) == before
    assert_no_pending(nodes)
    pool_probe.assert_idle()
    assert threading.active_count() <= threads_before + workers  # no thread per pass
    # The same graph runs again, with the right gradients.
    victim.vjp = original
    backward(root, 1)
    assert gradients_of(nodes) == [None if g is None else 2 * g for g in before]
    pool_probe.assert_all_exit()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2, 8])
def test_a_failed_pass_ends_promptly(workers, pool_probe):
    configure(workers=workers, handoff_cost=0)
    leaf = Node(name="leaf")
    ran = {"chain": 0, "side": 0}

    def slow(kind):
        def vjp(delta):
            ran[kind] += 1
            time.sleep(0.005)
            return (delta,)

        return vjp

    chain = leaf
    for _ in range(200):  # 200 x 5 ms = 1 s if the pass ran to the end
        chain = Node((chain,), slow("chain"), name="slow")
    failing = Node((chain,), _raising(Boom("early")), name="failing")
    side = [Node((leaf,), slow("side"), name="side") for _ in range(20)]
    root = Node((failing, *side), lambda d: (d,) * 21, name="root")
    with pytest.raises(Boom):
        backward(root, 1)
    # Promptly, counted in work rather than seconds: nothing below the failing node ran,
    # and of the 20 side branches only those workers had already taken may have finished
    # (none on the calling thread alone, which runs the failing node first).
    assert ran["chain"] == 0
    assert ran["side"] <= 2 * workers + (2 if workers else 0)
    assert leaf.gradient is None
    pool_probe.assert_idle()


@pytest.mark.timeout(60)
def test_a_vjp_returning_the_wrong_number_of_deltas_is_named():
    configure(workers=0)
    x = Node(name="x")
    y = Node((x, x), lambda d: (d,), name="twice")
    with pytest.raises(ValueError, match=r"backward of twice returned 1 deltas for 2 inputs"):
        backward(y, 1)
    assert (x.gradient, y.gradient) == (None, None)
    assert_no_pending([x, y])


@pytest.mark.timeout(60)
def test_a_vjp_returning_no_sequence_fails_the_pass():
    configure(workers=0)
    x = Node(name="x")
    y = Node((x,), lambda d: None, name="forgetful")
    with pytest.raises(TypeError):
        backward(y, 1)
    assert (x.gradient, y.gradient) == (None, None)
    assert_no_pending([x, y])


@pytest.mark.timeout(60)
def test_an_error_while_counting_leaves_no_counters():
    leaf = Node(name="leaf")

    class Broken:  # not a Node: counting fails on it
        pass

    bad = Node((leaf, Broken()), scale(1, 1), name="bad")
    with pytest.raises(AttributeError):
        backward(bad, 1)
    assert_no_pending([leaf])


# -- configuration -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_configure_validates_and_reports(engine_state):
    assert isinstance(settings(), Settings)
    share = engine_state.share_cores
    assert configure(workers=3) == Settings(3, engine_state.handoff_cost, share) == settings()
    assert configure(handoff_cost=17) == Settings(3, 17, share)
    assert configure() == Settings(3, 17, share)
    assert configure(share_cores=not share) == Settings(3, 17, not share)
    assert configure(share_cores=share) == Settings(3, 17, share)
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="configure: workers must be a whole number >= 0"):
            configure(workers=bad)
    for bad in (-1, 0.5, "7"):
        with pytest.raises(ValueError, match="configure: handoff_cost must be a whole number >= 0"):
            configure(handoff_cost=bad)
    assert settings() == Settings(3, 17, share)  # a rejected call changes nothing


@pytest.mark.timeout(60)
def test_configure_rejects_a_boolean_handoff_cost():
    with pytest.raises(ValueError, match="handoff_cost"):
        configure(handoff_cost=True)


@pytest.mark.timeout(60)
def test_reconfiguring_while_a_pass_runs_does_not_break_it():
    configure(workers=2, handoff_cost=0)
    leaf = Node(name="leaf")

    def reconfigure(delta):
        configure(workers=3)  # as another thread might, mid-pass
        return (delta, delta, delta)

    branches = tuple(Node((leaf,), scale(1), name="branch") for _ in range(3))
    root = Node(branches, reconfigure, name="root")
    backward(root, 1)
    assert leaf.gradient == 3


def _engine_workers_in_subprocess(value, code="import corgi.engine as e; print(e.settings().workers)"):
    env = dict(os.environ)
    env.pop("CORGI_WORKERS", None)
    if value is not None:
        env["CORGI_WORKERS"] = value
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "value, expected",
    [("0", 0), ("3", 3), (" 12 ", 12), (None, min(8, os.cpu_count() or 1)), ("", min(8, os.cpu_count() or 1))],
)
def test_corgi_workers_sets_the_worker_count(value, expected):
    done = _engine_workers_in_subprocess(value)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == expected


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", ["-1", "two", "1.5", "2x"])
def test_a_bad_corgi_workers_falls_back_with_one_warning(value):
    # ``import corgi`` must not fail because of the environment (issue 12, item 6).
    done = _engine_workers_in_subprocess(value, "import corgi, corgi.engine as e; print(e.settings().workers)")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == min(8, os.cpu_count() or 1)
    warnings = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "RuntimeWarning: CORGI_WORKERS must be a whole number >= 0" in warnings[0]
    assert repr(value) in warnings[0] and "using the default" in warnings[0]


# -- tracing -------------------------------------------------------------------


DIAMOND_MERMAID = """\
sequenceDiagram
    participant P1 as backward() 1
    participant N1 as x 1
    participant N2 as a 2
    participant N3 as b 3
    participant N4 as out 4
    P1->>N4: delta (counted:<br/>a 2 waits for 1<br/>b 3 waits for 1<br/>x 1 waits for 2)
    activate N4
    Note right of N4: fired on caller 1
    N4->>N2: delta
    N4-->>N3: no delta
    deactivate N4
    activate N2
    Note right of N2: fired on caller 1
    N2->>N1: delta
    deactivate N2
    activate N3
    Note right of N3: fired on caller 1
    N3-->>N1: no delta
    activate N1
    Note right of N1: fired on caller 1
    deactivate N1
    deactivate N3
    N4-->>P1: done"""


@pytest.mark.timeout(60)
def test_trace_of_a_diamond_with_a_missing_delta():
    configure(workers=0)
    x = Node(name="x")
    a = Node((x,), scale(2), name="a")
    b = Node((x,), scale(3), name="b")
    out = Node((a, b), scale(1, None), name="out")
    with trace() as t:
        backward(out, 1)
    assert x.gradient == 2
    kinds = [e.kind for e in t.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and t.events[-1].detail == "done"
    assert kinds.count("fire") == 4 and kinds.count("complete") == 4 and kinds.count("send") == 4
    assert {e.thread for e in t.events} == {threading.current_thread().name}
    assert len({e.pass_id for e in t.events}) == 1
    assert t.mermaid() == DIAMOND_MERMAID
    assert "Note right" not in t.mermaid(threads=False)


@pytest.mark.timeout(60)
def test_trace_names_workers_and_failures():
    configure(workers=2, handoff_cost=0)
    x = Node(name="x")

    def slow(delta):
        time.sleep(0.02)
        return (delta,)

    branches = tuple(Node((x,), slow, name=f"b{i}") for i in range(4))
    root = Node(branches, lambda d: (d,) * 4, name="root")
    with trace() as t:
        backward(root, 1)
    assert any(e.thread.startswith("corgi-worker") for e in t.events if e.kind == "fire")
    assert "fired on worker 1" in t.mermaid()
    root.vjp = _raising(Boom())
    with trace() as failed, pytest.raises(Boom):
        backward(root, 1)
    kinds = [e.kind for e in failed.events]
    assert "error" in kinds and failed.events[-1].detail == "failed"
    diagram = failed.mermaid()
    assert "Boom raised" in diagram and "pass cancelled" in diagram and "--xP1: failed" in diagram


@pytest.mark.timeout(60)
def test_trace_outside_a_block_records_nothing():
    x = Node(name="x")
    with trace() as t:
        pass
    backward(Node((x,), scale(1)), 1)
    assert t.events == []


@pytest.mark.timeout(30)
def test_a_vjp_returning_no_sequence_is_a_clear_error():
    configure(workers=0)
    x = Node(name="x")
    broken = Node((x,), lambda d: None, name="broken")
    with pytest.raises(TypeError, match="backward of broken returned NoneType"):
        backward(broken, 1)
    assert x.gradient is None and broken.gradient is None
    counters.assert_none_left()


# -- the engine's own yield point ----------------------------------------------


@pytest.fixture
def yield_point():
    """Install a hook at the engine's read-then-write sites; count the calls; remove it after."""
    calls = {}
    counting = threading.Lock()  # the hook runs on many threads at once: count exactly

    def hook(where):
        with counting:
            calls[where] = calls.get(where, 0) + 1
        time.sleep(0)  # give the GIL away right between the read and the write

    previous = set_yield_point(hook)
    yield calls
    set_yield_point(previous)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_storms_with_a_yield_between_every_read_and_write(workers, fast_switching, yield_point):
    configure(workers=workers, handoff_cost=0)
    threads = 16
    x, y = Node(name="x"), Node(name="y")
    shared = Node((x, y, x), scale(2, 3, 5), name="shared")
    other = Node((shared, y), scale(1, 4), name="other")
    roots = [Node((shared, other, x), scale(i, 1, 1), name=f"root{i}") for i in range(threads)]
    run_threads(threads, lambda i: backward(roots[i], 1))
    total = sum(i + 1 for i in range(threads))
    assert shared.gradient == total
    assert x.gradient == 7 * total + threads
    assert y.gradient == 3 * total + 4 * threads
    assert_no_pending([x, y, shared, other, *roots])
    # every kind of site was reached, many times
    assert set(yield_point) == {"count", "report", "stage", "commit"}
    assert yield_point["report"] >= threads * 6


def _publish_without_checking(objects, attribute, expected, values):
    """A publish step that skips its check: the control case for the commit's yield point."""
    for target, value in zip(objects, values):
        setattr(target, attribute, value)
    return True


@pytest.mark.timeout(60)
def test_the_yield_point_exposes_a_commit_that_does_not_check(fast_switching, yield_point, monkeypatch):
    # The control: a commit that stores its sums without checking that the gradients
    # are still the ones it read loses updates from concurrent passes, in the window
    # the "commit" yield point opens. With the real publish step, the storm test
    # above stays exact.
    from corgi.engine import gradients

    monkeypatch.setattr(gradients, "publish", _publish_without_checking)
    configure(workers=0)
    threads = 16
    leaf = Node(name="leaf")
    roots = [Node((leaf,), scale(1), name=f"root{i}") for i in range(threads)]
    passes = 20
    run_threads(threads, lambda i: [backward(roots[i], 1) for _ in range(passes)])
    assert leaf.gradient < threads * passes
