"""One backward pass, in named steps: count, evaluate, report, dispatch, commit.

1. Count (``counting.count_consumers``): the pass's table learns, for every
   node below the root, how many consumers will report to it in this pass.
2. Evaluate (``evaluate``): a node that received its total runs its vjp,
   which gives one delta per input, checked for count and type.
3. Report (``counting.report``): each delta goes to its input. The report
   that completes an input's count gets the input's total (the deltas added
   in canonical order, consumer sequence id then argument position, so the
   sum never depends on which thread came first); that reporter, and only
   that one, makes the input ready. Ready hooks (``hooks``) run here.
4. Dispatch (``_Pass.dispatch``): of the nodes a step makes ready, the
   thread keeps the cheapest and queues the others on the pass (a costly
   one is queued even when it is the only one, if the pass has other work
   waiting, so that a worker can take it). Costly queued nodes also get a
   ticket on the pool: a task that pops one queued node if any is left and
   returns at once if not. No task ever waits for another, so a pool of any
   size finishes any graph. The caller pops queued nodes too, and sleeps
   only when there is nothing to pop and work is still running elsewhere. A
   leaf that becomes ready is never queued: its whole step is staging its
   total, done on the spot.
5. Commit (``gradients.add_gradients``): when every counted node has run, the
   totals staged during the pass are added into the nodes' gradients in
   one indivisible step, after every sum has been computed.

If anything fails (a vjp or a hook raises, a sum overflows under
``np.errstate``, a signal handler raises ``KeyboardInterrupt`` anywhere),
the pass stops scheduling, forgets its counters (one ``clear()`` of its
table) and its staged totals, waits for steps still running on workers,
and re-raises the exception with its own type and traceback. Nothing was
committed. An interrupt that arrives after the commit is handled by the
caller after ``backward()`` has returned (see ``atomic``): ``backward()``
raises if and only if the pass changed no gradient.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections import deque
from collections.abc import Sequence
from functools import partial
from queue import SimpleQueue
from typing import Any

from . import debug, gradients
from . import hooks as _hooks
from . import pool as _pool
from . import trace as _trace
from .counting import NOT_COUNTED, WAITING, Counts, count_consumers, report, waiting_for
from .node import Node
from .threads import pool_fits

_pass_ids = itertools.count(1).__next__


class _Later:
    """The pool of a pass that has not handed a node over yet (``_Pass.pool_now`` decides)."""

    __slots__ = ()


_LATER = _Later()


def evaluate(node: Node, delta: Any) -> Sequence[Any]:
    """Step 2: the deltas ``node`` sends its inputs for its total ``delta``, checked.

    >>> x = Node(); evaluate(Node((x, x), lambda d: (d, 2 * d)), 5)
    (5, 10)
    """
    return checked(node, node.deltas(delta))


def checked(node: Node, deltas: Any) -> Sequence[Any]:
    """``deltas``, if it is one delta per input of ``node``; else a TypeError or ValueError naming it.

    >>> x = Node(); checked(Node((x, x), lambda d: d, name="pair"), [1])
    Traceback (most recent call last):
    ...
    ValueError: backward of pair returned 1 deltas for 2 inputs
    """
    try:
        count = len(deltas)
    except TypeError:
        raise TypeError(
            f"backward of {node.name} returned {type(deltas).__name__}, "
            f"not a list or tuple of {len(node.inputs)} deltas"
        ) from None
    if count != len(node.inputs):
        raise ValueError(f"backward of {node.name} returned {count} deltas for {len(node.inputs)} inputs")
    return deltas  # type: ignore[no-any-return]


class _Pass:
    __slots__ = (
        "active", "context", "counts", "error", "handoff_cost", "hooks", "id", "lock", "pool",
        "ready", "remaining", "share_cores", "staged_deltas", "staged_nodes", "trace", "waiting", "wakeups",
    )

    def __init__(self, trace: _trace.Recorder | None, hooks: dict[int, tuple[_hooks.ReadyHook, ...]] | None) -> None:
        self.id = _pass_ids()
        self.lock = threading.Lock()
        # Where the caller sleeps, made only if it ever has to wait (most passes
        # never do). A queue, not a Condition: Condition.wait releases the lock
        # and takes it back in Python code, so an interrupt landing in between
        # left the lock released, and the `with` around it then released it a
        # second time (found by the repeated-interrupt storm). A put never
        # fails or blocks, and a spare wake-up only makes the caller look again.
        self.wakeups: SimpleQueue[None] | None = None
        self.ready: deque[tuple[Node, Any]] = deque()
        # What each node below the root still waits for in this pass (``counting``).
        self.counts: Counts = {}
        self.remaining = 0  # counted nodes that have not run yet
        self.active = 0  # pool threads inside a step of this pass
        self.waiting = False  # the caller sleeps on ``wakeups``
        self.error: BaseException | None = None
        # Each node that ran, and its total: committed only on success. Two
        # flat lists, not pairs, so staging allocates nothing the collector
        # has to track.
        self.staged_nodes: list[Node] = []
        self.staged_deltas: list[Any] = []
        settings = _pool.settings()
        # No pool with no workers; else which, decided when a costly node is first handed over
        # (``pool_now``): most passes never hand one over, and the decision costs a system call.
        self.pool: _pool.Pool | None | _Later = _LATER if settings.workers else None
        self.share_cores = settings.share_cores
        self.handoff_cost = settings.handoff_cost
        self.context: contextvars.Context | None = None
        self.trace = trace
        self.hooks = hooks

    # -- running steps ---------------------------------------------------

    def run_from(self, node: Node, delta: Any) -> int:
        """Run ``node`` and then, one at a time, the node each step kept.

        Returns how many nodes ran. Never raises: the first exception of the
        pass is stored in ``error`` and stops further steps.
        """
        # Every node that runs with a delta is staged, so how many ran is the staged count plus
        # ``unstaged``, the nodes that ran with none (no count to keep in the common case).
        unstaged = 0
        key = self
        counts = self.counts
        entry = counts.get
        trace = self.trace
        hooks = self.hooks
        # Staged pairs go to lists of this call's own and join the pass's
        # lists under its lock at the end: two threads appending to shared
        # lists could interleave and pair a node with another's delta.
        staged_nodes: list[Node] = []
        staged_deltas: list[Any] = []
        stage_node = staged_nodes.append
        stage_delta = staged_deltas.append
        handoff = self.handoff_cost
        pooled = self.pool is not None
        yield_point = debug.hook
        try:
            while self.error is None:
                if trace is not None:
                    trace.event("fire", key.id, node)
                inputs = node.inputs
                if delta is None:
                    # "No delta" is reported all the same, so every count reaches zero.
                    deltas: Sequence[Any] = (None,) * len(inputs)
                    unstaged += 1
                else:
                    stage_node(node)
                    stage_delta(delta)
                    if inputs:
                        deltas = node.deltas(delta)
                        if type(deltas) is not tuple or len(deltas) != len(inputs):
                            deltas = checked(node, deltas)
                    else:
                        deltas = ()
                keep = None
                for position, target in enumerate(inputs):
                    sent = deltas[position]
                    if trace is not None:
                        trace.event("send", key.id, node, target, sent is not None)
                    # ``counting.report``, its first case written out: the only consumer in this pass
                    if type(entry(target)) is int:
                        counts.pop(target, None)
                        total = sent
                    else:
                        total = report(target, counts, node.seq << 32 | position, sent)
                        if total is WAITING:
                            continue
                        if total is NOT_COUNTED:
                            if self.error is not None:  # the pass failed and forgot its counters
                                break
                            raise RuntimeError(f"corgi engine: {target!r} got a delta it was not counted for")
                    # ``target``'s total for this pass is final.
                    if hooks is not None:
                        self.announce(target, total)
                    if not target.inputs:
                        # A leaf's whole step is staging its total: do it here.
                        if trace is not None:
                            trace.event("fire", key.id, target)
                            trace.event("complete", key.id, target)
                        if total is not None:
                            stage_node(target)
                            stage_delta(total)
                        else:
                            unstaged += 1
                    elif keep is None:
                        if pooled and target.cost >= handoff and self.ready and self.pool_now() is not None:
                            # Costly, and this pass has other work queued: let a
                            # worker take it while this thread goes on.
                            self.dispatch(target, total)
                        else:
                            keep = target
                            kept = total
                    else:
                        if target.cost < keep.cost:
                            keep, kept, target, total = target, total, keep, kept
                        self.dispatch(target, total)
                if trace is not None:
                    trace.event("complete", key.id, node)
                if keep is None:
                    break
                node = keep
                delta = kept
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt too must end the pass
            self.fail(error, node)
        ran = len(staged_nodes) + unstaged
        if staged_nodes:
            with self.lock:
                if self.staged_nodes:
                    self.staged_nodes += staged_nodes
                    if yield_point is not None:
                        yield_point("stage")
                    self.staged_deltas += staged_deltas
                else:  # the first to stage: its lists become the pass's (no copy of a million entries)
                    self.staged_nodes = staged_nodes
                    if yield_point is not None:
                        yield_point("stage")
                    self.staged_deltas = staged_deltas
        return ran

    def announce(self, node: Node, total: Any) -> None:
        """Call ``node``'s ready hooks with its final total (outside every engine lock)."""
        assert self.hooks is not None
        entries = self.hooks.get(node.seq)
        if entries:
            for hook in entries:
                hook.callback(node, total)

    def dispatch(self, target: Node, total: Any) -> None:
        """Step 4: queue a ready node on the pass; a costly one also gets a pool ticket."""
        with self.lock:
            self.ready.append((target, total))
            if self.waiting:
                self._wake()
        if target.cost < self.handoff_cost:
            return
        pool = self.pool_now()
        if pool is not None:
            if self.context is None:
                self.context = contextvars.copy_context()
            # Each ticket runs in its own copy: one Context can't be entered
            # by two threads at once.
            pool.submit(partial(self.context.copy().run, self.ticket))

    def pool_now(self) -> _pool.Pool | None:
        """The pool this pass hands costly nodes to, or None: the pool only if its BLAS calls fit on
        the cores beside the caller's (``threads``), read once, by the first hand-over."""
        pool = self.pool
        if type(pool) is _Later:
            # two threads may both decide; they decide the same, and either store is whole
            pool = self.pool = _pool.executor() if not self.share_cores or pool_fits() else None
        return pool  # type: ignore[return-value]

    def ticket(self) -> None:
        """A pool task: run one queued node (and what it keeps), never wait."""
        with self.lock:
            if self.error is not None or not self.ready:
                return
            node, delta = self.ready.popleft()
            self.active += 1
        ran = 0
        try:
            ran = self.run_from(node, delta)
        finally:
            with self.lock:
                self.active -= 1
                self.remaining -= ran
                if self.waiting:
                    self._wake()

    def fail(self, error: BaseException, node: Node | None = None) -> None:
        """Record the pass's first exception (raised at ``node``) and stop scheduling."""
        with self.lock:
            if self.error is None:
                self.error = error
                if self.trace is not None:
                    self.trace.event("error", self.id, node, None, type(error).__name__)
            self.ready.clear()
            if self.waiting:
                self._wake()

    # -- the caller ------------------------------------------------------

    def drive(self, root: Node, delta: Any) -> None:
        """Run the pass on the calling thread until every step has finished."""
        if self.hooks is not None:
            self.announce(root, delta)  # the root's total is the delta it was given
        ran = self.run_from(root, delta)
        while True:
            with self.lock:
                self.remaining -= ran
                ran = 0
                if self.error is not None:
                    if self.active == 0:
                        return
                    wakeups = self._sleeping()
                elif self.remaining == 0:
                    return
                elif self.ready:
                    node, delta = self.ready.popleft()
                    wakeups = None
                else:
                    wakeups = self._sleeping()
            if wakeups is None:
                ran = self.run_from(node, delta)
            else:
                wakeups.get()  # until a worker changes the pass; then look again

    def wait_idle(self) -> None:
        """Wait until no pool thread runs a step of this (failed) pass."""
        while True:
            with self.lock:
                if not self.active:
                    return
                wakeups = self._sleeping()
            wakeups.get()

    def _sleeping(self) -> SimpleQueue[None]:
        """Mark the caller as about to sleep (call with ``lock`` held); where to sleep."""
        if self.wakeups is None:
            self.wakeups = SimpleQueue()
        self.waiting = True
        return self.wakeups

    def _wake(self) -> None:
        """Wake the caller (call with ``lock`` held, when ``waiting``)."""
        self.waiting = False
        assert self.wakeups is not None
        self.wakeups.put(None)


def backward(root: Node, delta: Any, targets: Sequence[Node] | None = None) -> list[Any] | None:
    """Send ``delta`` back from ``root``; commit every reached node's total, or return the targets'.

    Without ``targets``, every node the pass reaches adds its total delta
    to its gradient, all in one indivisible step at the end, and the call
    returns None. With a sequence of nodes, nothing is committed and the
    call returns each target's total for the pass (None where it got none).
    Blocks until the pass is over. If anything raises, no gradient has
    changed, the exception propagates with its own type and traceback, and
    the graph can be run again.

    >>> from corgi.engine import Node, backward
    >>> x = Node()
    >>> y = Node((x, x), lambda d: (3 * d, 4 * d), name="y")  # y = 3x + 4x
    >>> backward(y, 1, targets=[x, y, Node()]), x.gradient
    ([7, 1, None], None)
    >>> backward(y, 1)
    >>> x.gradient, y.gradient
    (7, 1)
    """
    if targets is not None:
        targets = list(targets)
        for position, target in enumerate(targets):
            if not isinstance(target, Node):
                raise TypeError(f"backward: target {position} must be an engine Node, got {type(target).__name__}")
    recorder = _trace.active()
    this = _Pass(recorder, _hooks.registered() if targets is None else None)
    if recorder is not None:
        recorder.event("start", this.id, root)
    counts = this.counts
    try:
        count_consumers(root, counts)
        this.remaining = len(counts) + 1  # and the root
        if recorder is not None:
            for node in (root, *counts):
                recorder.event("count", this.id, node, None, waiting_for(node, counts))
        this.drive(root, delta)
        if this.error is not None:
            raise this.error
        # Every counted node ran, so the table is empty; clear() also frees its slots (about
        # 40 bytes a node) before the commit allocates its own lists.
        counts.clear()
        if targets is not None:
            totals = dict(zip(this.staged_nodes, this.staged_deltas))
            if recorder is not None:
                recorder.event("end", this.id, root, None, "done")
            return [totals.get(target) for target in targets]
        gradients.add_gradients(this.staged_nodes, this.staged_deltas)
    except BaseException as error:
        first = this.error is None
        if first:
            this.error = error  # every step still running stops at its next node
        # First, before any point where a second interrupt could land: forget
        # the pass's counters, in one C call that no signal handler can cut short.
        counts.clear()
        try:
            this.staged_nodes.clear()
            this.staged_deltas.clear()
            if recorder is not None and first:
                recorder.event("error", this.id, None, None, type(error).__name__)
            this.wait_idle()  # no step of the pass runs after backward() returns
        finally:
            # The traceback keeps this frame alive: let it keep no pass.
            this.error = _FAILED
            if recorder is not None:
                recorder.event("end", this.id, root, None, "failed")
            del this, counts
        raise
    # Nothing from the commit to the return can run a signal handler here,
    # unless a trace is recording: its last event comes after the commit.
    if recorder is not None:
        recorder.event("end", this.id, root, None, "done")
    return None


# What a failed pass's ``error`` becomes once the exception is on its way out.
_FAILED = RuntimeError("this backward pass failed")
