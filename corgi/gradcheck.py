"""Checking engine gradients against central finite differences.

``gradcheck(f, inputs)`` reduces ``f``'s output to a number with a fixed
random projection ``sum(r * f(*inputs))``, backpropagates ``r`` through the
engine, and compares every input's gradient with
``(L(x + eps e_i) - L(x - eps e_i)) / (2 eps)``, in float64.
``gradcheck_model`` runs the same check over a model's parameters, with the
model's cost of one input and target as ``f``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .array import Array


class GradcheckError(AssertionError):
    """The engine's gradient and the finite difference disagree.

    It is an ``AssertionError``, so a failed check inside a test reads as a failure.

    >>> from corgi import arr
    >>> wrong = lambda x: Array.op([x], lambda v: v[0] * v[0], lambda v, t, d: [d * v[0]])  # x^2 gives 2x, not x
    >>> try:
    ...     gradcheck(wrong, [arr(2.0)])
    ... except GradcheckError as error:
    ...     print(isinstance(error, AssertionError), error)
    True gradient of input 0 at index 0: engine 2.27..., finite difference 4.54... (rtol=1e-05, atol=1e-08)
    """


def gradcheck(
    f: Callable[..., Array],
    inputs: Sequence[Array],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    seed: int = 0,
) -> bool:
    """True if every gradient of ``f(*inputs)`` matches central differences.

    Otherwise raises ``GradcheckError`` naming the input, the flat index and
    both values of the worst mismatch.

    >>> from corgi import arr
    >>> gradcheck(lambda x, y: (x * y).tanh(), [arr(0.5, -1.0), arr(2.0, 3.0)])
    True
    >>> gradcheck(lambda x: Array.op([x], lambda v: v[0] * v[0], lambda v, t, d: [d * v[0]]), [arr(1.5)])
    Traceback (most recent call last):
    ...
    corgi.gradcheck.GradcheckError: gradient of input 0 at index 0: engine 1.70..., finite difference 3.41...
    """
    return _check(f, inputs, None, eps, rtol, atol, seed)


def gradcheck_model(
    model: Any,
    input: Array,
    target: Array,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    seed: int = 0,
) -> bool:
    """``gradcheck`` of ``model.cost(model.forward(input), target)`` over every parameter of ``model``.

    ``model`` is a ``corgi.model.Model`` (anything with ``named_parameters``,
    ``set_parameters``, ``forward`` and ``cost``). Its parameters are
    restored afterwards; a mismatch names the parameter, e.g. ``0.weights``.
    The check runs in float64 whatever the model's float type: parameters,
    input and target are converted for it. Layers that draw random numbers
    on every forward (``Dropout`` in training mode) make the loss a
    different function at each evaluation: check such a model in evaluation
    mode (``model.eval()``), or with the randomness fixed.

    >>> from corgi import activation, arr, cost, initializer
    >>> from corgi.layer import Dense
    >>> from corgi.model import Model
    >>> from corgi.optimizer import GradientDescent
    >>> he = initializer.make_he(rng=0)
    >>> model = Model([Dense(2, 4, he, activation.make_tanh()), Dense(4, 2, he, activation.make_softmax())],
    ...               GradientDescent(0.1), cost.make_cross_entropy())
    >>> gradcheck_model(model, arr(arr(0.5, -0.25)), arr(arr(0.0, 1.0)))
    True
    """
    named = model.named_parameters()
    originals = [parameter for _, parameter in named]
    output = model.output

    # the check works in float64 (``_check`` converts the parameters); so must the data
    input = _as_float64(input, "input")
    target = _as_float64(target, "target")

    def loss(*parameters: Array) -> Array:
        model.set_parameters(parameters)
        value: Array = model.cost(model.forward(input), target)
        return value

    try:
        return _check(loss, originals, [f"parameter {name}" for name, _ in named], eps, rtol, atol, seed)
    finally:
        model.set_parameters(originals)
        model.output = output


def _check(
    f: Callable[..., Array],
    inputs: Sequence[Array],
    names: Sequence[str] | None,
    eps: float,
    rtol: float,
    atol: float,
    seed: int,
) -> bool:
    points = [_float64(x, i) for i, x in enumerate(inputs)]
    tracked = [Array(p).tracked() for p in points]
    out = f(*tracked)
    if not isinstance(out, Array):
        raise TypeError(f"gradcheck: f must return an Array, got {type(out).__name__}")
    projection = np.random.default_rng(seed).uniform(0.5, 1.5, size=out.dimensions)
    if out.is_tracked:
        out.backward(projection)

    def objective(values: list[np.ndarray]) -> float:
        return float(np.sum(projection * f(*[Array(v) for v in values]).numpy()))

    worst = None
    for position, (point, array) in enumerate(zip(points, tracked)):
        gradient = array.gradient()
        engine = np.zeros(point.shape) if gradient is None else gradient.numpy()
        for index in range(point.size):
            values = [p.copy() for p in points]
            flat = values[position].reshape(-1)
            flat[index] = point.flat[index] + eps
            above = objective(values)
            flat[index] = point.flat[index] - eps
            below = objective(values)
            numeric = (above - below) / (2 * eps)
            analytic = float(engine.flat[index])
            excess = abs(analytic - numeric) - (atol + rtol * abs(numeric))
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, position, index, analytic, numeric)
    if worst is not None:
        _, position, index, analytic, numeric = worst
        name = f"input {position}" if names is None else names[position]
        raise GradcheckError(
            f"gradient of {name} at index {index}: engine {analytic!r}, "
            f"finite difference {numeric!r} (rtol={rtol}, atol={atol})"
        )
    return True


def _as_float64(x: Any, what: str) -> Any:
    """An Array of another float type as a float64 Array (numpy values pass through as they are)."""
    if isinstance(x, Array) and x.dtype != np.float64:
        return Array(x.numpy(), dtype=np.float64)
    return x


def _float64(x: Array, position: int) -> np.ndarray:
    if not isinstance(x, Array):
        raise TypeError(f"gradcheck: input {position} must be an Array, got {type(x).__name__}")
    return np.array(x.numpy(), dtype=np.float64)
