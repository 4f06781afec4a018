"""Optimizers: each ``update(parameters)`` returns new parameter Arrays and clears gradients.

An update is all or nothing: a step that raises clears no gradient and
leaves the optimizer's state (velocities, moments, step counts) as it was.
``state_dict()`` / ``load_state_dict()`` save and restore that state.

>>> from corgi.optimizer import GradientDescent, Momentum, Adam
>>> [type(o).__name__ for o in (GradientDescent(0.1), Momentum(0.1), Adam())]
['GradientDescent', 'Momentum', 'Adam']
"""

from .adam import Adam
from .base import Optimizer
from .gradient_descent import GradientDescent
from .momentum import Momentum

__all__ = ["Adam", "GradientDescent", "Momentum", "Optimizer"]
