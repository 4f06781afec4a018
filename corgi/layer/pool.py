"""A max-pooling layer over the last two dimensions."""

from __future__ import annotations

from ..array import Array
from ..checks import whole_numbers
from .base import Layer


class Pool(Layer):
    """The maximum of each ``pool`` window, windows ``stride`` apart; no parameters.

    >>> from corgi import Array
    >>> layer = Pool((2, 2), (2, 2))
    >>> layer.forward(Array(list(range(16)), dimensions=(1, 4, 4)))
    Array([[[ 5.,  7.],
            [13., 15.]]], dimensions=(1, 2, 2))
    >>> layer.parameters()
    []
    """

    def __init__(self, pool: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2)) -> None:
        pool_rows, pool_cols = whole_numbers(pool, "pool", "Pool", count=2)
        stride_rows, stride_cols = whole_numbers(stride, "stride", "Pool", count=2)
        self.pool = (pool_rows, pool_cols)
        self.stride = (stride_rows, stride_cols)

    def forward(self, x: Array) -> Array:
        """``x.max_pool(pool, stride)``.

        >>> Pool().forward(Array([[1.0, 5.0], [3.0, 2.0]]))
        Array([[5.]], dimensions=(1, 1))
        >>> Pool((2, 2), (1, 1)).forward(Array([[1.0, 5.0, 0.0], [3.0, 2.0, 7.0]]))
        Array([[5., 7.]], dimensions=(1, 2))
        """
        if not isinstance(x, Array):
            raise TypeError(f"Pool.forward: expects an Array, got {type(x).__name__}")
        return x.max_pool(self.pool, self.stride)

    def __repr__(self) -> str:
        return f"Pool({self.pool}, {self.stride})"
