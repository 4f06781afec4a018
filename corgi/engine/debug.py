"""A debug yield point inside the engine's shared-state updates, for race tests.

CPython switches threads only at calls and backward jumps, so a race between
a read and a write of shared state stays hidden unless a call sits between
them. With a hook installed, the engine calls ``hook(where)`` at each such
place, while it holds the state it read:

- ``"count"``: counting read a node's per-pass counter and will write it;
- ``"report"``: a report read a node's counter (under the node's lock) and
  will decrement it;
- ``"stage"``: a step is joining its staged gradients to the pass's lists;
- ``"commit"``: a pass read a node's gradient (under the node's lock) and
  will write the sum.

A hook that sleeps or yields (``time.sleep(0)``) lets other threads run in
exactly those windows; the locks must keep every result exact. Outside tests
no hook is installed, and each site costs one ``None`` check.

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

from typing import Callable, Optional

Hook = Callable[[str], None]

hook: Optional[Hook] = None


def set_yield_point(new: Optional[Hook]) -> Optional[Hook]:
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
