"""Code that runs in the middle of the engine may call corgi (issue 11, item 3).

Garbage-collector finalizers (``__del__``, ``weakref.finalize``), signal
handlers and the engine's own yield point run at arbitrary moments inside a
pass, on the thread that runs it. Before, they could run while the engine
held a node lock; if they touched corgi (even an unrelated array whose node
shared the lock slot) the thread waited on itself forever. Now the engine
holds no lock at any point where foreign code can run, except a pass's own
lock, which nothing outside that pass ever takes.

Each test runs real passes while such code takes gradients, clears them,
reads them and runs whole passes of its own (on unrelated graphs and on the
very graph being run), then accounts for every delta exactly: a hang trips
the timeout, a lost or doubled update breaks the sums.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
import weakref

import counters
import numpy as np
import pytest
from concurrency import run_threads

from corgi import Array
from corgi.engine import Node, backward, configure, set_yield_point

pytestmark = pytest.mark.usefixtures("engine_state")


def _graph():
    """root -> 4 middles -> 3 leaves; per pass of delta 1, leaf i gets 4 * (i + 1)."""
    leaves = [Node(name=f"leaf{i}") for i in range(3)]
    middles = [Node(tuple(leaves), lambda d: (d, 2 * d, 3 * d), name=f"mid{k}", cost=1 << 20) for k in range(4)]
    root = Node(tuple(middles), lambda d: (d,) * 4, name="root")
    return leaves, root


class Ledger:
    """What the intruding code did: gradients it took, passes it ran."""

    def __init__(self, leaves, side_root, side_leaf, spare):
        self.leaves, self.side_root, self.side_leaf, self.spare = leaves, side_root, side_leaf, spare
        self.taken = [0, 0, 0]
        self.side_passes = 0
        self.calls = 0
        self.inside = 0  # calls made while an engine function was on the stack
        self.lock = threading.Lock()  # only ever taken outside the engine

    def intrude(self, nested_root=None):
        """What a finalizer or handler does: take, read, clear, run passes."""
        self.calls += 1
        frame = sys._getframe(1)
        while frame is not None:
            if "/corgi/engine/" in frame.f_code.co_filename:
                self.inside += 1
                break
            frame = frame.f_back
        which = self.calls % 3
        value = self.leaves[which].take_gradient()
        _ = self.leaves[(which + 1) % 3].gradient  # a read
        self.spare.clear_gradient()
        backward(self.side_root, 1)  # a whole pass on an unrelated graph
        if nested_root is not None:
            backward(nested_root, 1)  # and one through the very graph being run
        with self.lock:
            self.taken[which] += value or 0
            self.side_passes += 1

    def check(self, passes):
        left = [leaf.gradient or 0 for leaf in self.leaves]
        assert [t + g for t, g in zip(self.taken, left)] == [4 * passes * k for k in (1, 2, 3)]
        assert self.side_leaf.gradient == 5 * self.side_passes
        counters.assert_none_left()


def _ledger(leaves):
    side_leaf = Node(name="side")
    side_root = Node((side_leaf,), lambda d: (5 * d,), name="side_root")
    spare = Node(name="spare")
    return Ledger(leaves, side_root, side_leaf, spare)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_finalizers_that_call_corgi_run_inside_passes(workers, fast_switching, capsys):
    # gc.set_threshold(1): the collector runs at almost every allocation of a tracked
    # object, inside the engine's reports, dispatches and commits, on every thread;
    # each collection finds new garbage whose __del__ and weakref.finalize callbacks
    # call corgi, and whose collection makes more garbage for the next one.
    configure(workers=workers, handoff_cost=0)
    leaves, root = _graph()
    ledger = _ledger(leaves)
    finalizers = Finalizers(ledger.intrude)

    def weak_finalizer():
        holder = [None]
        holder[0] = holder
        weakref.finalize(_Cyclic(holder), finalizers.call, weak_finalizer)

    done = []  # passes run, one entry each (appended: two threads)

    def drive():
        # At least ``passes`` each, and on until finalizers have run inside the engine:
        # a collection in progress on one thread (a finalizer of its own, say on the
        # main thread starting the callers) holds every other thread's back, and under
        # load both callers' passes could all fit inside it (seen: 0 of 130 inside).
        mine = 0
        while mine < passes or (ledger.inside < 100 and mine < 40 * passes):
            finalizers.litter(renew=False)  # fresh garbage every pass, in case the chain's moved to an old generation
            backward(root, 1)
            done.append(None)
            mine += 1

    finalizers.litter()
    weak_finalizer()
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    passes = 60
    try:
        run_threads(2, lambda i: drive())
    finally:
        finalizers.stop()
        gc.set_threshold(*old)
        gc.collect()
    errors = finalizers.errors
    with capsys.disabled():
        print(
            f"\n[reentry] workers={workers}: {ledger.calls} finalizers called corgi during {len(done)} passes,"
            f" {ledger.inside} of them from inside the engine"
        )
    assert not errors, f"finalizers that called corgi raised: {errors[:3]!r}"
    assert ledger.inside > 50, (ledger.calls, ledger.inside, gc.isenabled(), gc.get_threshold())
    ledger.check(len(done))


class Finalizers:
    """Finalizers that call corgi, counted in and out, so a test can stop them and wait.

    A collection may start on a pool worker after the passes it interrupted have
    returned (the worker allocates between tasks too), so the last finalizer can
    still be inside corgi when the test's own passes are over: counting before
    it has finished would see its work half done (the gradient it took not yet
    entered in the ledger, the pass it ran committed but not yet counted).
    ``stop()`` turns them off and waits for every one that started.
    """

    def __init__(self, action) -> None:
        self.action = action  # what each finalizer does: call corgi
        self.stopped = False
        self.entered: list[None] = []  # appended to, not incremented: several threads at once
        self.left: list[None] = []
        self.errors: list[BaseException] = []  # Python swallows what a finalizer raises: keep it

    def call(self, renew=None) -> None:
        """Unless stopped, run the action (keeping what it raises), then ``renew()`` the garbage if given."""
        self.entered.append(None)  # before the check: stop() waits for whoever passed it
        try:
            if self.stopped:
                return
            try:
                self.action()
            except BaseException as error:  # noqa: BLE001 - asserted by the tests
                self.errors.append(error)
            finally:
                if renew is not None:
                    renew()  # the next collection has something to finalize too
        finally:
            self.left.append(None)

    def litter(self, renew: bool = True) -> None:
        """Leave a piece of cyclic garbage whose ``__del__`` is a finalizer (leaving the next, if ``renew``)."""
        _Trash(self, renew)

    def stop(self, timeout: float = 60.0) -> None:
        """No finalizer calls corgi from now on; wait until the last one has returned."""
        self.stopped = True
        deadline = time.monotonic() + timeout
        while len(self.left) < len(self.entered):
            assert time.monotonic() < deadline, "a finalizer that calls corgi never returned"
            time.sleep(0.001)


class _Trash:
    """Garbage in a reference cycle (only the cycle collector frees it) whose ``__del__`` calls corgi."""

    def __init__(self, finalizers: Finalizers, renew: bool) -> None:
        self.finalizers = finalizers
        self.renew = renew
        self.cycle = self

    def __del__(self) -> None:
        self.finalizers.call(self.finalizers.litter if self.renew else None)


class _Cyclic:
    """An object kept in a reference cycle, so the cycle collector frees it."""

    def __init__(self, holder):
        self.holder = holder
        holder.append(self)


@pytest.mark.timeout(240)
@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)")
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_signal_handlers_that_call_corgi_run_inside_passes(workers, fast_switching, capsys):
    # A SIGALRM every 300 us; its handler takes gradients, clears, reads, and runs
    # whole passes, one of them through the graph the main thread is running.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread only")
    configure(workers=workers, handoff_cost=0)
    leaves, root = _graph()
    ledger = _ledger(leaves)
    nested = []
    inside = []

    busy = []

    def handler(signum, frame):
        # On a loaded machine the handler's own passes can outlast the 300 us period: an alarm
        # landing in the handler returns at once, or handlers would nest until RecursionError.
        if busy:
            return
        busy.append(True)
        try:
            names = []
            while frame is not None:
                names.append(frame.f_code.co_filename)
                frame = frame.f_back
            inside.append(any(name.endswith("scheduler.py") for name in names))
            ledger.intrude(nested_root=root)
            nested.append(1)
        finally:
            busy.clear()

    previous = signal.signal(signal.SIGALRM, handler)
    passes = 400
    try:
        signal.setitimer(signal.ITIMER_REAL, 3e-4, 3e-4)
        for _ in range(passes):
            backward(root, 1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with capsys.disabled():
        print(
            f"\n[reentry] workers={workers}: {len(nested)} signal handlers called corgi,"
            f" {sum(inside)} of them inside a running pass"
        )
    assert sum(inside) > 0
    ledger.check(passes + len(nested))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
@pytest.mark.parametrize("site", ["count", "report", "stage", "commit"])
def test_corgi_called_at_every_yield_point_of_a_pass(workers, site, fast_switching):
    # The yield point runs exactly where the engine has read shared state and is about
    # to write it (the "stage" one under the pass's own lock). Calling corgi there, a
    # whole pass through the same graph included, plays the worst-placed finalizer.
    configure(workers=workers, handoff_cost=0)
    leaves, root = _graph()
    ledger = _ledger(leaves)
    depth = threading.local()
    nested = [0]
    lock = threading.Lock()

    def at(where):
        if where != site or getattr(depth, "inside", False):
            return
        depth.inside = True  # the intruder's own passes reach the yield point too
        try:
            ledger.intrude(nested_root=root)
            with lock:
                nested[0] += 1
        finally:
            depth.inside = False

    set_yield_point(at)
    passes = 30
    try:
        run_threads(3, lambda i: [backward(root, 1) for _ in range(passes)])
    finally:
        set_yield_point(None)
    assert nested[0] > 0
    ledger.check(3 * passes + nested[0])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [0, 1, 2, 8])
def test_a_finalizer_may_run_backward_on_arrays_while_a_pass_runs(workers, fast_switching):
    # The same with real Arrays: a finalizer runs a pass on an unrelated Array graph
    # (before, it could deadlock on a node lock slot its nodes happened to share).
    configure(workers=workers, handoff_cost=0)
    x = Array([1.0, 2.0]).tracked()
    y = Array([3.0]).tracked()
    side = (y * 2.0).sum()
    runs = []  # appended to, not incremented: finalizers run on several threads at once

    def run_side():
        side.backward()
        runs.append(1)

    finalizers = Finalizers(run_side)
    finalizers.litter()
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        loss = ((x * x).tanh() + x.exp() * 0.5).sum()
        passes = 0
        while passes < 50 or (len(runs) < 20 and passes < 2000):  # on until finalizers ran, as above
            finalizers.litter(renew=False)
            loss.backward()
            passes += 1
    finally:
        # A worker may be inside a finalizer's pass still (found under load: y held
        # 160 passes while 161 were counted, the last one committing after the read).
        finalizers.stop()
        gc.set_threshold(*old)
        gc.collect()
    errors = finalizers.errors
    assert not errors, f"finalizers that ran a pass raised: {errors[:3]!r}"
    assert len(runs) > 0 and y.gradient().numpy().tolist() == [2.0 * len(runs)]
    single = Array([1.0, 2.0]).tracked()
    ((single * single).tanh() + single.exp() * 0.5).sum().backward()
    np.testing.assert_allclose(x.gradient().numpy(), passes * single.gradient().numpy(), rtol=1e-12)
