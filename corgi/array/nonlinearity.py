"""Transcendental and activation functions (corgi's ``src/array/nonlinearity.rs``)."""

from __future__ import annotations

import numpy as np

from .registry import register


@register("exp")
def exp(x):
    # d(e^x) = e^x dx
    out = np.exp(x)
    return out, (lambda g: g * out,)


@register("ln")
def ln(x):
    # d(ln x) = dx / x
    return np.log(x), (lambda g: g / x,)


@register("relu")
def relu(x):
    # d relu(x) = [x > 0] dx
    return np.maximum(x, 0), (lambda g: g * (x > 0),)


@register("sigmoid")
def sigmoid(x):
    # s = 1 / (1 + e^-x) = e^(-log(1 + e^-x)): logaddexp never overflows; ds = s (1 - s) dx
    out = np.exp(-np.logaddexp(0, -x))
    return out, (lambda g: g * (out * (1 - out)),)


@register("tanh")
def tanh(x):
    # d tanh(x) = (1 - tanh(x)^2) dx
    out = np.tanh(x)
    return out, (lambda g: g * (1 - out * out),)


@register("softmax")
def softmax(x):
    # s = e^(x - max x) / sum e^(x - max x) over the last axis (the shift keeps e^ finite);
    # ds = s * (g - sum(g * s)) along that axis
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    out = shifted / shifted.sum(axis=-1, keepdims=True)
    return out, (lambda g: out * (g - (g * out).sum(axis=-1, keepdims=True)),)
