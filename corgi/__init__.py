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

from .array import Array, allclose, arr, no_grad
from .gradcheck import GradcheckError, gradcheck, gradcheck_model

__version__ = "0.9.2"

__all__ = ["Array", "arr", "allclose", "no_grad", "gradcheck", "gradcheck_model", "GradcheckError", "__version__"]
