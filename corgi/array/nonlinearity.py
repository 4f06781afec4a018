"""Transcendental and activation functions (corgi's ``src/array/nonlinearity.rs``)."""

from __future__ import annotations

import numpy as np

from .registry import register


# d(e^x) = e^x dx
@register("exp", lambda g, out: g * out)
def exp(x):
    out = np.exp(x)
    return out, out


# d(ln x) = dx / x
@register("ln", lambda g, x: g / x)
def ln(x):
    return np.log(x), x


# d relu(x) = [x > 0] dx
@register("relu", lambda g, x: g * (x > 0))
def relu(x):
    return np.maximum(x, 0), x


# s = 1 / (1 + e^-x) = e^(-log(1 + e^-x)): logaddexp never overflows; ds = s (1 - s) dx
@register("sigmoid", lambda g, out: g * (out * (1 - out)))
def sigmoid(x):
    out = np.exp(-np.logaddexp(0, -x))
    return out, out


# d tanh(x) = (1 - tanh(x)^2) dx
@register("tanh", lambda g, out: g * (1 - out * out))
def tanh(x):
    out = np.tanh(x)
    return out, out


# s = e^(x - max x) / sum e^(x - max x) over the last axis (the shift keeps e^ finite);
# ds = s * (g - sum(g * s)) along that axis
@register("softmax", lambda g, out: out * (g - (g * out).sum(axis=-1, keepdims=True)))
def softmax(x):
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    out = shifted / shifted.sum(axis=-1, keepdims=True)
    return out, out
