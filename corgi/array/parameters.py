"""Stepping parameters: what every optimizer does to every parameter, every step.

An optimizer says how a parameter's values and gradient become new values;
``step_parameters`` does the rest: it takes the gradients, hands the step
read-only views, checks what comes back and wraps it in a new tracked
Array. It sits beside the Array because it runs once per parameter per
training step: it reads the values and the gradient directly instead of
building the one-off wrappers that ``gradient()`` and ``numpy()`` make.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import engine
from ..engine.gradients import take_gradients
from .core import Array
from .nodes import leaf_node
from .values import read_only, to_values

Step = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
_new_array = object.__new__


def step_parameters(
    parameters: Sequence[Array], step: Step, where: str = "step_parameters", views: bool = True
) -> list[Array]:
    """New tracked Arrays, one per parameter, from ``step(position, values, gradient)``.

    ``values`` and ``gradient`` are read-only numpy views (``views=False``
    hands over the arrays themselves, sparing two views per parameter: only
    for a step known to write into neither and to keep neither, as corgi's
    own optimizers' steps). A parameter without
    a gradient comes back as it is; every other one is replaced by a new
    tracked Array of the step's result (in the parameter's dtype, and of its
    dimensions, or a ValueError naming ``where``). The step's result is used
    without a copy: it must be new (or read-only) values that nothing writes
    afterwards.

    All the gradients are taken (read and cleared) in one indivisible step,
    so a backward pass that commits on another thread meanwhile lands wholly
    in the gradients stepped or wholly in the nodes afterwards: never lost,
    and never in some parameters' steps but not in others'. A parameter
    listed twice is stepped once, at its first place. If a step
    raises (or anything interrupts), every gradient taken is put back, added
    to whatever passes committed since, and the exception propagates.

    >>> from corgi import arr
    >>> w, b = arr(1.0, 2.0).tracked(), arr(5.0).tracked()
    >>> (w * 3.0).sum().backward()            # dw = 3; b is not used
    >>> new_w, new_b = step_parameters([w, b], lambda position, value, gradient: value - 0.5 * gradient)
    >>> new_w, new_b is b, w.gradient()
    (Array([-0.5,  0.5], dimensions=(2,), tracked), True, None)
    """
    nodes: list[engine.Node] = []
    tracked: list[tuple[int, Array]] = []
    for position, parameter in enumerate(parameters):
        if type(parameter) is not Array and not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        if node is not None:
            nodes.append(node)
            tracked.append((position, parameter))
    updated = list(parameters)  # a parameter without a gradient comes back as it is
    gradients: list[Any] | None = None
    try:
        # Every gradient in one indivisible step: a pass that commits meanwhile lands wholly in
        # what is stepped or wholly in the nodes afterwards, never in some parameters' and not
        # in others'. (Bound straight from the call: no point in between where an interrupt lands.)
        gradients = take_gradients(nodes)
        if len(gradients) > 1 and len(set(map(id, nodes))) < len(nodes):
            gradients = _first_of_each(nodes, gradients)  # a shared parameter is stepped once
        for (position, parameter), gradient in zip(tracked, gradients):
            if gradient is None:
                continue
            values = parameter._values
            value = step(position, read_only(values), read_only(gradient)) if views else step(position, values, gradient)
            # (``is`` first: numpy's built-in dtypes are shared objects, and comparing them costs a call)
            if (
                type(value) is not np.ndarray
                or (value.dtype is not values.dtype and value.dtype != values.dtype)
                or value.shape != values.shape
            ):
                value = _conformed(value, values, where, position)
            # ``Array._wrap(value).tracked()``, field by field: a new tracked leaf
            new = _new_array(Array)
            new._values = value
            new._node = leaf_node(value)
            new._tracked = True
            updated[position] = new
        return updated
    except BaseException:
        if gradients is not None:
            _put_back(nodes, gradients)
        raise


def _first_of_each(nodes: list[engine.Node], gradients: list[Any]) -> list[Any]:
    """``gradients`` with None for every repeat of a node: its gradient goes to its first parameter."""
    seen: set[int] = set()
    kept = []
    for node, gradient in zip(nodes, gradients):
        kept.append(None if id(node) in seen else gradient)
        seen.add(id(node))
    return kept


def _put_back(nodes: list[engine.Node], gradients: list[Any]) -> None:
    """Add every taken gradient back into its node, after a failed step.

    Whatever passes committed since the take are kept: the taken gradient is
    added to them. The sum is made with floating-point errors ignored, so
    that an ``np.errstate(over="raise")`` around the step cannot make the
    gradient disappear instead (an overflow gives inf, as it would have in
    the pass). A second interrupt that lands here, before the gradients are
    published, can still lose them: Python gives no way to run the whole
    put-back without a point where a signal handler may run.
    """
    # each node once (a shared parameter's repeats hold the same gradient, or None once dropped)
    taken = list({id(node): (node, gradient) for node, gradient in zip(nodes, gradients) if gradient is not None}.values())
    with np.errstate(all="ignore"):
        engine.add_gradients([node for node, _ in taken], [gradient for _, gradient in taken])


def _conformed(value: object, values: np.ndarray, where: str, position: int) -> np.ndarray:
    """A step's result in the parameter's dtype, or a ValueError if its dimensions differ."""
    shape = np.shape(value)  # type: ignore[call-overload]
    if shape != values.shape:
        raise ValueError(
            f"{where}: parameter {position} has dimensions {values.shape}, but its new value has {shape}"
        )
    converted: np.ndarray = to_values(value, None, values.dtype, copy=False)
    return converted
