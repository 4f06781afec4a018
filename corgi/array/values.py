"""Turning what users pass into an Array's numpy values, and showing them read-only."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np

from ..checks import whole_numbers
from ..numbers import FloatType, default_float, float_type

Dimensions = Union[int, Sequence[int]]


def read_only(values: np.ndarray) -> np.ndarray:
    # Arrays own their numpy values and never write them; users get read-only
    # views, so marking costs nothing on the operations' hot path.
    view = values.view()
    view.flags.writeable = False
    return view


def resolve(dtype: Optional[FloatType], where: str) -> type:
    return default_float() if dtype is None else float_type(dtype, where)


def dimensions_of(dimensions: Dimensions, where: str) -> tuple[int, ...]:
    if isinstance(dimensions, (int, np.integer)) and not isinstance(dimensions, bool):
        dimensions = (dimensions,)
    shape = whole_numbers(dimensions, "dimensions", where, minimum=None)  # 2.5 is refused, not truncated
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{where}: every dimension must be at least 1, got {shape}")
    return shape


# The dtypes an Array holds, as numpy dtype instances (byte order native).
_KEPT = (np.dtype(np.float32), np.dtype(np.float64))


def to_values(
    values: Any, dimensions: Optional[Dimensions], dtype: Optional[FloatType], copy: bool = True
) -> np.ndarray:
    # The common case first (an optimizer's new values, a float array of the right type):
    # nothing to check but its type, shape and size.
    if (
        type(values) is np.ndarray
        and dimensions is None
        and (dtype is None or dtype is values.dtype)
        and values.dtype in _KEPT
        and values.ndim
        and values.size
    ):
        return values.copy() if copy else values
    if dtype is None and isinstance(values, np.ndarray) and values.dtype.kind == "f":
        target = float_type(values.dtype, "Array")
    else:
        target = resolve(dtype, "Array")
    try:
        data = np.array(values, copy=True) if copy else np.asarray(values)
    except ValueError as error:
        raise ValueError(f"Array: values are not a rectangular array of numbers ({error})") from None
    if data.dtype.kind not in "biuf":
        raise TypeError(f"Array: values must be real numbers, got {data.dtype} values")
    data = data.astype(target, copy=False)
    if dimensions is not None:
        shape = dimensions_of(dimensions, "Array")
        if data.size != int(np.prod(shape)):
            raise ValueError(f"Array: dimensions {shape} need {int(np.prod(shape))} values, got {data.size}")
        data = data.reshape(shape)
    elif data.ndim == 0:
        data = data.reshape(1)
    if data.size == 0:
        raise ValueError(f"Array: every dimension must be at least 1, got {data.shape}")
    return data
