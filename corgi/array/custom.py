"""User-defined operations (``Array.op``): user code in, an engine node out.

The user's functions see Arrays, not numpy: ``forward_op`` gets untracked
views of the inputs (so it records nothing), and ``backward_op`` gets the
same views, which inputs are tracked, and the delta, and returns one Array
(or None) per input. Its answers are checked before the engine sees them:
a wrong count, type or shape is a ValueError/TypeError naming the operation
and the input, raised inside the pass, so no gradient is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .nodes import custom_node
from .operation import is_array, wrap
from .recording import is_recording

if TYPE_CHECKING:
    from .core import Array


def custom_op(
    arrays: Sequence[Array],
    forward_op: Callable[[list[Array]], Array],
    backward_op: Callable[..., Sequence[Array | None]] | None,
    name: str,
) -> Array:
    """``Array.op``: run ``forward_op`` on untracked views and, if ``backward_op`` is given and an
    input is tracked, record a node whose vjp checks ``backward_op``'s answers."""
    arrays = list(arrays)
    for position, array in enumerate(arrays):
        if not is_array(array):
            raise TypeError(f"{name}: input {position} must be an Array, got {type(array).__name__}")
    children = [wrap(array._values) for array in arrays]
    result = forward_op(list(children))
    if not is_array(result):
        raise TypeError(f"{name}: forward_op must return an Array, got {type(result).__name__}")
    out = wrap(result._values)
    is_tracked = [array.is_tracked for array in arrays]
    if backward_op is None or not any(is_tracked) or not is_recording():
        return out
    tracked = [i for i, flag in enumerate(is_tracked) if flag]
    shapes = [array.dimensions for array in arrays]
    dtypes = [array.dtype for array in arrays]

    def vjp(delta: np.ndarray) -> list[np.ndarray | None]:
        answers = backward_op(list(children), list(is_tracked), wrap(delta))
        try:
            answers = list(answers)
        except TypeError:
            raise TypeError(f"{name}: backward_op must return a list, got {type(answers).__name__}") from None
        if len(answers) != len(arrays):
            raise ValueError(f"{name}: backward_op returned {len(answers)} gradients for {len(arrays)} inputs")
        deltas: list[np.ndarray | None] = []
        for i in tracked:
            answer = answers[i]
            if answer is None:
                deltas.append(None)
                continue
            if not is_array(answer):
                raise TypeError(f"{name}: gradient {i} must be an Array or None, got {type(answer).__name__}")
            if answer.dimensions != shapes[i]:
                raise ValueError(
                    f"{name}: gradient {i} has dimensions {answer.dimensions}, input {i} has {shapes[i]}"
                )
            deltas.append(answer._values.astype(dtypes[i], copy=False))
        return deltas

    inputs = tuple(node for i in tracked if (node := arrays[i]._node) is not None)  # (tracked: all there)
    out._node = custom_node(inputs, vjp, name, out._values)
    out._tracked = True
    return out
