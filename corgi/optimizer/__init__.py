"""Optimizers: each ``update(parameters)`` returns new parameter Arrays and clears gradients.

>>> from corgi.optimizer import GradientDescent, Momentum, Adam
>>> [type(o).__name__ for o in (GradientDescent(0.1), Momentum(0.1), Adam())]
['GradientDescent', 'Momentum', 'Adam']
"""

from .adam import Adam
from .base import Optimizer
from .gradient_descent import GradientDescent
from .momentum import Momentum

__all__ = ["Optimizer", "GradientDescent", "Momentum", "Adam"]
