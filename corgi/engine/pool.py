"""Worker threads: how many, and the one shared pool.

``configure(workers=N)`` or the ``CORGI_WORKERS`` environment variable sets
the count (default: the number of CPUs, at most 8). ``workers=0`` means no
pool at all: every pass runs on the thread that called ``backward()``, the
same algorithm with nobody to hand work to.

The pool is N threads taking tasks from one ``queue.SimpleQueue``. A task
is a pass's "ticket" (run one queued node, never wait), so tasks need no
futures and no result. ``concurrent.futures.ThreadPoolExecutor`` was the
first choice, but its ``submit`` runs Python code while it holds a lock
that every executor shares; a finalizer or a signal handler that ran a
backward pass inside a ``submit`` on the same thread would wait for that
lock forever. ``SimpleQueue.put`` is reentrant by design (its docs: safe in
``__del__`` methods and weakref callbacks), never blocks, and costs about a
tenth of a microsecond instead of ten.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from queue import SimpleQueue
from types import TracebackType

from .atomic import publish

# Work below this cost (about one unit per element or multiply-add) runs on
# the thread that made it ready: a hand-off to another thread costs a few
# microseconds of wake-up, which only pays for itself once numpy releases
# the GIL for long enough.
DEFAULT_HANDOFF_COST = 1 << 16

Task = Callable[[], object]


def _default_workers() -> int:
    fallback = min(8, os.cpu_count() or 1)
    text = os.environ.get("CORGI_WORKERS", "").strip()
    if not text:  # unset or empty: the default
        return fallback
    try:
        workers = int(text)
    except ValueError:
        workers = -1
    if workers < 0:
        warnings.warn(
            f"CORGI_WORKERS must be a whole number >= 0, got {text!r}; using the default, {fallback} workers",
            RuntimeWarning,
            stacklevel=2,
        )
        return fallback
    return workers


@dataclass(frozen=True)
class Settings:
    """The engine's configuration at one moment (``settings()``, ``configure()``); frozen.

    >>> s = Settings(workers=2, handoff_cost=0)
    >>> s.workers, s.handoff_cost, s == Settings(2, 0)
    (2, 0, True)
    >>> isinstance(settings(), Settings)
    True
    """

    workers: int
    handoff_cost: int
    # True: a pass hands nodes to the pool only when two BLAS calls fit on the cores side by
    # side (``threads.pool_fits``), so the pool and BLAS never oversubscribe the cores. False:
    # whenever there are workers (for vjps that call no BLAS, and to test the pool itself).
    share_cores: bool = True


class Pool:
    """``size`` daemon threads named ``corgi-worker-<i>`` running the tasks ``submit`` queues.

    The threads start with ``start()``, so a pool can be made visible to
    other threads (and to code that interrupts this one) before its threads
    exist: tasks queued meanwhile wait for them.

    >>> import threading
    >>> pool = Pool(2); pool.start(); done = threading.Event()
    >>> pool.submit(done.set); done.wait(10)
    True
    >>> pool.shutdown()
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: SimpleQueue[Task | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads not started yet (call once, from the thread that installed the pool)."""
        while len(self.threads) < self.size:
            thread = threading.Thread(
                target=_serve, args=(self.tasks,), name=f"corgi-worker-{len(self.threads)}", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def submit(self, task: Task) -> None:
        """Queue ``task`` for a worker; never blocks, safe from any thread, finalizer or handler.

        >>> import threading
        >>> pool = Pool(1); pool.start(); done = threading.Event()
        >>> pool.submit(done.set); done.wait(10); pool.shutdown()
        True
        """
        self.tasks.put(task)

    def shutdown(self) -> None:
        """Let every worker finish the tasks queued so far and exit.

        >>> pool = Pool(1); pool.start(); pool.shutdown(); pool.threads[0].join(10); pool.threads[0].is_alive()
        False
        """
        for _ in range(self.size):
            self.tasks.put(None)


def _serve(tasks: SimpleQueue[Task | None]) -> None:
    while True:
        task = tasks.get()
        if task is None:
            return
        try:
            task()
        except BaseException as error:  # noqa: BLE001 - a ticket routes its errors to its pass; this is a bug
            sys.unraisablehook(_Unraisable(error, task))
        del task


class _Unraisable:
    """What ``sys.unraisablehook`` expects to receive."""

    def __init__(self, error: BaseException, task: Task) -> None:
        self.exc_type: type[BaseException] = type(error)
        self.exc_value: BaseException | None = error
        self.exc_traceback: TracebackType | None = error.__traceback__
        self.err_msg: str | None = "corgi engine: a worker task raised"
        self.object: object = task


class _State:
    """The module's one mutable cell; replaced by indivisible steps, never changed in place."""

    __slots__ = ("current",)

    def __init__(self, current: tuple[Settings, Pool | None]) -> None:
        self.current = current


_state = _State((Settings(_default_workers(), DEFAULT_HANDOFF_COST, os.environ.get("CORGI_SHARE_CORES", "1").strip() != "0"), None))


def configure(workers: int | None = None, handoff_cost: int | None = None, share_cores: bool | None = None) -> Settings:
    """Set the worker count, the hand-off threshold and/or ``share_cores``; return the new settings.

    ``share_cores`` (default True, or ``CORGI_SHARE_CORES=0`` for False):
    whether a pass leaves the cores to BLAS when the pool would oversubscribe
    them (``corgi.engine.threads``).

    Passes already running keep the pool they started with, so reconfiguring
    never strands their work.

    >>> import corgi.engine as engine
    >>> before = engine.settings()
    >>> engine.configure(workers=0).workers
    0
    >>> engine.configure(workers=before.workers, handoff_cost=before.handoff_cost) == before
    True
    """
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise ValueError(f"configure: workers must be a whole number >= 0, got {workers!r}")
    if handoff_cost is not None and (
        not isinstance(handoff_cost, int) or isinstance(handoff_cost, bool) or handoff_cost < 0
    ):
        raise ValueError(f"configure: handoff_cost must be a whole number >= 0, got {handoff_cost!r}")
    if share_cores is not None and not isinstance(share_cores, bool):
        raise TypeError(f"configure: share_cores must be True or False, got {share_cores!r}")
    while True:
        old = _state.current
        settings, pool = old
        new = Settings(
            settings.workers if workers is None else workers,
            settings.handoff_cost if handoff_cost is None else handoff_cost,
            settings.share_cores if share_cores is None else share_cores,
        )
        kept = pool if new.workers == settings.workers else None
        if publish((_state,), "current", (old,), ((new, kept),)):
            break
    if pool is not None and kept is None:
        pool.shutdown()  # its threads finish the tickets they hold, then exit
    return new


def settings() -> Settings:
    """The current settings.

    >>> import corgi.engine as engine
    >>> engine.settings().workers >= 0
    True
    """
    return _state.current[0]


def executor() -> Pool | None:
    """The shared pool, started on first use; ``None`` when ``workers=0``.

    >>> import corgi.engine as engine
    >>> before = engine.settings()
    >>> _ = engine.configure(workers=0); executor() is None
    True
    >>> _ = engine.configure(workers=before.workers)
    """
    while True:
        old = _state.current
        settings, pool = old
        if pool is not None or settings.workers == 0:
            return pool
        fresh = Pool(settings.workers)
        if publish((_state,), "current", (old,), ((settings, fresh),)):
            # Visible first, started second: a pass that starts meanwhile (on another
            # thread, or in a handler interrupting this start) queues on it and
            # never makes a pool of its own.
            fresh.start()
            return fresh


def _after_fork_in_child() -> None:
    # The parent's worker threads do not exist in a forked child.
    _state.current = (_state.current[0], None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
