"""Convolution and pooling over the last two axes (corgi's ``src/array/image.rs``).

Both are written for speed as well as exactness, because they are most of a
convolutional network's step:

- ``conv`` copies every window of the input into a column once (im2col,
  through a strided view), the whole batch's columns side by side, so the
  forward and both gradients are one BLAS product each (one call, which a
  second BLAS thread can share, not one small product per example). Biases
  ride in the forward product as one more column of the filters times a row
  of ones. The output comes out channels first in memory, (count, batch,
  rows, cols), and is handed on as a transposed view, without a copy. The
  input's gradient adds each column back over the window it came from
  (col2im: one shifted, strided add per filter offset, over runs of
  columns times batch values, the batch innermost), so overlapping windows add.
- ``max_pool`` takes the maximum of the window offsets' strided views
  (one ``np.maximum`` per offset, never a copy of the windows). When the
  windows do not overlap, it also keeps which offset holds each window's
  first maximum (a byte per window), and its gradient is one scatter of the
  delta, into a gradient laid out in memory as the input is. Overlapping
  windows (and windows holding NaN) find each window's first maximum again
  in the gradient, with one comparison per offset. Windows of more than
  ``_LARGEST_UNROLLED`` values (a (1, 784) pool) go through an argmax over a
  copy of the windows instead, where one numpy call per offset would cost more.

Leading dimensions of any number (none included) are one batch axis inside.
"""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and matmul as Any; the vjps return arrays)

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..checks import whole_numbers
from .operation import ArrayData, apply, array_operand
from .registry import register

if TYPE_CHECKING:
    from .core import Array

# a pool window of up to this many values is unrolled into one numpy call per offset
_LARGEST_UNROLLED = 25
_add_reduce = np.add.reduce


def _pair(value: Any, what: str, where: str) -> tuple[int, int]:
    rows, cols = whole_numbers(value, what, where, count=2)  # 1.5 is refused, not truncated
    return rows, cols


def _windows(x: np.ndarray, size: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Windows of ``size`` over the last two axes: (..., out_rows, out_cols, rows, cols), a view of ``x``."""
    return sliding_window_view(x, size, axis=(-2, -1))[..., :: stride[0], :: stride[1], :, :]


def _offset(x: np.ndarray, row: int, col: int, out: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """The view of ``x``'s last two axes that holds value (row, col) of every window: (..., out_rows, out_cols)."""
    rows = slice(row, row + stride[0] * (out[0] - 1) + 1, stride[0])
    cols = slice(col, col + stride[1] * (out[1] - 1) + 1, stride[1])
    return x[..., rows, cols]




class _Convolution(NamedTuple):
    """What a convolution's vjps need."""

    x_shape: tuple[int, ...]
    # (depth * f_rows * f_cols [+ 1], batch * out_rows * out_cols): each window a column, the batch
    # inside the column axis so that every product is one BLAS call; with biases, a last row of ones
    columns: np.ndarray
    weights: np.ndarray  # (count, depth * f_rows * f_cols): each filter a row
    filter_shape: tuple[int, ...]  # (count, depth, f_rows, f_cols)
    stride: tuple[int, int]
    single: bool  # one (depth, rows, cols) filter was given
    biases_shape: tuple[int, ...] | None
    out_shape: tuple[int, int, int]  # (batch, out_rows, out_cols)


def _delta_matrix(g: np.ndarray, s: _Convolution) -> np.ndarray:
    """The output's delta as (count, batch * positions): a view when it is laid out as the forward made it."""
    batch, out_rows, out_cols = s.out_shape
    return g.reshape(batch, s.filter_shape[0], out_rows * out_cols).transpose(1, 0, 2).reshape(s.filter_shape[0], -1)


def _conv_grad_x(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # each column's delta is W^T g; it goes back to the pixels its window read: overlapping
    # windows add (corgi 0.9.2 assigned). The batch is the last axis here, so that each of the
    # f_rows f_cols shifted adds runs over rows of out_cols * batch contiguous values, not out_cols;
    # the gradient is handed back in that layout, (depth, rows, cols, batch), as a transposed view
    count, depth, f_rows, f_cols = s.filter_shape
    batch, out_rows, out_cols = s.out_shape
    g_last = np.empty((count, out_rows, out_cols, batch), dtype=g.dtype)
    np.copyto(g_last.transpose(3, 0, 1, 2), g.reshape(batch, count, out_rows, out_cols))
    delta_columns = (s.weights.T @ g_last.reshape(count, -1)).reshape(depth, f_rows, f_cols, out_rows, out_cols, batch)
    rows, cols = s.x_shape[-2:]
    dx = np.zeros((depth, rows, cols, batch), dtype=delta_columns.dtype)
    last_row, last_col = s.stride[0] * (out_rows - 1) + 1, s.stride[1] * (out_cols - 1) + 1
    for r in range(f_rows):
        for c in range(f_cols):
            dx[:, r : r + last_row : s.stride[0], c : c + last_col : s.stride[1]] += delta_columns[:, r, c]
    return dx.transpose(3, 0, 1, 2).reshape(s.x_shape)


def _conv_grad_filters(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # dW = g C^T, the sum over the batch and the positions in one product
    size = s.weights.shape[1]
    dw = (_delta_matrix(g, s) @ s.columns[:size].T).reshape(s.filter_shape)
    return dw[0] if s.single else dw


def _conv_grad_biases(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # db_k = the sum of g over the batch and the positions of filter k
    return _add_reduce(_delta_matrix(g, s), 1).reshape(s.biases_shape or (s.filter_shape[0],))


def _check_biases(biases: Any, count: int) -> np.ndarray:
    """``biases`` as one value per filter, in the product's dtype; a ValueError unless (count,) or (count, 1, 1)."""
    shape = np.shape(biases)
    if shape not in ((count,), (count, 1, 1)):
        raise ValueError(f"conv: biases must be one per filter, ({count},) or ({count}, 1, 1), got dimensions {shape}")
    return np.reshape(biases, count)


# y[..., k, i, j] = sum_{d,r,c} x[..., d, s_r i + r, s_c j + c] w[k, d, r, c] + b_k (valid
# cross-correlation), computed as W C: the filters as rows (count, depth f_rows f_cols) times
# the windows as columns (batch and positions together), the biases as one more column of W
# times a row of ones. dW = g C^T; db = g summed over batch and positions; dx adds W^T g back
# into every window a pixel belongs to
@register("conv", _conv_grad_x, _conv_grad_filters, _conv_grad_biases)
def conv(x: np.ndarray, filters: np.ndarray, biases: Any = None, stride: Any = (1, 1)) -> tuple[Any, ...]:
    stride = _pair(stride, "stride", "conv")
    single = filters.ndim == 3
    w = filters[None] if single else filters
    if x.ndim < 3 or w.ndim != 4:
        raise ValueError(
            f"conv: needs an input (..., depth, rows, cols) and filters (count, depth, rows, cols) "
            f"or (depth, rows, cols), got {x.shape} and {filters.shape}"
        )
    count, depth, f_rows, f_cols = w.shape
    if x.shape[-3] != depth or x.shape[-2] < f_rows or x.shape[-1] < f_cols:
        raise ValueError(f"conv: input {x.shape} does not fit filters {filters.shape}")
    lead = x.shape[:-3]
    batch = math.prod(lead)
    windows = _windows(x.reshape((batch,) + x.shape[-3:]), (f_rows, f_cols), stride)  # (batch, d, i, j, r, c)
    out_rows, out_cols = windows.shape[2:4]
    size = depth * f_rows * f_cols
    weights = w.reshape(count, size)
    extra = 0 if biases is None else 1
    # the one copy of the input, (d, r, c, batch, i, j): one column per window, the batch's side by side
    columns = np.empty((size + extra, batch * out_rows * out_cols), dtype=x.dtype)
    np.copyto(columns[:size].reshape(depth, f_rows, f_cols, batch, out_rows, out_cols), windows.transpose(1, 4, 5, 0, 2, 3))
    if biases is None:
        out = weights @ columns
    else:
        b = _check_biases(biases, count)
        columns[size] = 1.0
        extended = np.empty((count, size + 1), dtype=np.result_type(weights, b))
        extended[:, :size] = weights
        extended[:, size] = b
        out = extended @ columns
    # (count, batch, i, j) seen as (batch, count, i, j): no copy; what follows keeps this layout
    out = out.reshape(count, batch, out_rows, out_cols).transpose(1, 0, 2, 3)
    out = out.reshape(lead + (count, out_rows, out_cols))
    saved = _Convolution(
        x.shape, columns, weights, w.shape, stride, single, None if biases is None else np.shape(biases),
        (batch, out_rows, out_cols),
    )
    return out, saved, 2 * out.size * (size + extra)


# ---------------------------------------------------------------- max-pooling


class _Pooling(NamedTuple):
    """What a max-pool's vjp needs when the window is unrolled: the input and each window's maximum."""

    x: np.ndarray
    out: np.ndarray
    pool: tuple[int, int]
    stride: tuple[int, int]


class _LargePooling(NamedTuple):
    """What a max-pool's vjp needs for a large window: the flat position of each window's first maximum."""

    x_shape: tuple[int, ...]
    argmax: np.ndarray
    pool: tuple[int, int]
    stride: tuple[int, int]


class _Routing(NamedTuple):
    """What a max-pool's vjp needs when windows do not overlap: which offset of each window holds its first maximum."""

    x_shape: tuple[int, ...]
    order: tuple[int, ...]  # the input's axes from outermost to innermost in memory: the gradient's layout
    first: np.ndarray  # (..., out_rows, out_cols) uint8: the row-major offset of the window's first maximum
    pool: tuple[int, int]
    stride: tuple[int, int]


def _memory_order(x: np.ndarray) -> tuple[int, ...]:
    """``x``'s axes, outermost first, if ``x`` is a C-contiguous array with its axes permuted; else in order."""
    order = tuple(sorted(range(x.ndim), key=lambda axis: -x.strides[axis]))
    if order != tuple(range(x.ndim)) and x.transpose(order).flags.c_contiguous:
        return order
    return tuple(range(x.ndim))


@functools.lru_cache(maxsize=8)  # a training run needs one per pool layer
def _positions(
    shape: tuple[int, ...], order: tuple[int, ...], pool: tuple[int, int], stride: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Where each window's (0, 0) value lies in a flat array of ``shape`` laid out in ``order`` (..., out_rows,
    out_cols), and how far each window offset (row-major) lies from it."""
    steps = [0] * len(shape)
    step = 1
    for axis in reversed(order):
        steps[axis] = step
        step *= shape[axis]
    out_shape = shape[:-2] + ((shape[-2] - pool[0]) // stride[0] + 1, (shape[-1] - pool[1]) // stride[1] + 1)
    base = np.zeros(out_shape, dtype=np.intp)
    for axis, size in enumerate(out_shape):
        spacing = steps[axis] * (stride[axis - len(shape) + 2] if axis >= len(shape) - 2 else 1)
        base += (np.arange(size, dtype=np.intp) * spacing).reshape((size,) + (1,) * (len(shape) - 1 - axis))
    offsets = np.array([r * steps[-2] + c * steps[-1] for r in range(pool[0]) for c in range(pool[1])], dtype=np.intp)
    base.flags.writeable = offsets.flags.writeable = False  # shared by every call of these dimensions
    return base, offsets


def _routed_grad_x(g: np.ndarray, s: _Routing) -> np.ndarray:
    # one scatter: each window's delta to its first maximum; the windows do not overlap, so no two
    # deltas meet, and an infinite delta is moved, never multiplied
    base, offsets = _positions(s.x_shape, s.order, s.pool, s.stride)
    where = np.take(offsets, s.first)
    where += base
    dx = np.zeros(math.prod(s.x_shape), dtype=g.dtype)
    dx[where] = np.ascontiguousarray(g)  # the scatter walks ``where`` in order: g alike (a third faster)
    memory_shape = tuple(s.x_shape[axis] for axis in s.order)
    return dx.reshape(memory_shape).transpose(np.argsort(s.order))


def _first_maxima(s: _Pooling) -> list[np.ndarray]:
    """One mask per window offset (row-major), true where that offset holds its window's first maximum."""
    out_shape = (s.out.shape[-2], s.out.shape[-1])
    offsets = [(r, c) for r in range(s.pool[0]) for c in range(s.pool[1])]
    # a window holding NaN has the maximum NaN (np.maximum's rule): its first NaN is the one
    nan = bool(np.isnan(s.out).any())
    taken = np.zeros(s.out.shape, dtype=bool)
    masks = []
    for position, (r, c) in enumerate(offsets):
        if position == len(offsets) - 1:
            masks.append(~taken)  # the last offset is the first maximum wherever no earlier one was
            break
        values = _offset(s.x, r, c, out_shape, s.stride)
        mask = values == s.out
        if nan:
            mask |= np.isnan(values)
        if position:
            np.greater(mask, taken, out=mask)  # equal to the maximum and no earlier offset was
        np.logical_or(taken, mask, out=taken)
        masks.append(mask)
    return masks


def _pool_grad_x(g: np.ndarray, s: _Routing | _Pooling | _LargePooling) -> np.ndarray:
    if isinstance(s, _Routing):
        return _routed_grad_x(g, s)
    if isinstance(s, _LargePooling):
        return _large_pool_grad_x(g, s)
    out_shape = (g.shape[-2], g.shape[-1])
    dx = np.zeros(s.x.shape, dtype=g.dtype)
    # windows that do not overlap write disjoint pixels, so each offset's share can be stored
    disjoint = s.pool[0] <= s.stride[0] and s.pool[1] <= s.stride[1]
    # g * mask is exact for finite deltas; an infinite one times 0 would be NaN, not 0
    finite = bool(np.isfinite(g).all())
    offsets = [(r, c) for r in range(s.pool[0]) for c in range(s.pool[1])]
    for (r, c), mask in zip(offsets, _first_maxima(s)):
        target = _offset(dx, r, c, out_shape, s.stride)
        if finite and disjoint:
            np.multiply(g, mask, out=target)
        else:
            target += g * mask if finite else np.where(mask, g, 0)
    return dx


def _large_pool_grad_x(g: np.ndarray, s: _LargePooling) -> np.ndarray:
    out_shape = (g.shape[-2], g.shape[-1])
    dx = np.zeros(s.x_shape, dtype=g.dtype)
    for r in range(s.pool[0]):
        for c in range(s.pool[1]):
            target = _offset(dx, r, c, out_shape, s.stride)
            target += np.where(s.argmax == r * s.pool[1] + c, g, 0)
    return dx


# y = the largest value of each window; dx routes g to the first maximum of each window
# (row-major order; windows that overlap add their shares)
@register("max_pool", _pool_grad_x)
def max_pool(x: np.ndarray, pool: Any = (2, 2), stride: Any = (2, 2)) -> tuple[Any, ...]:
    pool = _pair(pool, "pool", "max_pool")
    stride = _pair(stride, "stride", "max_pool")
    if x.ndim < 2 or x.shape[-2] < pool[0] or x.shape[-1] < pool[1]:
        raise ValueError(f"max_pool: pool {pool} does not fit input dimensions {x.shape}")
    out_shape = ((x.shape[-2] - pool[0]) // stride[0] + 1, (x.shape[-1] - pool[1]) // stride[1] + 1)
    if pool[0] * pool[1] > _LARGEST_UNROLLED:
        windows = _windows(x, pool, stride)
        flat = windows.reshape(windows.shape[:-2] + (-1,))
        argmax = flat.argmax(axis=-1)
        out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
        return out, _LargePooling(x.shape, argmax, pool, stride)
    # np.maximum propagates NaN and, among equal operands (0.0 and -0.0), returns its second:
    # with the running maximum second, each window keeps its first maximum, as argmax does
    out = np.array(_offset(x, 0, 0, out_shape, stride))
    if pool[0] > stride[0] or pool[1] > stride[1]:  # overlapping windows: the vjp finds the maxima again
        for r in range(pool[0]):
            for c in range(pool[1]):
                if r or c:
                    np.maximum(_offset(x, r, c, out_shape, stride), out, out=out)
        return out, _Pooling(x, out, pool, stride)
    # windows apart: also keep which offset holds each window's first maximum (the last offset
    # strictly greater than the running maximum), so that the vjp is one scatter
    first = np.zeros_like(out, dtype=np.uint8)
    greater = np.empty_like(out, dtype=bool)
    greater_offset = greater.view(np.uint8)
    for position in range(1, pool[0] * pool[1]):
        row, col = divmod(position, pool[1])
        values = _offset(x, row, col, out_shape, stride)
        np.greater(values, out, out=greater)
        np.maximum(values, out, out=out)
        np.multiply(greater_offset, position, out=greater_offset)
        np.maximum(first, greater_offset, out=first)
    if np.isnan(out).any():  # a NaN is no greater than anything: the masks find each window's first NaN
        return out, _Pooling(x, out, pool, stride)
    return out, _Routing(x.shape, _memory_order(x), first, pool, stride)


class ImageMethods(ArrayData):
    """Convolution and max-pooling over the last two dimensions."""

    __slots__ = ()

    def conv(self, filters: Array, stride: tuple[int, int] = (1, 1), biases: Array | None = None) -> Array:
        """Valid cross-correlation with ``filters`` (count, depth, rows, cols) or one (depth, rows, cols).

        The input is (..., depth, rows, cols); the output (..., count, out_rows,
        out_cols), plus ``biases`` if given: one per filter, (count,) or
        (count, 1, 1), added inside the product (``torch.nn.functional.conv2d``'s
        ``bias``). The output may be laid out channels first in memory (it is
        one product for the whole batch); only its values are part of the contract.

        >>> from corgi import Array
        >>> image = Array(list(range(16)), dimensions=(1, 4, 4))
        >>> image.conv(Array.zeros((1, 1, 2, 2)) + 1.0, stride=(2, 2))
        Array([[[10., 18.],
                [42., 50.]]], dimensions=(1, 2, 2))
        >>> image.conv(Array.zeros((2, 1, 2, 2)) + 1.0, (2, 2), biases=Array([0.5, -50.0]))
        Array([[[ 10.5,  18.5],
                [ 42.5,  50.5]],
        <BLANKLINE>
               [[-40. , -32. ],
                [ -8. ,   0. ]]], dimensions=(2, 2, 2))
        """
        filters = array_operand(filters, "conv", "filters")
        if biases is None:
            return apply("conv", (self, filters), {"stride": stride})
        return apply("conv", (self, filters, array_operand(biases, "conv", "biases")), {"stride": stride})

    def max_pool(self, pool: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2)) -> Array:
        """The maximum of each ``pool`` window over the last two dimensions.

        >>> from corgi import Array
        >>> Array(list(range(16)), dimensions=(4, 4)).max_pool()
        Array([[ 5.,  7.],
               [13., 15.]], dimensions=(2, 2))
        """
        return apply("max_pool", (self,), {"pool": pool, "stride": stride})
