"""What the ranks share: rank 0's parameters and optimizer state at wrap time, hashes to compare them, and checkpoints.

Each collective function is called by every rank of the communicator, in
the same order, or the ranks wait for each other forever. A failure on one
rank is made known to every rank, which all raise, so no rank is left
waiting in a later collective operation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path as _Path
from typing import Any, Union

import numpy as np

from .. import checkpoint
from ..array import Array
from ..model import Model
from ..optimizer import Optimizer
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

    Rank 0 gets its own arrays back; the others new, read-only ones.

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


def agree(link: Transport, failure: BaseException | None, what: str) -> None:
    """Every rank learns whether any rank failed at ``what``; if one did, every rank raises.

    A rank that failed raises its own error; the others a RuntimeError
    naming the first rank that failed and its error.

    >>> from corgi.distributed import LocalComm
    >>> agree(LocalComm(), None, "loading")
    >>> agree(LocalComm(), ValueError("bad file"), "loading")
    Traceback (most recent call last):
    ...
    ValueError: bad file
    """
    message = None if failure is None else f"{type(failure).__name__}: {failure}"
    reports = [message] if link.size == 1 else link.allgather(message)
    failed = [rank for rank, text in enumerate(reports) if text is not None]
    if failure is not None:
        raise failure
    if failed:
        raise RuntimeError(f"{what}: rank {failed[0]} failed: {reports[failed[0]]}")


def optimizer_layout(optimizer: Any) -> dict[str, Any] | None:
    """An optimizer's kind, settings and per-parameter state without the arrays (their dimensions and dtypes instead).

    None for an optimizer that cannot save its state (one not built on
    ``corgi.optimizer.Optimizer``).

    >>> from corgi import arr
    >>> from corgi.optimizer import Momentum
    >>> optimizer = Momentum(0.1)
    >>> w = arr(1.0, 2.0).tracked()
    >>> (w * 2.0).sum().backward()
    >>> _ = optimizer.update([w])
    >>> optimizer_layout(optimizer)["state"]
    {0: {'step': 1, 'momentum_buffer': ((2,), '<f8')}}
    """
    if not isinstance(optimizer, Optimizer):
        return None
    saved = optimizer.state_dict()
    state = {
        position: {
            slot: value if slot == "step" else (tuple(value.shape), value.dtype.str) for slot, value in entry.items()
        }
        for position, entry in saved["state"].items()
    }
    return {"type": saved["type"], "hyperparameters": saved["hyperparameters"], "state": state}


def broadcast_optimizer(link: Transport, optimizer: Any, parameters: Sequence[Array], where: str) -> None:
    """Give every rank rank 0's optimizer state and settings (collective; all or nothing).

    The layout (which parameters have state, step counts, settings) goes as
    one small message, the slot arrays as one message per dtype. Every rank
    but rank 0 then loads it (``load_state_dict``, checked against
    ``parameters``); if any rank cannot, every rank raises.

    >>> from corgi.distributed import LocalComm
    >>> from corgi.optimizer import Adam
    >>> broadcast_optimizer(LocalComm(), Adam(), [], "example")
    """
    if link.size == 1 or not isinstance(optimizer, Optimizer):
        return
    saved = optimizer.state_dict() if link.rank == 0 else None
    layout = link.bcast(optimizer_layout(optimizer) if link.rank == 0 else None, root=0)
    keys = [(position, slot) for position, entry in sorted(layout["state"].items()) for slot in sorted(entry) if slot != "step"]
    if saved is not None:
        arrays = [np.ascontiguousarray(saved["state"][position][slot]) for position, slot in keys]
    else:
        arrays = [np.empty(*layout["state"][position][slot]) for position, slot in keys]
    values = broadcast_values(link, arrays)
    failure = None
    if link.rank != 0:
        state: dict[int, dict[str, Any]] = {position: {"step": entry["step"]} for position, entry in layout["state"].items()}
        for (position, slot), value in zip(keys, values):
            state[position][slot] = value
        try:
            optimizer.load_state_dict(
                {"type": layout["type"], "hyperparameters": layout["hyperparameters"], "state": state}, parameters
            )
        except Exception as error:  # noqa: BLE001 - any failure must reach every rank, or they hang
            failure = error
    agree(link, failure, f"{where}: broadcasting the optimizer's state")


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


def model_digest(model: Model) -> str:
    """A hash of everything a checkpoint holds of ``model``: parameters, layer buffers and state, optimizer state.

    >>> from corgi import cost, initializer
    >>> from corgi.layer import Dense
    >>> from corgi.optimizer import Momentum
    >>> def make(seed):
    ...     return Model([Dense(2, 2, initializer.make_he(rng=seed))], Momentum(0.1), cost.make_mse())
    >>> model_digest(make(0)) == model_digest(make(0)) != model_digest(make(1))
    True
    """
    arrays, meta = checkpoint.encode(model, None)
    hash = hashlib.blake2b(digest_size=16)
    hash.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    for name in sorted(arrays):
        values = np.asarray(arrays[name])
        hash.update(repr((name, values.shape, values.dtype.str)).encode())
        hash.update(np.ascontiguousarray(values).data)
    return hash.hexdigest()


def save_on_root(link: Transport, model: Model, path: Path, where: str, extra: Mapping[str, Any] | None = None) -> None:
    """Rank 0 runs ``model.save(path, extra)``; every rank returns once it has, or raises if it failed.

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
            model.save(path, extra=extra)
        except Exception as error:  # noqa: BLE001 - any failure must reach every rank, or they hang
            failure, message = error, f"{type(error).__name__}: {error}"
    # the broadcast is the barrier: no rank goes on (to read the file) before it is written
    message = link.bcast(message, root=0)
    if failure is not None:
        raise failure
    if message is not None:
        raise RuntimeError(f"{where}: rank 0 could not write {path}: {message}")


def load_everywhere(link: Transport, model: Model, path: Path, where: str) -> None:
    """Every rank runs ``model.load(path)``; all or nothing: if any rank fails, or reads other values than rank 0, all keep their state and raise.

    The state compared and kept is the whole model's: parameters, layer
    buffers and state, and the optimizer's state and settings.

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
    # the state before, to put back if another rank fails: what a checkpoint of it would hold
    arrays, meta = checkpoint.encode(model, None)
    before = checkpoint.Checkpoint(_Path(f"<the state before {where}>"), arrays, json.loads(json.dumps(meta)))
    failure: BaseException | None = None
    try:
        model.load(path)
    except Exception as error:  # noqa: BLE001 - any failure must reach every rank, or they hang
        failure = error
    message = None if failure is None else f"{type(failure).__name__}: {failure}"
    reports = link.allgather((message, None if failure else model_digest(model)))
    failed = [rank for rank, (text, _) in enumerate(reports) if text is not None]
    differ = [rank for rank, (_, hashed) in enumerate(reports) if hashed != reports[0][1]]
    if failed or differ:
        if failure is None:  # this rank loaded: put its state back (a failed load changed nothing)
            checkpoint.restore(model, before, True, where)()
        if failure is not None:
            raise failure
        if failed:
            raise RuntimeError(f"{where}: rank {failed[0]} could not read {path}: {reports[failed[0]][0]}")
        raise ValueError(f"{where}: ranks {differ} read other values from {path} than rank 0 (is it the same file on every node?)")
