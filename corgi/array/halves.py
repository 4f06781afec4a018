"""A batch split over two threads, so that numpy's one-thread work uses both cores.

numpy runs an elementwise operation or a copy on one thread, and releases the
GIL while it does, so two Python threads each working on part of a batch run
side by side. The image primitives (``image.py``) split their copies (im2col,
col2im), max-pools and, when it fits, their per-example BLAS products this
way. ``split_batch(work, batch, size)`` runs ``work(lo, hi)`` over ``[0,
batch)``, either whole on the calling thread or cut into up to ``_PIECES``
pieces that the calling thread and one helper thread take in turn; it
returns when every piece is done. Taking pieces, not a fixed half each,
matters on a busy machine: a helper that gets no core takes no piece, and
the caller waits at most for the one piece the helper holds, never for the
helper to be scheduled.

Every example's values are computed by the same numpy calls whichever piece
it lands in (a piece is a slice of the batch axis, and the work never mixes
examples), so a result is the same bit for bit, split or not; sums across
the batch are left to the caller, after the split.

When it splits (all of these, else the work runs whole):
- the engine may use threads (``corgi.engine.settings().workers >= 1``:
  ``workers=0``, or ``CORGI_WORKERS=0``, keeps corgi on the calling thread),
  and the process may run on two cores or more;
- BLAS may run two threads or more (``OPENBLAS_NUM_THREADS``, ``corgi.train
  --blas-threads``). That count is the process's budget for threads inside
  one operation, as ``torch.set_num_threads`` is PyTorch's: on one BLAS
  thread every operation runs on one thread, as numpy's do, which never
  loses badly on a busy machine (issue 12: there a thread that waits for a
  core makes the other wait too);
- the work calls no BLAS: BLAS runs its products on its own threads and
  fills the cores itself, so a split product would oversubscribe them (the
  engine's rule, docs/engine.md). Between products the BLAS threads are
  idle, and the copies, adds and max-pools take both cores;
- the work is big enough (``size`` values at least ``_SMALLEST``) that a
  hand-off (some tens of microseconds) is worth it;
- the helper is idle: one thread serves every caller, taken without waiting,
  so concurrent passes, engine workers, finalizers and signal handlers never
  wait for it and corgi never adds more than one thread of its own this way.

With ``share_cores`` off (``corgi.engine.configure``, ``CORGI_SHARE_CORES=0``)
corgi uses its threads whenever it has them, as the engine's pool then does:
any work splits, BLAS products included, at any BLAS thread count.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from queue import SimpleQueue

from ..engine import settings
from ..engine.threads import blas_threads, cores

# below this many values a hand-off costs more than the second core gains (measured: about
# 30 us a hand-off; numpy copies and compares some 500 million float64 values a second)
_SMALLEST = 1 << 15
# the batch is cut into this many pieces, which the two threads take in turn
_PIECES = 8

Work = Callable[[int, int], None]


class _Job:
    """The pieces of one split: the work, their bounds, the next piece's number, and how the helper ended."""

    __slots__ = ("bounds", "failure", "next", "work", "working")

    def __init__(self, work: Work, bounds: list[int]) -> None:
        self.work, self.bounds = work, bounds
        self.next: Callable[[], int] = itertools.count().__next__  # atomic under the GIL: each piece is taken once
        self.working = threading.Lock()  # held by the helper while it runs a piece
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Take pieces until none is left."""
        pieces = len(self.bounds) - 1
        while (piece := self.next()) < pieces:
            self.work(self.bounds[piece], self.bounds[piece + 1])


class _Helper:
    """The one helper thread (started on first use) and the lock that says it is taken."""

    __slots__ = ("busy", "jobs", "thread")

    def __init__(self) -> None:
        self.busy = threading.Lock()
        self.jobs: SimpleQueue[_Job] = SimpleQueue()
        self.thread: threading.Thread | None = None


_helper = _Helper()


def _serve(helper: _Helper) -> None:
    while True:
        job = helper.jobs.get()
        pieces = len(job.bounds) - 1
        while True:
            with job.working:
                piece = job.next()
                if piece >= pieces:
                    break
                try:
                    job.work(job.bounds[piece], job.bounds[piece + 1])
                except BaseException as error:  # noqa: BLE001 (handed to the caller, which raises it)
                    job.failure = error
        helper.busy.release()


def may_split(blas: bool = False) -> bool:
    """True if work may be split over two threads now (``blas``: work that calls BLAS).

    >>> import corgi.engine as engine
    >>> from corgi.engine.threads import blas_threads, cores
    >>> now = engine.settings()
    >>> threads = now.workers >= 1 and cores() >= 2
    >>> may_split() == (threads and (blas_threads() >= 2 or not now.share_cores))
    True
    >>> may_split(blas=True) == (threads and not now.share_cores)
    True
    """
    now = settings()
    if now.workers < 1 or cores() < 2:
        return False
    if not now.share_cores:  # corgi uses its threads whenever it has them, as the engine's pool does
        return True
    # numpy work takes a second thread when BLAS may (the process's budget of threads inside one
    # operation, as torch.set_num_threads is); BLAS work never: BLAS fills the cores itself
    return not blas and blas_threads() >= 2


def split_batch(work: Work, batch: int, size: int, blas: bool = False) -> None:
    """Run ``work(lo, hi)`` over ``[0, batch)``: in two halves on two threads when it pays, else whole.

    ``size`` is the number of values the work touches (it decides whether a
    hand-off is worth it); ``blas`` says the work calls BLAS. An error
    raised by either half is raised here, after both halves have ended.

    >>> import numpy as np
    >>> x = np.arange(200_000.0).reshape(100, 2000)
    >>> out = np.empty_like(x)
    >>> def double(lo, hi):
    ...     np.multiply(x[lo:hi], 2.0, out=out[lo:hi])
    >>> split_batch(double, 100, x.size)
    >>> bool((out == 2.0 * x).all())
    True
    """
    if batch < 2 or size < _SMALLEST or not may_split(blas):
        work(0, batch)
        return
    helper = _helper
    if not helper.busy.acquire(blocking=False):  # taken by another caller: no waiting, no third thread
        work(0, batch)
        return
    pieces = min(batch, _PIECES)
    job = _Job(work, [batch * i // pieces for i in range(pieces + 1)])
    try:
        if helper.thread is None:
            helper.thread = threading.Thread(target=_serve, args=(helper,), name="corgi-halves", daemon=True)
            helper.thread.start()
        helper.jobs.put(job)
    except BaseException:
        helper.busy.release()  # the job never reached the helper
        raise
    try:
        job.run()
    finally:
        # the helper writes into the caller's arrays: wait for the piece it is running, if any
        # (one it has not taken yet no longer exists: every piece is taken)
        with job.working:
            job.next = _none_left
    if job.failure is not None:
        raise job.failure


def _none_left() -> int:
    return 1 << 62


def _after_fork_in_child() -> None:
    # the parent's helper thread does not exist in a forked child, and its lock may be held
    global _helper
    _helper = _Helper()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
