"""Reading and setting many parameters' gradients at once, as numpy arrays.

Data-parallel training (``corgi.distributed``) reads every parameter's
gradient each step, averages it across processes, and makes the average the
parameter's gradient, which the optimizer reads. These are those two steps,
behind the Array API, so no package above the array reaches into the
engine's nodes. They read and write the gradients where they are, without
the Array wrapper that ``gradient()`` builds for each one (a data-parallel
exchange runs once per step and must add little to the allreduce it waits
for).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import engine
from .core import Array


def get_gradients(parameters: Sequence[Array], where: str = "get_gradients") -> list[np.ndarray | None]:
    """Each parameter's accumulated gradient as a read-only numpy array, or None where it has none.

    >>> from corgi import arr
    >>> w, b = arr(1.0, 2.0).tracked(), arr(5.0).tracked()
    >>> (w * 3.0).sum().backward()                   # b is not used
    >>> [None if g is None else g.tolist() for g in get_gradients([w, b])]
    [[3.0, 3.0], None]
    >>> get_gradients([w, 2.0])
    Traceback (most recent call last):
    ...
    TypeError: get_gradients: parameter 1 must be an Array, got float
    """
    found: list[np.ndarray | None] = []
    for position, parameter in enumerate(parameters):
        if not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        gradient = None if node is None else node.gradient
        if gradient is not None:
            gradient = gradient.view()
            gradient.setflags(write=False)  # read_only's effect, at a quarter of its cost
        found.append(gradient)
    return found


def set_gradients(
    parameters: Sequence[Array], gradients: Sequence[np.ndarray | None], where: str = "set_gradients"
) -> None:
    """Make each of ``gradients`` the accumulated gradient of its parameter (``None`` clears it).

    Every parameter must be a tracked Array (or one that was tracked), and
    each gradient a numpy array of its parameter's dimensions and dtype.
    Everything is checked before anything changes: a bad gradient is a
    TypeError or ValueError naming ``where`` and the position, and then no
    gradient has changed. The arrays are taken without a copy: the caller
    hands them over and must never write them again (an Array's values,
    gradients included, never change).

    >>> from corgi import arr
    >>> w, b = arr(1.0, 2.0).tracked(), arr(5.0).tracked()
    >>> (w * 3.0).sum().backward()                   # w's gradient is 3, 3; b has none
    >>> set_gradients([w, b], [np.array([0.5, 0.25]), np.array([1.0])])
    >>> w.gradient(), b.gradient()
    (Array([0.5 , 0.25], dimensions=(2,)), Array([1.], dimensions=(1,)))
    >>> set_gradients([w, b], [None, np.array([1.0, 2.0])])
    Traceback (most recent call last):
    ...
    ValueError: set_gradients: parameter 1 has dimensions (1,), its gradient (2,)
    >>> w.gradient()                                 # unchanged: all or nothing
    Array([0.5 , 0.25], dimensions=(2,))
    """
    parameters = list(parameters)
    gradients = list(gradients)
    if len(parameters) != len(gradients):
        raise ValueError(f"{where}: {len(parameters)} parameters but {len(gradients)} gradients")
    nodes = []
    for position, (parameter, gradient) in enumerate(zip(parameters, gradients)):
        if not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        if node is None:
            raise ValueError(f"{where}: parameter {position} is not tracked, so it has no gradient to set")
        if gradient is not None:
            if not isinstance(gradient, np.ndarray):
                raise TypeError(
                    f"{where}: the gradient of parameter {position} must be a numpy array or None, "
                    f"got {type(gradient).__name__}"
                )
            values = parameter._values
            if gradient.shape != values.shape:
                raise ValueError(
                    f"{where}: parameter {position} has dimensions {values.shape}, its gradient {gradient.shape}"
                )
            if gradient.dtype != values.dtype:
                raise ValueError(
                    f"{where}: parameter {position} holds {values.dtype}, its gradient {gradient.dtype}"
                )
        nodes.append(node)
    # One indivisible step for all of them, as the engine's own commits are: a pass that
    # commits meanwhile lands wholly before it or wholly on top of the new gradients.
    engine.replace_gradients(nodes, gradients)
