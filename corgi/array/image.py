"""Convolution and pooling over the last two axes (corgi's ``src/array/image.rs``).

Both are written for speed as well as exactness, because they are most of a
convolutional network's step:

- ``conv`` copies every window of the input into a column once (im2col,
  through a strided view), so the forward and both gradients are one batched
  BLAS product each; the input's gradient adds each column back over the
  window it came from (col2im: one shifted, strided add per filter offset),
  so overlapping windows add.
- ``max_pool`` takes the maximum of the window offsets' strided views
  (one ``np.maximum`` per offset, never a copy of the windows), and its
  gradient finds each window's first maximum with one comparison per offset.
  Windows of more than ``_LARGEST_UNROLLED`` values (a (1, 784) pool) go
  through an argmax over a copy of the windows instead, where one numpy call
  per offset would cost more.

Leading dimensions of any number (none included) are one batch axis inside.
"""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and matmul as Any; the vjps return arrays)

from __future__ import annotations

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


# ---------------------------------------------------------------- convolution


class _Convolution(NamedTuple):
    """What a convolution's vjps need."""

    x_shape: tuple[int, ...]
    columns: np.ndarray  # (batch, depth * f_rows * f_cols, out_rows * out_cols): each window a column
    weights: np.ndarray  # (count, depth * f_rows * f_cols): each filter a row
    filter_shape: tuple[int, ...]  # (count, depth, f_rows, f_cols)
    stride: tuple[int, int]
    single: bool  # one (depth, rows, cols) filter was given


def _conv_grad_x(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # each column's delta is W^T g; it goes back to the pixels its window read: overlapping
    # windows add (corgi 0.9.2 assigned). The batch is the last axis here, so that each of the
    # f_rows f_cols shifted adds runs over rows of out_cols * batch contiguous values, not out_cols
    batch, _, positions = s.columns.shape
    count, depth, f_rows, f_cols = s.filter_shape
    out_rows, out_cols = g.shape[-2:]
    g_last = np.ascontiguousarray(g.reshape(batch, count, positions).transpose(1, 2, 0))
    delta_columns = (s.weights.T @ g_last.reshape(count, positions * batch)).reshape(
        depth, f_rows, f_cols, out_rows, out_cols, batch
    )
    rows, cols = s.x_shape[-2:]
    dx = np.zeros((depth, rows, cols, batch), dtype=delta_columns.dtype)
    last_row, last_col = s.stride[0] * (out_rows - 1) + 1, s.stride[1] * (out_cols - 1) + 1
    for r in range(f_rows):
        for c in range(f_cols):
            dx[:, r : r + last_row : s.stride[0], c : c + last_col : s.stride[1]] += delta_columns[:, r, c]
    return np.ascontiguousarray(dx.transpose(3, 0, 1, 2)).reshape(s.x_shape)


def _conv_grad_filters(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # dW = sum over the batch of g times the columns, transposed
    batch, _, positions = s.columns.shape
    dw = (g.reshape(batch, s.filter_shape[0], positions) @ s.columns.transpose(0, 2, 1)).sum(axis=0)
    dw = dw.reshape(s.filter_shape)
    return dw[0] if s.single else dw


# y[..., k, i, j] = sum_{d,r,c} x[..., d, s_r i + r, s_c j + c] w[k, d, r, c] (valid
# cross-correlation), computed as W C: the filters as rows (count, depth f_rows f_cols) times
# the windows as columns. dW = g C^T; dx adds W^T g back into every window a pixel belongs to
@register("conv", _conv_grad_x, _conv_grad_filters)
def conv(x: np.ndarray, filters: np.ndarray, stride: Any = (1, 1)) -> tuple[Any, ...]:
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
    # the one copy of the input: (batch, d, r, c, i, j), i.e. one column per output position
    columns = np.ascontiguousarray(windows.transpose(0, 1, 4, 5, 2, 3))
    columns = columns.reshape(batch, depth * f_rows * f_cols, out_rows * out_cols)
    weights = w.reshape(count, depth * f_rows * f_cols)
    out = (weights @ columns).reshape(lead + (count, out_rows, out_cols))
    saved = _Convolution(x.shape, columns, weights, w.shape, stride, single)
    return out, saved, 2 * out.size * depth * f_rows * f_cols


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


def _pool_grad_x(g: np.ndarray, s: _Pooling | _LargePooling) -> np.ndarray:
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
    for r in range(pool[0]):
        for c in range(pool[1]):
            if r or c:
                np.maximum(_offset(x, r, c, out_shape, stride), out, out=out)
    return out, _Pooling(x, out, pool, stride)


class ImageMethods(ArrayData):
    """Convolution and max-pooling over the last two dimensions."""

    __slots__ = ()

    def conv(self, filters: Array, stride: tuple[int, int] = (1, 1)) -> Array:
        """Valid cross-correlation with ``filters`` (count, depth, rows, cols) or one (depth, rows, cols).

        The input is (..., depth, rows, cols); the output (..., count, out_rows, out_cols).

        >>> from corgi import Array
        >>> image = Array(list(range(16)), dimensions=(1, 4, 4))
        >>> image.conv(Array.zeros((1, 1, 2, 2)) + 1.0, stride=(2, 2))
        Array([[[10., 18.],
                [42., 50.]]], dimensions=(1, 2, 2))
        """
        return apply("conv", (self, array_operand(filters, "conv", "filters")), {"stride": stride})

    def max_pool(self, pool: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2)) -> Array:
        """The maximum of each ``pool`` window over the last two dimensions.

        >>> from corgi import Array
        >>> Array(list(range(16)), dimensions=(4, 4)).max_pool()
        Array([[ 5.,  7.],
               [13., 15.]], dimensions=(2, 2))
        """
        return apply("max_pool", (self,), {"pool": pool, "stride": stride})
