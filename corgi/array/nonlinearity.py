"""Transcendental and activation functions (corgi's ``src/array/nonlinearity.rs``): exp, ln,
relu, sigmoid, tanh and the softmax family, with their methods."""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .operation import ArrayData, apply, is_array
from .registry import composed, register
from .values import to_values

# numpy's reductions themselves: ``x.sum(axis=...)`` and ``x.max(axis=...)`` call these through
# a Python function of numpy's (a microsecond each, several per training step)
_add_reduce = np.add.reduce
_max_reduce = np.maximum.reduce

if TYPE_CHECKING:
    from .core import Array


# d(e^x) = e^x dx
@register("exp", lambda g, out: g * out)
def exp(x: Any) -> tuple[Any, ...]:
    out = np.exp(x)
    return out, out


# d(ln x) = dx / x
@register("ln", lambda g, x: g / x)
def ln(x: Any) -> tuple[Any, ...]:
    return np.log(x), x


# d relu(x) = [x > 0] dx
@register("relu", lambda g, x: g * (x > 0))
def relu(x: Any) -> tuple[Any, ...]:
    return np.maximum(x, 0), x


def _sigmoid_dx(g: np.ndarray, saved: Any) -> np.ndarray:
    out, x = saved
    if x is None:
        return g * (out * (1 - out))
    # float32: s (1 - s) = e^-(log(1 + e^-x) + log(1 + e^x)), in float64, where 1 - s would lose
    # the digits of s that float32 rounding took (2e-4 relative at x = 8 from one ulp of s)
    x = x.astype(np.float64)
    return g * np.exp(-(np.logaddexp(0.0, x) + np.logaddexp(0.0, -x))).astype(g.dtype)


# s = 1 / (1 + e^-x) = e^(-log(1 + e^-x)): logaddexp never overflows; ds = s (1 - s) dx.
# float32 values are computed in float64 and rounded once, so they are correctly rounded rather
# than an ulp or two off after float32's own exp and log
@register("sigmoid", _sigmoid_dx)
def sigmoid(x: Any) -> tuple[Any, ...]:
    if x.dtype == np.float32:
        out = np.exp(-np.logaddexp(0.0, -x.astype(np.float64))).astype(np.float32)
        return out, (out, x)
    out = np.exp(-np.logaddexp(0, -x))
    return out, (out, None)


def _tanh_dx(g: np.ndarray, out: np.ndarray) -> np.ndarray:
    # g * (1 - out * out) in one new array instead of three (the wide graph's branches: three
    # 2 MB temporaries each); the same operations on the same values, so the same bits
    delta = out * out
    np.subtract(1, delta, out=delta)
    if g.shape == delta.shape and g.dtype == delta.dtype:
        delta *= g
        return delta
    return g * delta


# d tanh(x) = (1 - tanh(x)^2) dx
@register("tanh", _tanh_dx)
def tanh(x: Any) -> tuple[Any, ...]:
    out = np.tanh(x)
    return out, out


# s = e^(x - max x) / sum e^(x - max x) over the last axis (the shift keeps e^ finite);
# ds = s * (g - sum(g * s)) along that axis
@register("softmax", lambda g, out: out * (g - _row_sum(g * out)))
def softmax(x: Any) -> tuple[Any, ...]:
    shifted = np.exp(x - _row_max(x))
    out = shifted / _row_sum(shifted)
    return out, out


# ln s = (x - max x) - ln sum e^(x - max x) over the last axis: exact where s itself underflows
# to 0; d ln s = g - s * sum(g) along that axis, with s = e^(ln s)
@register("log_softmax", lambda g, out: g - np.exp(out) * _row_sum(g))
def log_softmax(x: Any) -> tuple[Any, ...]:
    out = _log_softmax(x)
    return out, out


def _row_max(x: np.ndarray) -> np.ndarray:
    """The maximum over the last axis, kept as an axis of 1.

    numpy reduces many short rows slowly (7 us for 128 rows of 10 values); the
    column-wise reduction of a transposed copy gives the same values in 3 us.
    """
    k = x.shape[-1]
    if k <= 32 and x.size >= 64 * k:
        return np.maximum.reduce(x.reshape(-1, k).T.copy(), axis=0).reshape(x.shape[:-1] + (1,))
    return _max_reduce(x, -1, keepdims=True)  # ``x.max(axis=-1, keepdims=True)`` without its Python wrapper


# Ones to sum rows with, by (length, dtype): read-only, shared.
_ONES: dict[tuple[int, np.dtype[Any]], np.ndarray] = {}


def _row_sum(x: np.ndarray) -> np.ndarray:
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


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - _row_max(x)
    log_total = _row_sum(np.exp(shifted))
    np.log(log_total, out=log_total)
    shifted -= log_total  # fresh: in place
    return shifted


def _cross_entropy_logits(g: np.ndarray, saved: Any) -> np.ndarray:
    log_p, target, scale = saved
    delta = np.exp(log_p)  # the softmax; fresh, so the rest works in place
    total = _row_sum(target)
    if target.shape[-1] != log_p.shape[-1]:
        total *= log_p.shape[-1]  # a target of one column counts once for each of the K classes
    delta *= total
    delta -= target
    delta *= float(g[0]) * scale  # g: the delta of the one-value loss
    return delta


def _cross_entropy_target(g: np.ndarray, saved: Any) -> np.ndarray:
    log_p, _, scale = saved
    return (g * -scale) * log_p


# Fused for speed and for exactness at saturation (composing it is log_softmax, mul, sum):
# L = -sum(t ln s) / batch with ln s = log_softmax(z) and batch = the first dimension of a 2-D or
# larger z; dz = (s sum(t) - t) / batch along the last axis, i.e. (s - t) / batch for one-hot
# rows, where sum(t) is over t as broadcast to z (K t for a target of one column); dt = -ln s / batch
@register("softmax_cross_entropy", _cross_entropy_logits, _cross_entropy_target)
def softmax_cross_entropy(z: Any, target: Any) -> tuple[Any, ...]:
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


def _cross_entropy_dp(g: np.ndarray, saved: Any) -> np.ndarray:
    shifted, weights, kept = saved
    # the composition's backward, rule by rule: the sum's delta broadcast back, times the weights
    # (the product's rule), over p + epsilon (the logarithm's): the same operations, the same bits
    # (``g.reshape(kept) * weights`` broadcasts g as ``np.broadcast_to`` did, product by product,
    # without its microseconds of Python)
    return (g.reshape(kept) * weights) / shifted


# Fused for speed (one node instead of four), exactly its composition, in the same numpy operations:
# L = sum(ln(p + epsilon) * w) with w = -t / batch a constant (make_cross_entropy's cost on a constant
# target); dp = w / (p + epsilon)
@register("cross_entropy", _cross_entropy_dp)
def cross_entropy(p: Any, weights: Any, epsilon: Any) -> tuple[Any, ...]:
    shifted = p + epsilon
    product = np.log(shifted) * weights
    if product.shape != p.shape:
        raise ValueError(f"cross_entropy: a target of dimensions {np.shape(weights)} does not match {p.shape}")
    # as sum(skip_count) sums every axis of the product (``.sum(axis=-1)``, without its Python wrapper)
    loss = _add_reduce(product.reshape(-1), -1)
    return loss.reshape(1), (shifted, weights, (1,) * p.ndim), 4 * p.size


class NonlinearityMethods(ArrayData):
    """exp, ln (log), relu, sigmoid, tanh and the softmax family, as Array methods."""

    __slots__ = ()

    def exp(self) -> Array:
        """``e^x`` elementwise: ``d/dx e^x = e^x``.

        >>> from corgi import arr
        >>> x = arr(0.0, 1.0).tracked()
        >>> y = x.exp()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient()[0], round(x.gradient()[1], 4)
        (1.0, 2.7183, 1.0, 2.7183)
        """
        return apply("exp", (self,))

    def ln(self) -> Array:
        """The natural logarithm, elementwise: ``d/dx ln x = 1/x`` (also ``log``, numpy's name).

        >>> from corgi import arr
        >>> x = arr(1.0, 4.0).tracked()
        >>> y = x.ln()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient().values.tolist()
        (0.0, 1.3863, [1.0, 0.25])
        """
        return apply("ln", (self,))

    @composed("log", ["ln"])
    def log(self) -> Array:
        """numpy's name for ``ln``: the same operation.

        >>> from corgi import arr
        >>> arr(1.0).log() == arr(1.0).ln() == arr(0.0)
        True
        """
        return apply("ln", (self,))

    def relu(self) -> Array:
        """``max(x, 0)`` elementwise; its derivative is 0 at 0, as PyTorch's.

        >>> from corgi import arr
        >>> arr(-1.0, 2.0).relu()
        Array([0., 2.], dimensions=(2,))
        """
        return apply("relu", (self,))

    def sigmoid(self) -> Array:
        """``1 / (1 + e^-x)`` elementwise, finite for any input; float32 values are correctly rounded.

        >>> from corgi import arr
        >>> arr(0.0, -1000.0, 1000.0).sigmoid()
        Array([0.5, 0. , 1. ], dimensions=(3,))
        >>> x = arr(0.0).tracked()
        >>> x.sigmoid().backward()       # s (1 - s) = 0.25 at 0
        >>> x.gradient()[0]
        0.25
        """
        return apply("sigmoid", (self,))

    def tanh(self) -> Array:
        """The hyperbolic tangent, elementwise: ``d/dx tanh x = 1 - tanh^2 x``.

        >>> from corgi import arr
        >>> x = arr(0.0, 1.0).tracked()
        >>> y = x.tanh()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient()[0], round(x.gradient()[1], 4)
        (0.0, 0.7616, 1.0, 0.42)
        """
        return apply("tanh", (self,))

    def softmax(self) -> Array:
        """The softmax over the last dimension, stable for large inputs.

        >>> from corgi import arr
        >>> arr(1000.0, 1000.0).softmax()
        Array([0.5, 0.5], dimensions=(2,))
        """
        return apply("softmax", (self,))

    def log_softmax(self) -> Array:
        """The logarithm of the softmax over the last dimension, exact where the softmax underflows.

        ``x - max(x) - ln(sum(e^(x - max(x))))``: use it for log-probabilities
        rather than ``softmax().ln()``, which gives ``-inf`` once a probability
        rounds to zero.

        >>> from corgi import arr
        >>> arr(1000.0, 0.0).log_softmax()
        Array([    0., -1000.], dimensions=(2,))
        >>> x = arr(0.0, 0.0).tracked()
        >>> x.log_softmax().sum().backward()   # d/dx_i sum_j ln s_j = 1 - 2 s_i = 0
        >>> x.gradient()
        Array([0., 0.], dimensions=(2,))
        """
        return apply("log_softmax", (self,))

    def cross_entropy(self, target: Array | np.ndarray, epsilon: float = 1e-12) -> Array:
        """Cross-entropy of probabilities (``self``, a softmax say) against a constant ``target``, averaged over the batch.

        ``-sum(target * ln(self + epsilon)) / batch``, where the batch is the
        first dimension of a 2-D or larger array: what
        ``corgi.cost.make_cross_entropy()`` computes for an untracked target,
        in one node, bit for bit the same values and gradient as its
        composition. A tracked target is a ValueError (the cost composes the
        operations for one, so that the target gets its gradient too).

        >>> import numpy as np
        >>> from corgi import arr
        >>> p = arr(arr(0.5, 0.5), arr(0.8, 0.2)).tracked()
        >>> loss = p.cross_entropy(np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> round(loss[0], 6)                 # (ln 2 + ln 5) / 2
        1.151293
        >>> loss.backward(); p.gradient()     # -t / (p + epsilon) / 2
        Array([[-1. , -0. ],
               [-0. , -2.5]], dimensions=(2, 2))
        """
        values = self._values
        if is_array(target):
            if target._tracked:
                raise ValueError("cross_entropy: the target is tracked; compose the cost for a tracked target "
                                 "(corgi.cost.make_cross_entropy does)")
            target = target._values
        elif not isinstance(target, np.ndarray):
            raise TypeError(f"cross_entropy: the target must be an Array or a numpy array, got {type(target).__name__}")
        batch = values.shape[0] if values.ndim >= 2 else 1
        weights = np.asarray(target, dtype=values.dtype) * (-1.0 / batch)
        return apply("cross_entropy", (self, weights), {"epsilon": float(epsilon)})

    def softmax_cross_entropy(self, target: Array | np.ndarray) -> Array:
        """Cross-entropy of ``softmax(self)`` against ``target``, averaged over the batch.

        ``-sum(target * log_softmax(self)) / batch``, where ``self`` holds
        logits and the batch is its first dimension (a 1-D array is one
        example). One fused operation: it is exact where the softmax
        saturates, and its gradient is ``(softmax(self) - target) / batch``
        for one-hot rows. ``target`` has the logits' dimensions or broadcasts
        to them (a target of one column counts for every class); a numpy
        target takes the logits' dtype.

        >>> from corgi import arr
        >>> logits = arr(arr(0.0, 0.0), arr(1000.0, -1000.0)).tracked()
        >>> loss = logits.softmax_cross_entropy(arr(arr(1.0, 0.0), arr(0.0, 1.0)))
        >>> round(loss[0], 4)                 # (ln 2 + 2000) / 2
        1000.3466
        >>> loss.backward()
        >>> logits.gradient()                 # (p - t) / 2
        Array([[-0.25,  0.25],
               [ 0.5 , -0.5 ]], dimensions=(2, 2))
        """
        values = self._values
        if isinstance(target, np.ndarray):
            target = to_values(target, None, values.dtype)
        elif not is_array(target):
            raise TypeError(
                f"softmax_cross_entropy: the target must be an Array or a numpy array, got {type(target).__name__}"
            )
        return apply("softmax_cross_entropy", (self, target))
