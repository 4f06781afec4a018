"""How many threads numpy's BLAS uses, set after numpy is loaded.

OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when numpy loads it, so by
the time ``corgi.train`` parses its arguments the variable is too late. The
library itself can still be told: through ``threadpoolctl`` where it is
installed (it knows every BLAS vendor), else through OpenBLAS's own
``openblas_set_num_threads`` found with ``ctypes`` in the library numpy
loaded. Where neither works the caller is told so, and nothing changes.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from typing import Any

from ..checks import whole_number

# numpy's wheels bundle OpenBLAS built with a prefix (scipy-openblas) and 64-bit integers
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")


def set_blas_threads(count: int) -> str:
    """Make numpy's BLAS use ``count`` threads from now on; returns what was done, as a sentence.

    >>> import numpy as np
    >>> said = set_blas_threads(1)
    >>> said.startswith(("BLAS threads: 1", "could not set the BLAS threads"))
    True
    """
    count = whole_number(count, "count", "set_blas_threads", minimum=1)
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        # kept alive for the process: a limiter restores the old count when it is collected
        set_blas_threads.limiter = threadpool_limits(limits=count, user_api="blas")  # type: ignore[attr-defined]
        return f"BLAS threads: {count} (threadpoolctl)"
    for path, library in _openblas_libraries():
        setter = _symbol(library, _SETTERS)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], None
            setter(count)
            return f"BLAS threads: {count} (OpenBLAS {os.path.basename(path)}, through ctypes)"
    return ("could not set the BLAS threads: neither threadpoolctl nor numpy's OpenBLAS was found; "
            "set OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) before Python starts")


def blas_threads() -> int | None:
    """The number of threads numpy's BLAS uses now, or None where it cannot be asked.

    >>> count = blas_threads()
    >>> count is None or count >= 1
    True
    """
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        counts = [int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "blas"]
        return counts[0] if counts else None
    for _, library in _openblas_libraries():
        getter = _symbol(library, _GETTERS)
        if getter is not None:
            getter.argtypes, getter.restype = [], ctypes.c_int
            return int(getter())
    return None


def _openblas_libraries() -> Iterator[tuple[str, ctypes.CDLL]]:
    """The OpenBLAS libraries this process has loaded (read from /proc/self/maps), or numpy bundles."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.count("/") else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    if not paths:  # not Linux: the copy inside numpy's wheel
        import numpy

        root = os.path.dirname(os.path.dirname(numpy.__file__))
        for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*", "numpy.libs/*openblas*.dll"):
            paths.extend(glob.glob(os.path.join(root, pattern)))
    for path in paths:
        try:
            yield path, ctypes.CDLL(path)
        except OSError:
            continue


def _symbol(library: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            return function
    return None
