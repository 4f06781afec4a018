"""Turning what users pass into an Array's numpy values, and showing them read-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..checks import whole_number, whole_numbers
from ..numbers import FloatType, default_float, float_type

Dimensions = int | Sequence[int]


def read_only(values: np.ndarray) -> np.ndarray:
    # Arrays own their numpy values and never write them; users get read-only
    # views, so marking costs nothing on the operations' hot path.
    view = values.view()
    view.flags.writeable = False
    return view


def resolve(dtype: FloatType | None, where: str) -> type:
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
    values: Any, dimensions: Dimensions | None, dtype: FloatType | None, copy: bool = True
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


def axes_of(axis: Any, ndim: int, where: str) -> tuple[int, ...]:
    """numpy's ``axis`` (an int, a tuple of ints, negative counting from the end, or None for
    all) as sorted non-negative axes; a repeated or out-of-range axis is a ValueError.

    >>> axes_of(-1, 3, "sum"), axes_of((2, 0), 3, "sum"), axes_of(None, 2, "sum")
    ((2,), (0, 2), (0, 1))
    >>> axes_of(3, 3, "sum")
    Traceback (most recent call last):
    ...
    ValueError: sum: axis 3 is out of range for 3 dimensions
    """
    if axis is None:
        return tuple(range(ndim))
    given = whole_numbers(axis, "axis", where, minimum=None) if isinstance(axis, (tuple, list)) else (
        whole_number(axis, "axis", where, minimum=None),
    )
    axes = []
    for a in given:
        if not -ndim <= a < ndim:
            raise ValueError(f"{where}: axis {a} is out of range for {ndim} dimensions")
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{where}: axis {axis!r} names an axis twice")
    return tuple(sorted(axes))


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    """The shape a reduction over ``axes`` leaves: ones in their place with ``keepdims``,
    else without them, and ``(1,)`` when nothing is left (corgi has no 0-d arrays).

    >>> reduced_shape((2, 3), (1,), False), reduced_shape((2, 3), (1,), True), reduced_shape((2, 3), (0, 1), False)
    ((2,), (2, 1), (1,))
    """
    if keepdims:
        return tuple(1 if i in axes else size for i, size in enumerate(shape))
    return tuple(size for i, size in enumerate(shape) if i not in axes) or (1,)


def new_dimensions(dimensions: tuple[Any, ...], shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """New dimensions for the values of an array of ``shape``, from a tuple (or a tuple holding
    one sequence) that may hold one -1 for "whatever is left", as numpy's ``reshape``.

    >>> new_dimensions(((2, -1),), (3, 2), "reshape"), new_dimensions((3, 2), (6,), "reshape")
    ((2, 3), (3, 2))
    >>> new_dimensions((4, -1), (2, 3), "reshape")
    Traceback (most recent call last):
    ...
    ValueError: reshape: can't reshape dimensions (2, 3) (6 values) to (4, -1)
    """
    if len(dimensions) == 1 and not isinstance(dimensions[0], (int, np.integer)):
        dimensions = dimensions[0]
    new = whole_numbers(dimensions, "dimensions", where, minimum=None)  # 2.5 is refused, not truncated
    if not new or any(d < 1 and d != -1 for d in new) or new.count(-1) > 1:
        raise ValueError(f"{where}: every dimension must be at least 1 (one may be -1), got {new}")
    size = int(np.prod(shape))
    resolved = new
    if -1 in new:
        known = -int(np.prod(new))
        if size % known == 0:
            free = new.index(-1)
            resolved = new[:free] + (size // known,) + new[free + 1 :]
    if int(np.prod(resolved)) != size or -1 in resolved:
        raise ValueError(f"{where}: can't reshape dimensions {shape} ({size} values) to {new}")
    return resolved
