"""A graph node: what a tracked array was computed from, and how to send a delta back.

The engine sees nodes only. A node knows its ``inputs`` (the nodes it was
computed from), a ``vjp`` that turns the delta arriving at the node into one
delta per input, its per-pass counters and its gradient. Deltas can be any
values that support ``+`` (numpy arrays in corgi, plain integers in the
engine's own tests): the engine never looks inside them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from . import gradients

# Creation order gives every node a sequence id. ``itertools.count`` is atomic
# (under the GIL, and by its own lock on free-threaded builds since 3.13), so
# ids are unique across threads; they order the deltas a node sums.
_sequence = itertools.count()
# The next id, for subclasses that build their nodes without ``Node.__init__``
# (corgi's operation nodes: one Python call less per recorded operation).
next_seq = _sequence.__next__

Vjp = Callable[[Any], Sequence[Any]]


class Node:
    """One vertex of the graph a tracked array records.

    What a node still waits for in a running pass lives in that pass's own
    table (``counting``), keyed by the node itself: nodes compare and hash
    by identity, and a subclass may not redefine ``__eq__`` or ``__hash__``.
    ``gradient`` is the sum of every committed pass's delta; read it freely
    (it is replaced, never changed in place), but change it only through
    ``clear_gradient``, ``take_gradient`` and ``add_gradient``, which are
    atomic with respect to passes committing on other threads.

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

    __slots__ = ("__weakref__", "cost", "gradient", "inputs", "name", "seq", "vjp")

    def __init__(
        self,
        inputs: tuple[Node, ...] = (),
        vjp: Vjp | None = None,
        name: str = "leaf",
        cost: int = 0,
    ) -> None:
        self.inputs = inputs
        self.vjp = vjp
        self.name = name
        # An estimate of the work in ``vjp`` (about one unit per element or
        # multiply-add); the scheduler hands only costly nodes to the pool.
        self.cost = cost
        self.seq = next_seq()
        self.gradient: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A pass's table of counters is keyed by node: two distinct nodes that
        # compared equal would share one entry and lose a report.
        super().__init_subclass__(**kwargs)
        for name in ("__eq__", "__hash__"):
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__}: an engine Node compares by identity; it may not define {name}")

    def deltas(self, delta: Any) -> Sequence[Any]:
        """One delta per input for the ``delta`` arriving here.

        >>> x, y = Node(), Node()
        >>> Node((x, y), lambda delta: (delta, -delta), name="sub").deltas(3)
        (3, -3)
        """
        vjp = self.vjp
        if vjp is None:
            raise TypeError(f"{self.name}: a node with inputs needs a vjp or its own deltas()")
        return vjp(delta)

    def combine(self, deltas: list[Any]) -> Any:
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
        gradients.take_gradient(self)

    def take_gradient(self) -> Any:
        """Return the accumulated gradient (or None) and clear it, in one atomic step.

        A pass that commits on another thread lands either in the value
        taken or in the node afterwards, never in neither.

        >>> from corgi.engine import backward
        >>> x = Node()
        >>> backward(Node((x,), lambda delta: (3 * delta,)), 1)
        >>> x.take_gradient(), x.gradient
        (3, None)
        """
        return gradients.take_gradient(self)

    def add_gradient(self, value: Any) -> None:
        """Add ``value`` to the accumulated gradient atomically (as a pass commits).

        If the addition raises, the gradient is unchanged. This is how an
        optimizer puts back a gradient it took when its step failed.

        >>> x = Node()
        >>> x.add_gradient(3); x.add_gradient(4); x.gradient
        7
        """
        gradients.add_gradients((self,), (value,))

    def __repr__(self) -> str:
        return f"Node({self.name}#{self.seq}, inputs={[i.seq for i in self.inputs]})"
