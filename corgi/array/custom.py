"""User-defined operations (``Array.op``): user code in, an engine node out.

The user's functions see Arrays, not numpy: ``forward_op`` gets untracked
views of the inputs (so it records nothing), and ``backward_op`` gets the
same views, which inputs are tracked, and the delta, and returns one Array
(or None) per input. Its answers are checked before the engine sees them:
a wrong count, type or shape is a ValueError/TypeError naming the operation
and the input, raised inside the pass, so no gradient is written.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from .core import Array
from .nodes import ArrayNode
from .recording import is_recording


def custom_op(
    arrays: Sequence[Array],
    forward_op: Callable[[list[Array]], Array],
    backward_op: Optional[Callable[..., Sequence[Optional[Array]]]],
    name: str,
) -> Array:
    arrays = list(arrays)
    for position, array in enumerate(arrays):
        if not isinstance(array, Array):
            raise TypeError(f"{name}: input {position} must be an Array, got {type(array).__name__}")
    children = [Array._wrap(array._values) for array in arrays]
    result = forward_op(list(children))
    if not isinstance(result, Array):
        raise TypeError(f"{name}: forward_op must return an Array, got {type(result).__name__}")
    out = Array._wrap(result._values)
    is_tracked = [array.is_tracked for array in arrays]
    if backward_op is None or not any(is_tracked) or not is_recording():
        return out
    tracked = [i for i, flag in enumerate(is_tracked) if flag]
    shapes = [array.dimensions for array in arrays]
    dtypes = [array.dtype for array in arrays]

    def vjp(delta: np.ndarray) -> list:
        answers = backward_op(list(children), list(is_tracked), Array._wrap(delta))
        try:
            answers = list(answers)
        except TypeError:
            raise TypeError(f"{name}: backward_op must return a list, got {type(answers).__name__}") from None
        if len(answers) != len(arrays):
            raise ValueError(f"{name}: backward_op returned {len(answers)} gradients for {len(arrays)} inputs")
        deltas = []
        for i in tracked:
            answer = answers[i]
            if answer is None:
                deltas.append(None)
                continue
            if not isinstance(answer, Array):
                raise TypeError(f"{name}: gradient {i} must be an Array or None, got {type(answer).__name__}")
            if answer.dimensions != shapes[i]:
                raise ValueError(
                    f"{name}: gradient {i} has dimensions {answer.dimensions}, input {i} has {shapes[i]}"
                )
            deltas.append(answer._values.astype(dtypes[i], copy=False))
        return deltas

    node = ArrayNode(tuple(arrays[i]._node for i in tracked), vjp, name, out._values.size)
    node.shape = out.dimensions
    node.dtype = out.dtype
    out._node = node
    out._tracked = True
    return out
