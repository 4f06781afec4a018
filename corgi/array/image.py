"""Convolution and pooling over the last two axes (corgi's ``src/array/image.rs``)."""

# mypy: disable-error-code="no-any-return"
# (numpy types its reductions, np.where and einsum as Any; the vjps return arrays)

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..checks import whole_numbers
from .operation import ArrayData, apply, array_operand
from .registry import register

if TYPE_CHECKING:
    from .core import Array


def _pair(value: Any, what: str, where: str) -> tuple[int, int]:
    rows, cols = whole_numbers(value, what, where, count=2)  # 1.5 is refused, not truncated
    return rows, cols


def _windows(x: np.ndarray, size: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Windows of ``size`` over the last two axes: (..., out_rows, out_cols, rows, cols)."""
    return sliding_window_view(x, size, axis=(-2, -1))[..., :: stride[0], :: stride[1], :, :]


class _Convolution(NamedTuple):
    """What a convolution's vjps need."""

    x_shape: tuple[int, ...]
    windows: np.ndarray  # (..., depth, out_rows, out_cols, f_rows, f_cols), a view of x
    filters: np.ndarray  # (count, depth, f_rows, f_cols)
    stride: tuple[int, int]
    single: bool  # one (depth, rows, cols) filter was given


def _conv_grad_x(g: np.ndarray, s: _Convolution) -> np.ndarray:
    # every pixel gets g w back from each window it belongs to: overlapping windows add
    out_rows, out_cols = g.shape[-2:]
    f_rows, f_cols = s.filters.shape[-2:]
    dx = np.zeros(s.x_shape, dtype=np.result_type(g, s.filters))
    for r in range(f_rows):
        for c in range(f_cols):
            rows = slice(r, r + s.stride[0] * (out_rows - 1) + 1, s.stride[0])
            cols = slice(c, c + s.stride[1] * (out_cols - 1) + 1, s.stride[1])
            dx[..., rows, cols] += np.einsum("...kij,kd->...dij", g, s.filters[:, :, r, c], optimize=True)
    return dx


def _conv_grad_filters(g: np.ndarray, s: _Convolution) -> np.ndarray:
    lead = "".join(chr(ord("A") + i) for i in range(len(s.x_shape) - 3))
    dw = np.einsum(f"{lead}kij,{lead}dijrc->kdrc", g, s.windows, optimize=True)
    return dw[0] if s.single else dw


# y[..., k, i, j] = sum_{d,r,c} x[..., d, s_r i + r, s_c j + c] w[k, d, r, c] (valid
# cross-correlation); dw = sum over windows of g times the window; dx adds g w back into
# every window a pixel belongs to (corgi 0.9.2 assigned, losing overlapping windows)
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
    _, depth, f_rows, f_cols = w.shape
    if x.shape[-3] != depth or x.shape[-2] < f_rows or x.shape[-1] < f_cols:
        raise ValueError(f"conv: input {x.shape} does not fit filters {filters.shape}")
    windows = _windows(x, (f_rows, f_cols), stride)  # (..., depth, i, j, r, c)
    out = np.einsum("...dijrc,kdrc->...kij", windows, w, optimize=True)
    saved = _Convolution(x.shape, windows, w, stride, single)
    return out, saved, 2 * out.size * depth * f_rows * f_cols


class _Pooling(NamedTuple):
    """What a max-pool's vjp needs."""

    x_shape: tuple[int, ...]
    argmax: np.ndarray  # the flat position of each window's first maximum
    pool: tuple[int, int]
    stride: tuple[int, int]


def _pool_grad_x(g: np.ndarray, s: _Pooling) -> np.ndarray:
    out_rows, out_cols = g.shape[-2:]
    dx = np.zeros(s.x_shape, dtype=g.dtype)
    for r in range(s.pool[0]):
        for c in range(s.pool[1]):
            rows = slice(r, r + s.stride[0] * (out_rows - 1) + 1, s.stride[0])
            cols = slice(c, c + s.stride[1] * (out_cols - 1) + 1, s.stride[1])
            dx[..., rows, cols] += np.where(s.argmax == r * s.pool[1] + c, g, 0)
    return dx


# y = the largest value of each window; dx routes g to the first maximum of each window
# (windows that overlap add their shares)
@register("max_pool", _pool_grad_x)
def max_pool(x: np.ndarray, pool: Any = (2, 2), stride: Any = (2, 2)) -> tuple[Any, ...]:
    pool = _pair(pool, "pool", "max_pool")
    stride = _pair(stride, "stride", "max_pool")
    if x.ndim < 2 or x.shape[-2] < pool[0] or x.shape[-1] < pool[1]:
        raise ValueError(f"max_pool: pool {pool} does not fit input dimensions {x.shape}")
    windows = _windows(x, pool, stride)
    flat = windows.reshape(windows.shape[:-2] + (-1,))
    argmax = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    return out, _Pooling(x.shape, argmax, pool, stride)


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
