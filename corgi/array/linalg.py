"""Matrix products (corgi's ``src/array/linalg.rs``; its sum and reshape live with their
families in ``reduction.py`` and ``shape.py``)."""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .operation import ArrayData, apply, array_operand, operand
from .registry import register

if TYPE_CHECKING:
    from .core import Array


def _as_matrix(x: np.ndarray, transpose: bool, column: bool) -> np.ndarray:
    """A 1-D operand as a row (1, k), or a column (k, 1) when ``column``; then transpose."""
    if x.ndim == 1:
        x = x[:, None] if column else x[None, :]
    return x.swapaxes(-1, -2) if transpose else x


class _Product(NamedTuple):
    """What a matrix product's vjps need."""

    left: np.ndarray  # A', as multiplied (a 1-D operand made a matrix, transposed on request)
    right: np.ndarray  # B'
    shape: tuple[int, ...]  # the product's shape before 1-D operands' axes were dropped
    transpose_a: bool
    transpose_b: bool
    a_is_vector: bool
    b_is_vector: bool


_new_tuple = tuple.__new__

# (``x.swapaxes`` and ``@`` rather than ``np.swapaxes`` and ``np.matmul``: the same
# operations, without a microsecond of Python-level dispatch each)


def _grad_a(g: np.ndarray, p: _Product) -> np.ndarray:
    if g.shape != p.shape:
        g = g.reshape(p.shape)
    d = g @ p.right.swapaxes(-1, -2)
    d = d.swapaxes(-1, -2) if p.transpose_a else d
    return d.reshape(d.shape[:-2] + (-1,)) if p.a_is_vector else d


def _grad_b(g: np.ndarray, p: _Product) -> np.ndarray:
    if g.shape != p.shape:
        g = g.reshape(p.shape)
    d = p.left.swapaxes(-1, -2) @ g
    d = d.swapaxes(-1, -2) if p.transpose_b else d
    return d.reshape(d.shape[:-2] + (-1,)) if p.b_is_vector else d


def _grad_c(g: np.ndarray, p: _Product) -> np.ndarray:
    return g if g.shape == p.shape else g.reshape(p.shape)


# Y = A' B' + C with A' = A or A^T, B' = B or B^T (batched, broadcast over leading axes);
# dA' = G B'^T, dB' = A'^T G, dC = G; a transposed operand gets the transposed delta.
@register("matmul", _grad_a, _grad_b, _grad_c)
def matmul(a: Any, b: Any, c: Any = None, transpose_a: Any = False, transpose_b: Any = False, vectors: Any = "corgi") -> tuple[Any, ...]:
    if a.ndim >= 2 and b.ndim >= 2:  # matrices, or stacks of them: the common case
        left = a.swapaxes(-1, -2) if transpose_a else a
        right = b.swapaxes(-1, -2) if transpose_b else b
    elif a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands need at least one dimension, got {a.shape} and {b.shape}")
    elif vectors == "numpy":
        # numpy.matmul: a 1-D left operand is a row, a 1-D right operand a column
        left, right = _as_matrix(a, transpose_a, False), _as_matrix(b, transpose_b, True)
    else:
        # corgi: a 1-D operand is a row, a column when transposed; two plain 1-D operands
        # make a dot product (corgi reads the right one as a column)
        dot = a.ndim == 1 and b.ndim == 1 and not transpose_a and not transpose_b
        left = _as_matrix(a, transpose_a, False)
        right = b[:, None] if dot else _as_matrix(b, transpose_b, False)
    if left.shape[-1] != right.shape[-2]:
        raise ValueError(
            f"matmul: inner dimensions differ: {a.shape}{' transposed' if transpose_a else ''} "
            f"and {b.shape}{' transposed' if transpose_b else ''}"
        )
    try:
        out = left @ right
    except ValueError:
        raise ValueError(f"matmul: leading dimensions do not broadcast: {a.shape} and {b.shape}") from None
    shape = out.shape
    if c is not None:
        # c broadcasts to the product and never enlarges it (as torch.addmm): the deltas of a and b
        # are then the delta of the result as it is; the product is fresh, so c adds in place
        try:
            if c.dtype is out.dtype or c.dtype == out.dtype or np.result_type(out, c) == out.dtype:
                out += c
            else:
                out = np.add(out, c)
                if out.shape != shape:
                    raise ValueError("c enlarges the product")
        except ValueError:
            raise ValueError(f"matmul: c of dimensions {np.shape(c)} does not broadcast to the product {shape}") from None
    if a.ndim == 1 and b.ndim == 1 and shape[-2:] == (1, 1):
        out = out.reshape(1)
    elif vectors == "numpy":
        # numpy drops the axis it added for a 1-D operand
        out = out[..., 0] if b.ndim == 1 else out[..., 0, :] if a.ndim == 1 else out

    # (``tuple.__new__`` is ``_Product(...)`` without the NamedTuple's Python-level constructor)
    saved = _new_tuple(_Product, (left, right, shape, transpose_a, transpose_b, a.ndim == 1, b.ndim == 1))
    # the backward does two products of the forward's size
    return out, saved, 2 * out.size * left.shape[-1]


class LinalgMethods(ArrayData):
    """Matrix products: ``Array.matmul`` (corgi's) and ``@`` (numpy's)."""

    __slots__ = ()

    def __matmul__(self, other: Array) -> Array:
        """``a @ b`` follows ``numpy.matmul``'s rules for 1-D operands."""
        if not is_array_like(other):
            return NotImplemented
        return apply("matmul", (self, operand(other, "matmul")), {"vectors": "numpy"})

    def __rmatmul__(self, other: Any) -> Array:
        if not isinstance(other, np.ndarray):
            return NotImplemented
        return apply("matmul", (operand(other, "matmul"), self), {"vectors": "numpy"})

    @staticmethod
    def matmul(
        a: tuple[Array, bool],
        b: tuple[Array, bool],
        c: Array | None = None,
    ) -> Array:
        """``op(a) @ op(b) + c``, where ``op`` transposes the last two dimensions on request.

        Batched over leading dimensions, which broadcast. A 1-D operand is a
        row vector (a column when transposed); two plain 1-D operands give
        their dot product, of dimensions (1,). ``c`` broadcasts to the result.

        >>> from corgi import Array, arr
        >>> a = arr(arr(1.0, 2.0, 3.0), arr(4.0, 5.0, 6.0))
        >>> b = arr(arr(5.0, 3.0), arr(2.0, 6.0), arr(1.0, 2.0))
        >>> Array.matmul((a, False), (b, False))
        Array([[12., 21.],
               [36., 54.]], dimensions=(2, 2))
        >>> Array.matmul((arr(1.0, 2.0), False), (arr(3.0, 4.0), True))
        Array([11.], dimensions=(1,))
        """
        if type(a) is tuple and type(b) is tuple and len(a) == 2 and len(b) == 2 and a[1] is False and b[1] is False:
            # the common call, two Arrays untransposed (a Dense layer's): the same checks, fewer steps
            left, right = array_operand(a[0], "matmul", "a"), array_operand(b[0], "matmul", "b")
            if c is None:
                return apply("matmul", (left, right), _UNTRANSPOSED)
            return apply("matmul", (left, right, array_operand(c, "matmul", "c")), _UNTRANSPOSED)
        (left, transpose_a), (right, transpose_b) = _pair_operand(a, "a"), _pair_operand(b, "b")
        operands = (left, right) if c is None else (left, right, array_operand(c, "matmul", "c"))
        return apply("matmul", operands, {"transpose_a": transpose_a, "transpose_b": transpose_b})


# the parameters of an untransposed product (shared, never changed)
_UNTRANSPOSED: dict[str, Any] = {"transpose_a": False, "transpose_b": False}


def is_array_like(x: object) -> bool:
    """An Array, or a numpy array (``a @ ndarray`` multiplies by a constant)."""
    return isinstance(x, (np.ndarray, ArrayData))


def _pair_operand(pair: Any, what: str) -> tuple[Array, bool]:
    try:
        array, transpose = pair
    except (TypeError, ValueError):
        raise TypeError(f"matmul: {what} must be a pair (Array, transpose), got {pair!r}") from None
    return array_operand(array, "matmul", what), bool(transpose)
