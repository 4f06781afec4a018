"""The Array: immutable numpy-backed values that record the graph they came from.

Every operation is one thin method that calls ``_apply`` with a primitive's
name. ``_apply`` unwraps the operands, runs the primitive's forward, wraps
the value in a new Array (whose values are only ever shown read-only) and,
only if an operand is tracked, gives it an engine node that calls the vjps
of the tracked operands alone and sums each delta down to its operand's
dimensions.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .. import engine
from ..checks import whole_number
from ..numbers import FloatType
from . import arithmetic, image, linalg, nonlinearity  # noqa: F401 - they fill the registry
from .nodes import ArrayNode, OpNode, shared
from .recording import is_recording
from .registry import PRIMITIVES, sum_to
from .values import Dimensions, dimensions_of, read_only, resolve, to_values

Operand = Union["Array", float, int]


class Array:
    """An n-dimensional array of float64 (or float32) values that records its history.

    ``values`` may be a number, a (nested) sequence of numbers or a numpy
    array. With ``dimensions``, ``values`` is flat, row-major, and holds
    exactly ``prod(dimensions)`` numbers. The values are copied, so later
    writes to ``values`` can't reach the Array; ``copy=False`` skips the copy
    of a numpy array of the right type, for code that made the values itself
    and hands them over (an optimizer step): it must not write them again.

    >>> a = Array([1.0, 2.0, 3.0, 4.0], dimensions=(2, 2))
    >>> a.dimensions, a[1, 0], a[3]
    ((2, 2), 3.0, 4.0)
    >>> a
    Array(dimensions=(2, 2), values=[1.0, 2.0, 3.0, 4.0])
    """

    __slots__ = ("_values", "_node", "_tracked", "__weakref__")

    # Make numpy defer to Array's own operators, so ``ndarray * Array`` records the graph.
    __array_ufunc__ = None

    def __init__(
        self,
        values: Any,
        dimensions: Optional[Dimensions] = None,
        dtype: Optional[FloatType] = None,
        copy: bool = True,
    ) -> None:
        self._values = to_values(values._values if isinstance(values, Array) else values, dimensions, dtype, copy)
        self._node: Optional[engine.Node] = None
        self._tracked = False

    @classmethod
    def _wrap(cls, values: np.ndarray) -> "Array":
        array = cls.__new__(cls)
        array._values = values
        array._node = None
        array._tracked = False
        return array

    @classmethod
    def zeros(cls, dimensions: Dimensions, dtype: Optional[FloatType] = None) -> "Array":
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

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
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

    def __getitem__(self, index: Union[int, tuple[int, ...]]) -> float:
        """``a[i]`` is the i-th value in row-major order; ``a[i, j, k]`` a multi-index.

        >>> a = arr(arr(1, 2, 3), arr(4, 5, 6))
        >>> a[4], a[1, 1]
        (5.0, 5.0)
        >>> a[6]
        Traceback (most recent call last):
        ...
        IndexError: index 6 is out of range for an array of 6 values
        """
        values = self._values
        if isinstance(index, tuple):
            if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index):
                raise TypeError(f"Array indices are whole numbers or tuples of them, got {index!r}")
            if len(index) != values.ndim:
                raise IndexError(f"index {index} does not address an element of dimensions {values.shape}")
            for i, size in zip(index, values.shape):
                if not -size <= i < size:
                    raise IndexError(f"index {index} is out of range for dimensions {values.shape}")
            return float(values[index])
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"Array indices are whole numbers or tuples of them, got {index!r}")
        if not -values.size <= index < values.size:
            raise IndexError(f"index {index} is out of range for an array of {values.size} values")
        return float(values.reshape(-1)[index])

    def __eq__(self, other: object) -> bool:
        """Equal dimensions and equal values (corgi's ``assert_eq!``); see ``allclose``."""
        if not isinstance(other, Array):
            return NotImplemented
        return self._values.shape == other._values.shape and bool(np.array_equal(self._values, other._values))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        flat = self.values
        shown = [float(v) for v in flat] if flat.size <= 20 else [float(v) for v in flat[:8]] + ["..."] + [float(v) for v in flat[-3:]]
        values = "[" + ", ".join(str(v) for v in shown) + "]"
        tracked = ", tracked" if self._tracked else ""
        return f"Array(dimensions={self.dimensions}, values={values}{tracked})"

    def sum_all(self) -> float:
        """The sum of every value, as a Python float (not tracked).

        >>> arr(1, 2, 3).sum_all()
        6.0
        """
        return float(self._values.sum())

    # -- tracking -------------------------------------------------------

    @property
    def is_tracked(self) -> bool:
        """Whether operations on this array record a graph.

        >>> a = arr(1.0)
        >>> a.is_tracked, a.tracked().is_tracked
        (False, True)
        """
        return self._tracked

    def start_tracking(self, name: Optional[str] = None) -> None:
        """Mark this array tracked, in place; ``name`` labels its node in traces.

        >>> a = arr(2.0)
        >>> a.start_tracking("a")
        >>> a.is_tracked, (a * 3.0).is_tracked
        (True, True)
        """
        if self._node is None:
            node = ArrayNode()
            node.shape = shared(self._values.shape)
            node.dtype = self._values.dtype
            self._node = node
        if name is not None:
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

    def tracked(self, name: Optional[str] = None) -> "Array":
        """Mark this array tracked and return it; ``name`` labels its node in traces.

        >>> a = arr(5.0).tracked()
        >>> a.is_tracked, (a * 2).is_tracked, (arr(5.0) * 2).is_tracked
        (True, True, False)
        """
        self.start_tracking(name)
        return self

    def untracked(self) -> "Array":
        """Mark this array untracked and return it.

        >>> a = arr(2.0).tracked()
        >>> a.untracked() is a, a.is_tracked
        (True, False)
        """
        self.stop_tracking()
        return self

    def backward(self, delta: Optional[Union["Array", np.ndarray, Sequence[float], float]] = None) -> None:
        """Compute the gradient of every tracked array this one depends on.

        ``delta`` defaults to ones; one with extra leading or broadcast
        dimensions is summed down to this array's dimensions. Gradients add
        up across calls. The pass runs on corgi's engine (``corgi.engine``).

        >>> x = arr(3.0).tracked()
        >>> y = x * x
        >>> y.backward()
        >>> x.gradient(), y.gradient()
        (Array(dimensions=(1,), values=[6.0]), Array(dimensions=(1,), values=[1.0]))
        """
        if not self._tracked:
            raise ValueError("backward: the array is not tracked; call tracked() on its inputs first")
        engine.backward(self._node, self._delta(delta))

    def _delta(self, delta: Any) -> np.ndarray:
        values = self._values
        if delta is None:
            return np.ones(values.shape, dtype=values.dtype)
        if isinstance(delta, Array):
            delta = delta._values
        elif not isinstance(delta, np.ndarray):
            try:
                delta = np.asarray(delta)
            except ValueError as error:
                raise ValueError(f"backward: delta is not a rectangular array of numbers: {error}") from None
        if delta.dtype.kind not in "fiu" or not np.can_cast(delta.dtype, values.dtype, "same_kind"):
            raise TypeError(f"backward: a delta of dtype {delta.dtype} does not fit an array of {values.dtype}")
        delta = np.array(delta, dtype=values.dtype, copy=True).reshape(delta.shape or (1,))
        delta.flags.writeable = False
        return sum_to(delta, values.shape, "backward")

    def gradient(self) -> Optional["Array"]:
        """The accumulated gradient, or None if no pass has reached this array.

        >>> x = arr(1.0, 2.0).tracked()
        >>> x.gradient() is None
        True
        >>> (x * x).backward()          # d/dx x^2 = 2x
        >>> x.gradient()
        Array(dimensions=(2,), values=[2.0, 4.0])
        >>> (x * x).backward()          # gradients add up across passes
        >>> x.gradient()
        Array(dimensions=(2,), values=[4.0, 8.0])
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

    # -- operations -----------------------------------------------------

    def __add__(self, other: Operand) -> "Array":
        return _binary("add", self, other)

    def __radd__(self, other: Operand) -> "Array":
        return _binary("add", other, self)

    def __sub__(self, other: Operand) -> "Array":
        return _binary("sub", self, other)

    def __rsub__(self, other: Operand) -> "Array":
        return _binary("sub", other, self)

    def __mul__(self, other: Operand) -> "Array":
        return _binary("mul", self, other)

    def __rmul__(self, other: Operand) -> "Array":
        return _binary("mul", other, self)

    def __truediv__(self, other: Operand) -> "Array":
        return _binary("div", self, other)

    def __rtruediv__(self, other: Operand) -> "Array":
        return _binary("div", other, self)

    def __neg__(self) -> "Array":
        return _apply("neg", (self,))

    def __pow__(self, exponent: Operand) -> "Array":
        if isinstance(exponent, Array):
            return _apply("pow", (self, exponent))
        return self.powf(exponent)

    def __rpow__(self, base: Operand) -> "Array":
        return _binary("pow", base, self)

    def __matmul__(self, other: "Array") -> "Array":
        """``a @ b`` follows ``numpy.matmul``'s rules for 1-D operands."""
        if not isinstance(other, Array):
            return NotImplemented
        return _apply("matmul", (self, other), {"vectors": "numpy"})

    def __rmatmul__(self, other: Any) -> "Array":
        if not isinstance(other, np.ndarray):
            return NotImplemented
        return _apply("matmul", (_operand(other, "matmul"), self), {"vectors": "numpy"})

    def powf(self, exponent: float) -> "Array":
        """Each value to the power ``exponent``: ``d/dx x^e = e x^(e-1)``.

        >>> x = arr(2.0).tracked()
        >>> y = x.powf(3.0)
        >>> y.backward()
        >>> y[0], x.gradient()[0]
        (8.0, 12.0)
        """
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"powf: the exponent must be a real number, got {exponent!r}")
        return _apply("powf", (self,), {"exponent": float(exponent)})

    def reciprocal(self) -> "Array":
        """``1 / x`` elementwise: ``d/dx 1/x = -1/x^2``.

        >>> x = arr(2.0, 4.0).tracked()
        >>> y = x.reciprocal()
        >>> y.backward()
        >>> y.values.tolist(), x.gradient().values.tolist()
        ([0.5, 0.25], [-0.25, -0.0625])
        """
        return _apply("reciprocal", (self,))

    def ln(self) -> "Array":
        """The natural logarithm, elementwise: ``d/dx ln x = 1/x``.

        >>> x = arr(1.0, 4.0).tracked()
        >>> y = x.ln()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient().values.tolist()
        (0.0, 1.3863, [1.0, 0.25])
        """
        return _apply("ln", (self,))

    def exp(self) -> "Array":
        """``e^x`` elementwise: ``d/dx e^x = e^x``.

        >>> x = arr(0.0, 1.0).tracked()
        >>> y = x.exp()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient()[0], round(x.gradient()[1], 4)
        (1.0, 2.7183, 1.0, 2.7183)
        """
        return _apply("exp", (self,))

    def relu(self) -> "Array":
        """``max(x, 0)`` elementwise.

        >>> arr(-1.0, 2.0).relu()
        Array(dimensions=(2,), values=[0.0, 2.0])
        """
        return _apply("relu", (self,))

    def sigmoid(self) -> "Array":
        """``1 / (1 + e^-x)`` elementwise, finite for any input.

        >>> arr(0.0, -1000.0, 1000.0).sigmoid()
        Array(dimensions=(3,), values=[0.5, 0.0, 1.0])
        >>> x = arr(0.0).tracked()
        >>> x.sigmoid().backward()       # s (1 - s) = 0.25 at 0
        >>> x.gradient()[0]
        0.25
        """
        return _apply("sigmoid", (self,))

    def tanh(self) -> "Array":
        """The hyperbolic tangent, elementwise: ``d/dx tanh x = 1 - tanh^2 x``.

        >>> x = arr(0.0, 1.0).tracked()
        >>> y = x.tanh()
        >>> y.backward()
        >>> y[0], round(y[1], 4), x.gradient()[0], round(x.gradient()[1], 4)
        (0.0, 0.7616, 1.0, 0.42)
        """
        return _apply("tanh", (self,))

    def softmax(self) -> "Array":
        """The softmax over the last dimension, stable for large inputs.

        >>> arr(1000.0, 1000.0).softmax()
        Array(dimensions=(2,), values=[0.5, 0.5])
        """
        return _apply("softmax", (self,))

    def log_softmax(self) -> "Array":
        """The logarithm of the softmax over the last dimension, exact where the softmax underflows.

        ``x - max(x) - ln(sum(e^(x - max(x))))``: use it for log-probabilities
        rather than ``softmax().ln()``, which gives ``-inf`` once a probability
        rounds to zero.

        >>> arr(1000.0, 0.0).log_softmax()
        Array(dimensions=(2,), values=[0.0, -1000.0])
        >>> x = arr(0.0, 0.0).tracked()
        >>> x.log_softmax().sum().backward()   # d/dx_i sum_j ln s_j = 1 - 2 s_i = 0
        >>> x.gradient()
        Array(dimensions=(2,), values=[0.0, 0.0])
        """
        return _apply("log_softmax", (self,))

    def softmax_cross_entropy(self, target: Union["Array", np.ndarray]) -> "Array":
        """Cross-entropy of ``softmax(self)`` against ``target``, averaged over the batch.

        ``-sum(target * log_softmax(self)) / batch``, where ``self`` holds
        logits and the batch is its first dimension (a 1-D array is one
        example). One fused operation: it is exact where the softmax
        saturates, and its gradient is ``(softmax(self) - target) / batch``
        for one-hot rows. ``target`` has the logits' dimensions (or
        broadcasts to them); a numpy target takes the logits' dtype.

        >>> logits = arr(arr(0.0, 0.0), arr(1000.0, -1000.0)).tracked()
        >>> loss = logits.softmax_cross_entropy(arr(arr(1.0, 0.0), arr(0.0, 1.0)))
        >>> round(loss[0], 4)                 # (ln 2 + 2000) / 2
        1000.3466
        >>> loss.backward()
        >>> logits.gradient()                 # (p - t) / 2
        Array(dimensions=(2, 2), values=[-0.25, 0.25, 0.5, -0.5])
        """
        if isinstance(target, np.ndarray):
            target = to_values(target, None, self._values.dtype)
        elif not isinstance(target, Array):
            raise TypeError(
                f"softmax_cross_entropy: the target must be an Array or a numpy array, got {type(target).__name__}"
            )
        return _apply("softmax_cross_entropy", (self, target))

    def sum(self, skip_count: int = 1) -> "Array":
        """Sum over the last ``skip_count`` dimensions, leaving one dimension of 1.

        >>> arr(arr(1, 2, 3), arr(4, 5, 6)).sum()
        Array(dimensions=(2, 1), values=[6.0, 15.0])
        """
        return _apply("sum", (self,), {"skip_count": whole_number(skip_count, "skip_count", "sum", minimum=None)})

    def reshape(self, dimensions: Dimensions) -> "Array":
        """The same values in new dimensions (their product must not change).

        >>> arr(1, 2, 3, 4).reshape((2, 2)).dimensions
        (2, 2)
        """
        return _apply("reshape", (self,), {"dimensions": dimensions_of(dimensions, "reshape")})

    @staticmethod
    def axpy(alpha: Operand, x: "Array", y: "Array") -> "Array":
        """``alpha * x + y``.

        >>> Array.axpy(-2.0, arr(1.0, 2.0), arr(5.0, 6.0))
        Array(dimensions=(2,), values=[3.0, 2.0])
        """
        return alpha * x + y

    @staticmethod
    def matmul(
        a: tuple["Array", bool],
        b: tuple["Array", bool],
        c: Optional["Array"] = None,
    ) -> "Array":
        """``op(a) @ op(b) + c``, where ``op`` transposes the last two dimensions on request.

        Batched over leading dimensions, which broadcast. A 1-D operand is a
        row vector (a column when transposed); two plain 1-D operands give
        their dot product, of dimensions (1,). ``c`` broadcasts to the result.

        >>> a = arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0))
        >>> b = arr(arr(5.0, 3.0), arr(2.0, 6.0), arr(1.0, 2.0))
        >>> Array.matmul((a, False), (b, False))
        Array(dimensions=(2, 2), values=[12.0, 21.0, 36.0, 54.0])
        >>> Array.matmul((arr(1.0, 2.0), False), (arr(3.0, 4.0), True))
        Array(dimensions=(1,), values=[11.0])
        """
        (left, transpose_a), (right, transpose_b) = _pair_operand(a, "a"), _pair_operand(b, "b")
        operands = (left, right) if c is None else (left, right, _array_operand(c, "matmul", "c"))
        return _apply("matmul", operands, {"transpose_a": transpose_a, "transpose_b": transpose_b})

    def conv(self, filters: "Array", stride: tuple[int, int] = (1, 1)) -> "Array":
        """Valid cross-correlation with ``filters`` (count, depth, rows, cols) or one (depth, rows, cols).

        The input is (..., depth, rows, cols); the output (..., count, out_rows, out_cols).

        >>> image = Array(list(range(16)), dimensions=(1, 4, 4))
        >>> image.conv(Array.zeros((1, 1, 2, 2)) + 1.0, stride=(2, 2))
        Array(dimensions=(1, 2, 2), values=[10.0, 18.0, 42.0, 50.0])
        """
        return _apply("conv", (self, _array_operand(filters, "conv", "filters")), {"stride": stride})

    def max_pool(self, pool: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2)) -> "Array":
        """The maximum of each ``pool`` window over the last two dimensions.

        >>> Array(list(range(16)), dimensions=(4, 4)).max_pool()
        Array(dimensions=(2, 2), values=[5.0, 7.0, 13.0, 15.0])
        """
        return _apply("max_pool", (self,), {"pool": pool, "stride": stride})

    @staticmethod
    def op(
        arrays: Sequence["Array"],
        forward_op: Callable[[list["Array"]], "Array"],
        backward_op: Optional[Callable[[list["Array"], list[bool], "Array"], Sequence[Optional["Array"]]]] = None,
        name: str = "op",
    ) -> "Array":
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
        from .custom import custom_op

        return custom_op(arrays, forward_op, backward_op, name)


def arr(*items: Any) -> Array:
    """corgi's ``arr!``: numbers make a 1-D array; equal Arrays stack under a new first dimension.

    >>> arr(5.0).dimensions
    (1,)
    >>> arr(arr(1, 2, 3), arr(4, 5, 6)).dimensions
    (2, 3)
    """
    if not items:
        raise ValueError("arr: needs at least one item")
    if all(isinstance(item, Array) for item in items):
        shapes = {item.dimensions for item in items}
        if len(shapes) != 1:
            raise ValueError(f"arr: arrays of unequal dimensions can't stack: {sorted(shapes)}")
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


# -- the one wrapper every operation goes through ---------------------------


def _apply(name: str, operands: tuple, params: Optional[dict] = None) -> Array:
    raw = [operand._values if type(operand) is Array else operand for operand in operands]
    primitive = PRIMITIVES[name]
    try:
        result = primitive.forward(*raw, **params) if params else primitive.forward(*raw)
    except ValueError as error:
        if str(error).startswith(f"{name}:"):
            raise
        shapes = " and ".join(str(np.shape(r)) for r in raw)
        raise ValueError(f"{name}: incompatible dimensions {shapes}") from None
    value = result[0]
    if type(value) is not np.ndarray:
        value = np.asarray(value)
    out = Array.__new__(Array)
    out._values = value
    out._tracked = False
    out._node = None
    inputs = []
    mask = 0
    for position, operand in enumerate(operands):
        if type(operand) is Array and operand._tracked:
            inputs.append(operand._node)
            mask |= 1 << position
    if inputs and is_recording():
        node = OpNode(tuple(inputs), None, name, result[2] if len(result) > 2 else value.size)
        node.shape = shared(value.shape)
        node.dtype = value.dtype
        node.vjps = primitive.subsets[mask]  # one per input: the tracked operands' vjps, in order
        node.saved = result[1]  # what the forward kept for its vjps
        out._node = node
        out._tracked = True
    return out


def _binary(name: str, x: Any, y: Any) -> Array:
    return _apply(
        name,
        (x if type(x) is Array else _operand(x, name), y if type(y) is Array else _operand(y, name)),
    )


def _operand(x: Any, where: str) -> Any:
    if type(x) is float:  # the common constant, before the slower numbers.Real check
        return x
    if type(x) is Array or isinstance(x, Array):
        return x
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    if isinstance(x, np.ndarray):
        return to_values(x, None, x.dtype if x.dtype.kind == "f" else None)
    raise TypeError(f"{where}: expects an Array or a number, got {type(x).__name__}")


def _array_operand(x: Any, where: str, what: str) -> Array:
    if not isinstance(x, Array):
        raise TypeError(f"{where}: {what} must be an Array, got {type(x).__name__}")
    return x


def _pair_operand(pair: Any, what: str) -> tuple[Array, bool]:
    try:
        array, transpose = pair
    except (TypeError, ValueError):
        raise TypeError(f"matmul: {what} must be a pair (Array, transpose), got {pair!r}") from None
    return _array_operand(array, "matmul", what), bool(transpose)


# -- construction helpers ---------------------------------------------------
