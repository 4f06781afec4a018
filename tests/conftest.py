"""Shared fixtures for the engine, reliability and fault suites.

``engine_state`` saves and restores what a concurrency test changes: the
engine's worker count and hand-off threshold, the debug yield point, and
``sys.setswitchinterval``. ``fast_switching`` drops the switch interval to
1 µs so the interpreter changes threads at almost every call. ``pool_probe``
checks that no worker of the shared pool is stuck in a task, and that no
worker outlives its pool.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import counters

# The suite tests the pool itself: passes use it whenever there are workers, whatever the BLAS
# thread count (set before corgi loads, and inherited by every child process a test starts).
# tests/test_threads.py checks the default, which leaves the cores to BLAS when the pool would
# oversubscribe them.
os.environ["CORGI_SHARE_CORES"] = "0"

# The Ctrl-C tests need SIGINT to raise KeyboardInterrupt. A shell starts a background job
# (`pytest &` in a script) with SIGINT ignored, and Python then leaves it ignored: every such
# test failed that way. Python's own handler for the session also gives the child processes the
# tests start the default disposition (exec keeps an ignored signal, not a handled one).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest

from corgi import engine
from corgi.engine import debug as engine_debug
from corgi.engine import pool as engine_pool

engine.configure(share_cores=False)  # in case corgi was imported before the variable was set

WORKER_COUNTS = (0, 1, 2, 8, 32)


@pytest.fixture
def engine_state():
    """Restore the engine settings and the switch interval after the test."""
    before = engine.settings()
    interval = sys.getswitchinterval()
    yield_point = engine_debug.hook
    try:
        yield before
    finally:
        sys.setswitchinterval(interval)
        engine.set_yield_point(yield_point)
        engine.configure(workers=before.workers, handoff_cost=before.handoff_cost, share_cores=before.share_cores)


@pytest.fixture
def fast_switching(engine_state):
    """``sys.setswitchinterval(1e-6)`` for the test (restored afterwards)."""
    sys.setswitchinterval(1e-6)
    yield


class PoolProbe:
    """Checks on the engine's shared thread pool, through its public handle."""

    def assert_idle(self, timeout: float = 10.0) -> None:
        """Every worker of the current pool is free: all of them meet at a barrier.

        A worker stuck inside an engine task never reaches the barrier, so the
        barrier breaks (or the last task never starts) and this fails.
        """
        pool = engine_pool.executor()
        if pool is None:
            return
        workers = engine.settings().workers
        barrier = threading.Barrier(workers)
        arrived = []

        def meet() -> None:
            barrier.wait(timeout)
            arrived.append(1)

        for _ in range(workers):
            pool.submit(meet)
        deadline = time.monotonic() + timeout + 2
        while len(arrived) < workers and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(arrived) == workers, f"only {len(arrived)} of {workers} workers were free"

    def worker_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("corgi-worker")]

    def assert_all_exit(self, timeout: float = 10.0) -> None:
        """Switch the pool off and check that every worker thread exits."""
        engine.configure(workers=0)
        deadline = time.monotonic() + timeout
        for thread in self.worker_threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.worker_threads() if t.is_alive()]
        assert not alive, f"worker threads still alive after the pool was switched off: {alive}"


@pytest.fixture
def pool_probe(engine_state) -> PoolProbe:
    return PoolProbe()


# -- the chaos harness: yield points injected from outside the engine ---------
#
# CPython switches threads only at calls and backward jumps, so a race between
# a read and a write of shared state shows up only if a call sits in between.
# These wrappers add calls, with seeded random sleeps, around every operation
# the engine performs on a node's counter map and per-pass state, and on the
# containers a pass keeps (its ready queue and staging lists). Each wrapped
# operation still runs as the one atomic built-in call it was; only the gaps
# between operations widen.


class Chaos:
    """Random, seeded short sleeps: ``chaos.pause()`` may hand the GIL to another thread."""

    def __init__(self, seed: int = 0, rate: float = 0.5, longest: float = 2e-4) -> None:
        import random

        self._random = random.Random(seed)
        self._rate = rate
        self._longest = longest
        self.pauses = 0

    def pause(self) -> None:
        self.pauses += 1
        r = self._random.random()  # shared Random: thread-safe under the GIL, order is not
        if r < self._rate:
            time.sleep(r / self._rate * self._longest)
        else:
            time.sleep(0)


def _chaos_types(chaos: Chaos):
    from collections import deque

    class ChaosDeque(deque):
        def append(self, item):
            chaos.pause()
            deque.append(self, item)
            chaos.pause()

        def appendleft(self, item):
            chaos.pause()
            deque.appendleft(self, item)
            chaos.pause()

        def popleft(self):
            chaos.pause()
            item = deque.popleft(self)
            chaos.pause()
            return item

    class ChaosTokens(list):
        def append(self, item):
            chaos.pause()
            list.append(self, item)
            chaos.pause()

        def pop(self, *args):
            chaos.pause()
            item = list.pop(self, *args)
            chaos.pause()
            return item

    class ChaosReports(list):
        def extend(self, items):
            chaos.pause()
            list.extend(self, items)
            chaos.pause()

    class ChaosDict(dict):
        """A pass's table of counters; the states it is given get yielding containers."""

        def get(self, key, default=None):
            chaos.pause()
            value = dict.get(self, key, default)
            chaos.pause()
            return value

        def __setitem__(self, key, value):
            chaos.pause()
            if type(value) is list:  # [tokens, reports]
                value = [ChaosTokens(value[0]), ChaosReports(value[1])]
            dict.__setitem__(self, key, value)
            chaos.pause()

        def pop(self, *args):
            chaos.pause()
            value = dict.pop(self, *args)
            chaos.pause()
            return value

    class ChaosList(list):
        def append(self, item):
            chaos.pause()
            list.append(self, item)
            chaos.pause()

        def extend(self, items):
            chaos.pause()
            list.extend(self, items)
            chaos.pause()

    return ChaosDict, ChaosList, ChaosDeque


class ChaosHarness:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.dict_type, self.list_type, self.deque_type = _chaos_types(chaos)

    def vjp(self, vjp):
        """Wrap a vjp so it may yield before and after it runs."""
        pause = self.chaos.pause

        def chaotic(delta):
            pause()
            result = vjp(delta)
            pause()
            return result

        return chaotic


@pytest.fixture
def chaos(monkeypatch, fast_switching) -> ChaosHarness:
    """Yield points everywhere the engine touches shared state, at a 1 µs switch interval.

    Passes started during the test get yielding containers (every list,
    deque and dict attribute of the pass object, its table of counters
    included); ``chaos.vjp(f)`` wraps backward functions the same way.
    """
    from collections import deque

    from corgi.engine import scheduler

    harness = ChaosHarness(Chaos(seed=1234))
    original = scheduler._Pass.__init__

    def chaotic_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for name in type(self).__slots__:
            value = getattr(self, name, None)
            if type(value) is list:
                setattr(self, name, harness.list_type(value))
            elif type(value) is deque:
                setattr(self, name, harness.deque_type(value))
            elif type(value) is dict:
                setattr(self, name, harness.dict_type(value))
                counters.record(getattr(self, name))

    monkeypatch.setattr(scheduler._Pass, "__init__", chaotic_init)
    yield harness


@pytest.fixture(autouse=True)
def pass_tables(monkeypatch):
    """Record every backward pass's table of counters for ``counters.assert_none_left()``."""
    from corgi.engine import scheduler

    original = scheduler._Pass.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        counters.record(self.counts)

    monkeypatch.setattr(scheduler._Pass, "__init__", recording_init)
    counters.reset()
    yield
    counters.reset()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test that still runs by default (deselect with -m 'not slow')")
