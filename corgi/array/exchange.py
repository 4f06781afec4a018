"""Reading, watching and setting many parameters' gradients at once, as numpy arrays.

Data-parallel training (``corgi.distributed``) sends every parameter's
gradient to the other processes each step, averages it, and makes the
average the parameter's gradient, which the optimizer reads. These are the
steps it needs, behind the Array API, so no package above the array reaches
into the engine's nodes: ``watch_gradients`` hears each parameter's
gradient of a backward pass the moment it is final, while the pass computes
the rest (the engine's ready hooks); ``get_gradients`` reads them after a
pass; ``set_gradients`` installs the averages. They read and write the
gradients where they are, without the Array wrapper that ``gradient()``
builds for each one (a data-parallel exchange runs once per step and must
add little to the allreduce it waits for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, final

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


def first_with_gradient(parameters: Sequence[Array], where: str = "first_with_gradient") -> int | None:
    """The position of the first parameter that holds an accumulated gradient, or None if none does.

    A cheap check before a pass that must start from no gradient (it builds
    no Array or view for what it finds).

    >>> from corgi import arr
    >>> w, b = arr(1.0, 2.0).tracked(), arr(5.0).tracked()
    >>> first_with_gradient([w, b]) is None
    True
    >>> (b * 2.0).backward()
    >>> first_with_gradient([w, b])
    1
    >>> first_with_gradient([w, "b"])
    Traceback (most recent call last):
    ...
    TypeError: first_with_gradient: parameter 1 must be an Array, got str
    """
    for position, parameter in enumerate(parameters):
        if not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        if node is not None and node.gradient is not None:
            return position
    return None


GradientCallback = Callable[[int, "np.ndarray | None"], object]


@final
class GradientWatch:
    """The handle ``watch_gradients`` returns: ``remove()`` stops the watch (again is harmless).

    It is also a context manager that removes the watch on leaving.

    >>> from corgi import arr
    >>> w = arr(2.0).tracked()
    >>> seen = []
    >>> with watch_gradients([w], lambda position, total: seen.append(position)):
    ...     (w * w).backward()
    >>> (w * w).backward()                           # removed: not heard
    >>> seen
    [0]
    """

    __slots__ = ("_hooks",)

    def __init__(self, hooks: list[engine.ReadyHook]) -> None:
        self._hooks = hooks

    def remove(self) -> None:
        """Stop calling the callback (from the next pass on).

        >>> from corgi import arr
        >>> watch = watch_gradients([arr(1.0).tracked()], print)
        >>> watch.remove(); watch.remove()
        """
        hooks, self._hooks = self._hooks, []
        engine.remove_ready_hooks(hooks)

    def __enter__(self) -> GradientWatch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"GradientWatch({len(self._hooks)} parameters)" if self._hooks else "GradientWatch(removed)"


def watch_gradients(
    parameters: Sequence[Array], callback: GradientCallback, where: str = "watch_gradients"
) -> GradientWatch:
    """Call ``callback(position, total)`` as soon as a backward pass's total for ``parameters[position]`` is final.

    ``total`` is what the pass adds to that parameter's gradient (a
    read-only numpy array of its dimensions and dtype, or None if the pass
    reached it but sent it nothing); the gradient after the pass is the one
    before plus ``total``. In every pass that commits (``backward()``, not
    ``corgi.grad``) and reaches a watched parameter, the callback runs once
    for it, before the pass commits anything, on whichever thread finished
    that parameter (the caller or an engine worker: make the callback
    thread-safe), in an order that can change from pass to pass when the
    engine has workers. If the callback raises, the pass fails and commits
    nothing; calls already made are not undone. The watch applies from the
    next pass on, until ``remove()`` on the returned handle. Every parameter
    must be tracked (an optimizer's new parameters are: watch them again
    after each update).

    >>> from corgi import arr
    >>> w, b, unused = arr(1.0, 2.0).tracked(), arr(5.0).tracked(), arr(0.0).tracked()
    >>> heard = {}
    >>> watch = watch_gradients([w, b, unused], lambda position, total: heard.update({position: total.tolist()}))
    >>> ((w * 3.0).sum() + b).backward()
    >>> watch.remove()
    >>> sorted(heard.items())                        # unused: not reached, not heard
    [(0, [3.0, 3.0]), (1, [1.0])]
    >>> watch_gradients([w, arr(1.0)], print)
    Traceback (most recent call last):
    ...
    ValueError: watch_gradients: parameter 1 is not tracked, so no gradient can reach it
    """
    if not callable(callback):
        raise TypeError(f"{where}: callback must be callable, got {type(callback).__name__}")
    positions: dict[int, list[int]] = {}  # node seq -> the positions it holds (a parameter may repeat)
    nodes = []
    for position, parameter in enumerate(parameters):
        if not isinstance(parameter, Array):
            raise TypeError(f"{where}: parameter {position} must be an Array, got {type(parameter).__name__}")
        node = parameter._node
        if node is None or not parameter._tracked:
            raise ValueError(f"{where}: parameter {position} is not tracked, so no gradient can reach it")
        if node.seq not in positions:
            positions[node.seq] = []
            nodes.append(node)
        positions[node.seq].append(position)

    def relay(node: Any, total: np.ndarray | None) -> None:
        if total is not None:
            total = total.view()
            total.setflags(write=False)  # the pass commits this very array: nobody may write it
        for position in positions[node.seq]:
            callback(position, total)

    return GradientWatch(engine.add_ready_hooks(nodes, relay))


def _checked(position: int, parameter: Any, gradient: Any, where: str) -> Any:
    """``parameter``'s node, if ``gradient`` (an array or None) can be its gradient; else the error that says why."""
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
            raise ValueError(f"{where}: parameter {position} has dimensions {values.shape}, its gradient {gradient.shape}")
        if gradient.dtype != values.dtype:
            raise ValueError(f"{where}: parameter {position} holds {values.dtype}, its gradient {gradient.dtype}")
    return node


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
        node = parameter._node if isinstance(parameter, Array) else None
        # the usual case in one test; anything else is looked at closely (and refused if wrong)
        if node is None or (gradient is not None and not (
            type(gradient) is np.ndarray and gradient.shape == parameter._values.shape
            and gradient.dtype == parameter._values.dtype
        )):
            node = _checked(position, parameter, gradient, where)
        nodes.append(node)
    # One indivisible step for all of them, as the engine's own commits are: a pass that
    # commits meanwhile lands wholly before it or wholly on top of the new gradients.
    engine.replace_gradients(nodes, gradients)
