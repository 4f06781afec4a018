"""The Array: immutable numpy-backed values that record the graph they came from.

This module holds what makes an Array an Array: construction, its values and how they
are shown, tracking, ``backward()`` and gradients, equality, copying and pickling. The
operations are thin methods of the families' mixins (``arithmetic.py``, ``shape.py``,
``reduction.py``, ...), each a call of ``operation.apply`` with a primitive's name.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import engine
from ..numbers import FloatType
from . import operation
from .arithmetic import ArithmeticMethods
from .custom import custom_op
from .elementwise import ElementwiseMethods
from .image import ImageMethods
from .indexing import IndexingMethods
from .interop import InteropMethods
from .linalg import LinalgMethods
from .nodes import leaf_node
from .nonlinearity import NonlinearityMethods
from .reduction import ReductionMethods
from .registry import sum_to
from .shape import ShapeMethods, stack
from .values import Dimensions, dimensions_of, read_only, resolve, to_values

_add_reduce = np.add.reduce


class Array(
    IndexingMethods,
    ArithmeticMethods,
    NonlinearityMethods,
    ElementwiseMethods,
    ReductionMethods,
    ShapeMethods,
    LinalgMethods,
    ImageMethods,
    InteropMethods,
):
    """An n-dimensional array of float64 (or float32) values that records its history.

    ``values`` may be a number, a (nested) sequence of numbers or a numpy
    array. With ``dimensions``, ``values`` is flat, row-major, and holds
    exactly ``prod(dimensions)`` numbers. The values are copied, so later
    writes to ``values`` can't reach the Array; ``copy=False`` skips the copy
    of a numpy array of the right type, for code that made the values itself
    and hands them over (an optimizer step): it must not write them again.

    An Array pickles and deep-copies with its values, dtype, tracked flag
    and gradient, but not the graph it came from: a tracked operation result
    comes back as a tracked leaf. ``copy.copy`` returns the Array itself
    (its values never change).

    >>> a = Array([1.0, 2.0, 3.0, 4.0], dimensions=(2, 2))
    >>> a.dimensions, a[1, 0], a[3]
    ((2, 2), 3.0, 4.0)
    >>> a
    Array([[1., 2.],
           [3., 4.]], dimensions=(2, 2))
    >>> import pickle
    >>> x = arr(2.0).tracked()
    >>> y = x * x
    >>> y.backward()
    >>> again = pickle.loads(pickle.dumps(y))
    >>> again, again.gradient()
    (Array([4.], dimensions=(1,), tracked), Array([1.], dimensions=(1,)))
    """

    __slots__ = ("__weakref__", "_node", "_tracked", "_values")

    def __init__(
        self,
        values: Any,
        dimensions: Dimensions | None = None,
        dtype: FloatType | None = None,
        copy: bool = True,
    ) -> None:
        self._values = to_values(values._values if isinstance(values, Array) else values, dimensions, dtype, copy)
        self._node = None
        self._tracked = False

    @classmethod
    def _wrap(cls, values: np.ndarray) -> Array:
        array = cls.__new__(cls)
        array._values = values
        array._node = None
        array._tracked = False
        return array

    @classmethod
    def zeros(cls, dimensions: Dimensions, dtype: FloatType | None = None) -> Array:
        """An array of zeros.

        >>> Array.zeros((2, 3)).dimensions
        (2, 3)
        """
        shape = dimensions_of(dimensions, "zeros")
        return cls._wrap(np.zeros(shape, dtype=resolve(dtype, "zeros")))

    # -- values ---------------------------------------------------------

    @property
    def dimensions(self) -> tuple[int, ...]:
        """The dimensions, outermost first (numpy's ``shape``, also an alias).

        >>> a = arr(arr(1, 2, 3), arr(4, 5, 6))
        >>> a.dimensions, a.shape
        ((2, 3), (2, 3))
        """
        return self._values.shape

    shape = dimensions

    @property
    def ndim(self) -> int:
        """The number of dimensions, as numpy's.

        >>> Array.zeros((2, 3)).ndim
        2
        """
        return self._values.ndim

    @property
    def size(self) -> int:
        """The number of values, as numpy's (also ``len(a)``).

        >>> Array.zeros((2, 3)).size
        6
        """
        return self._values.size

    @property
    def values(self) -> np.ndarray:
        """The values, flat and row-major, as a read-only numpy view.

        >>> arr(arr(1, 2), arr(3, 4)).values.tolist()
        [1.0, 2.0, 3.0, 4.0]
        """
        return read_only(self._values.reshape(-1))

    @property
    def dtype(self) -> np.dtype:
        """float64 or float32.

        >>> arr(1.0).dtype, Array([1.0], dtype="float32").dtype
        (dtype('float64'), dtype('float32'))
        """
        return self._values.dtype

    def numpy(self) -> np.ndarray:
        """The values as a read-only numpy array of this array's dimensions.

        >>> arr(1.0, 2.0).numpy().flags.writeable
        False
        """
        return read_only(self._values)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self._values, dtype=dtype, copy=True)
        return read_only(self._values if dtype is None else self._values.astype(dtype))

    def __len__(self) -> int:
        """The number of values, so that ``a[i]`` is valid for ``0 <= i < len(a)``.

        >>> len(arr(arr(1, 2, 3), arr(4, 5, 6)))
        6
        """
        return self._values.size

    def __iter__(self) -> Iterator[float]:
        """The values in row-major order, as Python floats (the order of ``a[i]``).

        >>> list(arr(arr(1, 2), arr(3, 4)))
        [1.0, 2.0, 3.0, 4.0]
        """
        return iter(self._values.reshape(-1).tolist())

    def sum_all(self) -> float:
        """The sum of every value, as a Python float (not tracked).

        >>> arr(1, 2, 3).sum_all()
        6.0
        """
        return float(_add_reduce(self._values, None))  # ``values.sum()`` without numpy's Python wrapper

    # -- one value as a Python number -----------------------------------

    def item(self, *index: int) -> float:
        """The one value of a one-value array as a Python float; ``item(i)`` and ``item(i, j)`` are ``a[i]`` and ``a[i, j]``.

        >>> arr(2.5).item(), arr(1.0, 2.0).item(1)
        (2.5, 2.0)
        """
        if index:
            if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index):
                raise TypeError(f"item: expects whole numbers, got {index!r}")
            return self[index[0] if len(index) == 1 else index]  # type: ignore[return-value]
        if self._values.size != 1:
            raise ValueError(f"item: only an array of one value converts to a float, got dimensions {self.dimensions}")
        return float(self._values.reshape(-1)[0])

    def __float__(self) -> float:
        if self._values.size != 1:
            raise TypeError(f"float: only an array of one value converts to a float, got dimensions {self.dimensions}")
        return float(self._values.reshape(-1)[0])

    def __bool__(self) -> bool:
        if self._values.size != 1:
            raise ValueError(
                f"the truth value of an Array of dimensions {self.dimensions} is ambiguous: "
                f"use a mask's any() or all() (such as (x > 0).all())"
            )
        return bool(self._values.reshape(-1)[0])

    def __format__(self, spec: str) -> str:
        if not spec:
            return repr(self)
        if self._values.size != 1:
            raise TypeError(
                f"format: a format spec such as {spec!r} applies to an array of one value, got dimensions {self.dimensions}"
            )
        return format(float(self._values.reshape(-1)[0]), spec)

    # -- equality and printing --------------------------------------------

    def __eq__(self, other: object) -> Any:
        """Equal dimensions and equal values (corgi's ``assert_eq!``), as one Python bool; see ``allclose``.

        Against a Python number it is a TypeError (a whole-array answer or a
        mask? say which: ``np.equal(x, 0.0)`` gives the mask); against a
        numpy array, numpy's elementwise ``==`` applies.
        """
        if isinstance(other, Array):
            return self._values.shape == other._values.shape and bool(np.array_equal(self._values, other._values))
        _refuse_number(other, "==")
        return NotImplemented

    def __ne__(self, other: object) -> Any:
        """``not (a == b)`` between Arrays; the same rules as ``==`` otherwise."""
        if isinstance(other, Array):
            return not self.__eq__(other)
        _refuse_number(other, "!=")
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        values = self._values
        shown = np.array2string(values, separator=", ", prefix="Array(")
        extras = [f"dimensions={values.shape}"]
        if values.dtype != np.float64:
            extras.append(f"dtype={values.dtype}")
        if self._tracked:
            extras.append("tracked")
        return f"Array({shown}, {', '.join(extras)})"

    # -- copying and pickling ---------------------------------------------

    def __copy__(self) -> Array:
        return self  # values never change, and the graph is shared as it is

    def __deepcopy__(self, memo: dict[int, Any]) -> Array:
        return _restore(*self._state(copy=True))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, self._state(copy=False))

    def _state(self, copy: bool) -> tuple[Any, ...]:
        node = self._node
        gradient = None if node is None else node.gradient
        name = None if node is None or node.inputs else node.name
        if copy:
            gradient = None if gradient is None else np.array(gradient)
            return (np.array(self._values), self._tracked, gradient, name)
        return (self._values, self._tracked, gradient, name)

    # -- tracking -------------------------------------------------------

    @property
    def is_tracked(self) -> bool:
        """Whether operations on this array record a graph.

        >>> a = arr(1.0)
        >>> a.is_tracked, a.tracked().is_tracked
        (False, True)
        """
        return self._tracked

    def start_tracking(self, name: str | None = None) -> None:
        """Mark this array tracked, in place; ``name`` labels its node in traces.

        >>> a = arr(2.0)
        >>> a.start_tracking("a")
        >>> a.is_tracked, (a * 3.0).is_tracked
        (True, True)
        """
        if self._node is None:
            self._node = leaf_node(self._values, None if name is None else str(name))
        elif name is not None:
            self._node.name = str(name)
        self._tracked = True

    def stop_tracking(self) -> None:
        """Mark this array untracked, in place: operations on it record nothing.

        >>> a = arr(2.0).tracked()
        >>> a.stop_tracking()
        >>> a.is_tracked, (a * 3.0).is_tracked
        (False, False)
        """
        self._tracked = False

    def tracked(self, name: str | None = None) -> Array:
        """Mark this array tracked and return it; ``name`` labels its node in traces.

        >>> a = arr(5.0).tracked()
        >>> a.is_tracked, (a * 2).is_tracked, (arr(5.0) * 2).is_tracked
        (True, True, False)
        """
        self.start_tracking(name)
        return self

    def untracked(self) -> Array:
        """Mark this array untracked and return it.

        >>> a = arr(2.0).tracked()
        >>> a.untracked() is a, a.is_tracked
        (True, False)
        """
        self.stop_tracking()
        return self

    def backward(self, delta: Array | np.ndarray | Sequence[float] | float | None = None) -> None:
        """Compute the gradient of every tracked array this one depends on.

        ``delta`` defaults to ones; one with extra leading or broadcast
        dimensions is summed down to this array's dimensions. Gradients add
        up across calls. The pass runs on corgi's engine (``corgi.engine``).
        An untracked array has no graph: ``backward()`` on it is a
        ValueError (corgi 0.9.2 quietly stored the delta as its gradient).

        >>> x = arr(3.0).tracked()
        >>> y = x * x
        >>> y.backward()
        >>> x.gradient(), y.gradient()
        (Array([6.], dimensions=(1,)), Array([1.], dimensions=(1,)))
        """
        if not self._tracked:
            raise ValueError("backward: the array is not tracked; call tracked() on its inputs first")
        engine.backward(self._node, self._delta(delta, "backward"))  # type: ignore[arg-type]  # tracked: has a node

    def _delta(self, delta: Any, where: str) -> np.ndarray:
        values = self._values
        if delta is None:
            return np.ones(values.shape, dtype=values.dtype)
        if isinstance(delta, Array):
            delta = delta._values
        elif not isinstance(delta, np.ndarray):
            try:
                delta = np.asarray(delta)
            except ValueError as error:
                raise ValueError(f"{where}: delta is not a rectangular array of numbers: {error}") from None
        if delta.dtype.kind not in "fiu" or not np.can_cast(delta.dtype, values.dtype, "same_kind"):
            raise TypeError(f"{where}: a delta of dtype {delta.dtype} does not fit an array of {values.dtype}")
        delta = np.array(delta, dtype=values.dtype, copy=True).reshape(delta.shape or (1,))
        delta.flags.writeable = False
        return sum_to(delta, values.shape, where)

    def gradient(self) -> Array | None:
        """The accumulated gradient, or None if no pass has reached this array.

        >>> x = arr(1.0, 2.0).tracked()
        >>> x.gradient() is None
        True
        >>> (x * x).backward()          # d/dx x^2 = 2x
        >>> x.gradient()
        Array([2., 4.], dimensions=(2,))
        >>> (x * x).backward()          # gradients add up across passes
        >>> x.gradient()
        Array([4., 8.], dimensions=(2,))
        """
        node = self._node
        if node is None or node.gradient is None:
            return None
        return Array._wrap(node.gradient)

    def clear_gradient(self) -> None:
        """Forget the accumulated gradient.

        >>> x = arr(3.0).tracked()
        >>> (x * 2.0).backward()
        >>> x.gradient()[0]
        2.0
        >>> x.clear_gradient()
        >>> x.gradient() is None
        True
        """
        if self._node is not None:
            self._node.clear_gradient()

    @staticmethod
    def op(
        arrays: Sequence[Array],
        forward_op: Callable[[list[Array]], Array],
        backward_op: Callable[[list[Array], list[bool], Array], Sequence[Array | None]] | None = None,
        name: str = "op",
    ) -> Array:
        """A user-defined operation that runs through the same engine.

        ``forward_op(arrays)`` returns the value; ``backward_op(children,
        is_tracked, delta)`` returns one gradient (an Array or None) per input.
        Without ``backward_op`` the result is untracked.

        >>> x = arr(3.0).tracked()
        >>> square = Array.op([x], lambda xs: xs[0] * xs[0], lambda xs, t, d: [2.0 * xs[0] * d])
        >>> square.backward()
        >>> square[0], x.gradient()[0]
        (9.0, 6.0)
        """
        return custom_op(arrays, forward_op, backward_op, name)


operation.bind(Array)


def _refuse_number(other: object, symbol: str) -> None:
    if isinstance(other, numbers.Number) and not isinstance(other, np.generic):
        raise TypeError(
            f"{symbol}: compares two whole Arrays (corgi's assert_eq!) and gives one bool; against the number "
            f"{other!r} say which you mean: np.equal(x, {other!r}) for a mask, or x == Array(...) for equality"
        )


def _restore(values: np.ndarray, tracked: bool, gradient: np.ndarray | None, name: str | None) -> Array:
    """An Array from its pickled state: a leaf, tracked as it was, holding its gradient."""
    array = Array._wrap(to_values(values, None, None, copy=False))
    if tracked or gradient is not None:
        array._node = leaf_node(array._values, name)
        array._node.gradient = gradient
    array._tracked = bool(tracked)
    return array


def arr(*items: Any) -> Array:
    """corgi's ``arr!``: numbers make a 1-D array; equal Arrays stack under a new first dimension,
    with the graph when one of them is tracked.

    >>> arr(5.0).dimensions
    (1,)
    >>> a = arr(1.0, 2.0).tracked()
    >>> rows = arr(a * 2.0, a * 3.0)
    >>> rows.dimensions, rows.is_tracked
    ((2, 2), True)
    """
    if not items:
        raise ValueError("arr: needs at least one item")
    if all(isinstance(item, Array) for item in items):
        shapes = {item.dimensions for item in items}
        if len(shapes) != 1:
            raise ValueError(f"arr: arrays of unequal dimensions can't stack: {sorted(shapes)}")
        if any(item._tracked for item in items):
            return stack(list(items))
        dtype = np.result_type(*(item.dtype for item in items))
        return Array._wrap(np.stack([item._values for item in items]).astype(dtype, copy=False))
    if any(isinstance(item, Array) for item in items):
        raise TypeError("arr: mix of Arrays and numbers; give all numbers or all Arrays")
    return Array(list(items))


def allclose(a: Array, b: Array, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when ``a`` and ``b`` have equal dimensions and values within tolerance.

    >>> allclose(arr(1.0, 2.0), arr(1.0, 2.0 + 1e-9))
    True
    """
    if not isinstance(a, Array) or not isinstance(b, Array):
        raise TypeError(f"allclose: expects two Arrays, got {type(a).__name__} and {type(b).__name__}")
    return a.dimensions == b.dimensions and bool(np.allclose(a._values, b._values, rtol=rtol, atol=atol))
