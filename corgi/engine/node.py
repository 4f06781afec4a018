"""A graph node: what a tracked array was computed from, and how to send a delta back.

The engine sees nodes only. A node knows its ``inputs`` (the nodes it was
computed from), a ``vjp`` that turns the delta arriving at the node into one
delta per input, a lock, and a per-pass consumer counter. Deltas can be any
values that support ``+`` (numpy arrays in corgi, plain integers in the
engine's own tests): the engine never looks inside them.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Optional, Sequence

# Creation order gives every node a sequence id. ``itertools.count`` is atomic
# (under the GIL, and by its own lock on free-threaded builds since 3.13), so
# ids are unique across threads; they order the deltas a node sums.
_sequence = itertools.count()

Vjp = Callable[[Any], Sequence[Any]]

# A node's lock comes from a fixed table, by sequence id. Allocating a lock
# per node cost a fifth of a microsecond and 56 bytes on every recorded
# operation; sharing one among nodes is safe because the engine never holds
# two node locks at once, and each is held only for a few bytecodes.
_LOCKS = tuple(threading.Lock() for _ in range(1024))


class Node:
    """One vertex of the graph a tracked array records.

    ``lock`` guards ``pending`` and ``gradient``. It may be shared with
    other nodes (the engine never holds two node locks at once), so holding
    it only ever excludes other threads, never this one's own work.

    ``pending`` maps a running pass to how many consumers still have to
    report in that pass: a plain count until the first report, then
    ``[remaining, reports]`` with the reports received so far, flat:
    an order key (consumer id << 32 | argument position), then the delta. It is read and written only under ``lock``, so
    several passes can run through one node at once without sharing a
    count. ``gradient`` is the sum of every committed pass's delta.

    ``deltas(delta)`` turns the delta arriving at the node into one delta
    per input (``None`` for "no gradient"); by default it calls ``vjp``.
    Subclasses may override it instead of passing a ``vjp``, and may
    override ``combine`` to add many deltas at once; the engine always hands
    ``combine`` the deltas in the same canonical order.

    >>> leaf = Node()
    >>> double = Node((leaf,), lambda delta: (2 * delta,), name="double")
    >>> double.inputs == (leaf,), double.name, leaf.gradient
    (True, 'double', None)
    """

    __slots__ = ("inputs", "vjp", "name", "cost", "seq", "lock", "pending", "gradient", "__weakref__")

    def __init__(
        self,
        inputs: tuple["Node", ...] = (),
        vjp: Optional[Vjp] = None,
        name: str = "leaf",
        cost: int = 0,
    ) -> None:
        self.inputs = inputs
        self.vjp = vjp
        self.name = name
        # An estimate of the work in ``vjp`` (about one unit per element or
        # multiply-add); the scheduler hands only costly nodes to the pool.
        self.cost = cost
        self.seq = seq = next(_sequence)
        self.lock = _LOCKS[seq & 1023]
        self.pending: dict[object, list] = {}
        self.gradient: Any = None

    def deltas(self, delta: Any) -> Sequence[Any]:
        """One delta per input for the ``delta`` arriving here.

        >>> x, y = Node(), Node()
        >>> Node((x, y), lambda delta: (delta, -delta), name="sub").deltas(3)
        (3, -3)
        """
        return self.vjp(delta)

    def combine(self, deltas: list) -> Any:
        """Add the deltas reported to this node, in the order given (never empty).

        >>> Node().combine([1, 2, 3])
        6
        """
        total = deltas[0]
        for delta in deltas[1:]:
            total = total + delta
        return total

    @property
    def is_leaf(self) -> bool:
        """True for a node that records no inputs.

        >>> leaf = Node()
        >>> leaf.is_leaf, Node((leaf,), lambda delta: (delta,)).is_leaf
        (True, False)
        """
        return not self.inputs

    def clear_gradient(self) -> None:
        """Forget the accumulated gradient.

        >>> from corgi.engine import backward
        >>> x = Node()
        >>> backward(Node((x,), lambda delta: (3 * delta,)), 1)
        >>> x.gradient
        3
        >>> x.clear_gradient()
        >>> x.gradient is None
        True
        """
        with self.lock:
            self.gradient = None

    def __repr__(self) -> str:
        return f"Node({self.name}#{self.seq}, inputs={[i.seq for i in self.inputs]})"
