"""The property: after any sequence of passes, each possibly faulted, every gradient equals
exactly the sum over the passes whose backward() returned normally (issue 11).

Hypothesis draws a random graph, a number of passes, one pass to fault, a
kind of fault and the moment it strikes:

- ``vjp``: a node's backward function raises;
- ``signal``: a real signal handler raises (``_thread.interrupt_main`` trips
  SIGUSR1 at the chosen occurrence of one of the engine's yield points, on
  whichever thread reaches it; the main thread handles it at its next check);
- ``commit``: an error while committing (raised where the sums are ready and
  about to be published);
- ``hook``: a gradient-ready hook raises;
- ``none``: no fault.

Engine nodes with integer deltas make every sum exact; the Array version uses
real operations and compares bytes with clean passes summed in the same order.
"""

from __future__ import annotations

import _thread
import random
import signal
import threading

import counters
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_engine import random_dag, reference
from test_reliability import leaves_of, random_program, run_program

from corgi.engine import add_ready_hook, backward, configure, set_yield_point

pytestmark = [
    pytest.mark.usefixtures("engine_state"),
    pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals"),
]

KINDS = ["vjp", "signal", "commit", "hook", "none"]
SITES = ["count", "report", "stage", "commit"]


class Boom(Exception):
    pass


class Interrupted(BaseException):
    pass


@pytest.fixture(autouse=True)
def sigusr1():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread only")

    def handler(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


class Fault:
    """Arms one fault for one pass, at the ``moment``-th occurrence of its site."""

    def __init__(self, kind, site, moment):
        # a pass commits once and calls a node's hook once: only a signal or a vjp has later moments
        self.kind, self.site = kind, site
        self.moment = moment if kind in ("signal", "vjp") else 1
        self.armed = False
        self.seen = 0
        self.lock = threading.Lock()

    def due(self):
        with self.lock:
            if not self.armed:
                return False
            self.seen += 1
            if self.seen < self.moment:
                return False
            self.armed = False
            return True

    def yield_point(self, where):
        if self.kind == "signal" and where == self.site and self.due():
            _thread.interrupt_main(signal.SIGUSR1)
        elif self.kind == "commit" and where == "commit" and self.due():
            raise Boom("while committing")

    def wrap_vjp(self, vjp):
        def faulty(delta):
            if self.kind == "vjp" and self.due():
                raise Boom("in a vjp")
            return vjp(delta)

        return faulty

    def hook(self, node, total):
        if self.kind == "hook" and self.due():
            raise Boom("in a ready hook")


@st.composite
def scenarios(draw):
    passes = draw(st.integers(1, 5))
    return {
        "graph": draw(st.integers(0, 10**6)),
        "ops": draw(st.integers(1, 30)),
        "passes": passes,
        "faulted": draw(st.integers(0, passes - 1)),
        "kind": draw(st.sampled_from(KINDS)),
        "site": draw(st.sampled_from(SITES)),
        "moment": draw(st.integers(1, 12)),
        "workers": draw(st.sampled_from([0, 1, 2, 8])),
        "handoff": draw(st.sampled_from([0, 1 << 16])),
    }


def _run_passes(passes, faulted, fault, run):
    """Run ``passes`` passes (fault armed in pass ``faulted``); returns which returned normally."""
    returned = []
    for index in range(passes):
        fault.armed = index == faulted
        fault.seen = 0
        ok = False
        try:
            try:
                run(index)
                ok = True
            finally:
                fault.armed = False
            len(returned)  # a pending signal is handled here at the latest
        except (Boom, Interrupted):
            pass
        returned.append(ok)
    try:
        len(returned)  # a signal a worker tripped as its failed pass ended lands here, not later
    except Interrupted:
        pass
    return returned


@pytest.mark.timeout(600)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_gradients_equal_the_sum_over_passes_that_returned(scenario):
    configure(workers=scenario["workers"], handoff_cost=scenario["handoff"])
    nodes, root, edges = random_dag(scenario["graph"], leaves=4, ops=scenario["ops"], costly_rate=0.4)
    single = reference(nodes, root, edges, 1)
    rng = random.Random(scenario["graph"])
    fault = Fault(scenario["kind"], scenario["site"], scenario["moment"])
    for node in nodes:
        if node.vjp is not None:
            node.vjp = fault.wrap_vjp(node.vjp)
    handle = add_ready_hook(rng.choice([node for node in nodes if node in single]), fault.hook)
    set_yield_point(fault.yield_point)
    try:
        returned = _run_passes(scenario["passes"], scenario["faulted"], fault, lambda i: backward(root, i + 1))
    finally:
        set_yield_point(None)
        handle.remove()
    event(f"{scenario['kind']}: {'a pass failed' if not all(returned) else 'every pass returned'}")
    weight = sum(i + 1 for i, ok in enumerate(returned) if ok)  # the graph is linear in its delta
    expected = [None if node not in single or weight == 0 else weight * single[node] for node in nodes]
    assert [node.gradient for node in nodes] == expected, (returned, scenario)
    counters.assert_none_left()
    if scenario["kind"] == "none":
        assert all(returned)


@pytest.mark.timeout(600)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_array_gradients_equal_the_clean_passes_summed_in_order(scenario):
    configure(workers=scenario["workers"], handoff_cost=scenario["handoff"])
    program = random_program(scenario["graph"], max_ops=8 + scenario["ops"] // 3)
    # One clean pass on an identical graph: what each returned pass adds, delta by delta.
    clean_leaves = leaves_of(program)
    clean_values, clean_root = run_program(program, clean_leaves)
    clean_root.backward()
    clean = [None if v.gradient() is None else v.gradient().numpy() for v in clean_values]

    leaves = leaves_of(program)
    values, root = run_program(program, leaves)
    rng = random.Random(scenario["graph"])
    fault = Fault(scenario["kind"], scenario["site"], scenario["moment"])
    tracked = [v for v in values if v.is_tracked]
    for node in (v._node for v in tracked):
        if node.inputs:
            _wrap_deltas(node, fault)
    handle = add_ready_hook(rng.choice(tracked)._node, fault.hook)
    set_yield_point(fault.yield_point)
    try:
        returned = _run_passes(scenario["passes"], scenario["faulted"], fault, lambda i: root.backward())
    finally:
        set_yield_point(None)
        handle.remove()
    for value, one in zip(values, clean):
        got = value.gradient()
        if one is None or not any(returned):
            assert got is None
            continue
        total = None
        for ok in returned:
            if ok:
                total = one if total is None else total + one
        assert got.numpy().tobytes() == total.tobytes()
    counters.assert_none_left()


def _wrap_deltas(node, fault):
    """Make ``node``'s backward go through the fault (any Node subclass: swap its class)."""
    original = type(node)

    def deltas(self, delta):
        if fault.kind == "vjp" and fault.due():
            raise Boom("in a vjp")
        return original.deltas(self, delta)

    node.__class__ = type("Faulted" + original.__name__, (original,), {"__slots__": (), "deltas": deltas})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
@pytest.mark.parametrize("kind", ["vjp", "signal", "commit", "hook"])
def test_every_kind_of_fault_fails_its_pass_and_only_it(kind, workers):
    # The property test is only as good as its faults: each kind, armed for the
    # second of three passes at its first moment, must make exactly that pass raise.
    configure(workers=workers, handoff_cost=0)
    nodes, root, edges = random_dag(7, leaves=4, ops=25, costly_rate=0.5, none_rate=0.0)
    single = reference(nodes, root, edges, 1)
    fault = Fault(kind, "report" if kind == "signal" else "commit", 1)
    for node in nodes:
        if node.vjp is not None:
            node.vjp = fault.wrap_vjp(node.vjp)
    handle = add_ready_hook(root, fault.hook)
    set_yield_point(fault.yield_point)
    try:
        returned = _run_passes(3, 1, fault, lambda i: backward(root, i + 1))
    finally:
        set_yield_point(None)
        handle.remove()
    assert returned == [True, False, True]
    assert [node.gradient for node in nodes] == [None if n not in single else 4 * single[n] for n in nodes]


def test_the_fault_helper_counts_moments():
    # The harness itself: a fault fires once, at the chosen occurrence, only while armed.
    assert Fault("hook", "count", 3).moment == 1 == Fault("commit", "count", 5).moment
    fault = Fault("vjp", "count", 3)
    assert [fault.due() for _ in range(5)] == [False] * 5
    fault.armed = True
    assert [fault.due() for _ in range(5)] == [False, False, True, False, False]
