"""One backward pass: deliver deltas, fire nodes, finish or fail as a whole.

The algorithm, in the order it runs:

1. Count: every node below the root learns how many consumers will report
   to it in this pass (``counting.count_consumers``).
2. Run: the calling thread runs the root's vjp and reports each result to
   the input it belongs to. A report takes the input's lock, stores the
   delta under a canonical key, decrements the count and, if that was the
   last report, removes the entry: the reporter that completed the count is
   the one that fires the node. It sums the deltas in key order (consumer
   sequence id, then argument position), so the sum never depends on which
   thread arrived first.
3. Hand-off: of the nodes a step makes ready, the thread keeps the
   cheapest and queues the others on the pass (a costly one is queued even
   when it is the only one, if the pass has other work waiting, so that a
   worker can take it). Costly queued nodes also get a ticket on the pool:
   a task that pops one queued node if any is left and returns at once if not.
   No task ever waits for another, so a pool of any size finishes any graph.
   The caller pops queued nodes too, and sleeps only when there is nothing to
   pop and work is still running elsewhere. A leaf that becomes ready is
   never queued: its whole step is staging its delta, done on the spot.
4. Finish: when every counted node has run, the gradients staged during the
   pass are added to the nodes' gradients. If any vjp raised, the pass stops
   scheduling, waits for running steps, drops its counters and staged
   gradients (so a failed pass changes no gradient) and re-raises the first
   exception with its own type and traceback.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from typing import Any, Optional, Sequence

from . import debug
from . import pool as _pool
from . import trace as _trace
from .counting import count_consumers, forget
from .node import Node

_pass_ids = iter(range(1, 1 << 62)).__next__


class _Pass:
    __slots__ = (
        "id", "lock", "cond", "ready", "remaining", "active", "waiting", "error",
        "staged_nodes", "staged_deltas", "executor", "handoff_cost", "context", "trace",
    )

    def __init__(self, remaining: int, trace: Optional[_trace.Recorder]) -> None:
        self.id = _pass_ids()
        self.lock = threading.Lock()
        # The caller's condition, made (on ``lock``) only if it ever has to wait:
        # most passes never do, and a Condition costs two microseconds.
        self.cond: Optional[threading.Condition] = None
        self.ready: deque = deque()
        self.remaining = remaining  # counted nodes that have not run yet
        self.active = 0  # pool threads inside a step of this pass
        self.waiting = False  # the caller sleeps on ``cond``
        self.error: Optional[BaseException] = None
        # Each node that ran, and the delta it received: committed only on
        # success. Two flat lists, not pairs, so staging allocates nothing the
        # garbage collector has to track.
        self.staged_nodes: list = []
        self.staged_deltas: list = []
        settings = _pool.settings()
        self.executor = _pool.executor()
        self.handoff_cost = settings.handoff_cost
        self.context: Optional[contextvars.Context] = None
        self.trace = trace

    # -- running steps ---------------------------------------------------

    def run_from(self, node: Node, delta: Any) -> int:
        """Run ``node`` and then, one at a time, the node each step kept.

        Returns how many nodes ran. Never raises: the first exception of the
        pass is stored in ``error`` and stops further steps.
        """
        ran = 0
        key = self
        trace = self.trace
        # Staged pairs go to lists of this call's own and join the pass's
        # lists under its lock at the end: two threads appending to shared
        # lists could interleave and pair a node with another's delta.
        staged_nodes: list = []
        staged_deltas: list = []
        stage_node = staged_nodes.append
        stage_delta = staged_deltas.append
        handoff = self.handoff_cost
        pooled = self.executor is not None
        hook = debug.hook
        try:
            while True:
                if self.error is not None:
                    break
                if trace is not None:
                    trace.event("fire", key.id, node)
                inputs = node.inputs
                if delta is not None:
                    stage_node(node)
                    stage_delta(delta)
                    if inputs:
                        deltas = node.deltas(delta)
                        try:
                            count = len(deltas)
                        except TypeError:
                            raise TypeError(
                                f"backward of {node.name} returned {type(deltas).__name__}, "
                                f"not a list or tuple of {len(inputs)} deltas"
                            ) from None
                        if count != len(inputs):
                            raise ValueError(
                                f"backward of {node.name} returned {len(deltas)} deltas "
                                f"for {len(inputs)} inputs"
                            )
                    else:
                        deltas = ()
                else:
                    deltas = (None,) * len(inputs)
                keep = None
                for position, target in enumerate(inputs):
                    sent = deltas[position]
                    if trace is not None:
                        trace.event("send", key.id, node, target, sent is not None)
                    # The decision to fire is made under the same lock as the
                    # decrement, so exactly one reporter sees the count reach 0.
                    with target.lock:
                        pending = target.pending
                        state = pending.get(key)
                        if hook is not None:
                            hook("report")
                        if type(state) is int:
                            if state == 1:
                                del pending[key]
                                fire = 1
                            else:
                                pending[key] = [state - 1, [(node.seq << 32) | position, sent]]
                                fire = 0
                        elif state is None:
                            fire = -1
                        else:
                            # reports stay one flat list of (order key, delta):
                            # no tuple per report for the collector to track
                            reports = state[1]
                            reports.append((node.seq << 32) | position)
                            reports.append(sent)
                            state[0] -= 1
                            if state[0]:
                                fire = 0
                            else:
                                del pending[key]
                                fire = 2
                    if fire == 0:
                        continue
                    if fire == 1:
                        total = sent
                    elif fire == 2:
                        total = _sum_in_order(target, reports)
                    else:
                        raise RuntimeError(f"corgi engine: {target!r} got a delta it was not counted for")
                    if not target.inputs:
                        # A leaf's step is only staging its delta: do it here
                        # rather than queue it.
                        if trace is not None:
                            trace.event("fire", key.id, target)
                            trace.event("complete", key.id, target)
                        if total is not None:
                            stage_node(target)
                            stage_delta(total)
                        ran += 1
                    elif keep is None:
                        if pooled and target.cost >= handoff and self.ready:
                            # Costly, and this pass has other work queued: let a
                            # worker take it while this thread goes on.
                            self._queue(target, total)
                        else:
                            keep = target
                            kept = total
                    else:
                        if target.cost < keep.cost:
                            keep, kept, target, total = target, total, keep, kept
                        self._queue(target, total)
                ran += 1
                if trace is not None:
                    trace.event("complete", key.id, node)
                if keep is None:
                    break
                node = keep
                delta = kept
        except BaseException as error:  # noqa: B036 - KeyboardInterrupt too must end the pass
            self.fail(error, node)
        if staged_nodes:
            with self.lock:
                self.staged_nodes += staged_nodes
                if hook is not None:
                    hook("stage")
                self.staged_deltas += staged_deltas
        return ran

    def _queue(self, target: Node, total: Any) -> None:
        """Queue a ready node on the pass; a costly one also gets a pool ticket."""
        with self.lock:
            self.ready.append((target, total))
            if self.waiting:
                self.cond.notify()
        executor = self.executor
        if executor is not None and target.cost >= self.handoff_cost:
            if self.context is None:
                self.context = contextvars.copy_context()
            # Each ticket runs in its own copy: one Context can't be entered
            # by two threads at once.
            try:
                executor.submit(self.context.copy().run, self.ticket)
            except RuntimeError:
                # configure() replaced the pool, or the interpreter is exiting:
                # the node stays queued and the caller runs it.
                pass

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
                    self.cond.notify()

    def fail(self, error: BaseException, node: Optional[Node] = None) -> None:
        """Record the pass's first exception (raised at ``node``) and stop scheduling."""
        with self.lock:
            if self.error is None:
                self.error = error
                if self.trace is not None:
                    self.trace.event("error", self.id, node, None, type(error).__name__)
            self.ready.clear()
            if self.waiting:
                self.cond.notify()

    # -- the caller ------------------------------------------------------

    def drive(self, root: Node, delta: Any) -> None:
        """Run the pass on the calling thread until every step has finished."""
        ran = self.run_from(root, delta)
        while True:
            with self.lock:
                self.remaining -= ran
                ran = 0
                while True:
                    if self.error is not None:
                        if self.active == 0:
                            return
                    elif self.remaining == 0:
                        return
                    elif self.ready:
                        node, delta = self.ready.popleft()
                        break
                    self._wait()
            ran = self.run_from(node, delta)

    def wait_idle(self) -> None:
        """Wait until no pool thread runs a step of this (failed) pass."""
        with self.lock:
            while self.active:
                self._wait()

    def _wait(self) -> None:
        """Sleep until another thread changes the pass (call with ``lock`` held)."""
        if self.cond is None:
            self.cond = threading.Condition(self.lock)
        self.waiting = True
        try:
            self.cond.wait()
        finally:
            self.waiting = False


def _sum_in_order(target: Node, reports: list) -> Any:
    """Add the reported deltas in (consumer id, position) order; None means none.

    ``reports`` alternates order keys (consumer id << 32 | argument position)
    and deltas.
    """
    keys = reports[0::2]
    deltas = reports[1::2]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ordered = [deltas[i] for i in order if deltas[i] is not None]
    return target.combine(ordered) if ordered else None


def backward(root: Node, delta: Any, targets: Optional[Sequence[Node]] = None) -> Optional[list]:
    """Send ``delta`` back from ``root`` and accumulate every reached node's gradient.

    Blocks until the pass is over. Raises the first exception a vjp raised;
    then no gradient has changed and the graph can be run again.

    With ``targets``, the pass commits nothing to any node's gradient and
    returns, for each target, the total delta the pass sent it (None where
    it sent none).

    >>> from corgi.engine import Node, backward
    >>> x = Node()
    >>> y = Node((x, x), lambda d: (3 * d, 4 * d), name="y")  # y = 3x + 4x
    >>> backward(y, 1)
    >>> x.gradient, y.gradient
    (7, 1)
    >>> backward(y, 10, targets=[x, Node()]), x.gradient
    ([70, None], 7)
    """
    recorders = _trace.active()
    this = _Pass(0, recorders)
    if recorders is not None:
        recorders.event("start", this.id, root)
    reached: list = []
    try:
        count_consumers(root, this, reached)
        this.remaining = len(reached)
        if recorders is not None:
            for node in reached:
                recorders.event("count", this.id, node, None, node.pending.get(this, 0))
        this.drive(root, delta)
    except BaseException as interrupt:  # noqa: B036 - e.g. KeyboardInterrupt while waiting
        this.fail(interrupt)
        this.wait_idle()
    error = this.error
    if error is not None:
        # Drop everything the pass holds before raising: the traceback keeps
        # its frames (and so this pass) alive, and the pass must not keep the
        # exception, its counters or its staged deltas in return.
        forget(reached, this)
        this.staged_nodes.clear()
        this.staged_deltas.clear()
        this.ready.clear()
        this.error = _FAILED
        if recorders is not None:
            recorders.event("end", this.id, root, None, "failed")
        this = None
        try:
            raise error
        finally:
            error = None
    if targets is not None:
        totals = {id(node): total for node, total in zip(this.staged_nodes, this.staged_deltas)}
        if recorders is not None:
            recorders.event("end", this.id, root, None, "done")
        return [totals.get(id(target)) for target in targets]
    hook = debug.hook
    for node, total in zip(this.staged_nodes, this.staged_deltas):
        with node.lock:
            current = node.gradient
            if hook is not None:
                hook("commit")
            node.gradient = total if current is None else current + total
    if recorders is not None:
        recorders.event("end", this.id, root, None, "done")
    return None


# What a failed pass's ``error`` becomes once the exception is on its way out.
_FAILED = RuntimeError("this backward pass failed")
