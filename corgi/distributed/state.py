"""What the ranks share: rank 0's parameters at wrap time, a hash to compare them, and checkpoints.

Each function is collective: every rank of the communicator calls it, in
the same order, or the ranks wait for each other forever. A failure on one
rank is made known to every rank, which all raise, so no rank is left
waiting in a later collective operation.
"""

from __future__ import annotations

import hashlib
import os
from typing import Union

import numpy as np

from ..array import Array
from ..model import Model
from .comm import Transport

Path = Union[str, "os.PathLike[str]"]


def broadcast_parameters(link: Transport, parameters: list[Array]) -> list[Array]:
    """Rank 0's parameters on every rank: rank 0 keeps its Arrays, the others get new, tracked-alike ones.

    >>> from corgi.distributed import LocalComm
    >>> w = Array([1.0, 2.0]).tracked()
    >>> broadcast_parameters(LocalComm(), [w])[0] is w
    True
    """
    if link.size == 1:
        return parameters
    values = broadcast_values(link, [parameter.numpy() for parameter in parameters])
    if link.rank == 0:
        return parameters
    received = []
    for parameter, value in zip(parameters, values):
        array = Array(value, copy=False)
        received.append(array.tracked() if parameter.is_tracked else array)
    return received


def broadcast_values(link: Transport, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Rank 0's ``arrays`` on every rank, one flat message per dtype (every rank passes the same shapes).

    Rank 0 gets its own arrays back; the others new, read-only ones. (Round
    two broadcasts an optimizer's state with it too.)

    >>> from corgi.distributed import LocalComm
    >>> [a.tolist() for a in broadcast_values(LocalComm(), [np.ones(2), np.zeros(1, np.float32)])]
    [[1.0, 1.0], [0.0]]
    """
    result = list(arrays)
    for dtype in sorted({array.dtype.str for array in arrays}):
        members = [position for position, array in enumerate(arrays) if array.dtype.str == dtype]
        sizes = [arrays[position].size for position in members]
        if link.rank == 0:
            flat = np.concatenate([arrays[position].reshape(-1) for position in members])
        else:
            flat = np.empty(sum(sizes), dtype=np.dtype(dtype))
        link.Bcast(flat, root=0)
        if link.rank != 0:
            flat.flags.writeable = False
            offsets = np.cumsum([0, *sizes])
            for position, start, stop in zip(members, offsets[:-1], offsets[1:]):
                result[position] = flat[start:stop].reshape(arrays[position].shape)
    return result


def digest(parameters: list[Array]) -> str:
    """A hash of parameters' dimensions, dtypes and every bit of their values (not collective).

    >>> digest([Array([1.0, 2.0])]) == digest([Array([1.0, 2.0])]) != digest([Array([1.0, 2.5])])
    True
    """
    hash = hashlib.blake2b(digest_size=16)
    for parameter in parameters:
        values = parameter.numpy()
        hash.update(repr((values.shape, values.dtype.str)).encode())
        hash.update(np.ascontiguousarray(values).data)
    return hash.hexdigest()


def save_on_root(link: Transport, model: Model, path: Path, where: str) -> None:
    """Rank 0 runs ``model.save(path)``; every rank returns once it has, or raises if it failed.

    >>> import tempfile, pathlib
    >>> from corgi import cost, initializer
    >>> from corgi.distributed import LocalComm
    >>> from corgi.layer import Dense
    >>> from corgi.optimizer import GradientDescent
    >>> model = Model([Dense(2, 2, initializer.make_he(rng=0))], GradientDescent(0.1), cost.make_mse())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_on_root(LocalComm(), model, pathlib.Path(folder) / "m.npz", "example")
    ...     sorted(p.name for p in pathlib.Path(folder).iterdir())
    ['m.npz']
    """
    failure: BaseException | None = None
    message = None
    if link.rank == 0:
        try:
            model.save(path)
        except Exception as error:  # noqa: BLE001 - any failure must reach every rank, or they hang
            failure, message = error, f"{type(error).__name__}: {error}"
    # the broadcast is the barrier: no rank goes on (to read the file) before it is written
    message = link.bcast(message, root=0)
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"{where}: rank 0 could not write {path}: {message}")


def load_everywhere(link: Transport, model: Model, path: Path, where: str) -> None:
    """Every rank runs ``model.load(path)``; all or nothing: if any rank fails, or reads other values than rank 0, all keep their parameters and raise.

    >>> import tempfile, pathlib
    >>> from corgi import cost, initializer
    >>> from corgi.distributed import LocalComm
    >>> from corgi.layer import Dense
    >>> from corgi.optimizer import GradientDescent
    >>> def make(seed):
    ...     return Model([Dense(2, 2, initializer.make_he(rng=seed))], GradientDescent(0.1), cost.make_mse())
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = make(0).save(pathlib.Path(folder) / "m.npz")
    ...     copy = make(1)
    ...     load_everywhere(LocalComm(), copy, pathlib.Path(folder) / "m.npz", "example")
    >>> digest(copy.parameters()) == digest(make(0).parameters())
    True
    """
    before = model.parameters()
    failure: BaseException | None = None
    try:
        model.load(path)
    except Exception as error:  # noqa: BLE001 - any failure must reach every rank, or they hang
        failure = error
    message = None if failure is None else f"{type(failure).__name__}: {failure}"
    reports = link.allgather((message, None if failure else digest(model.parameters())))
    failed = [rank for rank, (text, _) in enumerate(reports) if text is not None]
    differ = [rank for rank, (_, hashed) in enumerate(reports) if hashed != reports[0][1]]
    if failed or differ:
        model.set_parameters(before)
        if failure is not None:
            raise failure
        if failed:
            raise RuntimeError(f"{where}: rank {failed[0]} could not read {path}: {reports[failed[0]][0]}")
        raise ValueError(f"{where}: ranks {differ} read other values from {path} than rank 0 (is it the same file on every node?)")
