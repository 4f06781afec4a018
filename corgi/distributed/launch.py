"""Was this process started as one rank of several by an MPI launcher? (For programs like ``corgi.train``.)

A program that trains data-parallel when launched with ``mpiexec -n N`` (or
Slurm's ``srun``, or the Kubernetes MPI Operator's ``mpirun``) and exactly
as before when run on its own must tell the two apart without starting MPI
needlessly: ``import corgi`` never loads mpi4py. The launchers say so in the
environment of every rank they start (MPICH's Hydra and PMI-1 and PMI-2:
``PMI_SIZE``; Open MPI: ``OMPI_COMM_WORLD_SIZE``; PMIx, as Open MPI 5 and
``srun --mpi=pmix`` use: ``PMIX_RANK``), and ``python -m mpi4py`` has
initialised MPI before the program starts. Only then is mpi4py imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from .comm import _import_mpi

# The variables a launcher sets in each rank's environment; those that hold the rank count come first.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMIX_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALNRANKS")  # (the last: this node's count)


def launched(environment: Mapping[str, str] | None = None) -> int | None:
    """How many ranks the environment says the launcher started (0 if it says MPI but not how many), or None.

    >>> launched({"PMI_SIZE": "4", "PMI_RANK": "1"}), launched({"PMIX_RANK": "0"}), launched({"HOME": "/root"})
    (4, 0, None)
    >>> launched({"PMI_SIZE": "many"})
    Traceback (most recent call last):
    ...
    ValueError: launched: the launcher's PMI_SIZE is 'many', not a whole number
    """
    environment = os.environ if environment is None else environment
    for name in SIZE_VARIABLES:
        if name in environment:
            text = environment[name]
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"launched: the launcher's {name} is {text!r}, not a whole number") from None
    if any(name in environment for name in RANK_VARIABLES):
        return 0
    return None


def world(where: str = "world") -> Any:
    """``MPI.COMM_WORLD`` if this process is one of several ranks of an MPI launch, else None (nothing imported).

    MPI is started (mpi4py imported) only when the environment names a
    launcher or mpi4py has already been imported (``python -m mpi4py``);
    a launch of one rank is a single process too (None). A launch of
    several ranks where mpi4py is not installed is an error: each rank
    would otherwise train alone and write the same files.

    >>> world() is None                        # the doctests run in one plain process
    True
    """
    size = launched()
    if size is None and "mpi4py.MPI" not in sys.modules:
        return None
    try:
        MPI = _import_mpi()
    except ImportError as error:
        if size is not None and size <= 1:
            return None
        raise RuntimeError(
            f"{where}: this process was started by an MPI launcher ({size or 'several'} ranks) but cannot "
            f"use MPI: {error}"
        ) from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None
