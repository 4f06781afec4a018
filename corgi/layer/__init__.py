"""Layers of a network: each has ``forward(x)`` and ``parameters()``.

>>> from corgi.layer import Dense, Conv, Pool, Reshape
>>> from corgi.initializer import make_he
>>> [type(layer).__name__ for layer in (Dense(2, 3, make_he(rng=0)), Pool(), Reshape(4))]
['Dense', 'Pool', 'Reshape']
"""

from .base import Layer
from .conv import Conv
from .dense import Dense
from .pool import Pool
from .reshape import Reshape

__all__ = ["Layer", "Dense", "Conv", "Pool", "Reshape"]
