"""Convolution and pooling over the last two axes (corgi's ``src/array/image.rs``)."""

from __future__ import annotations

import operator

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .registry import register


def _pair(value, what, where):
    try:
        rows, cols = (operator.index(v) for v in value)  # 1.5 is refused, not truncated
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {what} must be a pair of whole numbers, got {value!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"{where}: {what} must be at least (1, 1), got {value!r}")
    return rows, cols


def _windows(x, size, stride):
    """Windows of ``size`` over the last two axes: (..., out_rows, out_cols, rows, cols)."""
    return sliding_window_view(x, size, axis=(-2, -1))[..., :: stride[0], :: stride[1], :, :]


@register("conv")
def conv(x, filters, stride=(1, 1)):
    # y[..., k, i, j] = sum_{d,r,c} x[..., d, s_r i + r, s_c j + c] w[k, d, r, c] (valid
    # cross-correlation); dw = sum over windows of g times the window; dx adds g w back into
    # every window a pixel belongs to (corgi 0.9.2 assigned, losing overlapping windows)
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
    windows = _windows(x, (f_rows, f_cols), stride)  # (..., depth, i, j, r, c)
    out = np.einsum("...dijrc,kdrc->...kij", windows, w, optimize=True)
    out_rows, out_cols = out.shape[-2:]

    def grad_x(g):
        dx = np.zeros(x.shape, dtype=np.result_type(g, w))
        for r in range(f_rows):
            for c in range(f_cols):
                rows = slice(r, r + stride[0] * (out_rows - 1) + 1, stride[0])
                cols = slice(c, c + stride[1] * (out_cols - 1) + 1, stride[1])
                dx[..., rows, cols] += np.einsum("...kij,kd->...dij", g, w[:, :, r, c], optimize=True)
        return dx

    def grad_w(g):
        lead = "".join(chr(ord("A") + i) for i in range(x.ndim - 3))
        dw = np.einsum(f"{lead}kij,{lead}dijrc->kdrc", g, windows, optimize=True)
        return dw[0] if single else dw

    return out, (grad_x, grad_w), 2 * out.size * depth * f_rows * f_cols


@register("max_pool")
def max_pool(x, pool=(2, 2), stride=(2, 2)):
    # y = the largest value of each window; dx routes g to the first maximum of each window
    # (windows that overlap add their shares)
    pool = _pair(pool, "pool", "max_pool")
    stride = _pair(stride, "stride", "max_pool")
    if x.ndim < 2 or x.shape[-2] < pool[0] or x.shape[-1] < pool[1]:
        raise ValueError(f"max_pool: pool {pool} does not fit input dimensions {x.shape}")
    windows = _windows(x, pool, stride)
    flat = windows.reshape(windows.shape[:-2] + (-1,))
    argmax = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    out_rows, out_cols = out.shape[-2:]

    def grad_x(g):
        dx = np.zeros(x.shape, dtype=g.dtype)
        for r in range(pool[0]):
            for c in range(pool[1]):
                rows = slice(r, r + stride[0] * (out_rows - 1) + 1, stride[0])
                cols = slice(c, c + stride[1] * (out_cols - 1) + 1, stride[1])
                dx[..., rows, cols] += np.where(argmax == r * pool[1] + c, g, 0)
        return dx

    return out, (grad_x,)
