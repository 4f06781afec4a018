"""The engine nodes of tracked Arrays: the one place that builds them.

A tracked Array's node is an ``engine.Node`` that also knows its array's
shape and dtype. Each kind is built whole by its constructor, in one step:

- ``leaf_node`` for an array that was marked tracked (``start_tracking``,
  an optimizer's new parameter, an unpickled array);
- ``OpNode`` for the result of a registered operation (``_apply``): it keeps
  the shared tuple of the tracked operands' vjps and what the primitive's
  forward saved for them, and its ``deltas`` calls each vjp and fits the
  result to its input's shape and dtype, so no primitive un-broadcasts by
  itself;
- ``ArrayNode`` with a ``vjp`` for a user-defined operation (``Array.op``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from .. import engine
from .registry import Vjp, sum_to

Shape = tuple[int, ...]

# Shape tuples shared between nodes: a million-node graph must stay small.
_SHAPES: dict[Shape, Shape] = {}


def shared(shape: Shape) -> Shape:
    """``shape`` as a tuple shared with every other node of that shape."""
    if len(_SHAPES) < 4096:
        return _SHAPES.setdefault(shape, shape)
    return shape


class ArrayNode(engine.Node):
    """The node of a tracked Array: it knows its Array's shape and dtype; deltas are numpy arrays.

    Built whole by ``leaf_node``, ``op_node`` or ``custom_node`` (the engine's
    ``Node.__init__``, then the array's fields), never field by field elsewhere.
    """

    __slots__ = ("dtype", "shape")
    shape: Shape
    dtype: np.dtype[Any]

    def combine(self, deltas: list[np.ndarray]) -> np.ndarray:
        """Add the deltas reported to this node, in the order given (the list may be used up).

        Eight or more are added as ``np.add.reduce(np.stack(deltas), axis=0)``
        would add them, bit for bit, but into one buffer: numpy's reduction
        starts from 0 and adds row after row, so that is what this does, and
        each delta is released as soon as it has been added (a 100 MB leaf
        with 16 consumers needed a 1.6 GB stack before). Only deltas of one
        element each are stacked (a column of k numbers), because numpy adds
        a column pairwise and that order must not change.

        >>> import numpy as np
        >>> deltas = [np.full(3, float(k)) for k in range(10)]
        >>> reference = np.add.reduce(np.stack(deltas), axis=0)
        >>> ArrayNode().combine(deltas).tobytes() == reference.tobytes(), deltas
        (True, [])
        """
        total: np.ndarray
        if len(deltas) < 8:
            total = engine.Node.combine(self, deltas)
        elif deltas[0].size == 1:
            total = np.add.reduce(np.stack(deltas), axis=0)
        else:
            deltas.reverse()
            total = np.add(deltas.pop(), 0)  # 0 + first, as numpy's reduction begins (-0.0 becomes 0.0)
            while deltas:
                np.add(total, deltas.pop(), out=total)
        return total


class OpNode(ArrayNode):
    """A node made by ``_apply``: it calls its tracked operands' vjps and fits their deltas."""

    __slots__ = ("saved", "vjps")
    vjps: tuple[Vjp, ...]
    saved: Any
    inputs: tuple[ArrayNode, ...]

    def deltas(self, delta: np.ndarray) -> tuple[np.ndarray, ...]:
        vjps = self.vjps
        saved = self.saved
        inputs = self.inputs
        node = inputs[0]
        first = vjps[0](delta, saved)
        # (``is`` first: numpy's built-in dtypes are shared objects, and comparing them costs a call)
        if first.shape != node.shape or (first.dtype is not node.dtype and first.dtype != node.dtype):
            first = fit(first, node.shape, node.dtype)
        if len(vjps) == 1:
            return (first,)
        node = inputs[1]
        second = vjps[1](delta, saved)
        if second.shape != node.shape or (second.dtype is not node.dtype and second.dtype != node.dtype):
            second = fit(second, node.shape, node.dtype)
        if len(vjps) == 2:
            return (first, second)
        node = inputs[2]
        third = vjps[2](delta, saved)
        if third.shape != node.shape or (third.dtype is not node.dtype and third.dtype != node.dtype):
            third = fit(third, node.shape, node.dtype)
        if len(vjps) == 3:  # a product with its bias
            return (first, second, third)
        rest = [fit(vjp(delta, saved), node.shape, node.dtype) for vjp, node in zip(vjps[3:], inputs[3:])]
        return (first, second, third, *rest)


class ActivatedNode(OpNode):
    """A product with its activation in one node (a Dense layer's ``activation(x @ w + b)``).

    Its ``deltas`` run the activation's vjp on the arriving delta, fit it as the activation's
    own node would, then the product's vjps: the same numpy operations in the same order as two
    nodes, so the same bits, with one node less to record and to run.
    """

    __slots__ = ("activation_saved", "activation_vjp")
    activation_vjp: Vjp
    activation_saved: Any

    def deltas(self, delta: np.ndarray) -> tuple[np.ndarray, ...]:
        inner = self.activation_vjp(delta, self.activation_saved)
        if inner.shape != self.shape or (inner.dtype is not self.dtype and inner.dtype != self.dtype):
            inner = fit(inner, self.shape, self.dtype)
        return OpNode.deltas(self, inner)


_new_node = object.__new__
_next_seq = engine.node.next_seq


def leaf_node(values: np.ndarray, name: str | None = None) -> ArrayNode:
    """The node of an array marked tracked: no inputs, a gradient slot; ``name`` labels it in traces."""
    # every field, the engine's included, without ``Node.__init__`` (as ``op_node``)
    node: ArrayNode = _new_node(ArrayNode)
    node.inputs = ()
    node.vjp = None
    node.name = "leaf" if name is None else name
    node.cost = 0
    node.seq = _next_seq()
    node.gradient = None
    shape = values.shape
    node.shape = _SHAPES.get(shape) or shared(shape)
    node.dtype = values.dtype
    return node


def op_node(
    inputs: tuple[ArrayNode, ...], name: str, cost: int, value: np.ndarray, vjps: tuple[Vjp, ...], saved: Any,
    kind: type[OpNode] = OpNode,
) -> OpNode:
    """The node of an operation's result: its inputs, the tracked operands' vjps (one per input, in
    order) and what the forward saved for them.

    Every field is stored here, the engine's (``Node.__init__``'s) included, without calling
    ``__init__``: one recorded operation then costs one Python call instead of two, a tenth of the
    forward's overhead per node (callgrind, the (b) chain). ``tests/test_nodes_fields.py`` checks
    that it sets exactly what ``Node.__init__`` sets.
    """
    node: OpNode = _new_node(kind)
    node.inputs = inputs
    node.vjp = None
    node.name = name
    node.cost = cost
    node.seq = _next_seq()
    node.gradient = None
    shape = value.shape
    node.shape = _SHAPES.get(shape) or shared(shape)
    node.dtype = value.dtype
    node.vjps = vjps
    node.saved = saved
    return node


def activated_node(
    inputs: tuple[ArrayNode, ...], name: str, cost: int, value: np.ndarray, vjps: tuple[Vjp, ...], saved: Any,
    activation_vjp: Vjp, activation_saved: Any,
) -> ActivatedNode:
    """``op_node`` for a product whose result ``value`` went through an activation in the same node:
    the product's vjps and saved values, and the activation's vjp and what its forward saved."""
    node = cast(ActivatedNode, op_node(inputs, name, cost, value, vjps, saved, ActivatedNode))
    node.activation_vjp = activation_vjp
    node.activation_saved = activation_saved
    return node


def custom_node(inputs: tuple[ArrayNode, ...], vjp: Callable[[Any], Sequence[Any]], name: str, value: np.ndarray) -> ArrayNode:
    """The node of a user-defined operation's result (``Array.op``), whose ``vjp`` gives every delta."""
    node = ArrayNode(inputs, vjp, name, value.size)
    node.shape = shared(value.shape)
    node.dtype = value.dtype
    return node


def fit(delta: np.ndarray, shape: Shape, dtype: np.dtype[Any]) -> np.ndarray:
    """A rule's delta summed down to its operand's dimensions, in its operand's dtype."""
    if delta.shape != shape:
        delta = sum_to(delta, shape)
    return delta if delta.dtype == dtype else delta.astype(dtype)
