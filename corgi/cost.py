"""Costs: the loss of an output against a target, as a tracked one-value Array.

A cost is a callable ``cost(output, target)`` (corgi's order) returning an
Array of dimensions (1,); ``loss.backward()`` then fills the gradients of
everything the output came from. The costs here are compositions of Array
operations (or one fused operation), so their gradients need no code of
their own, and small objects rather than closures, so a model holding one
can be pickled and deep-copied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

from .array import Array

Target = Array | np.ndarray
Cost = Callable[[Array, Target], Array]

# Added to probabilities before the logarithm: ln(0 + 1e-12) = -27.6 instead of -inf, so a
# saturated softmax gives a finite loss and a finite gradient (at most 1e12 before it meets
# the softmax's own zero). It moves a loss of p >= 1e-6 by less than 1e-6 relative.
CROSS_ENTROPY_EPSILON = 1e-12


class CostFunction:
    """A cost as a small object: called as ``cost(output, target)``, shown by its name.

    Two costs of the same kind are equal, so a copied model compares equal
    to its original.

    >>> import copy, pickle
    >>> ce = make_cross_entropy()
    >>> ce, pickle.loads(pickle.dumps(ce)) == ce, copy.deepcopy(ce) == ce
    (cross_entropy, True, True)
    """

    name = ""

    def __call__(self, output: Array, target: Target) -> Array:
        """The loss of ``output`` against ``target``; each subclass defines it.

        >>> from corgi import arr
        >>> make_mse()(arr(1.0, 3.0), arr(1.0, 1.0))
        Array([2.], dimensions=(1,))
        """
        raise NotImplementedError(f"{type(self).__name__} does not define __call__")

    def __repr__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


class MeanSquaredError(CostFunction):
    """Mean squared error over every value: ``sum((output - target)^2) / output size``.

    >>> from corgi import arr
    >>> MeanSquaredError()(arr(arr(1.0, 2.0), arr(3.0, 4.0)), arr(arr(1.0, 2.0), arr(3.0, 6.0)))
    Array([1.], dimensions=(1,))
    """

    name = "mse"

    def __call__(self, output: Array, target: Target) -> Array:
        _check(output, target, "mse")
        size = int(np.prod(output.dimensions))
        difference = cast(Array, output - target)  # Array's operators take numpy arrays too
        return difference.powf(2.0).sum(len(output.dimensions)) * (1.0 / size)


class CrossEntropy(CostFunction):
    """Cross-entropy of probabilities against a target, averaged over the batch.

    ``-sum(target * ln(output + 1e-12)) / batch``, where the batch is the
    first dimension of a 2-D or larger output (a 1-D output is one example).

    >>> from corgi import arr
    >>> round(CrossEntropy()(arr(arr(0.5, 0.5)), arr(arr(1.0, 0.0)))[0], 6)   # ln 2
    0.693147
    """

    name = "cross_entropy"

    def __call__(self, output: Array, target: Target) -> Array:
        _check(output, target, "cross_entropy")
        dimensions = output.dimensions
        batch = dimensions[0] if len(dimensions) >= 2 else 1
        if isinstance(target, Array) and target.is_tracked:
            log_probabilities = (output + CROSS_ENTROPY_EPSILON).ln()
            return (log_probabilities * target).sum(len(dimensions)) * (-1.0 / batch)
        # a constant target: one node (Array.cross_entropy), bit for bit its composition
        # ((output + epsilon).ln() * (target * (-1 / batch))).sum(ndim)
        return output.cross_entropy(target, CROSS_ENTROPY_EPSILON)


class SoftmaxCrossEntropy(CostFunction):
    """Cross-entropy of logits against a target: the softmax and the cost as one operation.

    >>> from corgi import arr
    >>> round(SoftmaxCrossEntropy()(arr(arr(0.0, 0.0)), arr(arr(1.0, 0.0)))[0], 6)   # ln 2
    0.693147
    """

    name = "softmax_cross_entropy"

    def __call__(self, logits: Array, target: Target) -> Array:
        _check(logits, target, "softmax_cross_entropy")
        return logits.softmax_cross_entropy(target)


def make_mse() -> Cost:
    """Mean squared error over every value: ``sum((output - target)^2) / output size``.

    >>> from corgi import arr
    >>> mse = make_mse()
    >>> mse(arr(arr(1.0, 2.0), arr(3.0, 4.0)), arr(arr(1.0, 2.0), arr(3.0, 6.0)))
    Array([1.], dimensions=(1,))
    """
    return MeanSquaredError()


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
    return CrossEntropy()


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
    return SoftmaxCrossEntropy()


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
