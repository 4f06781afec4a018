"""Costs: the loss of an output against a target, as a tracked one-value Array.

A cost is a function ``cost(output, target)`` (corgi's order) returning an
Array of dimensions (1,); ``loss.backward()`` then fills the gradients of
everything the output came from. Both costs are compositions of Array
operations, so their gradients need no code of their own.
"""

from __future__ import annotations

from typing import Callable, Union

import numpy as np

from .array import Array

Target = Union[Array, np.ndarray]
Cost = Callable[[Array, Target], Array]

# Added to probabilities before the logarithm: ln(0 + 1e-12) = -27.6 instead of -inf, so a
# saturated softmax gives a finite loss and a finite gradient (at most 1e12 before it meets
# the softmax's own zero). It moves a loss of p >= 1e-6 by less than 1e-6 relative.
CROSS_ENTROPY_EPSILON = 1e-12


def make_mse() -> Cost:
    """Mean squared error over every value: ``sum((output - target)^2) / output size``.

    >>> from corgi import arr
    >>> mse = make_mse()
    >>> mse(arr(arr(1.0, 2.0), arr(3.0, 4.0)), arr(arr(1.0, 2.0), arr(3.0, 6.0)))
    Array([1.], dimensions=(1,))
    """

    def mse(output: Array, target: Target) -> Array:
        _check(output, target, "mse")
        size = int(np.prod(output.dimensions))
        return (output - target).powf(2.0).sum(len(output.dimensions)) * (1.0 / size)

    return mse


def make_cross_entropy() -> Cost:
    """Cross-entropy of probabilities against a target, averaged over the batch.

    ``-sum(target * ln(output + 1e-12)) / batch``, where the batch is the
    first dimension of a 2-D or larger output (a 1-D output is one example).
    The output is usually a softmax; the small epsilon keeps the loss and
    its gradient finite when the softmax saturates to exact zeros.

    >>> from corgi import arr
    >>> ce = make_cross_entropy()
    >>> loss = ce(arr(arr(0.5, 0.5), arr(1.0, 0.0)), arr(arr(1.0, 0.0), arr(1.0, 0.0)))
    >>> round(loss[0], 6)   # (ln 2 + 0) / 2
    0.346574
    >>> logits = arr(arr(1000.0, -1000.0)).tracked()
    >>> loss = ce(logits.softmax(), arr(arr(0.0, 1.0)))
    >>> loss.backward()
    >>> round(loss[0], 2), bool(np.isfinite(logits.gradient().numpy()).all())
    (27.63, True)
    """

    def cross_entropy(output: Array, target: Target) -> Array:
        _check(output, target, "cross_entropy")
        dimensions = output.dimensions
        batch = dimensions[0] if len(dimensions) >= 2 else 1
        log_probabilities = (output + CROSS_ENTROPY_EPSILON).ln()
        if isinstance(target, Array) and target.is_tracked:
            return (log_probabilities * target).sum(len(dimensions)) * (-1.0 / batch)
        # a constant target is scaled first, which saves the graph one node
        weights = np.asarray(target, dtype=output.dtype) * (-1.0 / batch)
        return (log_probabilities * weights).sum(len(dimensions))

    return cross_entropy


def make_softmax_cross_entropy() -> Cost:
    """Cross-entropy of logits against a target: the softmax and the cost as one operation.

    ``cost(logits, target)`` equals ``make_cross_entropy()(logits.softmax(), target)``
    where the softmax does not saturate, but works from the logits
    (``Array.softmax_cross_entropy``): the loss stays exact and the gradient
    stays ``(softmax - target) / batch`` however large the logits, and a
    step costs one graph node instead of five. Use it on a last layer without
    an activation, as PyTorch's ``cross_entropy`` is used on logits; the
    predicted class is then the largest logit.

    >>> from corgi import arr
    >>> logits = arr(arr(1000.0, -1000.0)).tracked()
    >>> loss = make_softmax_cross_entropy()(logits, arr(arr(0.0, 1.0)))
    >>> loss.backward()
    >>> loss[0], logits.gradient()      # make_cross_entropy: 27.63 and a zero gradient
    (2000.0, Array([[ 1., -1.]], dimensions=(1, 2)))
    """

    def softmax_cross_entropy(logits: Array, target: Target) -> Array:
        _check(logits, target, "softmax_cross_entropy")
        return logits.softmax_cross_entropy(target)

    return softmax_cross_entropy


def _check(output: Array, target: Target, where: str) -> None:
    if not isinstance(output, Array):
        raise TypeError(f"{where}: the output must be an Array, got {type(output).__name__}")
    if not isinstance(target, (Array, np.ndarray)):
        raise TypeError(f"{where}: the target must be an Array or a numpy array, got {type(target).__name__}")
    shape = target.shape
    if shape == output.dimensions:  # the usual case, without numpy's broadcasting machinery
        return
    try:
        fits = np.broadcast_shapes(output.dimensions, shape) == output.dimensions
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{where}: a target of dimensions {shape} does not match an output of {output.dimensions}"
        )
