"""The default float type of new arrays: float64 (corgi's ``f64``) unless set.

>>> import numpy as np
>>> from corgi import Array
>>> from corgi.numbers import default_float, set_default_float
>>> default_float()
<class 'numpy.float64'>
>>> previous = set_default_float("float32")
>>> Array([1, 2]).numpy().dtype
dtype('float32')
>>> _ = set_default_float(previous)
"""

from __future__ import annotations

import numpy as np

FloatType = type | str | np.dtype

_FLOATS = (np.float32, np.float64)
_default: type = np.float64


def float_type(dtype: FloatType, where: str = "dtype") -> type:
    """Resolve ``dtype`` to ``numpy.float32`` or ``numpy.float64``; anything else is a TypeError.

    >>> float_type("float32")
    <class 'numpy.float32'>
    """
    try:
        resolved = np.dtype(dtype).type
    except TypeError:
        resolved = None
    if resolved not in _FLOATS:
        raise TypeError(f"{where}: corgi arrays hold float32 or float64, got {dtype!r}")
    return resolved


def default_float() -> type:
    """The float type new arrays get when no ``dtype`` is given.

    >>> default_float()
    <class 'numpy.float64'>
    """
    return _default


def set_default_float(dtype: FloatType) -> type:
    """Make ``dtype`` (float32 or float64) the default; returns the previous default.

    >>> previous = set_default_float(np.float32)
    >>> previous, default_float()
    (<class 'numpy.float64'>, <class 'numpy.float32'>)
    >>> set_default_float(previous)
    <class 'numpy.float32'>
    >>> set_default_float("float16")
    Traceback (most recent call last):
    ...
    TypeError: set_default_float: corgi arrays hold float32 or float64, got 'float16'
    """
    global _default
    previous = _default
    _default = float_type(dtype, "set_default_float")
    return previous
