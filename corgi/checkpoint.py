"""Checkpoint files: a model's arrays and plain data in one ``.npz``, written atomically.

A checkpoint is a numpy ``.npz`` archive. Each parameter is an entry named
as ``Model.named_parameters()`` names it (``0.weights``), so
``numpy.load`` reads one without corgi; layer buffers are
``buffers.<layer>.<name>``, optimizer slots ``optimizer.<position>.<slot>``,
and everything else (optimizer settings and step counts, layers' extra
state, the caller's own ``extra`` data such as an epoch or a generator's
position) is one JSON document in the entry ``corgi.json``.

The file name rule, the same for writing and reading: a path ending in
``.npz`` names the file itself, any other path gets ``.npz`` appended (as
``numpy.savez`` does), so ``save("ckpt")`` and ``load("ckpt")`` both mean
``ckpt.npz``. A directory, or a path ending in a separator, is refused.

Writing never leaves a damaged file where a good one was: the archive goes
to a temporary file beside the target, is flushed and synced to disk, and
replaces the target with ``os.replace`` (an atomic rename); a failure or
an interrupt at any point before the rename leaves the old file as it was
and removes the temporary one.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from .array import Array

PathLike = Union[str, "os.PathLike[str]"]

SUFFIX = ".npz"
META = "corgi.json"  # the JSON entry; no parameter name can take it (they start with a layer number)
FORMAT = "corgi checkpoint"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds: its named arrays and its JSON data (``meta``).

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = write(Path(folder.name) / "run", {"0.weights": np.ones((2, 2))}, {"extra": {"epoch": 3}}, "example")
    >>> checkpoint = read(Path(folder.name) / "run")
    >>> checkpoint.path.name, sorted(checkpoint.arrays), checkpoint.extra
    ('run.npz', ['0.weights'], {'epoch': 3})
    >>> folder.cleanup()
    """

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def extra(self) -> dict[str, Any]:
        """The caller's own data saved with the model (``Model.save(path, extra=...)``); ``{}`` if none.

        >>> Checkpoint(Path("x.npz"), {}, {"extra": {"epoch": 1}}).extra
        {'epoch': 1}
        """
        extra = self.meta.get("extra", {})
        return dict(extra) if isinstance(extra, Mapping) else {}


def checkpoint_path(path: PathLike, where: str) -> Path:
    """The file a checkpoint called ``path`` lives in: ``path`` if it ends in ``.npz``, else ``path.npz``.

    >>> checkpoint_path("runs/ckpt", "Model.save"), checkpoint_path("runs/model.npz", "Model.save")
    (PosixPath('runs/ckpt.npz'), PosixPath('runs/model.npz'))
    >>> checkpoint_path("runs/", "Model.save")
    Traceback (most recent call last):
    ...
    IsADirectoryError: Model.save: runs/ names a directory; give a file name, e.g. runs/model.npz
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"{where}: expects a path, got {type(path).__name__}")
    separators = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if text == "" or text.endswith(separators) or Path(text).is_dir():
        shown = text or "''"
        raise IsADirectoryError(
            f"{where}: {shown} names a directory; give a file name, e.g. {os.path.join(text, 'model' + SUFFIX)}"
        )
    return Path(text if text.endswith(SUFFIX) else text + SUFFIX)


def write(
    path: PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], where: str = "checkpoint.write"
) -> Path:
    """Write ``arrays`` and ``meta`` (JSON-able) as a checkpoint, atomically; returns the file's path.

    The folder must exist. The format and version are added to ``meta``.
    Errors name ``where``, the function the caller wants them to name.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     target = write(Path(folder) / "ckpt", {"a": np.zeros(2)}, {}, "example")
    ...     target.name, sorted(np.load(target).files)
    ('ckpt.npz', ['a', 'corgi.json'])
    """
    target = checkpoint_path(path, where)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{where}: the folder {folder} of {target} does not exist")
    if META in arrays:
        raise ValueError(f"{where}: {META} is the name of the checkpoint's own data, not an array's")
    document = json.dumps({"format": FORMAT, "version": VERSION, **meta}, allow_nan=False)
    entries: dict[str, Any] = {**arrays, META: np.array(document)}
    # The name is chosen before anything exists, so that an interrupt at any moment after the file
    # is created (even inside os.open) finds the name in the clean-up below.
    temporary = folder / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **entries)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        # the old file is untouched until os.replace; only the temporary one goes
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _sync_folder(folder)
    return target


def read(path: PathLike, where: str = "checkpoint.read") -> Checkpoint:
    """The checkpoint called ``path`` (the same file name rule as ``write``); errors name the file.

    A file that is not a ``.npz`` archive, a damaged one, or one whose JSON
    entry is not a corgi checkpoint's, is a ValueError naming it; a
    ``.npz`` without the JSON entry (arrays saved by ``numpy.savez``, or
    parameters saved by an older corgi) reads with empty ``meta``. Errors
    name ``where``, the function the caller wants them to name.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     np.save(Path(folder) / "weights.npy", np.zeros(3))
    ...     read(Path(folder) / "weights.npy", "Model.load")
    Traceback (most recent call last):
    ...
    ValueError: Model.load: .../weights.npy is a .npy file (one numpy array), not a checkpoint; checkpoints are \
.npz files: Model.save('.../weights.npy') writes .../weights.npy.npz
    """
    target = checkpoint_path(path, where)
    given = Path(os.fspath(path))
    if not target.exists() and given.is_file():
        kind = _kind(given)
        raise ValueError(
            f"{where}: {given} is {kind}, not a checkpoint; checkpoints are {SUFFIX} files: "
            f"Model.save('{given}') writes {target}"
        )
    if not target.is_file():
        raise FileNotFoundError(f"{where}: no checkpoint file {target}")
    kind = _kind(target)
    if kind != "a .npz archive":
        raise ValueError(f"{where}: {target} is {kind}, not a checkpoint (a .npz archive)")
    try:
        with np.load(target, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise ValueError(f"{where}: {target} is damaged or not a checkpoint: {type(error).__name__}: {error}") from error
    meta: dict[str, Any] = {}
    if META in arrays:
        entry = arrays.pop(META)
        document: Any = None
        if entry.shape == () and entry.dtype.kind == "U":
            try:
                document = json.loads(str(entry[()]))
            except json.JSONDecodeError:
                document = None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"{where}: {target} has a {META} entry that is not a corgi checkpoint's")
        meta = document
        if meta.get("version") != VERSION:
            raise ValueError(
                f"{where}: {target} is a version {meta.get('version')} checkpoint; this corgi reads version {VERSION}"
            )
    return Checkpoint(target, arrays, meta)


def _kind(path: Path) -> str:
    """What the first bytes of ``path`` say it is."""
    with open(path, "rb") as file:
        start = file.read(6)
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a .npz archive"
    if start == b"\x93NUMPY":
        return "a .npy file (one numpy array)"
    if not start:
        return "an empty file"
    return "not a .npz archive"


def _file_mode(target: Path) -> int:
    """The permissions the file gets: the old file's, or those a new file would get under the umask."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    umask = 0o022
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    except OSError:
        pass  # not Linux: the common default
    return 0o666 & ~umask


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the platform lets a folder be synced."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


# -- a model's checkpoint ------------------------------------------------------------------


def encode(model: Any, extra: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the JSON data that describe ``model`` (a ``corgi.model.Model``) and ``extra``.

    >>> from corgi import cost, initializer
    >>> from corgi.layer import Dense
    >>> from corgi.model import Model
    >>> from corgi.optimizer import Momentum
    >>> arrays, meta = encode(Model([Dense(2, 1, initializer.make_he(rng=0))], Momentum(0.1), cost.make_mse()), None)
    >>> sorted(arrays), meta["optimizer"]
    (['0.biases', '0.weights'], {'type': 'Momentum', 'hyperparameters': {'learning_rate': 0.1, 'momentum': 0.9}, 'steps': {}})
    """
    arrays = {name: parameter.numpy() for name, parameter in model.named_parameters()}
    extra_state: dict[str, Any] = {}
    for index, layer in enumerate(model.layers):
        for name, buffer in _buffers(layer):
            arrays[f"buffers.{index}.{name}"] = buffer
        state = layer.get_extra_state() if hasattr(layer, "get_extra_state") else {}
        if state:
            extra_state[str(index)] = state
    optimizer = None
    state_dict = getattr(model.optimizer, "state_dict", None)
    if callable(state_dict):
        saved = state_dict()
        steps = {}
        for position, entry in saved["state"].items():
            steps[str(position)] = int(entry["step"])
            for slot, value in entry.items():
                if slot != "step":
                    arrays[f"optimizer.{position}.{slot}"] = value
        optimizer = {"type": saved["type"], "hyperparameters": saved["hyperparameters"], "steps": steps}
    meta = {
        "layers": [repr(layer) for layer in model.layers],
        "extra_state": extra_state,
        "optimizer": optimizer,
        "extra": dict(extra or {}),
    }
    return arrays, meta


def restore(model: Any, checkpoint: Checkpoint, with_optimizer: bool, where: str) -> Any:
    """Check everything ``checkpoint`` would change in ``model``; return the function that changes it.

    Nothing is changed until the returned function runs, and it runs only
    assignments already checked: loading is all or nothing.

    >>> from corgi import Array, initializer
    >>> from corgi.layer import Dense
    >>> from corgi.model import Model
    >>> model = Model([Dense(2, 1, initializer.make_he(rng=0))])
    >>> saved = Checkpoint(Path("saved.npz"), {"0.weights": np.ones((2, 1)), "0.biases": np.zeros(1)})
    >>> apply = restore(model, saved, True, "example")
    >>> model.parameters()[0] == Array([[1.0], [1.0]]), apply(), model.parameters()[0] == Array([[1.0], [1.0]])
    (False, None, True)
    """
    path, meta = checkpoint.path, checkpoint.meta
    parameters: dict[str, np.ndarray] = {}
    buffers: dict[str, np.ndarray] = {}
    slots: dict[str, np.ndarray] = {}
    for name, values in checkpoint.arrays.items():
        group = buffers if name.startswith("buffers.") else slots if name.startswith("optimizer.") else parameters
        group[name] = values
    named = model.named_parameters()
    if sorted(parameters) != sorted(name for name, _ in named):
        raise ValueError(
            f"{where}: {path} holds parameters {sorted(parameters)}, the model has {sorted(name for name, _ in named)}"
        )
    loaded = []
    for name, parameter in named:
        stored = parameters[name]
        if stored.shape != parameter.dimensions:
            raise ValueError(
                f"{where}: {path} has {name} of dimensions {stored.shape}, the model has {parameter.dimensions}"
            )
        if stored.dtype.kind != "f":
            raise ValueError(f"{where}: {path} has {name} of dtype {stored.dtype}, not a float type")
        loaded.append(Array(stored, dtype=parameter.dtype).tracked())
    model.check_parameters(loaded)

    layer_buffers: list[list[np.ndarray]] = []
    expected: set[str] = set()
    for index, layer in enumerate(model.layers):
        names = [name for name, _ in _buffers(layer)]
        keys = [f"buffers.{index}.{name}" for name in names]
        expected.update(keys)
        missing = [key for key in keys if key not in buffers]
        if missing:
            raise ValueError(f"{where}: {path} has no buffers {missing}")
        current = dict(_buffers(layer))
        converted = [buffers[key].astype(current[name].dtype, copy=False) for key, name in zip(keys, names)]
        if names:
            layer.check_buffers(converted)
        layer_buffers.append(converted)
    unexpected = sorted(set(buffers) - expected)
    if unexpected:
        raise ValueError(f"{where}: {path} has buffers {unexpected} that no layer of the model keeps")

    states: list[dict[str, Any] | None] = [None] * len(model.layers)
    if meta:  # a checkpoint corgi wrote; a bare .npz of parameters has no layer state to restore
        saved_states = meta.get("extra_state", {})
        if not isinstance(saved_states, Mapping) or not set(saved_states) <= {str(i) for i in range(len(model.layers))}:
            raise ValueError(f"{where}: {path} has extra state for layers the model does not have")
        for index, layer in enumerate(model.layers):
            if hasattr(layer, "check_extra_state"):
                state = saved_states.get(str(index), {})
                try:
                    layer.check_extra_state(state)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{where}: {path}: layer {index}: {error}") from error
                states[index] = state

    optimizer_state = None
    saved_optimizer = meta.get("optimizer")
    if with_optimizer and saved_optimizer and model.optimizer is not None:
        optimizer_state = _optimizer_state(model, saved_optimizer, slots, loaded, path, where)

    def apply() -> None:
        model.set_parameters(loaded)
        for layer, values in zip(model.layers, layer_buffers):
            if values:
                layer.set_buffers(values)
        for layer, state in zip(model.layers, states):
            if state is not None:
                layer.set_extra_state(state)
        if optimizer_state is not None:
            model.optimizer.load_state_dict(optimizer_state, loaded)

    return apply


def _optimizer_state(
    model: Any, saved: Any, slots: dict[str, np.ndarray], loaded: list[Any], path: Path, where: str
) -> dict[str, Any]:
    """The optimizer state dict a checkpoint's data describe, checked against the model's optimizer."""
    own = type(model.optimizer).__name__
    if not isinstance(saved, Mapping) or not isinstance(saved.get("steps"), Mapping):
        # a damaged file is a bad value, whatever type its data has
        raise ValueError(f"{where}: {path} has optimizer data that is not a corgi checkpoint's")  # noqa: TRY004
    if saved.get("type") != own:
        raise ValueError(
            f"{where}: {path} holds the state of a {saved.get('type')} optimizer, the model's is a {own}; "
            "pass optimizer=False to load the parameters only"
        )
    state: dict[int, dict[str, Any]] = {}
    for position, step in saved["steps"].items():
        if not str(position).isdigit() or int(position) >= len(loaded):
            raise ValueError(f"{where}: {path} has optimizer state for a parameter {position!r} the model does not have")
        state[int(position)] = {"step": step}
    for key, values in slots.items():
        _, position, slot = (key.split(".", 2) + ["", ""])[:3]
        if not position.isdigit() or int(position) not in state or not slot:
            raise ValueError(f"{where}: {path} has an optimizer array {key} without a step count")
        state[int(position)][slot] = values.astype(loaded[int(position)].dtype, copy=False)
    result = {"type": own, "hyperparameters": saved.get("hyperparameters"), "state": state}
    try:
        model.optimizer.check_state_dict(result, loaded)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {path}: {error}") from error
    return result


def _buffers(layer: Any) -> list[tuple[str, np.ndarray]]:
    named = getattr(layer, "named_buffers", None)
    return list(named()) if callable(named) else []
