"""The engine nodes of tracked Arrays.

A tracked Array's node is an ``engine.Node`` that also knows its array's
shape and dtype. A node made by an operation keeps the shared tuple of the
tracked operands' vjps and what the primitive's forward saved for them; its
``deltas`` calls each vjp and fits the result to its input's shape and
dtype, so no primitive un-broadcasts by itself.
"""

from __future__ import annotations

import numpy as np

from .. import engine
from .registry import sum_to

# Shape tuples shared between nodes: a million-node graph must stay small.
_SHAPES: dict = {}


def shared(shape: tuple) -> tuple:
    """``shape`` as a tuple shared with every other node of that shape."""
    if len(_SHAPES) < 4096:
        return _SHAPES.setdefault(shape, shape)
    return shape


class ArrayNode(engine.Node):
    """The node of a tracked Array: it knows its Array's shape and dtype; deltas are numpy arrays."""

    __slots__ = ("shape", "dtype")

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

    __slots__ = ("vjps", "saved")

    def deltas(self, delta: np.ndarray) -> tuple:
        vjps = self.vjps
        saved = self.saved
        inputs = self.inputs
        node = inputs[0]
        first = vjps[0](delta, saved)
        if first.shape != node.shape or first.dtype != node.dtype:
            first = fit(first, node.shape, node.dtype)
        if len(vjps) == 1:
            return (first,)
        node = inputs[1]
        second = vjps[1](delta, saved)
        if second.shape != node.shape or second.dtype != node.dtype:
            second = fit(second, node.shape, node.dtype)
        if len(vjps) == 2:
            return (first, second)
        rest = [fit(vjp(delta, saved), node.shape, node.dtype) for vjp, node in zip(vjps[2:], inputs[2:])]
        return (first, second, *rest)


def fit(delta: np.ndarray, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A rule's delta summed down to its operand's dimensions, in its operand's dtype."""
    if delta.shape != shape:
        delta = sum_to(delta, shape)
    return delta if delta.dtype == dtype else delta.astype(dtype)
