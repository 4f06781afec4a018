"""Batch normalisation over features (batch, features) or channels (batch, channels, ...)."""

from __future__ import annotations

import numbers
import threading
from typing import Any

import numpy as np

from ..array import Array
from ..checks import whole_number
from ..numbers import FloatType, default_float, float_type
from .base import Layer, check_input, new_parameter


class BatchNorm(Layer):
    """``scale * (x - mean) / sqrt(var + eps) + shift`` per feature or channel: PyTorch's BatchNorm1d and 2d in one.

    Axis 1 of the input is the feature axis, whatever the input's rank: a
    dense input (batch, features) is normalised over the batch, an image
    input (batch, channels, rows, cols), or a sequence (batch, channels,
    length), over the batch and every position, each channel on its own.
    One class infers the axes from the rank, because the rule is the same
    for every rank (PyTorch's BatchNorm1d and BatchNorm2d differ only in
    the rank they accept).

    In training mode the layer uses the batch's own mean and (biased)
    variance, records the graph through them (the gradient flows through
    the statistics: it is composed of ``mean``, ``sub``, ``square``, ``mul``, ``sqrt``,
    no gradient code of its own), and updates the running statistics with
    the unbiased variance: ``running = (1 - momentum) * running + momentum
    * batch`` (``momentum=None``: the cumulative mean of every batch so
    far, as PyTorch). In evaluation mode (``eval()``) it uses the running
    statistics, and changes nothing.

    When the running statistics commit: at the end of each training-mode
    forward, as PyTorch's, once the output has been computed; the new
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` are new
    arrays that replace the old ones together (under the layer's lock, so
    concurrent forwards never mix one batch's mean with another's
    variance). A forward that raises changes none of them; arrays handed
    out by ``named_buffers`` never change. A training-mode forward is the
    step the statistics belong to, whether or not a backward and an
    update follow (a failure in a later layer does not undo it).

    ``scale`` (PyTorch's ``weight``, ones) and ``shift`` (``bias``,
    zeros) are tracked parameters of shape (features,), in ``dtype``
    (default: corgi's default float type); the running statistics are
    buffers of the same dtype, saved in checkpoints. Training on one value
    per feature (a batch of one dense example) is refused, as PyTorch
    does: its variance would be 0 and its unbiased variance undefined.

    >>> from corgi import Array
    >>> layer = BatchNorm(2)
    >>> out = layer(Array([[1.0, 10.0], [3.0, 30.0]]))
    >>> out.is_tracked, out.numpy().round(4)
    (True, array([[-1., -1.],
           [ 1.,  1.]]))
    >>> layer.running_mean, layer.running_var      # 0.9 * (0, 1) + 0.1 * (mean, unbiased variance)
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    >>> layer.eval()(Array([[2.0, 20.0]])).numpy().round(3)    # (x - running_mean) / sqrt(running_var + eps)
    array([[1.716, 3.937]])
    """

    parameter_names = ("scale", "shift")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(
        self, features: int, eps: float = 1e-5, momentum: float | None = 0.1, dtype: FloatType | None = None
    ) -> None:
        self.features = whole_number(features, "features", "BatchNorm", minimum=1)
        for name, value in (("eps", eps), ("momentum", momentum)):
            if value is None and name == "momentum":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"BatchNorm: {name} must be a number, got {value!r}")
        if not float(eps) > 0.0:
            raise ValueError(f"BatchNorm: eps must be above 0, got {eps!r}")
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        wanted = float_type(default_float() if dtype is None else dtype, "BatchNorm")
        self.scale = new_parameter(Array(np.ones(self.features, dtype=wanted)), wanted, "BatchNorm")
        self.shift = new_parameter(Array(np.zeros(self.features, dtype=wanted)), wanted, "BatchNorm")
        self.running_mean: np.ndarray = np.zeros(self.features, dtype=wanted)
        self.running_var: np.ndarray = np.ones(self.features, dtype=wanted)
        self.num_batches_tracked: np.ndarray = np.zeros((), dtype=np.int64)
        self._lock = threading.Lock()

    def forward(self, x: Array) -> Array:
        """``x`` normalised per feature: batch statistics while training, running ones in eval mode.

        >>> from corgi import Array
        >>> layer = BatchNorm(3)
        >>> layer(Array.zeros((1, 3, 2, 2))).dimensions       # images: (batch, channels, rows, cols)
        (1, 3, 2, 2)
        >>> layer(Array.zeros((1, 3)))
        Traceback (most recent call last):
        ...
        ValueError: BatchNorm.forward: training needs more than one value per feature, got input (1, 3)
        """
        where = "BatchNorm.forward"
        check_input(x, self.scale, where)
        shape = x.dimensions
        if len(shape) < 2 or shape[1] != self.features:
            raise ValueError(
                f"{where}: expects (batch, {self.features}) or (batch, {self.features}, ...), got input {shape}"
            )
        # the statistics' shape: (1, features, 1, ...), broadcasting against x
        broadcast = (1, self.features) + (1,) * (len(shape) - 2)
        scale, shift = self.scale.reshape(broadcast), self.shift.reshape(broadcast)
        if not self.training:
            # (x - m) / s * scale + shift as x * a + (shift - m a): two passes over x, not four
            with self._lock:
                running_mean, running_var = self.running_mean, self.running_var
            inverse = Array(1.0 / np.sqrt(running_var + self.eps), dtype=x.dtype).reshape(broadcast)
            factor = scale * inverse
            evaluated: Array = x * factor + (shift - Array(running_mean, dtype=x.dtype).reshape(broadcast) * factor)
            return evaluated
        count = x.size // self.features
        if count < 2:
            raise ValueError(f"{where}: training needs more than one value per feature, got input {shape}")
        axes = (0,) + tuple(range(2, len(shape)))
        batch_mean = x.mean(axis=axes, keepdims=True)
        centered = x - batch_mean
        batch_var = centered.square().mean(axis=axes, keepdims=True)  # biased, as the normalisation uses
        out: Array = centered * ((batch_var + self.eps).sqrt().reciprocal() * scale) + shift
        self._commit(batch_mean.numpy().reshape(-1), batch_var.numpy().reshape(-1) * (count / (count - 1)))
        return out

    def _commit(self, batch_mean: np.ndarray, batch_var: np.ndarray) -> None:
        """Move the running statistics towards the batch's: new arrays, all three replaced at once."""
        with self._lock:
            batches = self.num_batches_tracked + 1
            factor = 1.0 / float(batches) if self.momentum is None else self.momentum
            dtype = self.running_mean.dtype
            mean = ((1.0 - factor) * self.running_mean + factor * batch_mean).astype(dtype, copy=False)
            var = ((1.0 - factor) * self.running_var + factor * batch_var).astype(dtype, copy=False)
            self.running_mean, self.running_var, self.num_batches_tracked = mean, var, np.asarray(batches)

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """``(name, read-only view)`` of the running statistics, the three of one moment.

        >>> [(name, buffer.shape) for name, buffer in BatchNorm(2).named_buffers()]
        [('running_mean', (2,)), ('running_var', (2,)), ('num_batches_tracked', ())]
        """
        with self._lock:
            return super().named_buffers()

    def set_buffers(self, buffers: Any) -> None:
        """Replace the running statistics (``buffer_names`` order) with copies, checked first, all at once.

        >>> import numpy as np
        >>> layer = BatchNorm(2)
        >>> layer.set_buffers([np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array(7)])
        >>> layer.running_var, int(layer.num_batches_tracked)
        (array([3., 4.]), 7)
        """
        mean, var, batches = self.check_buffers(buffers)
        with self._lock:
            self.running_mean, self.running_var, self.num_batches_tracked = mean, var, batches

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BatchNorm({self.features}, eps={self.eps}, momentum={self.momentum})"
