"""Elementwise arithmetic (corgi's ``src/array/arithmetic.rs``).

Each rule sits right above its forward value. Operands are numpy arrays or
Python numbers; numpy broadcasts, and ``registry.sum_to`` undoes it.
"""

from __future__ import annotations

import numpy as np

from .registry import register


def _same(g, saved):
    return g


def _negated(g, saved):
    return -g


# d(x + y) = dx + dy
@register("add", _same, _same)
def add(x, y):
    return x + y, None


# d(x - y) = dx - dy; one node instead of add(x, neg(y)) halves the engine work
@register("sub", _same, _negated)
def sub(x, y):
    return x - y, None


# d(xy) = y dx + x dy
@register("mul", lambda g, s: g * s[1], lambda g, s: g * s[0])
def mul(x, y):
    return x * y, (x, y)


# d(x / y) = dx / y - (x / y) dy / y; a primitive so that x / y has numpy's exact bits
@register("div", lambda g, s: g / s[1], lambda g, s: -g * s[0] / s[1])
def div(x, y):
    out = x / y
    return out, (out, y)


# d(-x) = -dx
@register("neg", _negated)
def neg(x):
    return -x, None


# d(x^e) = e x^(e-1) dx (corgi 0.9.2 dropped the factor e x^(e-1); we do not)
@register("powf", lambda g, s: g * (s[1] * s[0] ** (s[1] - 1)))
def powf(x, exponent):
    return x**exponent, (x, exponent)


# d(x^y) = y x^(y-1) dx + x^y ln(x) dy
@register("pow", lambda g, s: g * (s[1] * s[0] ** (s[1] - 1)), lambda g, s: g * (s[2] * np.log(s[0])))
def power(x, y):
    out = x**y
    return out, (x, y, out)


# d(1/x) = -dx / x^2
@register("reciprocal", lambda g, out: -g * (out * out))
def reciprocal(x):
    out = 1.0 / x
    return out, out
