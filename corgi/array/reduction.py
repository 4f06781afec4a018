"""Reductions: sum (corgi's skip-count form and numpy's axis form), max, min, prod,
logsumexp, and the compositions mean, var, std; argmax and argmin (not differentiable).

Every primitive here takes ``axis`` as sorted non-negative axes and ``shape``, the result's
dimensions: numpy's, with ones in place of the reduced axes under ``keepdims``, or (1,) when
every axis is reduced (corgi has no 0-d arrays). Its vjp reshapes the delta to the kept shape
(ones in place of the reduced axes), which then broadcasts against the input.
"""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..checks import whole_number
from .operation import ArrayData, apply
from .registry import composed, register
from .values import axes_of, reduced_shape

if TYPE_CHECKING:
    from .core import Array

_MISSING: Any = object()
_add_reduce = np.add.reduce

# corgi's sum(k) of an array of a shape: the primitive's parameters, made once (shared, never changed)
_SKIP_COUNT: dict[tuple[tuple[int, ...], int], dict[str, tuple[int, ...]]] = {}


def _skip_count_params(shape: tuple[int, ...], count: int) -> dict[str, tuple[int, ...]]:
    ndim = len(shape)
    if not 0 <= count <= ndim:
        raise ValueError(f"sum: skip_count must be between 0 and {ndim} for dimensions {shape}, got {count}")
    params = {"axis": tuple(range(ndim - count, ndim)), "shape": shape[: ndim - count] + (1,) if count else shape}
    if len(_SKIP_COUNT) < 4096:
        _SKIP_COUNT[(shape, count)] = params
    return params


def _sum_dx(g: np.ndarray, saved: Any) -> np.ndarray:
    kept, shape = saved
    return np.broadcast_to(g.reshape(kept), shape)


# y = the sum of x over ``axis``; dx = dy broadcast back over the summed axes
@register("sum", _sum_dx)
def sum_over(x: Any, axis: Any, shape: Any) -> tuple[Any, ...]:
    lead = x.ndim - len(axis)
    if not axis or axis[0] == lead:  # (sorted axes) the trailing ones: one reduction over one axis
        out = _add_reduce(x.reshape(x.shape[:lead] + (-1,)), -1)  # ``.sum(axis=-1)``, without numpy's wrapper
        kept = x.shape[:lead] + (1,) * len(axis)
    else:
        out = x.sum(axis=axis)
        kept = reduced_shape(x.shape, axis, True)
    return out.reshape(shape), (kept, x.shape)


class _Extreme(NamedTuple):
    """What a max's or min's vjp needs."""

    x: np.ndarray
    kept: np.ndarray  # the extreme of each group, in the kept shape
    axis: tuple[int, ...]


def _extreme_dx(g: np.ndarray, s: _Extreme) -> np.ndarray:
    # the delta of a group goes to its extreme; tied extremes share it evenly (PyTorch's amax rule)
    ties = s.x == s.kept
    count = ties.sum(axis=s.axis, keepdims=True).astype(g.dtype)
    return (g.reshape(s.kept.shape) / count) * ties


# y = the largest value of each group; dx = dy at the maximum (split evenly among ties), else 0
@register("max", _extreme_dx)
def maximum_over(x: Any, axis: Any, shape: Any) -> tuple[Any, ...]:
    kept = x.max(axis=axis, keepdims=True)
    return kept.reshape(shape), _Extreme(x, kept, axis)


# y = the smallest value of each group; dx = dy at the minimum (split evenly among ties), else 0
@register("min", _extreme_dx)
def minimum_over(x: Any, axis: Any, shape: Any) -> tuple[Any, ...]:
    kept = x.min(axis=axis, keepdims=True)
    return kept.reshape(shape), _Extreme(x, kept, axis)


class _Product(NamedTuple):
    """What a product's vjp needs."""

    x: np.ndarray
    axis: tuple[int, ...]
    kept: tuple[int, ...]  # the result's shape with ones in place of the reduced axes


def _prod_dx(g: np.ndarray, s: _Product) -> np.ndarray:
    # d prod / dx_i = the product of the other values of the group, formed from the products of
    # the values before and after x_i: no division, so zeros need no special case
    x, axis = s.x, s.axis
    rest = tuple(range(x.ndim - len(axis), x.ndim))
    moved = np.moveaxis(x, axis, rest)
    flat = moved.reshape(moved.shape[: x.ndim - len(axis)] + (-1,))
    before = np.ones_like(flat)
    np.cumprod(flat[..., :-1], axis=-1, out=before[..., 1:])
    after = np.ones_like(flat)
    after[..., :-1] = np.cumprod(flat[..., :0:-1], axis=-1)[..., ::-1]
    others = np.moveaxis((before * after).reshape(moved.shape), rest, axis)
    return g.reshape(s.kept) * others


# y = the product of each group; dx_i = dy times the product of the group's other values
@register("prod", _prod_dx)
def product_over(x: Any, axis: Any, shape: Any) -> tuple[Any, ...]:
    return x.prod(axis=axis).reshape(shape), _Product(x, axis, reduced_shape(x.shape, axis, True))


def _logsumexp_dx(g: np.ndarray, saved: Any) -> np.ndarray:
    x, kept = saved
    return g.reshape(kept.shape) * np.exp(x - kept)


# y = ln sum e^x = m + ln sum e^(x - m) with m the group's maximum (finite e^ for any x);
# dx = dy e^(x - y), the softmax of the group
@register("logsumexp", _logsumexp_dx)
def logsumexp(x: Any, axis: Any, shape: Any) -> tuple[Any, ...]:
    shift = x.max(axis=axis, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0)  # all -inf (or an inf) shifts by nothing
    kept = np.log(np.exp(x - shift).sum(axis=axis, keepdims=True)) + shift
    return kept.reshape(shape), (x, kept)


class _Deviation(NamedTuple):
    """What a standard deviation's vjp needs."""

    centred: np.ndarray  # x - mean
    kept: np.ndarray  # the deviation of each group, in the kept shape
    freedom: float  # n - ddof


def _std_dx(g: np.ndarray, s: _Deviation) -> np.ndarray:
    # d std = d var / (2 std) and d var / dx = 2 (x - mean) / (n - ddof), so
    # dx = dy (x - mean) / ((n - ddof) std); 0 where std = 0 (PyTorch's rule: a group of equal
    # values has no direction to spread in), where the composition sqrt(var) would give 0 * inf
    scale = np.zeros(s.kept.shape, dtype=g.dtype)
    np.divide(g.reshape(s.kept.shape), s.kept * s.freedom, out=scale, where=s.kept != 0)
    return scale * s.centred


# y = sqrt(sum((x - mean)^2) / (n - ddof)) over ``axis``; a primitive (not sqrt of var) for its
# gradient where the deviation is 0. The mean is taken of x less the group's first value: a
# group of equal values then centres to exact zeros (numpy's (a + a + a) / 3 need not give a
# back, and a deviation of 1e-17 would point the gradient anywhere)
@register("std", _std_dx)
def deviation(x: Any, axis: Any, shape: Any, ddof: Any) -> tuple[Any, ...]:
    freedom = float(int(np.prod([x.shape[a] for a in axis])) - ddof)
    first = x[tuple(slice(0, 1) if a in axis else slice(None) for a in range(x.ndim))]
    offset = x - first
    centred = offset - offset.mean(axis=axis, keepdims=True)
    kept = np.sqrt((centred * centred).sum(axis=axis, keepdims=True) / freedom)
    return kept.reshape(shape), _Deviation(centred, kept, freedom)


def _reduce(x: Any, name: str, axis: Any, keepdims: Any, where: str = "", **params: Any) -> Array:
    """``apply`` the reduction primitive ``name``; errors name ``where`` (the user's function), default ``name``."""
    where = where or name
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"{where}: keepdims must be True or False, got {keepdims!r}")
    shape = x._values.shape
    axes = axes_of(axis, len(shape), where)
    return apply(name, (x,), {"axis": axes, "shape": reduced_shape(shape, axes, bool(keepdims)), **params})


def _freedom(x: Any, axis: Any, ddof: Any, where: str) -> tuple[int, int]:
    """The values a group and ``ddof``, checked to leave a degree of freedom."""
    count = _count(x, axis, where)
    ddof = whole_number(ddof, "ddof", where, minimum=0)
    if count - ddof <= 0:
        raise ValueError(f"{where}: ddof={ddof} leaves no degrees of freedom for {count} values a group")
    return count, ddof


def _variance(x: Any, axis: Any, ddof: Any, keepdims: Any, where: str) -> Array:
    # sum((x - mean)^2) / (n - ddof), as numpy computes it
    count, ddof = _freedom(x, axis, ddof, where)
    centred = x - _reduce(x, "sum", axis, True, where) / float(count)
    return _reduce(centred * centred, "sum", axis, keepdims, where) / float(count - ddof)


def _count(x: Any, axis: Any, where: str) -> int:
    shape = x._values.shape
    return int(np.prod([shape[a] for a in axes_of(axis, len(shape), where)]))


class ReductionMethods(ArrayData):
    """sum, mean, var, std, max, min, prod, logsumexp, argmax, argmin."""

    __slots__ = ()

    def sum(self, skip_count: int = _MISSING, *, axis: Any = _MISSING, keepdims: bool = _MISSING) -> Array:
        """corgi's ``sum(skip_count)``, or numpy's ``sum(axis=..., keepdims=...)`` when given by keyword.

        ``x.sum()`` and ``x.sum(k)`` sum over the last ``k`` dimensions (default
        1), leaving one dimension of 1 (corgi's shape rule: 2x3 gives 2x1).
        With ``axis`` (an int, a tuple, or None for all) or ``keepdims``, it is
        numpy's sum; summing every axis gives dimensions (1,). Giving both
        forms is a TypeError.

        >>> from corgi import arr
        >>> x = arr(arr(1, 2, 3), arr(4, 5, 6))
        >>> x.sum()
        Array([[ 6.],
               [15.]], dimensions=(2, 1))
        >>> x.sum(axis=0), x.sum(axis=None)
        (Array([5., 7., 9.], dimensions=(3,)), Array([21.], dimensions=(1,)))
        """
        if axis is _MISSING and keepdims is _MISSING:
            shape = self._values.shape
            if skip_count is _MISSING:
                count = 1
            elif type(skip_count) is int:
                count = skip_count
            else:
                count = whole_number(skip_count, "skip_count", "sum", minimum=None)
            params = _SKIP_COUNT.get((shape, count))
            if params is None:
                params = _skip_count_params(shape, count)
            return apply("sum", (self,), params)
        if skip_count is not _MISSING:
            raise TypeError("sum: give skip_count (corgi's form) or axis/keepdims (numpy's), not both")
        return _reduce(self, "sum", None if axis is _MISSING else axis, False if keepdims is _MISSING else keepdims)

    @composed("mean", ["sum", "div"])
    def mean(self, axis: Any = None, keepdims: bool = False) -> Array:
        """The mean over ``axis`` (None: all), as numpy's; every axis gives dimensions (1,).

        >>> from corgi import arr
        >>> x = arr(arr(1.0, 2.0), arr(3.0, 5.0))
        >>> x.mean(), x.mean(axis=1, keepdims=True).dimensions
        (Array([2.75], dimensions=(1,)), (2, 1))
        """
        return _reduce(self, "sum", axis, keepdims, "mean") / float(_count(self, axis, "mean"))

    @composed("var", ["sum", "div", "sub", "mul"])
    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Array:
        """The variance over ``axis``: ``sum((x - mean)^2) / (n - ddof)``, as numpy's.

        ``ddof`` must leave at least one degree of freedom (a ValueError otherwise).

        >>> from corgi import arr
        >>> x = arr(1.0, 2.0, 3.0, 4.0)
        >>> x.var(), x.var(ddof=1)
        (Array([1.25], dimensions=(1,)), Array([1.66666667], dimensions=(1,)))
        """
        return _variance(self, axis, ddof, keepdims, "var")

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Array:
        """The standard deviation over ``axis``: ``sqrt(var)``, as numpy's; its gradient is 0
        where the deviation is 0 (every value of the group equal), as PyTorch's.

        >>> from corgi import arr
        >>> x = arr(arr(1.0, 3.0), arr(2.0, 2.0)).tracked()
        >>> s = x.std(axis=1)
        >>> s.backward()
        >>> s, x.gradient()
        (Array([1., 0.], dimensions=(2,), tracked), Array([[-0.5,  0.5],
               [ 0. ,  0. ]], dimensions=(2, 2)))
        """
        _, ddof = _freedom(self, axis, ddof, "std")
        return _reduce(self, "std", axis, keepdims, "std", ddof=ddof)

    def max(self, axis: Any = None, keepdims: bool = False) -> Array:
        """The largest value over ``axis`` (None: all), as numpy's; tied maxima share the gradient
        evenly, as PyTorch's ``amax``.

        >>> from corgi import arr
        >>> x = arr(arr(1.0, 5.0), arr(5.0, 2.0)).tracked()
        >>> m = x.max()
        >>> m.backward()
        >>> m, x.gradient()
        (Array([5.], dimensions=(1,), tracked), Array([[0. , 0.5],
               [0.5, 0. ]], dimensions=(2, 2)))
        """
        return _reduce(self, "max", axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Array:
        """The smallest value over ``axis`` (None: all), as numpy's; tied minima share the gradient evenly.

        >>> from corgi import arr
        >>> arr(arr(1.0, 5.0), arr(0.5, 2.0)).min(axis=1)
        Array([1. , 0.5], dimensions=(2,))
        """
        return _reduce(self, "min", axis, keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Array:
        """The product over ``axis`` (None: all), as numpy's; exact gradients at zeros too.

        >>> from corgi import arr
        >>> x = arr(2.0, 0.0, 3.0).tracked()
        >>> p = x.prod()
        >>> p.backward()
        >>> p, x.gradient()
        (Array([0.], dimensions=(1,), tracked), Array([0., 6., 0.], dimensions=(3,)))
        """
        return _reduce(self, "prod", axis, keepdims)

    def logsumexp(self, axis: Any = None, keepdims: bool = False) -> Array:
        """``ln(sum(e^x))`` over ``axis`` (None: all), finite for large inputs; its gradient is the softmax.

        >>> from corgi import arr
        >>> arr(1000.0, 1000.0).logsumexp()
        Array([1000.69314718], dimensions=(1,))
        """
        return _reduce(self, "logsumexp", axis, keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> int | np.ndarray:
        """Where the largest values are (not differentiable): with ``axis=None`` the flat index, so
        that ``x[x.argmax()]`` is the maximum; else a numpy array of indices along ``axis``.

        >>> from corgi import arr
        >>> x = arr(arr(1.0, 5.0), arr(7.0, 2.0))
        >>> x.argmax(), x[x.argmax()], x.argmax(axis=1).tolist()
        (2, 7.0, [1, 0])
        """
        return _arg(self._values, np.argmax, "argmax", axis, keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> int | np.ndarray:
        """Where the smallest values are (not differentiable), as ``argmax``.

        >>> from corgi import arr
        >>> arr(arr(1.0, 5.0), arr(7.0, 0.5)).argmin(axis=0).tolist()
        [0, 1]
        """
        return _arg(self._values, np.argmin, "argmin", axis, keepdims)


def _arg(values: np.ndarray, find: Any, name: str, axis: Any, keepdims: Any) -> int | np.ndarray:
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"{name}: keepdims must be True or False, got {keepdims!r}")
    if axis is None and not keepdims:
        return int(find(values))
    if axis is None:
        return np.asarray(find(values, keepdims=True))
    (position,) = axes_of(whole_number(axis, "axis", name, minimum=None), values.ndim, name)
    return np.asarray(find(values, axis=position, keepdims=bool(keepdims)))
