"""Layers of a network: each has ``forward(x)``, ``parameters()`` and a training/evaluation mode.

>>> from corgi.layer import Dense, Conv, Pool, Reshape, Flatten, Dropout
>>> from corgi.initializer import make_he
>>> [type(layer).__name__ for layer in (Dense(2, 3, make_he(rng=0)), Pool(), Reshape(4), Flatten(), Dropout(0.5))]
['Dense', 'Pool', 'Reshape', 'Flatten', 'Dropout']
"""

from .base import Layer
from .conv import Conv
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .pool import Pool
from .reshape import Reshape

__all__ = ["Conv", "Dense", "Dropout", "Flatten", "Layer", "Pool", "Reshape"]
