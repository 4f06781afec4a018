"""A debug yield point inside the engine's shared-state updates, for race and fault tests.

CPython switches threads only at calls and backward jumps, so a race between
a read and a write of shared state stays hidden unless a call sits between
them. With a hook installed, the engine calls ``hook(where)`` at each such
place, after it has read the state and before it writes:

- ``"count"``: counting read a node's per-pass counter and will write it;
- ``"report"``: a report to a node with several consumers has appended its
  delta and will take its token;
- ``"stage"``: a step is joining its staged totals to the pass's lists
  (under the pass's own lock);
- ``"commit"``: a pass has read the gradients and computed their sums, and
  will publish them.

A hook that sleeps or yields (``time.sleep(0)``) lets other threads run in
exactly those windows, and a hook that calls corgi (clears a gradient, runs
a whole pass) plays a finalizer or a signal handler that runs there; every
result must stay exact. Outside tests no hook is installed, and each site
costs one ``None`` check.

>>> import time
>>> from corgi.engine import Node, backward, set_yield_point
>>> seen = []
>>> previous = set_yield_point(lambda where: seen.append(where))
>>> x = Node(); backward(Node((x, x), lambda d: (d, d)), 1)
>>> sorted(set(seen)), x.gradient
(['commit', 'count', 'report', 'stage'], 2)
>>> set_yield_point(previous) is not None
True
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[[str], None]

hook: Hook | None = None


def set_yield_point(new: Hook | None) -> Hook | None:
    """Install ``new`` (or None) as the yield point; returns the one it replaces.

    >>> from corgi.engine import Node, backward
    >>> places = []
    >>> def note(where):
    ...     places.append(where)
    >>> previous = set_yield_point(note)
    >>> x = Node()
    >>> backward(Node((x,), lambda d: (2 * d,)), 1)
    >>> set_yield_point(previous) is note, x.gradient, "commit" in places
    (True, 2, True)
    """
    global hook
    previous = hook
    hook = new
    return previous
