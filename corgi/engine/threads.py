"""Threads on threads: whether handing nodes to the pool would oversubscribe the cores.

A costly node's vjp is mostly a BLAS call, and the BLAS library runs each
call on its own threads. A pass that hands such nodes to the pool runs
several BLAS calls at once, each on ``blas_threads()`` threads: with two
engine workers and two BLAS threads on two cores, four or more threads
compete for two cores and every call waits on the others (the wide graph of
``benchmarks/``: 98.6 ms, against 77-81 ms for numpy serial on two BLAS
threads or numpy's two-thread pool on one).

So a pass hands nodes to the pool only while two BLAS calls fit on the
cores side by side (``2 * blas_threads() <= cores()``); otherwise it runs
every node on the calling thread and lets BLAS fill the cores. The results
are the same bit for bit either way (the engine's sums never depend on the
schedule). A pass reads the BLAS thread count when it first has a costly node
to hand over (most passes never do, and the reading costs a system call), so
a change made meanwhile (``threadpoolctl``, ``openblas_set_num_threads``)
counts from the next pass that hands one over.

``blas_threads()`` asks the BLAS library loaded in this process (OpenBLAS,
as numpy's wheels bundle it, or MKL), found among the process's mapped
files; without one it reads ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``OMP_NUM_THREADS``, and says 1 when none is set. The engine itself
imports only the standard library: it looks for the library, not for numpy.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

# The symbols that report a BLAS library's thread count, by the library's file name.
_QUERIES = (
    ("openblas", ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                  "openblas_get_num_threads64_", "openblas_get_num_threads")),
    ("mkl_rt", ("MKL_Get_Max_Threads",)),
)
_ENVIRONMENT = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")

# (the query found, or None when there is none): looked up once, on first use
_query: list[Callable[[], int] | None] = []


def _find_query() -> Callable[[], int] | None:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    for marker, symbols in _QUERIES:
        for path in sorted(p for p in paths if marker in os.path.basename(p).lower()):
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for symbol in symbols:
                function = getattr(library, symbol, None)
                if function is not None:
                    function.restype = ctypes.c_int
                    function.argtypes = []
                    return function  # type: ignore[no-any-return]
    return None


def blas_threads() -> int:
    """How many threads the process's BLAS library runs each call on (at least 1).

    >>> blas_threads() >= 1
    True
    """
    if not _query:
        _query.append(_find_query())  # once: by the first pass that can use the pool, numpy is loaded
    query = _query[0]
    if query is not None:
        return max(1, int(query()))
    for name in _ENVIRONMENT:
        value = os.environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return 1


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else the CPU count).

    >>> cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pool_fits() -> bool:
    """True if two BLAS calls fit on the cores side by side, so that handing nodes to the pool helps.

    >>> pool_fits() == (2 * blas_threads() <= cores())
    True
    """
    return 2 * blas_threads() <= cores()
