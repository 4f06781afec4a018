"""``corgi.grad``: the gradients of one output with respect to chosen inputs, committing nothing.

It runs the same engine pass as ``backward()``, asks it for the totals that reach the
inputs' nodes, and leaves every array's accumulated ``gradient()`` as it was. Passes do not
share state, so many threads may call it at once, on shared graphs too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import engine
from .operation import is_array, wrap

if TYPE_CHECKING:
    from .core import Array


def grad(
    output: Array, inputs: Array | Sequence[Array], delta: Any = None
) -> Array | None | list[Array | None]:
    """The gradients of ``output`` with respect to ``inputs``, without touching any ``gradient()``.

    ``inputs`` is one Array (one gradient back) or a sequence (a list back);
    an input the output does not depend on gets None. Each input must have
    been tracked. ``delta`` weights the output, as in ``backward(delta)``.
    Inputs need not be leaves: an intermediate array gets the gradient that
    reached it.

    >>> from corgi import arr, grad
    >>> x, w = arr(3.0).tracked(), arr(2.0).tracked()
    >>> y = x * x * w                         # dy/dx = 2xw, dy/dw = x^2
    >>> grad(y, [x, w, arr(0.0).tracked()])
    [Array([12.], dimensions=(1,)), Array([9.], dimensions=(1,)), None]
    >>> x.gradient() is None                  # nothing accumulated
    True
    >>> grad(y, x, delta=arr(0.5))
    Array([6.], dimensions=(1,))
    """
    if not is_array(output):
        raise TypeError(f"grad: output must be an Array, got {type(output).__name__}")
    single = is_array(inputs)
    items: list[Any]
    if is_array(inputs):
        items = [inputs]
    elif isinstance(inputs, Sequence) and not isinstance(inputs, str):
        items = list(inputs)
    else:
        raise TypeError(f"grad: inputs must be an Array or a sequence of Arrays, got {type(inputs).__name__}")
    nodes = []
    for position, item in enumerate(items):
        if not is_array(item):
            raise TypeError(f"grad: input {position} must be an Array, got {type(item).__name__}")
        if item._node is None:
            raise ValueError(f"grad: input {position} was never tracked, so no gradient can reach it; call tracked() on it first")
        nodes.append(item._node)
    if not output._tracked:
        raise ValueError("grad: the output is not tracked; call tracked() on its inputs first")
    totals = engine.backward(output._node, output._delta(delta, "grad"), targets=nodes)  # type: ignore[arg-type]  # tracked: has a node
    results = [None if total is None else wrap(total) for total in totals or ()]
    return results[0] if single else results
