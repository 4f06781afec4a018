"""Arrays and their primitives; the only package that imports the engine."""

from .core import Array, allclose, arr
from .registry import PRIMITIVES

__all__ = ["Array", "arr", "allclose", "PRIMITIVES"]
