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

    def combine(self, deltas: list) -> np.ndarray:
        # Many reports (a parameter used at every step of a long chain) add in
        # one numpy reduction rather than one Python-level add each; the order
        # is the engine's canonical one, so the bits are the same every run.
        if len(deltas) < 8:
            return engine.Node.combine(self, deltas)
        return np.add.reduce(np.stack(deltas), axis=0)


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
