"""Layers of a network: each has ``forward(x)``, ``parameters()`` and a training/evaluation mode.

>>> from corgi.layer import BatchNorm, Dense, Conv, Pool, Reshape, Flatten, Dropout
>>> from corgi.initializer import make_he
>>> layers = (Dense(2, 3, make_he(rng=0)), Pool(), Reshape(4), Flatten(), Dropout(0.5), BatchNorm(3))
>>> [type(layer).__name__ for layer in layers]
['Dense', 'Pool', 'Reshape', 'Flatten', 'Dropout', 'BatchNorm']
"""

from .base import Layer
from .batchnorm import BatchNorm
from .conv import Conv
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .pool import Pool
from .reshape import Reshape

__all__ = ["BatchNorm", "Conv", "Dense", "Dropout", "Flatten", "Layer", "Pool", "Reshape"]
