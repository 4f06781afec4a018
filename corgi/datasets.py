"""Small image-classification datasets: the bundled 8x8 digits and a reader for MNIST.

The bundled digits (``corgi/data/digits.csv.gz``) are the 1,797-image 8x8 form of the UCI
*Optical Recognition of Handwritten Digits* data set, created by E. Alpaydin and C. Kaynak
(Bogazici University, 1998), https://doi.org/10.24432/C50P49, licensed CC BY 4.0; the file
is the copy shipped with scikit-learn 1.9.1. MNIST is not bundled: :func:`load_mnist`
reads the four IDX files from a directory you supply.

This module depends on numpy and the standard library only.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .checks import whole_number

__all__ = ["Dataset", "one_hot", "batches", "load_digits", "read_idx", "load_mnist"]

_DIGITS_FILE = "digits.csv.gz"
_DIGITS_ROWS, _DIGITS_SIDE, _DIGITS_MAX = 1797, 8, 16
# IDX type byte -> big-endian numpy dtype (the IDX spec's full table).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Dataset:
    """A train/test split of labelled images.

    Images are float64 in [0, 1], shape ``(n, rows * cols)`` (or ``(n, rows, cols)`` when
    loaded with ``flatten=False``); labels are int64 in ``0 .. classes - 1``.

    >>> ds = Dataset(np.zeros((3, 4)), np.array([0, 1, 1]), np.ones((1, 4)), np.array([1]),
    ...              image_shape=(2, 2), classes=2)
    >>> ds.train_images.shape, ds.test_labels.tolist(), ds.image_shape
    ((3, 4), [1], (2, 2))
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple[int, int]
    classes: int = 10


def one_hot(labels: np.ndarray, classes: int = 10, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Encode integer labels of shape ``(n,)`` as an ``(n, classes)`` indicator matrix.

    >>> one_hot(np.array([2, 0]), classes=3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    return np.eye(classes, dtype=dtype)[labels]


def batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int,
    rng: np.random.Generator | int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield one epoch of shuffled ``(images, labels)`` minibatches, the last possibly short.

    ``rng`` is a numpy Generator (advanced in place, so successive epochs differ) or a seed.

    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [len(b) for _, b in batches(x, y, batch_size=2, rng=0)]
    [2, 2, 1]
    >>> sorted(np.concatenate([b for _, b in batches(x, y, 2, rng=0)]).tolist())
    [0, 1, 2, 3, 4]
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    batch_size = whole_number(batch_size, "batch_size", "batches", minimum=1)
    order = np.random.default_rng(rng).permutation(len(images))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]


def _parse_digits(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate the gzipped digits CSV; return (pixels, labels)."""
    # OSError/EOFError/zlib.error mean a damaged gzip; ValueError, ragged or non-numeric rows.
    try:
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ValueError(f"{name}: cannot read as gzipped CSV: {exc}") from exc
    columns = _DIGITS_SIDE * _DIGITS_SIDE + 1
    if table.shape[1] != columns:
        raise ValueError(f"{name}: expected {columns} columns, found {table.shape[1]}")
    if table.shape[0] != _DIGITS_ROWS:
        raise ValueError(f"{name}: expected {_DIGITS_ROWS} rows, found {table.shape[0]}")
    if not np.array_equal(table, np.round(table)):
        raise ValueError(f"{name}: non-integer values")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{name}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    if pixels.min() < 0 or pixels.max() > _DIGITS_MAX:
        raise ValueError(f"{name}: pixels must lie in 0..{_DIGITS_MAX}, "
                         f"found {pixels.min():g}..{pixels.max():g}")
    return pixels, labels


def _stratified_split(labels: np.ndarray, test_fraction: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return shuffled (train, test) row indices holding out round(fraction * n_c) of each class."""
    test_parts = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test_parts.append(members[:round(test_fraction * members.size)])
    test = np.concatenate(test_parts)
    train = np.setdiff1d(np.arange(labels.size), test)
    # Permute again so neither split is grouped by class.
    return rng.permutation(train), rng.permutation(test)


def load_digits(test_fraction: float = 0.2, seed: int = 0, flatten: bool = True) -> Dataset:
    """Load the bundled 8x8 digits with a seeded, stratified train/test split.

    The split is stratified: every class contributes ``round(test_fraction * n_class)``
    rows to the test set, so class proportions match across the split. The same ``seed``
    always gives the same split. Pixels (0..16) are divided by 16.

    >>> ds = load_digits()
    >>> ds.train_images.shape, ds.test_images.shape, ds.image_shape
    ((1438, 64), (359, 64), (8, 8))
    >>> float(ds.train_images.max()), ds.train_labels.dtype
    (1.0, dtype('int64'))
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    source = resources.files("corgi") / "data" / _DIGITS_FILE
    pixels, labels = _parse_digits(source.read_bytes(), str(source))
    images = pixels / _DIGITS_MAX
    if not flatten:
        images = images.reshape(-1, _DIGITS_SIDE, _DIGITS_SIDE)
    train, test = _stratified_split(labels, test_fraction, np.random.default_rng(seed))
    return Dataset(images[train], labels[train], images[test], labels[test],
                   image_shape=(_DIGITS_SIDE, _DIGITS_SIDE))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (as used by MNIST), gzip-compressed if its name ends in ``.gz``.

    Returns an array of the stored shape in native byte order. Raises ValueError naming
    the file on a bad magic number, unknown type code, or wrong data length.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "x-idx2-ubyte"
    ...     _ = path.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    ...     read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    raw = path.read_bytes()  # a missing file raises FileNotFoundError naming the path
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: not a valid gzip file: {exc}") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}; "
                         "expected two zero bytes, a type byte and a dimension count")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"found {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        problem = "truncated" if len(raw) - header < expected else "trailing bytes"
        raise ValueError(f"{path}: {problem}: shape {shape} needs {expected} data bytes, "
                         f"found {len(raw) - header}")
    # astype copies into a writable array in native byte order.
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path | None:
    """The plain or ``.gz`` file named ``stem`` in ``directory``, plain preferred."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, array, ndim in ((images_path, images, 3), (labels_path, labels, 1)):
        if array.dtype != np.uint8 or array.ndim != ndim:
            raise ValueError(f"{path}: expected {ndim}-D unsigned bytes (type 0x08), "
                             f"found {array.ndim}-D {array.dtype}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, found {labels.max()}")
    return images, labels.astype(np.int64)


def load_mnist(directory: str | os.PathLike[str], flatten: bool = True) -> Dataset:
    """Load MNIST from the four IDX files in ``directory`` (each plain or ``.gz``).

    Uses the official train/test (``t10k``) split. Pixels are divided by 255 and images
    flattened to ``rows * cols`` (784) columns unless ``flatten=False``.

    >>> import tempfile
    >>> def idx(dims, data):
    ...     return bytes([0, 0, 0x08, len(dims)]) + np.array(dims, ">u4").tobytes() + data
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for prefix, n in (("train", 5), ("t10k", 3)):
    ...         images, labels = idx([n, 28, 28], bytes(n * 784)), idx([n], bytes(range(n)))
    ...         _ = Path(tmp, f"{prefix}-images-idx3-ubyte").write_bytes(images)
    ...         _ = Path(tmp, f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    ...     ds = load_mnist(tmp)
    >>> ds.train_images.shape, ds.test_labels.tolist(), ds.image_shape
    ((5, 784), [0, 1, 2], (28, 28))
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {directory}")
    found = {stem: _find(directory, stem) for stem in _MNIST_FILES}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        tried = ", ".join(f"{directory / s} or {directory / s}.gz" for s in missing)
        raise FileNotFoundError(f"missing MNIST file(s): tried {tried}")
    train_x, train_y = _read_mnist_pair(found[_MNIST_FILES[0]], found[_MNIST_FILES[1]])
    test_x, test_y = _read_mnist_pair(found[_MNIST_FILES[2]], found[_MNIST_FILES[3]])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"{directory}: train images are {train_x.shape[1:]} "
                         f"but test images are {test_x.shape[1:]}")
    rows, cols = train_x.shape[1:]

    def scale(x: np.ndarray) -> np.ndarray:
        x = x / 255.0
        return x.reshape(len(x), rows * cols) if flatten else x

    return Dataset(scale(train_x), train_y, scale(test_x), test_y, image_shape=(rows, cols))
