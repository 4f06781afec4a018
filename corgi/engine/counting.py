"""Consumer counting: how many reports each node waits for in one pass.

Only consumers reachable from the root count, so an unrelated consumer of a
shared input never holds a pass up. Every edge counts once: ``x * x`` reports
to ``x`` twice. The walk keeps its own stack, so a chain of a million nodes
needs no recursion.
"""

from __future__ import annotations

from typing import Optional

from . import debug
from .node import Node


def count_consumers(root: Node, key: object, reached: Optional[list] = None) -> list[Node]:
    """Register ``key``'s counters on every node below ``root``.

    Returns the nodes reached, root first, appended to ``reached`` if given
    (so a caller still knows what was counted if the walk is cut short). Each one gets
    ``pending[key] = consumers``; the root has no consumers in this pass and
    gets no entry. Counts are plain integers: the walk allocates no
    container per node, which keeps the garbage collector out of it.

    >>> a = Node(); b = Node((a, a)); c = Node((b, a))
    >>> [n is m for n, m in zip(count_consumers(c, "p"), (c, b, a))]
    [True, True, True]
    >>> b.pending["p"], a.pending["p"]
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
            # Single-key dict reads and writes are atomic, and only this
            # thread touches ``key`` until counting ends, so no lock is needed
            # here even while other passes use the same nodes.
            pending = node.pending
            count = pending.get(key)
            if hook is not None:
                hook("count")
            if count is None:
                pending[key] = 1
                keep(node)
                push(node)
            else:
                pending[key] = count + 1
    return reached


def forget(nodes: list[Node], key: object) -> None:
    """Drop ``key``'s counters from ``nodes`` (after a failed pass)."""
    for node in nodes:
        with node.lock:
            node.pending.pop(key, None)

