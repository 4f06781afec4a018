"""Stepping parameters: what every optimizer does to every parameter, every step.

An optimizer says how a parameter's values and gradient become new values;
``step_parameters`` does the rest: it hands the step read-only views, checks
what comes back, wraps it in a new tracked Array and clears the old
gradient. It sits beside the Array because it runs once per parameter per
training step: it reads the values and the gradient directly instead of
building the one-off wrappers that ``gradient()`` and ``numpy()`` make.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .core import Array
from .values import read_only, to_values

Step = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def step_parameters(parameters: Sequence[Array], step: Step, where: str = "step_parameters") -> list[Array]:
    """New tracked Arrays, one per parameter, from ``step(position, values, gradient)``.

    ``values`` and ``gradient`` are read-only numpy views. A parameter without
    a gradient comes back as it is; every other one is replaced by a new
    tracked Array of the step's result (in the parameter's dtype, and of its
    dimensions, or a ValueError naming ``where``) and its gradient is
    cleared. The step's result is used without a copy: it must be new (or
    read-only) values that nothing writes afterwards. Gradients are cleared
    only once every step has succeeded, so a step that raises loses none.

    >>> from corgi import arr
    >>> w, b = arr(1.0, 2.0).tracked(), arr(5.0).tracked()
    >>> (w * 3.0).sum().backward()            # dw = 3; b is not used
    >>> new_w, new_b = step_parameters([w, b], lambda position, value, gradient: value - 0.5 * gradient)
    >>> new_w, new_b is b, w.gradient()
    (Array([-0.5,  0.5], dimensions=(2,), tracked), True, None)
    """
    updated = []
    stepped = []
    for position, parameter in enumerate(parameters):
        if type(parameter) is not Array and not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        gradient = None if node is None else node.gradient
        if gradient is None:
            updated.append(parameter)
            continue
        values = parameter._values
        value = step(position, read_only(values), read_only(gradient))
        if type(value) is not np.ndarray or value.dtype != values.dtype or value.shape != values.shape:
            value = _conformed(value, values, where, position)
        new = Array._wrap(value)
        new.start_tracking()
        updated.append(new)
        stepped.append(node)
    for node in stepped:
        node.clear_gradient()
    return updated


def _conformed(value: object, values: np.ndarray, where: str, position: int) -> np.ndarray:
    """A step's result in the parameter's dtype, or a ValueError if its dimensions differ."""
    shape = np.shape(value)
    if shape != values.shape:
        raise ValueError(
            f"{where}: parameter {position} has dimensions {values.shape}, but its new value has {shape}"
        )
    return to_values(value, None, values.dtype, copy=False)
