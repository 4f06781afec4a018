"""The per-pass counter protocol: count before the pass, report during it, forget after a failure.

Each node keeps, in ``node.pending[key]``, what it still waits for in the
pass ``key``. Only consumers reachable from the root count, so an unrelated
consumer of a shared input never holds a pass up; every edge counts once, so
``x * x`` reports to ``x`` twice. The walk keeps its own stack, so a chain of
a million nodes needs no recursion.

The state of a node in one pass:

- ``1`` (a plain int): the node has one consumer in this pass. Its only
  report completes it, so that report just removes the entry; no container
  is allocated and no lock is needed.
- ``[n, tokens, reports]`` for n > 1 consumers: counting leaves n tokens
  in the list ``tokens``, the token 1 first and then None for each other
  consumer (None is one shared object: a node with half a million
  consumers costs no int objects for them, 32 bytes each). A report extends the flat list
  ``reports`` by its order key and its delta (one ``extend``), then pops one
  token from the end of ``tokens``. Both are single operations on built-in
  lists, so they are atomic without a lock (under the GIL, and by the
  lists' own locks on free-threaded builds). Every report extends before it
  pops, so the reporter that pops token 1 is the last one, and it finds
  every report in the list. That reporter, and only that one, fires the
  node. The pair handed to ``extend`` is freed at once, so nothing a report
  allocates outlives it for the collector to count, and the reports of a
  node with half a million consumers lie in one flat list, in memory order.

Without locks there is nothing a signal handler or a finalizer that runs in
the middle of a report could wait for: it may run a whole pass of its own
through the same nodes (another key) and the protocol stays exact.

``report`` returns the node's total when its last report arrives, or one of
two named outcomes: ``WAITING`` (other consumers have yet to report) and
``NOT_COUNTED`` (the pass has no entry for the node: an engine error, or a
step that outlived its failed pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice, repeat
from operator import attrgetter, gt, is_not, methodcaller
from typing import Any, Final

from . import debug
from .atomic import _FREE_THREADED, NEVER
from .node import Node


class Outcome:
    """A named result of ``report`` that is not a total (``WAITING``, ``NOT_COUNTED``).

    >>> WAITING, NOT_COUNTED
    (WAITING, NOT_COUNTED)
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# Release an emptied ``pending`` table: a dict keeps its table after its last key is
# popped (about 170 bytes a node, half again the node itself, for as long as the graph
# lives). ``if not pending: pending.clear()`` runs no eval-breaker check between the
# test and the clear (see ``atomic``), so under the GIL no other thread or handler can
# add a key in between. A free-threaded build has no such guarantee: there the table stays.
SHRINK: Final = not _FREE_THREADED

WAITING: Final = Outcome("WAITING")
NOT_COUNTED: Final = Outcome("NOT_COUNTED")
_pending_of = attrgetter("pending")


def count_consumers(root: Node, key: object, reached: list[Node] | None = None) -> list[Node]:
    """Register ``key``'s counters on every node below ``root``.

    Returns the nodes reached, root first, appended to ``reached`` if given
    (a node is appended before its entry is made, so a caller always knows
    every node that may hold one, even if the walk is cut short). The root
    has no consumers in this pass and gets no entry.

    >>> a = Node(); b = Node((a, a)); c = Node((b, a))
    >>> [n is m for n, m in zip(count_consumers(c, "p"), (c, b, a))]
    [True, True, True]
    >>> waiting_for(b, "p"), waiting_for(a, "p")
    (1, 3)
    """
    if reached is None:
        reached = []
    reached.append(root)
    stack = [root]
    push = stack.append
    pop = stack.pop
    keep = reached.append
    hook = debug.hook
    while stack:
        for node in pop().inputs:
            # Only this thread writes ``key`` while counting, and other passes
            # write other keys, so single dict operations are enough.
            pending = node.pending
            state = pending.get(key)
            if hook is not None:
                hook("count")
            if state is None:
                keep(node)
                pending[key] = 1
                push(node)
            elif type(state) is int:
                pending[key] = [2, [1, None], []]
            else:
                state[0] += 1
                state[1].append(None)
    return reached


def report(target: Node, key: object, order: int, delta: Any) -> Any:
    """Deliver one consumer's ``delta`` to ``target`` in pass ``key``.

    ``order`` is the canonical position of this report (the consumer's
    sequence id << 32 | argument position). Returns ``target``'s total for
    the pass when this was its last report (the deltas added in ``order``,
    None if none of them was a delta), else ``WAITING`` or ``NOT_COUNTED``.

    >>> x = Node(); y = Node((x, x))
    >>> _ = count_consumers(y, "p")
    >>> report(x, "p", 1, 10), report(x, "p", 0, 5), report(x, "p", 2, 1)
    (WAITING, 15, NOT_COUNTED)
    """
    pending = target.pending
    state = pending.get(key)
    if type(state) is int:
        # The only consumer in this pass. pop, not del: a failed pass may
        # have forgotten its counters while this step was still running.
        pending.pop(key, None)
        if SHRINK and not pending:
            pending.clear()
        return delta
    if state is None:
        return NOT_COUNTED
    reports = state[2]
    reports.extend((order, delta))  # first the report, as one operation,
    hook = debug.hook
    if hook is not None:
        hook("report")
    if state[1].pop() != 1:  # then a token
        return WAITING
    pending.pop(key, None)
    if SHRINK and not pending:
        pending.clear()
    return _sum_in_order(target, reports)


def _sum_in_order(target: Node, reports: list[Any]) -> Any:
    # A serial pass reaches a node's consumers newest first, so the reports usually arrive
    # in descending key order: then reversing them is the sort (no list of keys, no index
    # list; at the end of a pass, when every gradient is alive, these copies set the peak).
    if all(map(gt, islice(reports, 0, None, 2), islice(reports, 2, None, 2))):
        ordered = reports[1::2]
        reports.clear()
        ordered.reverse()
    else:
        keys = reports[0::2]
        received = reports[1::2]
        reports.clear()
        ordered = [received[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]
        del received, keys  # combine may release each delta once it is added
    if all(map(is_not, ordered, repeat(None))):
        deltas = ordered
    else:
        deltas = [delta for delta in ordered if delta is not None]
    del ordered
    return target.combine(deltas) if deltas else None


def waiting_for(node: Node, key: object) -> int:
    """How many reports ``node`` still waits for in pass ``key`` (0 if none).

    >>> a = Node(); _ = count_consumers(Node((a, a, a)), "p")
    >>> waiting_for(a, "p"), waiting_for(a, "another pass")
    (3, 0)
    """
    state = node.pending.get(key)
    if state is None:
        return 0
    if type(state) is int:
        return state
    return len(state[1])


def forgetting(nodes: list[Node], key: object) -> Iterator[Any]:
    """An iterator that drops ``key``'s counters from ``nodes`` when it is run (lazily).

    Build it before counting and run it with ``NEVER in it`` when the pass
    fails: ``in`` drives the iterator in C, so no signal handler can cut the
    clean-up short (see ``atomic``). ``nodes`` may still grow after the
    iterator is built; it visits every node present when it runs.

    >>> a = Node(); reached = []
    >>> clean_up = forgetting(reached, "p")
    >>> _ = count_consumers(Node((a,)), "p", reached)
    >>> NEVER in clean_up, a.pending
    (False, {})
    """
    return map(methodcaller("pop", key, None), map(_pending_of, nodes))


def forget(nodes: list[Node], key: object) -> None:
    """Drop ``key``'s counters from ``nodes`` in one step (after a failed pass).

    >>> a = Node(); reached = count_consumers(Node((a,)), "p")
    >>> forget(reached, "p"); a.pending
    {}
    """
    NEVER in forgetting(nodes, key)  # noqa: B015 - the test runs the iterator
