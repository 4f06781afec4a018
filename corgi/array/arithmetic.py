"""Elementwise arithmetic (corgi's ``src/array/arithmetic.rs``).

Each rule sits beside its forward value. Operands are numpy arrays or
Python numbers; numpy broadcasts, and ``registry.sum_to`` undoes it.
"""

from __future__ import annotations

import numpy as np

from .registry import register


@register("add")
def add(x, y):
    # d(x + y) = dx + dy
    return x + y, (_same, _same)


@register("sub")
def sub(x, y):
    # d(x - y) = dx - dy; one node instead of add(x, neg(y)) halves the engine work
    return x - y, (_same, np.negative)


@register("mul")
def mul(x, y):
    # d(xy) = y dx + x dy
    return x * y, (lambda g: g * y, lambda g: g * x)


@register("div")
def div(x, y):
    # d(x / y) = dx / y - (x / y) dy / y; a primitive so that x / y has numpy's exact bits
    out = x / y
    return out, (lambda g: g / y, lambda g: -g * out / y)


@register("neg")
def neg(x):
    # d(-x) = -dx
    return -x, (np.negative,)


@register("powf")
def powf(x, exponent):
    # d(x^e) = e x^(e-1) dx (corgi 0.9.2 dropped the factor e x^(e-1); we do not)
    return x**exponent, (lambda g: g * (exponent * x ** (exponent - 1)),)


@register("pow")
def power(x, y):
    # d(x^y) = y x^(y-1) dx + x^y ln(x) dy
    out = x**y
    return out, (lambda g: g * (y * x ** (y - 1)), lambda g: g * (out * np.log(x)))


@register("reciprocal")
def reciprocal(x):
    # d(1/x) = -dx / x^2
    out = 1.0 / x
    return out, (lambda g: -g * (out * out),)


def _same(g):
    return g
