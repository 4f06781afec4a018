"""Elementwise arithmetic (corgi's ``src/array/arithmetic.rs``): + - * / ** and their methods.

Each rule sits right above its forward value. Operands are numpy arrays or
Python numbers; numpy broadcasts, and ``registry.sum_to`` undoes it.
"""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import numpy as np

from .operation import ArrayData, apply, binary
from .registry import Values, composed, register

if TYPE_CHECKING:
    from .core import Array

Operand = Union["Array", float, int]
Pair = tuple[Values, Values]


def _same(g: np.ndarray, saved: Any) -> np.ndarray:
    return g


def _negated(g: np.ndarray, saved: Any) -> np.ndarray:
    return -g


# d(x + y) = dx + dy
@register("add", _same, _same)
def add(x: Any, y: Any) -> tuple[Any, ...]:
    return x + y, None


# d(x - y) = dx - dy; one node instead of add(x, neg(y)) halves the engine work
@register("sub", _same, _negated)
def sub(x: Any, y: Any) -> tuple[Any, ...]:
    return x - y, None


def _mul_dx(g: np.ndarray, saved: Pair) -> np.ndarray:
    _, y = saved
    return g * y


def _mul_dy(g: np.ndarray, saved: Pair) -> np.ndarray:
    x, _ = saved
    return g * x


# d(xy) = y dx + x dy
@register("mul", _mul_dx, _mul_dy)
def mul(x: Any, y: Any) -> tuple[Any, ...]:
    return x * y, (x, y)


def _div_dx(g: np.ndarray, saved: Pair) -> np.ndarray:
    _, y = saved
    return g / y


def _div_dy(g: np.ndarray, saved: Pair) -> np.ndarray:
    out, y = saved
    return -g * out / y


# d(x / y) = dx / y - (x / y) dy / y; a primitive so that x / y has numpy's exact bits
@register("div", _div_dx, _div_dy)
def div(x: Any, y: Any) -> tuple[Any, ...]:
    out = x / y
    return out, (out, y)


# d(-x) = -dx
@register("neg", _negated)
def neg(x: Any) -> tuple[Any, ...]:
    return -x, None


def _powf_dx(g: np.ndarray, saved: tuple[np.ndarray, float]) -> np.ndarray:
    x, exponent = saved
    if exponent == 0:  # d(x^0) = 0 everywhere, also at x = 0 where e x^(e-1) is 0 * inf (as PyTorch)
        return np.zeros_like(g)
    return g * (exponent * x ** (exponent - 1))


# d(x^e) = e x^(e-1) dx (corgi 0.9.2 dropped the factor e x^(e-1); we do not)
@register("powf", _powf_dx)
def powf(x: Any, exponent: Any) -> tuple[Any, ...]:
    return x**exponent, (x, exponent)


class _Power(NamedTuple):
    """What x ** y's vjps need."""

    x: Values  # the base (an array, or a number for ``2.0 ** y``)
    y: Values  # the exponent
    out: np.ndarray  # x ** y


def _pow_dx(g: np.ndarray, s: _Power) -> np.ndarray:
    # where y = 0 the derivative is 0 (x^(y-1) would be 1/0 at x = 0): PyTorch's and autograd's rule
    y = s.y
    return g * (y * s.x ** np.where(y == 0, 1.0, y - 1))


def _pow_dy(g: np.ndarray, s: _Power) -> np.ndarray:
    # at x = 0 with y >= 0, x^y ln x is 0 * -inf; PyTorch and autograd give 0 there, and so does
    # taking ln 1 = 0 in those places
    x = s.x
    zero_base = (x == 0) & (s.y >= 0)
    if np.any(zero_base):
        x = np.where(zero_base, 1.0, x)
    return g * (s.out * np.log(x))


# d(x^y) = y x^(y-1) dx + x^y ln(x) dy
@register("pow", _pow_dx, _pow_dy)
def power(x: Any, y: Any) -> tuple[Any, ...]:
    out = x**y
    return out, _Power(x, y, out)


# d(1/x) = -dx / x^2
@register("reciprocal", lambda g, out: -g * (out * out))
def reciprocal(x: Any) -> tuple[Any, ...]:
    out = 1.0 / x
    return out, out


class ArithmeticMethods(ArrayData):
    """``+ - * / **``, with Arrays, Python numbers and numpy arrays on either side."""

    __slots__ = ()

    def __add__(self, other: Operand) -> Array:
        return binary("add", self, other)

    def __radd__(self, other: Operand) -> Array:
        return binary("add", other, self)

    def __sub__(self, other: Operand) -> Array:
        return binary("sub", self, other)

    def __rsub__(self, other: Operand) -> Array:
        return binary("sub", other, self)

    def __mul__(self, other: Operand) -> Array:
        return binary("mul", self, other)

    def __rmul__(self, other: Operand) -> Array:
        return binary("mul", other, self)

    def __truediv__(self, other: Operand) -> Array:
        return binary("div", self, other)

    def __rtruediv__(self, other: Operand) -> Array:
        return binary("div", other, self)

    def __neg__(self) -> Array:
        return apply("neg", (self,))

    def __pos__(self) -> Array:
        return self  # type: ignore[return-value]

    def __pow__(self, exponent: Operand) -> Array:
        if type(exponent) is float or (isinstance(exponent, numbers.Real) and not isinstance(exponent, bool)):
            return self.powf(exponent)
        return binary("pow", self, exponent)

    def __rpow__(self, base: Operand) -> Array:
        return binary("pow", base, self)

    def powf(self, exponent: float) -> Array:
        """Each value to the power ``exponent``: ``d/dx x^e = e x^(e-1)`` (0 for ``e = 0``).

        >>> from corgi import arr
        >>> x = arr(2.0).tracked()
        >>> y = x.powf(3.0)
        >>> y.backward()
        >>> y[0], x.gradient()[0]
        (8.0, 12.0)
        """
        if not isinstance(exponent, numbers.Real) or isinstance(exponent, bool):
            raise TypeError(f"powf: the exponent must be a real number, got {exponent!r}")
        return apply("powf", (self,), {"exponent": float(exponent)})

    def reciprocal(self) -> Array:
        """``1 / x`` elementwise: ``d/dx 1/x = -1/x^2``.

        >>> from corgi import arr
        >>> x = arr(2.0, 4.0).tracked()
        >>> y = x.reciprocal()
        >>> y.backward()
        >>> y.values.tolist(), x.gradient().values.tolist()
        ([0.5, 0.25], [-0.25, -0.0625])
        """
        return apply("reciprocal", (self,))

    @staticmethod
    @composed("axpy", ["mul", "add"])
    def axpy(alpha: Operand, x: Array, y: Array) -> Array:
        """``alpha * x + y``.

        >>> from corgi import Array, arr
        >>> Array.axpy(-2.0, arr(1.0, 2.0), arr(5.0, 6.0))
        Array([3., 2.], dimensions=(2,))
        """
        return alpha * x + y

