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
@register("softmax", lambda g, out: out * (g - _row_sum(g * out)))
def softmax(x):
    shifted = np.exp(x - _row_max(x))
    out = shifted / _row_sum(shifted)
    return out, out


# ln s = (x - max x) - ln sum e^(x - max x) over the last axis: exact where s itself underflows
# to 0; d ln s = g - s * sum(g) along that axis, with s = e^(ln s)
@register("log_softmax", lambda g, out: g - np.exp(out) * _row_sum(g))
def log_softmax(x):
    out = _log_softmax(x)
    return out, out


def _row_max(x):
    """The maximum over the last axis, kept as an axis of 1.

    numpy reduces many short rows slowly (7 us for 128 rows of 10 values); the
    column-wise reduction of a transposed copy gives the same values in 3 us.
    """
    k = x.shape[-1]
    if k <= 32 and x.size >= 64 * k:
        return np.maximum.reduce(x.reshape(-1, k).T.copy(), axis=0).reshape(x.shape[:-1] + (1,))
    return x.max(axis=-1, keepdims=True)


# Ones to sum rows with, by (length, dtype): read-only, shared.
_ONES: dict = {}


def _row_sum(x):
    """The sum over the last axis, kept as an axis of 1.

    As a product with a vector of ones: numpy's reduction loops over many
    short rows slowly (3.5 us for 128 rows of 10 values), a matrix-vector
    product takes 0.6 us. Each row is summed whole by one BLAS call, so the
    result does not depend on the thread that asks.
    """
    k = x.shape[-1]
    ones = _ONES.get((k, x.dtype))
    if ones is None:
        ones = np.ones(k, dtype=x.dtype)
        ones.flags.writeable = False
        if len(_ONES) < 256:
            _ONES[(k, x.dtype)] = ones
    return x.reshape(-1, k).dot(ones).reshape(x.shape[:-1] + (1,))


def _log_softmax(x):
    shifted = x - _row_max(x)
    log_total = _row_sum(np.exp(shifted))
    np.log(log_total, out=log_total)
    shifted -= log_total  # fresh: in place
    return shifted


def _cross_entropy_logits(g, saved):
    log_p, target, scale = saved
    delta = np.exp(log_p)  # the softmax; fresh, so the rest works in place
    delta *= _row_sum(target)
    delta -= target
    delta *= float(g[0]) * scale  # g: the delta of the one-value loss
    return delta


def _cross_entropy_target(g, saved):
    log_p, target, scale = saved
    return (g * -scale) * log_p


# Fused for speed and for exactness at saturation (composing it is log_softmax, mul, sum):
# L = -sum(t ln s) / batch with ln s = log_softmax(z) and batch = the first dimension of a 2-D or
# larger z; dz = (s sum(t) - t) / batch along the last axis, i.e. (s - t) / batch for one-hot
# rows; dt = -ln s / batch
@register("softmax_cross_entropy", _cross_entropy_logits, _cross_entropy_target)
def softmax_cross_entropy(z, target):
    if target.shape != z.shape and np.broadcast_shapes(z.shape, target.shape) != z.shape:
        raise ValueError(
            f"softmax_cross_entropy: a target of dimensions {target.shape} does not match logits of {z.shape}"
        )
    log_p = _log_softmax(z)
    scale = 1.0 / (z.shape[0] if z.ndim >= 2 else 1)
    if target.shape == z.shape and target.dtype == z.dtype:
        loss = target.reshape(-1).dot(log_p.reshape(-1)) * -scale  # one BLAS dot: 0.7 us, not 2
    else:
        loss = np.multiply(target, log_p).sum() * -scale
    return loss.reshape(1), (log_p, target, scale), 4 * z.size
