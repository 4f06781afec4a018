"""corgi: machine learning and dynamic automatic differentiation, with a threaded backward pass.

>>> from corgi import arr
>>> a = arr(5.0).tracked(); b = arr(2.0).tracked(); c = arr(0.0).tracked()
>>> for _ in range(10):
...     c = c + a * b
...     if c[0] > 50.0:
...         c = c * a
>>> c == arr(195300.0)
True
>>> c.backward()
>>> c.gradient() == arr(1.0), b.gradient() == arr(97650.0), a.gradient() == arr(232420.0)
(True, True, True)
"""

from .array import (
    Array,
    allclose,
    arr,
    concatenate,
    grad,
    maximum,
    minimum,
    no_grad,
    split,
    stack,
    where,
)
from .gradcheck import GradcheckError, gradcheck, gradcheck_model

__version__ = "0.9.2"

__all__ = [
    "Array",
    "GradcheckError",
    "__version__",
    "allclose",
    "arr",
    "concatenate",
    "grad",
    "gradcheck",
    "gradcheck_model",
    "maximum",
    "minimum",
    "no_grad",
    "split",
    "stack",
    "where",
]
