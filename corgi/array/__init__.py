"""Arrays and their primitives; the only package that imports the engine."""

from .core import Array, allclose, arr
from .gradients import get_gradients, set_gradients
from .parameters import step_parameters
from .recording import no_grad
from .registry import PRIMITIVES

__all__ = ["Array", "arr", "allclose", "no_grad", "step_parameters", "get_gradients", "set_gradients", "PRIMITIVES"]
