"""Changing gradients: every change is one step that completes or never starts.

A pass commits by adding its staged deltas into many nodes' gradients; an
optimizer takes gradients and may put them back. Each of these must be all
or nothing, whatever interrupts it, and two of them on different threads
must never lose each other's work. So every change is made in two parts:

1. Prepare, outside every lock: read the gradients, compute the new values
   (``current + total``). Anything may happen here: numpy may raise
   ``FloatingPointError``, a signal handler may raise ``KeyboardInterrupt``,
   the collector may run a finalizer that calls corgi. Nothing has changed.
2. Publish, in one indivisible step (``atomic.publish``): if every node
   still holds the value read in part 1, store every new value; otherwise
   store nothing, and part 1 starts again from what is there now.

After a successful publish these functions return at once, and a return
from a Python function makes no check for pending signals: an interrupt
that arrives during or after the publish runs its handler in the caller,
after the call has returned with everything done.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

from . import debug
from .atomic import publish

_gradient_of = attrgetter("gradient")


def add_gradients(nodes: Sequence[Any], totals: Sequence[Any]) -> None:
    """Add ``totals[i]`` into ``nodes[i]``'s gradient for every i, all at once or not at all.

    If an addition raises (``FloatingPointError`` under ``np.errstate``), or
    anything interrupts before the publish step, no gradient changes. This
    is how a pass commits, and how an optimizer puts back gradients it took.
    The nodes must be distinct.

    >>> from corgi.engine import Node, add_gradients
    >>> a, b = Node(), Node()
    >>> add_gradients((a, b), (1, 2)); add_gradients((a, b), (10, 20)); a.gradient, b.gradient
    (11, 22)
    """
    current = list(map(_gradient_of, nodes))
    if all(map(is_, current, repeat(None))):
        values = totals
    else:
        values = [total if now is None else now + total for now, total in zip(current, totals)]
    hook = debug.hook
    if hook is not None:
        hook("commit")
    while True:
        if publish(nodes, "gradient", current, values):
            return
        # Another change landed since the read: recompute the nodes it touched.
        fresh = list(map(_gradient_of, nodes))
        values = [
            value if now is then else (total if now is None else now + total)
            for now, then, value, total in zip(fresh, current, values, totals)
        ]
        current = fresh


def take_gradients(nodes: Sequence[Any]) -> list[Any]:
    """The nodes' gradients (None where there is none), all cleared in the same indivisible step.

    A pass that commits meanwhile lands entirely in what is taken or
    entirely in the nodes afterwards: an optimizer never steps with half a
    pass, and never wipes one.

    >>> from corgi.engine import Node, add_gradients, take_gradients
    >>> a, b = Node(), Node(); add_gradients((a,), (5,))
    >>> take_gradients((a, b)), a.gradient
    ([5, None], None)
    """
    nothing = [None] * len(nodes)
    while True:
        current = list(map(_gradient_of, nodes))
        if publish(nodes, "gradient", current, nothing):
            return current


def replace_gradients(nodes: Sequence[Any], values: Sequence[Any]) -> None:
    """Make ``values[i]`` the gradient of ``nodes[i]`` (None clears it), all in one indivisible step.

    Whatever the nodes held is dropped; a pass that commits meanwhile lands
    entirely before the step (and is dropped with the rest) or entirely
    after it (and adds onto the new values). Data-parallel training uses it
    to install the gradients averaged across processes.

    >>> from corgi.engine import Node, add_gradients, replace_gradients
    >>> a, b = Node(), Node(); add_gradients((a,), (5,))
    >>> replace_gradients((a, b), (1, None)); a.gradient, b.gradient
    (1, None)
    """
    while True:
        current = list(map(_gradient_of, nodes))
        if publish(nodes, "gradient", current, values):
            return


def take_gradient(node: Any) -> Any:
    """``take_gradients`` for one node (``Node.take_gradient``), with less bookkeeping.

    >>> from corgi.engine import Node
    >>> a = Node(); a.add_gradient(5)
    >>> take_gradient(a), take_gradient(a), a.gradient
    (5, None, None)
    """
    while True:
        value = node.gradient
        if value is None:  # a pass committing now lands after this take
            return None
        if publish((node,), "gradient", (value,), (None,)):
            return value
