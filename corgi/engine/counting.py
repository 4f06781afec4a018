"""The per-pass counter protocol: count before the pass, report during it, drop the table after.

Each pass owns one table, ``counts``: a dict from every node it reaches (the
root excepted) to what that node still waits for in the pass. Only consumers
reachable from the root count, so an unrelated consumer of a shared input
never holds a pass up; every edge counts once, so ``x * x`` reports to ``x``
twice. The walk keeps its own stack, so a chain of a million nodes needs no
recursion. Nodes are keys by identity (``Node`` forbids a subclass to
redefine equality).

The state of a node in one pass:

- ``1`` (a plain int): the node has one consumer in this pass. Its only
  report completes it, so that report just removes the entry; no container
  is allocated and no lock is needed.
- ``[tokens, reports]`` for n > 1 consumers: counting leaves n tokens
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

Why the table belongs to the pass and not to the nodes: passes that share
nodes (other threads, a finalizer or a signal handler running a pass in the
middle of one) never touch each other's tables, a failed pass forgets all
its counters with one ``clear()``, and a graph costs no counter memory
between passes. (Each node used to carry a dict of its passes' entries:
64 bytes a node for the graph's life, and about 170 more during a pass for
the dict's table, against about 40 bytes an entry in one table of the pass.)

Without locks there is nothing a signal handler or a finalizer that runs in
the middle of a report could wait for: it may run a whole pass of its own
through the same nodes (another table) and the protocol stays exact.

``report`` returns the node's total when its last report arrives, or one of
two named outcomes: ``WAITING`` (other consumers have yet to report) and
``NOT_COUNTED`` (the table has no entry for the node: an engine error, or a
step that outlived its failed pass).
"""

from __future__ import annotations

from itertools import islice, repeat
from operator import gt, is_not
from typing import Any, Final

from . import debug
from .node import Node

Counts = dict[Node, Any]


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


WAITING: Final = Outcome("WAITING")
NOT_COUNTED: Final = Outcome("NOT_COUNTED")


def count_consumers(root: Node, counts: Counts) -> Counts:
    """Enter in ``counts`` every node below ``root`` with what it waits for in this pass; return ``counts``.

    The nodes are entered in the order the walk reaches them. The root has
    no consumers in this pass and gets no entry. If the walk is cut short,
    ``counts.clear()`` forgets whatever it entered.

    >>> a = Node(); b = Node((a, a)); c = Node((b, a))
    >>> counts = count_consumers(c, {})
    >>> [node is m for node, m in zip(counts, (b, a))]
    [True, True]
    >>> waiting_for(b, counts), waiting_for(a, counts)
    (1, 3)
    """
    stack = [root]
    push = stack.append
    pop = stack.pop
    entry = counts.get
    hook = debug.hook
    # Only this thread writes this pass's table while counting. (The loop is written twice so
    # that the common case, no yield point set, tests nothing extra for each of a million edges.)
    if hook is None:
        while stack:
            for node in pop().inputs:
                state = entry(node)
                if state is None:
                    counts[node] = 1
                    push(node)
                elif type(state) is int:
                    counts[node] = [[1, None], []]
                else:
                    state[0].append(None)
        return counts
    while stack:
        for node in pop().inputs:
            state = entry(node)
            hook("count")
            if state is None:
                counts[node] = 1
                push(node)
            elif type(state) is int:
                counts[node] = [[1, None], []]
            else:
                state[0].append(None)
    return counts


def report(target: Node, counts: Counts, order: int, delta: Any) -> Any:
    """Deliver one consumer's ``delta`` to ``target`` in the pass whose table is ``counts``.

    ``order`` is the canonical position of this report (the consumer's
    sequence id << 32 | argument position). Returns ``target``'s total for
    the pass when this was its last report (the deltas added in ``order``,
    None if none of them was a delta), else ``WAITING`` or ``NOT_COUNTED``.

    >>> x = Node(); y = Node((x, x))
    >>> counts = count_consumers(y, {})
    >>> report(x, counts, 1, 10), report(x, counts, 0, 5), report(x, counts, 2, 1)
    (WAITING, 15, NOT_COUNTED)
    """
    state = counts.get(target)
    if type(state) is int:
        # The only consumer in this pass. pop with a default: a failed pass may
        # have forgotten its counters while this step was still running.
        counts.pop(target, None)
        return delta
    if state is None:
        return NOT_COUNTED
    reports = state[1]
    reports.extend((order, delta))  # first the report, as one operation,
    hook = debug.hook
    if hook is not None:
        hook("report")
    if state[0].pop() != 1:  # then a token
        return WAITING
    counts.pop(target, None)
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


def waiting_for(node: Node, counts: Counts) -> int:
    """How many reports ``node`` still waits for in the pass whose table is ``counts`` (0 if none).

    >>> a = Node(); counts = count_consumers(Node((a, a, a)), {})
    >>> waiting_for(a, counts), waiting_for(a, {})
    (3, 0)
    """
    state = counts.get(node)
    if state is None:
        return 0
    if type(state) is int:
        return state
    return len(state[0])
