"""Arrays and their operations; the only package that imports the engine."""

from .core import Array, allclose, arr
from .elementwise import maximum, minimum, where
from .gradients import grad
from .parameters import step_parameters
from .recording import no_grad
from .registry import COMPOSED, PRIMITIVES
from .shape import concatenate, split, stack

__all__ = [
    "COMPOSED",
    "PRIMITIVES",
    "Array",
    "allclose",
    "arr",
    "concatenate",
    "grad",
    "maximum",
    "minimum",
    "no_grad",
    "split",
    "stack",
    "step_parameters",
    "where",
]
