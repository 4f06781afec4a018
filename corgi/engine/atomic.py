"""Indivisible steps: a change that nothing can interrupt half-way or run code inside.

``publish(objects, attribute, expected, values)`` stores ``values[i]`` as
``objects[i].<attribute>`` for every i, but only if each still holds
``expected[i]`` (by identity); otherwise it stores nothing. Gradient commits
and clears (``gradients``) and the ready-hook registry (``hooks``) change
state only through it.

What makes the step indivisible. CPython runs a Python-level signal handler
only at an "eval breaker" check: at the start of a Python function, at a
loop's backward jump and after a call into C returns; never in the middle of
C code (the ``signal`` docs: "a long-running calculation implemented purely
in C ... may run uninterrupted for an arbitrary amount of time, regardless
of any signals received"). The step is a chain of C iterators (``map`` over
``operator.is_``, ``setattr`` and the lock's own methods) that a single
``in`` test drives; ``in`` is a bytecode that makes no such check. So it
takes the lock, checks every object, stores every value and releases the
lock without running a line of Python:

- no signal handler runs inside it, so an interrupt lands before the step
  (nothing changed) or after it (everything changed), never between two
  stores;
- no finalizer runs inside it: it allocates nothing the collector tracks,
  and the values it replaces are still referenced by the caller (they are
  ``expected``), so none is freed there;
- no other thread interleaves. With the GIL (every CPython before the
  free-threaded builds), a thread gives the GIL away only at an eval
  breaker check or where C code releases it on purpose, and none of these
  C functions does, so the step runs whole. On a free-threaded build the
  step takes a lock first and releases it last, both inside the same C
  iteration: the lock is only ever held inside a step, so nothing that
  could run while it is held could wait for it. (If the lock is contended,
  ``acquire`` may run a signal handler while it waits, as it does to stay
  interruptible, but the lock is not held yet and the checks come after
  it, so whatever the handler changed is seen.)

``tests/test_faults.py`` checks these interpreter facts with real signals,
so a future CPython that changed them would fail the suite loudly.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter, call, is_
from typing import Any, Final

# The one lock of every indivisible step, held only inside one; needed only
# where no GIL makes the step indivisible between threads. (A free-threaded
# interpreter may turn the GIL on later, never off again.)
_lock = threading.Lock()
_FREE_THREADED: Final = not getattr(sys, "_is_gil_enabled", lambda: True)()
_getters: Final = {"gradient": attrgetter("gradient")}


class Never:
    """A value that no step of an indivisible clean-up yields: ``NEVER in steps`` runs them all.

    >>> NEVER in iter([None, 0, False])
    False
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEVER"


NEVER: Final = Never()


def publish(objects: Sequence[Any], attribute: str, expected: Sequence[Any], values: Sequence[Any]) -> bool:
    """Store ``values`` into ``attribute`` of ``objects`` if each still holds ``expected``, all at once.

    Returns True if every object was updated, False (and nothing changed)
    if any of them no longer held its expected value. The caller keeps
    ``expected`` referenced, so replacing a value never frees it in the step.

    >>> from types import SimpleNamespace
    >>> a, b = SimpleNamespace(x=None), SimpleNamespace(x=None)
    >>> publish((a, b), "x", (None, None), (1, 2)), a.x, b.x
    (True, 1, 2)
    >>> publish((a, b), "x", (1, None), (10, 20)), a.x, b.x   # b changed meanwhile: nothing stored
    (False, 1, 2)
    """
    if not _FREE_THREADED and len(objects) == 1 and attribute == "gradient":
        # One object: the same step in bytecodes that make no eval breaker
        # check (attribute and subscript loads, ``is``, a forward jump, a
        # store, a return), so nothing can run between the check and the store.
        node = objects[0]
        if node.gradient is expected[0]:
            node.gradient = values[0]
            return True
        return False
    getter = _getters.get(attribute) or attrgetter(attribute)
    check = map(is_, map(getter, objects), expected)  # a False ends the step, before any store
    store = map(setattr, objects, repeat(attribute), values)  # None each
    if not _FREE_THREADED:
        return False not in chain(check, store)
    lock = _lock
    if False in chain(map(call, (lock.acquire,)), check, store, map(call, (lock.release,))):
        lock.release()
        return False
    return True


def _after_fork_in_child() -> None:
    # A thread of the parent may have been inside a step at the fork; it does not exist here.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
