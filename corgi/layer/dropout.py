"""Dropout: while training, zero each value with probability ``rate`` and scale the rest."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..array import Array
from .base import Layer

# The bit generators numpy ships: a checkpoint may name only these.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


class Dropout(Layer):
    """Inverted dropout: in training mode, ``x * mask / (1 - rate)`` with a fresh random mask.

    Each value is kept with probability ``1 - rate`` and scaled by
    ``1 / (1 - rate)``, so the expected output equals the input; in
    evaluation mode (``eval()``) the layer is the identity, as PyTorch's
    ``nn.Dropout``. The mask is a constant of the pass, so the gradient is
    ``delta * mask / (1 - rate)``. Masks are drawn from ``rng`` (a numpy
    ``Generator``, a seed, or None for fresh entropy); the generator's
    position is the layer's extra state, so a checkpoint resumes the same
    masks.

    >>> from corgi import Array
    >>> layer = Dropout(0.25, rng=0)
    >>> ones = Array.zeros((100, 100)) + 1.0
    >>> out = layer.forward(ones).numpy()
    >>> sorted(set(out.ravel().tolist())), round(float((out == 0).mean()), 2)     # 1 / 0.75 or 0; a quarter dropped
    ([0.0, 1.333...], 0.25)
    >>> layer.eval().forward(ones) is ones
    True
    """

    def __init__(self, rate: float, rng: np.random.Generator | int | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"Dropout: rate must be a number, got {rate!r}")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate: float = float(rate)
        self.generator: np.random.Generator = np.random.default_rng(rng)

    def forward(self, x: Array) -> Array:
        """``x`` times a fresh mask of 0 and ``1 / (1 - rate)`` while training; ``x`` itself in eval mode.

        >>> from corgi import arr
        >>> Dropout(0.0).forward(arr(1.0, 2.0))       # nothing dropped: no mask drawn
        Array([1., 2.], dimensions=(2,))
        """
        if not isinstance(x, Array):
            raise TypeError(f"Dropout.forward: expects an Array, got {type(x).__name__}")
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = (self.generator.random(x.dimensions) < keep) * (1.0 / keep)
        return x * Array(mask, dtype=x.dtype)

    def get_extra_state(self) -> dict[str, Any]:
        """The generator's position (``bit_generator.state``), which decides the next masks.

        >>> Dropout(0.5, rng=0).get_extra_state()["generator"]["bit_generator"]
        'PCG64'
        """
        return {"generator": self.generator.bit_generator.state}

    def check_extra_state(self, state: dict[str, Any]) -> None:
        """Raise the error ``set_extra_state(state)`` would raise, changing nothing.

        >>> Dropout(0.5).check_extra_state({"generator": {"bit_generator": "MT19937", "state": {}}})
        Traceback (most recent call last):
        ...
        ValueError: Dropout.set_extra_state: the state is of a MT19937 generator, the layer draws from a PCG64
        """
        self._restored(state)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Move the generator to the position ``get_extra_state`` returned (checked first).

        >>> layer, twin = Dropout(0.5, rng=0), Dropout(0.5, rng=1)
        >>> twin.set_extra_state(layer.get_extra_state())
        >>> from corgi import Array
        >>> ones = Array.zeros((1, 8)) + 1.0
        >>> layer.forward(ones) == twin.forward(ones)
        True
        """
        self.generator.bit_generator.state = self._restored(state)

    def _restored(self, state: dict[str, Any]) -> dict[str, Any]:
        where = "Dropout.set_extra_state"
        if not isinstance(state, dict) or set(state) != {"generator"} or not isinstance(state["generator"], dict):
            raise ValueError(f"{where}: expects {{'generator': <bit generator state>}}, got {state!r}")
        saved = state["generator"]
        kind = saved.get("bit_generator")
        own = type(self.generator.bit_generator).__name__
        if kind != own or kind not in _BIT_GENERATORS:
            raise ValueError(f"{where}: the state is of a {kind} generator, the layer draws from a {own}")
        trial = getattr(np.random, kind)()
        try:
            trial.state = saved
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(f"{where}: not a valid {kind} state: {error}") from error
        restored: dict[str, Any] = trial.state
        return restored

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"
