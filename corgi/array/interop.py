"""numpy on Arrays: its functions run corgi's own differentiable operations, or refuse.

numpy hands a call on an Array to ``__array_ufunc__`` (ufuncs: ``np.exp``, ``np.add``, the
operators between an ndarray and an Array) or ``__array_function__`` (``np.concatenate``,
``np.mean``, ...). Three outcomes, never a silent loss of the graph:

- a function in ``UFUNCS``/``FUNCTIONS`` runs the corgi operation of the same meaning
  (numpy's: ``np.sum(x)`` sums every axis) and returns an Array, tracked if an input is;
- a function in ``VALUES_ONLY`` answers about the values and has no gradient (``np.shape``,
  ``np.argmax``, ``np.isclose``, comparisons): it runs on the values;
- anything else runs on the values only if no input is tracked (or under ``no_grad``), and
  otherwise raises a TypeError that names the function and says how to proceed.

``np.asarray(x)`` and ``np.array(x)`` stay the explicit ways to get the values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from .elementwise import maximum, minimum, where
from .operation import ArrayData, apply, binary, is_array, operand
from .recording import is_recording
from .shape import concatenate, split, stack


def _unary(method: str) -> Callable[[Any], Any]:
    return lambda x: getattr(x, method)()


def _power(x: Any, y: Any) -> Any:
    if is_array(x) and not is_array(y) and not isinstance(y, np.ndarray):
        return x ** y
    return binary("pow", x, y)


def _matmul(x: Any, y: Any) -> Any:
    return apply("matmul", (operand(x, "matmul"), operand(y, "matmul")), {"vectors": "numpy"})


UFUNCS: dict[Any, Callable[..., Any]] = {
    np.add: lambda x, y: binary("add", x, y),
    np.subtract: lambda x, y: binary("sub", x, y),
    np.multiply: lambda x, y: binary("mul", x, y),
    np.true_divide: lambda x, y: binary("div", x, y),
    np.power: _power,
    np.negative: lambda x: -x,
    np.positive: lambda x: x,
    np.reciprocal: _unary("reciprocal"),
    np.exp: _unary("exp"),
    np.log: _unary("ln"),
    np.log1p: _unary("log1p"),
    np.expm1: _unary("expm1"),
    np.sqrt: _unary("sqrt"),
    np.square: _unary("square"),
    np.sin: _unary("sin"),
    np.cos: _unary("cos"),
    np.tanh: _unary("tanh"),
    np.absolute: _unary("abs"),
    np.maximum: maximum,
    np.minimum: minimum,
    np.matmul: _matmul,
}


# numpy's signatures, restricted to what corgi's operations mean; a call with anything more
# (out=, dtype=, where=, ...) is not served by them


def _sum(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return a.sum(axis=axis, keepdims=keepdims)


def _mean(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return a.mean(axis, keepdims)


def _var(a: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
    return a.var(axis, ddof, keepdims)


def _std(a: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
    return a.std(axis, ddof, keepdims)


def _reduction(method: str) -> Callable[..., Any]:
    def reduce(a: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return getattr(a, method)(axis, keepdims)

    return reduce


def _clip(a: Any, a_min: Any = None, a_max: Any = None) -> Any:
    return a.clip(a_min, a_max)


def _transpose(a: Any, axes: Any = None) -> Any:
    return a.transpose() if axes is None else a.transpose(axes)


def _where(condition: Any, x: Any, y: Any) -> Any:
    return where(condition, x, y)


def _reshape(a: Any, shape: Any) -> Any:
    return a.reshape(shape)


FUNCTIONS: dict[Any, Callable[..., Any]] = {
    np.sum: _sum,
    np.mean: _mean,
    np.var: _var,
    np.std: _std,
    np.max: _reduction("max"),
    np.amax: _reduction("max"),
    np.min: _reduction("min"),
    np.amin: _reduction("min"),
    np.prod: _reduction("prod"),
    np.clip: _clip,
    np.concatenate: lambda arrays, axis=0: concatenate(arrays, axis),
    np.stack: lambda arrays, axis=0: stack(arrays, axis),
    np.split: lambda ary, indices_or_sections, axis=0: split(ary, indices_or_sections, axis),
    np.transpose: _transpose,
    np.swapaxes: lambda a, axis1, axis2: a.swapaxes(axis1, axis2),
    np.squeeze: lambda a, axis=None: a.squeeze(axis),
    np.expand_dims: lambda a, axis: a.expand_dims(axis),
    np.broadcast_to: lambda array, shape: array.broadcast_to(shape),
    np.reshape: _reshape,
    np.ravel: lambda a: a.flatten(),
    np.where: _where,
    np.argmax: lambda a, axis=None, keepdims=False: a.argmax(axis, keepdims),
    np.argmin: lambda a, axis=None, keepdims=False: a.argmin(axis, keepdims),
}

# Functions that answer about values and have no gradient to lose.
VALUES_ONLY = {
    np.shape, np.ndim, np.size, np.allclose, np.isclose, np.array_equal, np.array_equiv,
    np.count_nonzero, np.nonzero, np.flatnonzero, np.argsort, np.argwhere, np.any, np.all,
    np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
    np.isnan, np.isinf, np.isfinite, np.signbit, np.logical_and, np.logical_or, np.logical_not, np.logical_xor,
}

_SIGNATURES: dict[Any, inspect.Signature] = {}


def _serves(handler: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    signature = _SIGNATURES.get(handler)
    if signature is None:
        signature = _SIGNATURES[handler] = inspect.signature(handler)
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _values(item: Any) -> Any:
    """``item`` with every Array in it (in lists and tuples too) replaced by its values."""
    if is_array(item):
        return np.asarray(item)
    if isinstance(item, (list, tuple)):
        return type(item)(_values(x) for x in item)
    if isinstance(item, dict):
        return {key: _values(value) for key, value in item.items()}
    return item


def _records(item: Any) -> bool:
    """Whether ``item`` holds a tracked Array whose graph this thread would record."""
    if is_array(item):
        return bool(item._tracked) and is_recording()
    if isinstance(item, (list, tuple)):
        return any(_records(x) for x in item)
    if isinstance(item, dict):
        return any(_records(x) for x in item.values())
    return False


def _refuse(name: str) -> TypeError:
    return TypeError(
        f"{name} on a tracked Array has no differentiable corgi version, and its numpy result would "
        f"lose the graph: use corgi's operations (docs/operations.md lists them and their numpy names), "
        f"or call it on np.asarray(x) to compute with the values alone (no gradient flows through it)"
    )


class InteropMethods(ArrayData):
    """numpy's ufuncs and functions on Arrays: corgi's operations, or a clear refusal."""

    __slots__ = ()

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        if method == "__call__" and ufunc in VALUES_ONLY:
            return getattr(ufunc, method)(*_values(inputs), **_values(kwargs))
        if method == "__call__" and not kwargs:
            handler = UFUNCS.get(ufunc)
            if handler is not None:
                return handler(*inputs)
        out = kwargs.get("out", ())
        if any(is_array(x) for x in (out if isinstance(out, tuple) else (out,))):
            raise TypeError(f"{name}: Arrays are immutable; out= can't name one")
        if _records(inputs) or _records(kwargs):
            raise _refuse(name)
        return getattr(ufunc, method)(*_values(inputs), **_values(kwargs))

    def __array_function__(self, func: Any, types: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not all(issubclass(t, (np.ndarray, ArrayData)) for t in types):
            return NotImplemented
        name = f"{getattr(func, '__module__', None) or 'numpy'}.{func.__name__}"
        handler = FUNCTIONS.get(func)
        if handler is not None and _serves(handler, args, kwargs):
            return handler(*args, **kwargs)
        if func not in VALUES_ONLY and (_records(args) or _records(kwargs)):
            raise _refuse(name)
        return func(*_values(args), **_values(kwargs))
