"""Arrays and their operations; the only package that imports the engine."""

from .core import Array, allclose, arr
from .elementwise import maximum, minimum, where
from .exchange import GradientWatch, first_with_gradient, get_gradients, set_gradients, watch_gradients
from .gradients import grad
from .parameters import step_parameters
from .recording import no_grad
from .registry import COMPOSED, PRIMITIVES
from .shape import concatenate, split, stack

__all__ = [
    "COMPOSED",
    "PRIMITIVES",
    "Array",
    "GradientWatch",
    "allclose",
    "arr",
    "concatenate",
    "first_with_gradient",
    "get_gradients",
    "grad",
    "maximum",
    "minimum",
    "no_grad",
    "set_gradients",
    "split",
    "stack",
    "step_parameters",
    "watch_gradients",
    "where",
]
