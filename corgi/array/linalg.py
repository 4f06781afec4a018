"""Sums, reshapes and matrix products (corgi's ``src/array/linalg.rs``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .registry import register


# y = sum of x over its last skip_count axes, kept as one axis of 1 (corgi's shape rule: 2x3
# summed gives 2x1; skip_count 0 is the identity, as in corgi); dx = dy broadcast back over the
# summed axes
@register("sum", lambda g, s: np.broadcast_to(g.reshape(s[0]), s[1]))
def sum_last(x, skip_count):
    if not 0 <= skip_count <= x.ndim:
        raise ValueError(f"sum: skip_count must be between 0 and {x.ndim} for dimensions {x.shape}, got {skip_count}")
    lead = x.shape[: x.ndim - skip_count]
    out = x.reshape(lead + (-1,)).sum(axis=-1).reshape(lead + (1,) if skip_count else lead)
    return out, (lead + (1,) * skip_count, x.shape)


# a reshape moves no value: dx = dy in x's dimensions
@register("reshape", lambda g, shape: g.reshape(shape))
def reshape(x, dimensions):
    if int(np.prod(dimensions)) != x.size or any(d < 1 for d in dimensions):
        raise ValueError(f"reshape: can't reshape dimensions {x.shape} ({x.size} values) to {tuple(dimensions)}")
    return x.reshape(dimensions), x.shape


def _as_matrix(x, transpose, column):
    """A 1-D operand as a row (1, k), or a column (k, 1) when ``column``; then transpose."""
    if x.ndim == 1:
        x = x[:, None] if column else x[None, :]
    return x.swapaxes(-1, -2) if transpose else x


class _Product(NamedTuple):
    """What a matrix product's vjps need."""

    left: np.ndarray  # A', as multiplied (a 1-D operand made a matrix, transposed on request)
    right: np.ndarray  # B'
    shape: tuple  # the product's shape before 1-D operands' axes were dropped
    transpose_a: bool
    transpose_b: bool
    a_is_vector: bool
    b_is_vector: bool


# (``x.swapaxes`` and ``@`` rather than ``np.swapaxes`` and ``np.matmul``: the same
# operations, without a microsecond of Python-level dispatch each)


def _grad_a(g, p: _Product):
    if g.shape != p.shape:
        g = g.reshape(p.shape)
    d = g @ p.right.swapaxes(-1, -2)
    d = d.swapaxes(-1, -2) if p.transpose_a else d
    return d.reshape(d.shape[:-2] + (-1,)) if p.a_is_vector else d


def _grad_b(g, p: _Product):
    if g.shape != p.shape:
        g = g.reshape(p.shape)
    d = p.left.swapaxes(-1, -2) @ g
    d = d.swapaxes(-1, -2) if p.transpose_b else d
    return d.reshape(d.shape[:-2] + (-1,)) if p.b_is_vector else d


def _grad_c(g, p: _Product):
    return g if g.shape == p.shape else g.reshape(p.shape)


# Y = A' B' + C with A' = A or A^T, B' = B or B^T (batched, broadcast over leading axes);
# dA' = G B'^T, dB' = A'^T G, dC = G; a transposed operand gets the transposed delta.
@register("matmul", _grad_a, _grad_b, _grad_c)
def matmul(a, b, c=None, transpose_a=False, transpose_b=False, vectors="corgi"):
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
            if c.dtype == out.dtype or np.result_type(out, c) == out.dtype:
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

    saved = _Product(left, right, shape, transpose_a, transpose_b, a.ndim == 1, b.ndim == 1)
    # the backward does two products of the forward's size
    return out, saved, 2 * out.size * left.shape[-1]
