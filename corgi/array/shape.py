"""Shape operations: reshape, transpose, broadcast_to, concatenate, and the compositions of
them numpy users reach for (squeeze, expand_dims, flatten, swapaxes, ``T``, stack, split).

None of them computes anything: each moves values, and its vjp moves the delta back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import whole_number, whole_numbers
from .operation import ArrayData, apply, is_array, operand
from .registry import Vjp, composed, register, register_variadic
from .values import axes_of, dimensions_of, new_dimensions

if TYPE_CHECKING:
    from .core import Array


# a reshape moves no value: dx = dy in x's dimensions
@register("reshape", lambda g, shape: g.reshape(shape))
def reshape(x: Any, dimensions: Any) -> tuple[Any, ...]:
    if int(np.prod(dimensions)) != x.size or any(d < 1 for d in dimensions):
        raise ValueError(f"reshape: can't reshape dimensions {x.shape} ({x.size} values) to {tuple(dimensions)}")
    return x.reshape(dimensions), x.shape


# y = x with its axes permuted; dx = dy with the inverse permutation
@register("transpose", lambda g, inverse: g.transpose(inverse))
def transpose(x: Any, axes: Any) -> tuple[Any, ...]:
    return x.transpose(axes), tuple(np.argsort(axes))


# y = x repeated along the axes it is stretched to; dx = dy summed back over them, which fitting
# a delta to its operand's dimensions does for every operation
@register("broadcast_to", lambda g, saved: g)
def broadcast_to(x: Any, dimensions: Any) -> tuple[Any, ...]:
    try:
        return np.broadcast_to(x, dimensions), None
    except ValueError:
        raise ValueError(f"broadcast_to: can't broadcast dimensions {x.shape} to {dimensions}") from None


def _piece_of_delta(position: int) -> Vjp:
    # operand i's delta is its own block of the result's delta
    def vjp(g: np.ndarray, pieces: tuple[tuple[slice, ...], ...]) -> np.ndarray:
        return g[pieces[position]]

    return vjp


# y = the operands end to end along ``axis``; dx_i = the block of dy where x_i went
@register_variadic("concatenate", _piece_of_delta)
def join(*xs: Any, axis: Any = 0) -> tuple[Any, ...]:
    first = xs[0]
    for x in xs[1:]:
        if x.ndim != first.ndim or x.shape[:axis] + x.shape[axis + 1 :] != first.shape[:axis] + first.shape[axis + 1 :]:
            shapes = ", ".join(str(x.shape) for x in xs)
            raise ValueError(f"concatenate: dimensions differ outside axis {axis}: {shapes}")
    ends = np.cumsum([x.shape[axis] for x in xs]).tolist()
    lead = (slice(None),) * axis
    pieces = tuple(lead + (slice(end - x.shape[axis], end),) for x, end in zip(xs, ends))
    return np.concatenate(xs, axis=axis), pieces


class ShapeMethods(ArrayData):
    """reshape, transpose, ``T``, swapaxes, squeeze, expand_dims, broadcast_to, flatten."""

    __slots__ = ()

    def reshape(self, *dimensions: Any) -> Array:
        """The same values in new dimensions; one dimension may be -1 (whatever is left), as numpy's.

        >>> from corgi import arr
        >>> arr(1, 2, 3, 4).reshape((2, 2)).dimensions, arr(1, 2, 3, 4).reshape(-1, 1).dimensions
        ((2, 2), (4, 1))
        """
        shape = new_dimensions(dimensions, self._values.shape, "reshape")
        return apply("reshape", (self,), {"dimensions": shape})

    def transpose(self, *axes: Any) -> Array:
        """The axes reversed, or in the order given (``x.transpose(1, 0, 2)`` or ``((1, 0, 2))``), as numpy's.

        >>> from corgi import Array
        >>> x = Array.zeros((2, 3, 4))
        >>> x.transpose().dimensions, x.transpose(0, 2, 1).dimensions
        ((4, 3, 2), (2, 4, 3))
        """
        ndim = self._values.ndim
        if not axes or axes == (None,):
            order = tuple(range(ndim - 1, -1, -1))
        else:
            given = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
            order = tuple(a % ndim if -ndim <= a < ndim else a for a in whole_numbers(given, "axes", "transpose", minimum=None))
            if sorted(order) != list(range(ndim)):
                raise ValueError(f"transpose: axes {tuple(given)} are not a permutation of {ndim} dimensions")
        return apply("transpose", (self,), {"axes": order})

    @property
    @composed("T", ["transpose"])
    def T(self) -> Array:
        """The axes reversed (``transpose()``).

        >>> from corgi import arr
        >>> arr(arr(1.0, 2.0, 3.0)).T.dimensions
        (3, 1)
        """
        return self.transpose()

    @composed("swapaxes", ["transpose"])
    def swapaxes(self, axis1: int, axis2: int) -> Array:
        """Axes ``axis1`` and ``axis2`` exchanged, as numpy's.

        >>> from corgi import Array
        >>> Array.zeros((2, 3, 4)).swapaxes(0, -1).dimensions
        (4, 3, 2)
        """
        ndim = self._values.ndim
        (a,), (b,) = axes_of(axis1, ndim, "swapaxes"), axes_of(axis2, ndim, "swapaxes")
        order = list(range(ndim))
        order[a], order[b] = order[b], order[a]
        return apply("transpose", (self,), {"axes": tuple(order)})

    @composed("squeeze", ["reshape"])
    def squeeze(self, axis: Any = None) -> Array:
        """Dimensions of 1 removed (all of them, or those of ``axis``), as numpy's; dimensions
        ``(1, 1)`` become ``(1,)``, since corgi has no 0-d arrays.

        >>> from corgi import Array
        >>> Array.zeros((1, 3, 1)).squeeze().dimensions, Array.zeros((1, 3, 1)).squeeze(0).dimensions
        ((3,), (3, 1))
        """
        shape = self._values.shape
        if axis is None:
            axes = tuple(i for i, size in enumerate(shape) if size == 1)
        else:
            axes = axes_of(axis, len(shape), "squeeze")
            wide = [a for a in axes if shape[a] != 1]
            if wide:
                raise ValueError(f"squeeze: axis {wide[0]} of dimensions {shape} is not of size 1")
        kept = tuple(size for i, size in enumerate(shape) if i not in axes) or (1,)
        return apply("reshape", (self,), {"dimensions": kept})

    @composed("expand_dims", ["reshape"])
    def expand_dims(self, axis: Any) -> Array:
        """New dimensions of 1 at ``axis`` (an int or a tuple, counted in the result), as numpy's.

        >>> from corgi import Array
        >>> Array.zeros((2, 3)).expand_dims(0).dimensions, Array.zeros((2, 3)).expand_dims((1, -1)).dimensions
        ((1, 2, 3), (2, 1, 3, 1))
        """
        shape = self._values.shape
        count = len(axis) if isinstance(axis, (tuple, list)) else 1
        axes = axes_of(axis, len(shape) + count, "expand_dims")
        rest = iter(shape)
        new = tuple(1 if i in axes else next(rest) for i in range(len(shape) + count))
        return apply("reshape", (self,), {"dimensions": new})

    def broadcast_to(self, dimensions: Any) -> Array:
        """The values repeated to ``dimensions`` by numpy's broadcasting; the gradient sums them back.

        >>> from corgi import arr
        >>> x = arr(1.0, 2.0).tracked()
        >>> y = x.broadcast_to((3, 2))
        >>> y.dimensions
        (3, 2)
        >>> y.backward()
        >>> x.gradient()
        Array([3., 3.], dimensions=(2,))
        """
        return apply("broadcast_to", (self,), {"dimensions": dimensions_of(dimensions, "broadcast_to")})

    @composed("flatten", ["reshape"])
    def flatten(self) -> Array:
        """The values as one dimension, row-major, as numpy's.

        >>> from corgi import Array
        >>> Array.zeros((2, 3)).flatten().dimensions
        (6,)
        """
        return apply("reshape", (self,), {"dimensions": (self._values.size,)})


def _arrays(arrays: Any, where: str) -> list[Any]:
    if is_array(arrays) or isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence) or not arrays:
        raise TypeError(f"{where}: expects a non-empty list or tuple of Arrays, got {type(arrays).__name__}")
    items = []
    for position, x in enumerate(arrays):
        if not is_array(x) and not isinstance(x, np.ndarray):
            raise TypeError(f"{where}: item {position} must be an Array, got {type(x).__name__}")
        items.append(operand(x, where))
    return items


def concatenate(arrays: Sequence[Array], axis: int = 0) -> Array:
    """The arrays end to end along ``axis`` (their other dimensions must agree), as numpy's.

    >>> from corgi import arr, concatenate
    >>> a, b = arr(arr(1.0, 2.0)).tracked(), arr(arr(3.0, 4.0), arr(5.0, 6.0))
    >>> c = concatenate([a, b])
    >>> c.dimensions
    (3, 2)
    >>> (c * c).backward()
    >>> a.gradient()
    Array([[2., 4.]], dimensions=(1, 2))
    """
    items = _arrays(arrays, "concatenate")
    ndim = items[0].ndim if isinstance(items[0], np.ndarray) else items[0]._values.ndim
    (position,) = axes_of(axis, ndim, "concatenate")
    return apply("concatenate", tuple(items), {"axis": position})


@composed("stack", ["expand_dims", "concatenate"])
def stack(arrays: Sequence[Array], axis: int = 0) -> Array:
    """Arrays of equal dimensions stacked along a new axis ``axis``, as numpy's.

    >>> from corgi import arr, stack
    >>> stack([arr(1.0, 2.0), arr(3.0, 4.0)], axis=1)
    Array([[1., 3.],
           [2., 4.]], dimensions=(2, 2))
    """
    items = _arrays(arrays, "stack")
    shapes = {np.shape(x) if isinstance(x, np.ndarray) else x._values.shape for x in items}
    if len(shapes) != 1:
        raise ValueError(f"stack: arrays of unequal dimensions can't stack: {sorted(shapes)}")
    (shape,) = shapes
    (position,) = axes_of(axis, len(shape) + 1, "stack")
    new = shape[:position] + (1,) + shape[position:]
    expanded = tuple(apply("reshape", (x,), {"dimensions": new}) for x in items)
    return apply("concatenate", expanded, {"axis": position})


@composed("split", ["index"])
def split(x: Array, sections: Any, axis: int = 0) -> list[Array]:
    """``x`` cut along ``axis`` into ``sections`` equal pieces, or at the indices of a list, as numpy's.

    A cut that would leave an empty piece is a ValueError (corgi has no empty arrays).

    >>> from corgi import Array, split
    >>> x = Array(list(range(6)), dimensions=(3, 2)).tracked()
    >>> first, rest = split(x, [1])
    >>> first.dimensions, rest.dimensions
    ((1, 2), (2, 2))
    >>> [piece.dimensions for piece in split(x, 2, axis=1)]
    [(3, 1), (3, 1)]
    """
    if not is_array(x):
        raise TypeError(f"split: expects an Array, got {type(x).__name__}")
    shape = x._values.shape
    (position,) = axes_of(axis, len(shape), "split")
    size = shape[position]
    if isinstance(sections, (tuple, list, np.ndarray)):
        cuts = [c % size if -size <= c < 0 else c for c in whole_numbers(sections, "sections", "split", minimum=None)]
        bounds = [0] + [min(max(c, 0), size) for c in cuts] + [size]
    else:
        count = whole_number(sections, "sections", "split", minimum=1)
        if size % count:
            raise ValueError(f"split: {count} sections do not divide axis {position} of dimensions {shape} equally")
        bounds = [i * (size // count) for i in range(count + 1)]
    lead = (slice(None),) * position
    pieces: list[Array] = []
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            raise ValueError(f"split: cutting axis {position} of dimensions {shape} at {sections} leaves an empty piece")
        pieces.append(x[lead + (slice(start, end),)])  # type: ignore[arg-type]  # a slice: an Array
    return pieces
