"""Initializers: how a layer draws its starting parameters.

An initializer is a function ``initializer(dimensions, input_size)`` that
returns a new, untracked Array of ``dimensions``; ``input_size`` is the fan-in
of one output unit (a Dense layer's ``input_size``, a Conv layer's
``depth * rows * cols``). Every draw goes through one numpy ``Generator``, so
a seed reproduces a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .array import Array
from .checks import whole_number, whole_numbers
from .numbers import default_float

Initializer = Callable[[Sequence[int], int], Array]
Seed = np.random.Generator | int | None


class He:
    """He-normal draws from one numpy ``Generator``: ``he(dimensions, input_size)``.

    A small object rather than a closure, so it pickles and deep-copies
    (a copy draws on from the same generator state, independently).

    >>> import copy
    >>> he = He(np.random.default_rng(0))
    >>> twin = copy.deepcopy(he)
    >>> he((2,), 1) == twin((2,), 1), he
    (True, he)
    """

    def __init__(self, generator: np.random.Generator) -> None:
        self.generator = generator

    def __call__(self, dimensions: Sequence[int], input_size: int) -> Array:
        """A new untracked Array of ``dimensions`` drawn from N(0, 2 / ``input_size``).

        >>> He(np.random.default_rng(0))((2, 3), 3).dimensions
        (2, 3)
        """
        input_size = whole_number(input_size, "input_size", "he initializer", minimum=1)
        shape = whole_numbers((dimensions,) if isinstance(dimensions, (int, np.integer)) else dimensions,
                              "dimensions", "he initializer")
        values = self.generator.normal(0.0, np.sqrt(2.0 / input_size), size=shape)
        return Array(values, dtype=default_float())

    def __repr__(self) -> str:
        return "he"


def make_he(rng: Seed = None) -> Initializer:
    """He-normal: values drawn from N(0, 2 / input_size), for layers followed by ReLU.

    ``rng`` is a numpy ``Generator`` (shared and advanced in place), a seed, or
    None for fresh entropy. corgi 0.9.2 drew uniformly in +-sqrt(2 / input_size);
    this is the normal form He et al. (2015) describe, of the same spread scale.

    >>> he = make_he(rng=0)
    >>> w = he((3, 4), 4)
    >>> w.dimensions, w.is_tracked
    ((3, 4), False)
    >>> make_he(rng=0)((3, 4), 4) == w    # the same seed gives the same draw
    True
    >>> round(float(make_he(rng=1)((20000,), 8).numpy().std()), 2)   # sqrt(2 / 8)
    0.5
    """
    return He(np.random.default_rng(rng))
