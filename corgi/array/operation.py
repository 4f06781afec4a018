"""The one wrapper every operation goes through, and the operands it accepts.

``apply(name, operands, params)`` does what corgi 0.9.2 repeated in every
operation: unwrap the operands, run the primitive's forward, wrap the value
in a new Array (whose values are only ever shown read-only) and, only if an
operand is tracked and this thread records (``no_grad``), give it an engine
node that calls the vjps of the tracked operands alone and sums each delta
down to its operand's dimensions.

The Array class is defined above this module (``core.py``, whose bases are
the families' method mixins, which call ``apply``); it hands itself to
``bind`` once, when it is defined, so that nothing here imports it back.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeGuard

import numpy as np

from .nodes import ArrayNode, activated_node, op_node
from .recording import is_recording
from .registry import PRIMITIVES
from .values import to_values

if TYPE_CHECKING:
    from .core import Array

Array_: type[Array]  # corgi's Array class, bound by core.py as soon as it exists
_new_array = object.__new__  # an Array without __init__: its three slots are set right after


class ArrayData:
    """What every Array holds; the families' method mixins build on it (the slots are Array's)."""

    __slots__ = ()
    _values: np.ndarray  # owned, never written; shown read-only
    _node: ArrayNode | None  # the engine node, once tracked
    _tracked: bool


def bind(array_class: type[Array]) -> None:
    """Make ``array_class`` the class of every operation's result (called once, by core.py)."""
    global Array_
    Array_ = array_class


def apply(name: str, operands: tuple[Any, ...], params: dict[str, Any] | None = None) -> Array:
    """Run the registered primitive ``name`` on ``operands`` and record it if an operand is tracked."""
    Array = Array_
    if len(operands) == 1 and type(operands[0]) is Array:
        return _unary(name, operands[0], params)
    raw = [item._values if isinstance(item, Array) else item for item in operands]  # a subclass's too
    primitive = PRIMITIVES[name]
    try:
        result = primitive.forward(*raw, **params) if params else primitive.forward(*raw)
    except ValueError as error:
        _incompatible(name, error, raw)
    value = result[0]
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    out = _new_array(Array)
    out._values = value
    out._tracked = False
    out._node = None
    inputs: list[Any] = []
    mask = 0
    for position, item in enumerate(operands):
        if isinstance(item, Array) and item._tracked:
            inputs.append(item._node)
            mask |= 1 << position
    if inputs and is_recording():
        out._node = op_node(
            tuple(inputs), name, result[2] if len(result) > 2 else value.size, value, primitive.subsets[mask], result[1]
        )
        out._tracked = True
    return out


def _unary(name: str, x: Array, params: dict[str, Any] | None) -> Array:
    """``apply`` written out for one Array operand (relu, exp, sum, softmax, ...): the same result and node."""
    primitive = PRIMITIVES[name]
    values = x._values
    try:
        result = primitive.forward(values, **params) if params else primitive.forward(values)
    except ValueError as error:
        _incompatible(name, error, (values,))
    value = result[0]
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    out = _new_array(Array_)
    out._values = value
    node = x._node
    if x._tracked and node is not None and is_recording():
        out._node = op_node(
            (node,), name, result[2] if len(result) > 2 else value.size, value, primitive.subsets[1], result[1]
        )
        out._tracked = True
    else:
        out._tracked = False
        out._node = None
    return out


def ternary(name: str, x: Array, y: Array, z: Array, activation: str | None = None) -> Array:
    """``apply`` written out for three operands of corgi's Array class itself and the primitive's
    default parameters (a Dense layer's product and bias): no operands to unwrap, no keywords;
    the same result and node.

    With ``activation``, the name of a one-operand primitive, its forward runs on the result
    too, and both are recorded as one node (``nodes.ActivatedNode``): the same values and, bit
    for bit, the same gradients as the two operations apart, with one Array and one node less.
    """
    xv = x._values
    yv = y._values
    zv = z._values
    primitive = PRIMITIVES[name]
    try:
        result = primitive.forward(xv, yv, zv)
    except ValueError as error:
        _incompatible(name, error, (xv, yv, zv))
    value = result[0]
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    cost = result[2] if len(result) > 2 else value.size
    if activation is not None:
        applied = PRIMITIVES[activation]
        activated = applied.forward(value)
        value = activated[0]
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        cost += activated[2] if len(activated) > 2 else value.size
    out = _new_array(Array_)
    out._values = value
    mask = x._tracked | y._tracked << 1 | z._tracked << 2
    if mask and is_recording():
        inputs: tuple[Any, ...]  # the tracked operands' nodes (a tracked Array has one)
        if mask == 7:
            inputs = (x._node, y._node, z._node)
        elif mask == 6:  # an input that is data, not tracked: a first layer's
            inputs = (y._node, z._node)
        else:
            inputs = tuple(item._node for bit, item in ((1, x), (2, y), (4, z)) if mask & bit)
        if activation is None:
            out._node = op_node(inputs, name, cost, value, primitive.subsets[mask], result[1])
        else:
            out._node = activated_node(
                inputs, f"{name}+{activation}", cost, value, primitive.subsets[mask], result[1],
                applied.subsets[1][0], activated[1],
            )
        out._tracked = True
    else:
        out._tracked = False
        out._node = None
    return out


def _incompatible(name: str, error: ValueError, raw: Sequence[Any]) -> NoReturn:
    """Re-raise a forward's ValueError: as it is if it names the operation, else naming it and the dimensions."""
    if str(error).startswith(f"{name}:"):
        raise error
    shapes = " and ".join(str(np.shape(r)) for r in raw)
    raise ValueError(f"{name}: incompatible dimensions {shapes}") from None


def wrap(values: np.ndarray) -> Array:
    """A new untracked Array that owns ``values`` (a float32 or float64 array of at least one dimension)."""
    return Array_._wrap(values)


def is_array(x: object) -> TypeGuard[Array]:
    """True for a corgi Array."""
    return isinstance(x, Array_)


def binary(name: str, x: Any, y: Any) -> Array:
    """``apply`` to two operands, either of which may be a number or a numpy array.

    ``apply`` written out for two operands (the arithmetic operators): no
    list of values, no loop over the operands; the same result and node.
    """
    if type(x) is Array_:
        xv = x._values
        tx = x._tracked
    else:
        x = operand(x, name)
        if isinstance(x, Array_):  # a subclass: the general path, as it always went
            return apply(name, (x, y))
        xv = x
        tx = False
    if type(y) is Array_:
        yv = y._values
        ty = y._tracked
    else:
        y = operand(y, name)
        if isinstance(y, Array_):
            return apply(name, (x, y))
        yv = y
        ty = False
    primitive = PRIMITIVES[name]
    try:
        result = primitive.forward(xv, yv)
    except ValueError as error:
        _incompatible(name, error, (xv, yv))
    value = result[0]
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    out = _new_array(Array_)
    out._values = value
    if (tx or ty) and is_recording():
        if tx:
            inputs = (x._node, y._node) if ty else (x._node,)
        else:
            inputs = (y._node,)
        out._node = op_node(
            inputs, name, result[2] if len(result) > 2 else value.size, value,
            primitive.subsets[tx | ty << 1], result[1],
        )
        out._tracked = True
    else:
        out._tracked = False
        out._node = None
    return out


def operand(x: Any, where: str) -> Any:
    """``x`` as an operand: an Array as it is, a real number as a float, a numpy array as float values."""
    if type(x) is float:  # the common constant, before the slower numbers.Real check
        return x
    if type(x) is Array_ or isinstance(x, Array_):
        return x
    # (a numpy array before the numbers.Real check, an ABC lookup of a microsecond)
    if isinstance(x, np.ndarray):  # a boolean mask counts as 0 and 1, as in numpy
        return to_values(x, None, x.dtype if x.dtype.kind == "f" else None)
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    raise TypeError(f"{where}: expects an Array or a number, got {type(x).__name__}")


def array_operand(x: Any, where: str, what: str) -> Array:
    """``x`` if it is an Array, else a TypeError naming ``where`` and ``what``."""
    if not isinstance(x, Array_):
        raise TypeError(f"{where}: {what} must be an Array, got {type(x).__name__}")
    return x
