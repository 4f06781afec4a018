"""Elementwise functions numpy users expect: abs, sqrt, square, sin, cos, log1p, expm1, clip,
maximum, minimum, where, astype, and the comparisons that make boolean masks.

Gradients follow PyTorch's conventions where a function has a kink: ``abs`` and ``clip``
pass 0 and the whole delta at their corners (sign(0) = 0; clip's bounds are inclusive),
``maximum`` and ``minimum`` split the delta evenly between equal operands.
"""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..numbers import FloatType, float_type
from .operation import ArrayData, apply, binary, is_array, operand
from .registry import composed, register

if TYPE_CHECKING:
    from .core import Array


# d|x| = sign(x) dx (0 at 0)
@register("abs", lambda g, x: g * np.sign(x))
def absolute(x: Any) -> tuple[Any, ...]:
    return np.abs(x), x


# d sqrt(x) = dx / (2 sqrt(x)) (inf at 0, as PyTorch)
@register("sqrt", lambda g, out: g / (2 * out))
def sqrt(x: Any) -> tuple[Any, ...]:
    out = np.sqrt(x)
    return out, out


# d sin(x) = cos(x) dx
@register("sin", lambda g, x: g * np.cos(x))
def sin(x: Any) -> tuple[Any, ...]:
    return np.sin(x), x


# d cos(x) = -sin(x) dx
@register("cos", lambda g, x: -g * np.sin(x))
def cos(x: Any) -> tuple[Any, ...]:
    return np.cos(x), x


# d ln(1 + x) = dx / (1 + x)
@register("log1p", lambda g, x: g / (1 + x))
def log1p(x: Any) -> tuple[Any, ...]:
    return np.log1p(x), x


# d(e^x - 1) = e^x dx = (y + 1) dx
@register("expm1", lambda g, out: g * (out + 1))
def expm1(x: Any) -> tuple[Any, ...]:
    out = np.expm1(x)
    return out, out


def _clip_dx(g: np.ndarray, saved: Any) -> np.ndarray:
    x, lo, hi = saved
    inside = np.ones(x.shape, dtype=bool) if lo is None else x >= lo
    if hi is not None:
        inside &= x <= hi
    return g * inside


def _clip_dlo(g: np.ndarray, saved: Any) -> np.ndarray:
    x, lo, hi = saved
    below = x < lo
    return g * (below if hi is None else below & (lo < hi))


def _clip_dhi(g: np.ndarray, saved: Any) -> np.ndarray:
    x, lo, hi = saved
    above = x > hi
    return g * (above if lo is None else above | (hi < lo))


# y = min(max(x, lo), hi); dx = dy where lo <= x <= hi (bounds included, as PyTorch's clamp);
# a bound gets dy where it replaced x: dlo where x < lo < hi, dhi where x > hi or hi < lo
# (where the bounds cross, y = hi everywhere, as numpy and PyTorch compute it)
@register("clip", _clip_dx, _clip_dlo, _clip_dhi)
def clip(x: Any, lo: Any, hi: Any) -> tuple[Any, ...]:
    return np.clip(x, lo, hi), (x, lo, hi)


def _larger_dx(g: np.ndarray, saved: Any) -> np.ndarray:
    x, y = saved
    return np.where(x == y, g / 2, g) * (x >= y)


def _larger_dy(g: np.ndarray, saved: Any) -> np.ndarray:
    x, y = saved
    return np.where(x == y, g / 2, g) * (x <= y)


# y = max(x, y) elementwise; the delta goes to the larger operand, half to each where they are equal
@register("maximum", _larger_dx, _larger_dy)
def larger(x: Any, y: Any) -> tuple[Any, ...]:
    return np.maximum(x, y), (x, y)


# y = min(x, y) elementwise; the delta goes to the smaller operand, half to each where they are equal
@register("minimum", _larger_dy, _larger_dx)
def smaller(x: Any, y: Any) -> tuple[Any, ...]:
    return np.minimum(x, y), (x, y)


# y = a where the condition holds, else b; da = dy there, db = dy elsewhere
@register("where", lambda g, condition: np.where(condition, g, 0), lambda g, condition: np.where(condition, 0, g))
def select(a: Any, b: Any, condition: Any) -> tuple[Any, ...]:
    try:
        out = np.where(condition, a, b)
    except ValueError:
        shapes = f"a condition of {np.shape(condition)}, {np.shape(a)} and {np.shape(b)}"
        raise ValueError(f"where: {shapes} do not broadcast") from None
    if out.ndim == 0:
        out = out.reshape(1)
    return out, condition


# y = x in another float type; dx = dy cast back to x's type (fitting a delta to its operand does that)
@register("astype", lambda g, saved: g)
def astype(x: Any, dtype: Any) -> tuple[Any, ...]:
    return x.astype(dtype), None


def _bound(value: Any, what: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"clip: {what} must be a number or an Array, got {value!r}")
    return operand(value, "clip")


def _mask(x: Any, other: Any, compare: Any, symbol: str) -> np.ndarray:
    try:
        other = other._values if is_array(other) else operand(other, symbol)
    except TypeError:
        return NotImplemented
    try:
        return compare(x._values, other)
    except ValueError:
        raise ValueError(f"{symbol}: dimensions {x._values.shape} and {np.shape(other)} do not broadcast") from None


class ElementwiseMethods(ArrayData):
    """abs, sqrt, square, sin, cos, log1p, expm1, clip, astype and the comparisons < <= > >=."""

    __slots__ = ()

    def abs(self) -> Array:
        """``|x|`` elementwise (also ``abs(x)``); its derivative is ``sign(x)``, 0 at 0.

        >>> from corgi import arr
        >>> x = arr(-2.0, 0.0, 3.0).tracked()
        >>> y = abs(x)
        >>> y.backward()
        >>> y, x.gradient()
        (Array([2., 0., 3.], dimensions=(3,), tracked), Array([-1.,  0.,  1.], dimensions=(3,)))
        """
        return apply("abs", (self,))

    def __abs__(self) -> Array:
        return apply("abs", (self,))

    def sqrt(self) -> Array:
        """The square root, elementwise: ``d/dx sqrt(x) = 1 / (2 sqrt(x))``.

        >>> from corgi import arr
        >>> arr(4.0, 9.0).sqrt()
        Array([2., 3.], dimensions=(2,))
        """
        return apply("sqrt", (self,))

    @composed("square", ["powf"])
    def square(self) -> Array:
        """``x^2`` elementwise (``powf(2.0)``).

        >>> from corgi import arr
        >>> arr(-3.0, 0.5).square()
        Array([9.  , 0.25], dimensions=(2,))
        """
        return apply("powf", (self,), {"exponent": 2.0})

    def sin(self) -> Array:
        """The sine, elementwise: ``d/dx sin x = cos x``.

        >>> from corgi import arr
        >>> arr(0.0).sin()
        Array([0.], dimensions=(1,))
        """
        return apply("sin", (self,))

    def cos(self) -> Array:
        """The cosine, elementwise: ``d/dx cos x = -sin x``.

        >>> from corgi import arr
        >>> arr(0.0).cos()
        Array([1.], dimensions=(1,))
        """
        return apply("cos", (self,))

    def log1p(self) -> Array:
        """``ln(1 + x)``, exact for small x: ``d/dx = 1 / (1 + x)``.

        >>> from corgi import arr
        >>> arr(1e-20).log1p()[0]
        1e-20
        """
        return apply("log1p", (self,))

    def expm1(self) -> Array:
        """``e^x - 1``, exact for small x: ``d/dx = e^x``.

        >>> from corgi import arr
        >>> arr(1e-20).expm1()[0]
        1e-20
        """
        return apply("expm1", (self,))

    def clip(self, lo: Any = None, hi: Any = None) -> Array:
        """The values limited to ``[lo, hi]`` (numbers or Arrays; one may be None), as numpy's.

        The gradient passes where ``lo <= x <= hi`` (bounds included, as PyTorch's ``clamp``);
        a tracked bound gets the delta of the values it replaced.

        >>> from corgi import arr
        >>> x = arr(-2.0, 0.5, 3.0).tracked()
        >>> y = x.clip(0.0, 1.0)
        >>> y.backward()
        >>> y, x.gradient()
        (Array([0. , 0.5, 1. ], dimensions=(3,), tracked), Array([0., 1., 0.], dimensions=(3,)))
        """
        if lo is None and hi is None:
            raise ValueError("clip: give lo, hi or both")
        return apply("clip", (self, _bound(lo, "lo"), _bound(hi, "hi")))

    def astype(self, dtype: FloatType) -> Array:
        """The values as float32 or float64; the gradient is cast back. The same dtype returns this array.

        >>> from corgi import arr
        >>> x = arr(1.5).tracked()
        >>> y = x.astype("float32")
        >>> y.dtype, (y * 2.0).dtype
        (dtype('float32'), dtype('float32'))
        >>> (y * 2.0).backward()
        >>> x.gradient().dtype
        dtype('float64')
        """
        target = float_type(dtype, "astype")
        if target == self._values.dtype:
            return self  # type: ignore[return-value]
        return apply("astype", (self,), {"dtype": target})

    def __lt__(self, other: Any) -> np.ndarray:
        """``x < y`` elementwise: a numpy boolean mask (for ``corgi.where`` and indexing), never tracked.

        >>> from corgi import arr
        >>> arr(1.0, 2.0, 3.0) < 2.5
        array([ True,  True, False])
        """
        return _mask(self, other, np.less, "<")

    def __le__(self, other: Any) -> np.ndarray:
        return _mask(self, other, np.less_equal, "<=")

    def __gt__(self, other: Any) -> np.ndarray:
        return _mask(self, other, np.greater, ">")

    def __ge__(self, other: Any) -> np.ndarray:
        return _mask(self, other, np.greater_equal, ">=")


def maximum(x: Any, y: Any) -> Array:
    """The larger of ``x`` and ``y`` elementwise, as numpy's ``maximum``; equal values split the delta.

    >>> from corgi import arr, maximum
    >>> x = arr(1.0, 2.0, 3.0).tracked()
    >>> y = maximum(x, 2.0)
    >>> y.backward()
    >>> y, x.gradient()
    (Array([2., 2., 3.], dimensions=(3,), tracked), Array([0. , 0.5, 1. ], dimensions=(3,)))
    """
    return binary("maximum", x, y)


def minimum(x: Any, y: Any) -> Array:
    """The smaller of ``x`` and ``y`` elementwise, as numpy's ``minimum``; equal values split the delta.

    >>> from corgi import arr, minimum
    >>> minimum(arr(1.0, 2.0, 3.0), arr(3.0, 2.0, 1.0))
    Array([1., 2., 1.], dimensions=(3,))
    """
    return binary("minimum", x, y)


def where(condition: Any, a: Any, b: Any) -> Array:
    """``a`` where ``condition`` holds, else ``b``, as numpy's ``where``; each gets the delta of its places.

    ``condition`` is a boolean mask (``x > 0``, a numpy bool array or list of
    bools); ``a`` and ``b`` are Arrays or numbers, and all three broadcast.

    >>> from corgi import arr, where
    >>> x = arr(-1.0, 2.0, -3.0).tracked()
    >>> y = where(x > 0, x, 0.1 * x)       # a leaky ReLU
    >>> y.backward()
    >>> y, x.gradient()
    (Array([-0.1,  2. , -0.3], dimensions=(3,), tracked), Array([0.1, 1. , 0.1], dimensions=(3,)))
    """
    mask = _condition(condition)
    x = a if is_array(a) else operand(a, "where")
    y = b if is_array(b) else operand(b, "where")
    return apply("where", (x, y), {"condition": mask})


def _condition(condition: Any) -> np.ndarray:
    if is_array(condition):
        raise TypeError("where: the condition must be a boolean mask (such as x > 0), got an Array of floats")
    try:
        mask = np.asarray(condition)
    except ValueError:
        raise ValueError("where: the condition is not a rectangular array of booleans") from None
    if mask.dtype != np.bool_:
        raise TypeError(f"where: the condition must be a boolean mask (such as x > 0), got {mask.dtype} values")
    return mask


