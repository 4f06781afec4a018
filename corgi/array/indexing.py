"""Indexing: corgi's element lookup, and numpy's slicing and advanced indexing with a gradient.

An index of whole numbers alone keeps corgi's meaning and gives a Python float: ``a[i]``
is the i-th value in row-major order and ``a[i, j, k]`` the element at a full multi-index
(fewer whole numbers than dimensions is an IndexError: numpy would give a sub-array there).
Any index holding a slice, ``...``, ``None``, an integer list or array, or a boolean mask
follows numpy and returns an Array that carries the graph; the gradient of repeated
integer indices adds up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .operation import ArrayData, apply, is_array
from .registry import register

if TYPE_CHECKING:
    from .core import Array


class _Selection(NamedTuple):
    """What an index's vjp needs."""

    shape: tuple[int, ...]  # the indexed array's shape
    index: Any  # numpy's index
    selected: tuple[int, ...]  # numpy's shape of the selection (before a 0-d one became (1,))
    repeats: bool  # the index holds integer arrays, which may name an element twice


def _index_dx(g: np.ndarray, s: _Selection) -> np.ndarray:
    # every selected place gets its delta back; places an integer index names twice get both
    dx = np.zeros(s.shape, dtype=g.dtype)
    if s.repeats:
        np.add.at(dx, s.index, g.reshape(s.selected))
    else:
        dx[s.index] = g.reshape(s.selected)
    return dx


# y = x[index] (numpy's basic and advanced indexing); dx = dy added back at the selected places
@register("index", _index_dx)
def select(x: Any, index: Any, repeats: Any) -> tuple[Any, ...]:
    try:
        out = x[index]
    except IndexError as error:
        raise IndexError(f"index {_show(index)}: {error}") from None
    if out.size == 0:
        raise IndexError(f"index {_show(index)} selects no values of dimensions {x.shape} (corgi has no empty arrays)")
    selected = out.shape
    if out.ndim == 0:
        out = out.reshape(1)
    return out, _Selection(x.shape, index, selected, repeats)


def _is_whole(item: Any) -> bool:
    return (type(item) is int or isinstance(item, (int, np.integer))) and not isinstance(item, (bool, np.bool_))


def _numpy_index(index: Any) -> tuple[Any, bool]:
    """``index`` checked item by item, lists made arrays; and whether it holds integer arrays."""
    items = index if isinstance(index, tuple) else (index,)
    checked = []
    repeats = False
    for item in items:
        if item is None or item is Ellipsis or isinstance(item, slice) or _is_whole(item):
            checked.append(item)
            continue
        if is_array(item):
            raise TypeError(
                "Array indices: an Array holds floats and can't index; use a numpy integer array or a boolean mask"
            )
        if isinstance(item, (list, np.ndarray)):
            values = np.asarray(item)
            if values.dtype.kind in "iu":
                repeats = True
            elif values.dtype.kind != "b":
                raise TypeError(f"Array indices: an index array must hold integers or booleans, got {values.dtype}")
            checked.append(values)
            continue
        raise TypeError(
            f"Array indices are whole numbers, slices, ..., None, integer arrays or boolean masks, got {item!r}"
        )
    return (tuple(checked) if isinstance(index, tuple) else checked[0]), repeats


def _show(index: Any) -> str:
    text = repr(index)
    return text if len(text) <= 60 else text[:57] + "..."


class IndexingMethods(ArrayData):
    """``a[...]``: corgi's elements, numpy's selections."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> float | Array:
        """``a[i]`` is the i-th value in row-major order and ``a[i, j, k]`` an element (Python floats);
        any other index (slices, ``...``, ``None``, integer arrays, boolean masks) is numpy's and
        gives an Array that carries the graph.

        >>> from corgi import arr
        >>> a = arr(arr(1, 2, 3), arr(4, 5, 6))
        >>> a[4], a[1, 1]
        (5.0, 5.0)
        >>> a[:, 1:], a[a > 2.5]
        (Array([[2., 3.],
               [5., 6.]], dimensions=(2, 2)), Array([3., 4., 5., 6.], dimensions=(4,)))
        >>> a[6]
        Traceback (most recent call last):
        ...
        IndexError: index 6 is out of range for an array of 6 values
        """
        values = self._values
        if type(index) is int or _is_whole(index):
            if not -values.size <= index < values.size:
                raise IndexError(f"index {index} is out of range for an array of {values.size} values")
            return float(values.reshape(-1)[index])
        if type(index) is tuple and index and all(_is_whole(i) for i in index):
            if len(index) > values.ndim:
                raise IndexError(f"index {index} has more whole numbers than dimensions {values.shape}")
            if len(index) < values.ndim:
                numbers = ", ".join(str(int(i)) for i in index)
                raise IndexError(
                    f"index {index} gives {len(index)} whole numbers for dimensions {values.shape}: whole numbers "
                    f"alone name one value and need one a dimension; for a sub-array end the index with ..., "
                    f"as in a[{numbers}, ...]"
                )
            for i, size in zip(index, values.shape):
                if not -size <= i < size:
                    raise IndexError(f"index {index} is out of range for dimensions {values.shape}")
            return float(values[index])
        checked, repeats = _numpy_index(index)
        return apply("index", (self,), {"index": checked, "repeats": repeats})
