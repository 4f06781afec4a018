"""Small image-classification datasets: 10,000 bundled MNIST digits, the bundled 8x8 digits, and MNIST's IDX reader.

The bundled MNIST sample (``corgi/data/mnist10k-*.gz``, :func:`load_mnist10k`) is 10,000
real 28x28 digits of the MNIST database (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA
3.0), in the original IDX format. The bundled 8x8 digits (``corgi/data/digits.csv.gz``,
:func:`load_digits`) are the 1,797-image form of the UCI *Optical Recognition of
Handwritten Digits* data set, created by E. Alpaydin and C. Kaynak (Bogazici University,
1998), https://doi.org/10.24432/C50P49, licensed CC BY 4.0; the file is the copy shipped
with scikit-learn 1.9.1. :func:`load_mnist` reads the full MNIST's four IDX files from a
directory you supply. ``corgi/data/README.md`` gives every file's provenance and checksum.

This module depends on numpy and the standard library only.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .checks import whole_number

__all__ = ["Dataset", "batches", "load_digits", "load_mnist", "load_mnist10k", "one_hot", "read_idx"]

_DIGITS_FILE = "digits.csv.gz"
_DIGITS_ROWS, _DIGITS_SIDE, _DIGITS_MAX = 1797, 8, 16
_MNIST10K_FILES = ("mnist10k-images-idx3-ubyte.gz", "mnist10k-labels-idx1-ubyte.gz")
MNIST10K_TRAIN = 8000  # the first 8,000 of the bundled digits train, the last 2,000 are held out
# IDX type byte -> big-endian numpy dtype (the IDX spec's full table).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The most data read_idx accepts unless told otherwise (full MNIST's largest file holds 47 MB).
MAX_IDX_BYTES = 1 << 31
# deflate codes at most 258 bytes in one match of at least 2 bits: never better than 1032:1.
_DEFLATE_MOST = 1032
# numpy 1.x arrays have at most 32 dimensions (numpy 2.x: 64).
_IDX_MAX_DIMENSIONS = 32
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
    encoded: np.ndarray = np.eye(classes, dtype=dtype)[labels]
    return encoded


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


def read_idx(path: str | os.PathLike[str], max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (as used by MNIST), gzip-compressed if its name ends in ``.gz``.

    Returns an array of the stored shape in native byte order. The header is
    read and checked first: a file whose header declares more than
    ``max_bytes`` of data (2 GiB by default), more than a gzip file of its
    size can hold (deflate packs at most 1032 bytes into one), or more or
    less than a plain file holds, is refused before any data is read, so a
    small gzip file that would inflate to gigabytes is never inflated.
    Every error is a ValueError naming the file (or FileNotFoundError for a
    missing one).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "x-idx2-ubyte"
    ...     _ = path.write_bytes(bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    ...     read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:       # claims 2^32 x 2^32 bytes
    ...     path = Path(tmp) / "bomb-idx2-ubyte.gz"
    ...     _ = path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 2]) + bytes([255] * 8)))
    ...     read_idx(path)
    Traceback (most recent call last):
    ...
    ValueError: .../bomb-idx2-ubyte.gz: the header declares shape (4294967295, 4294967295) of 1 byte each, 18446744065119617025 bytes, more than the 2147483648 allowed (max_bytes)
    """
    path = Path(path)
    max_bytes = whole_number(max_bytes, "max_bytes", "read_idx")
    size = path.stat().st_size  # a missing file raises FileNotFoundError naming the path
    compressed = path.suffix == ".gz"
    with open(path, "rb") as file:
        if not compressed:
            return _read_idx_stream(file, path, size, compressed, max_bytes)
        # BadGzipFile is an OSError; a damaged stream raises zlib.error or EOFError
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _read_idx_stream(stream, path, size, compressed, max_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: not a valid gzip file: {exc}") from exc


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_exact(stream: _Readable, count: int) -> bytes:
    """Up to ``count`` bytes: fewer only where the stream ends."""
    parts, wanted = [], count
    while wanted:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _read_idx_stream(stream: _Readable, path: Path, size: int, compressed: bool, max_bytes: int) -> np.ndarray:
    """Parse an IDX header from ``stream``, check what it declares, then read exactly that much data."""
    start = _read_exact(stream, 4)
    if len(start) < 4 or start[:2] != b"\x00\x00":
        raise ValueError(f"{path}: bad IDX magic number {start.hex() or '(empty)'}; "
                         "expected two zero bytes, a type byte and a dimension count")
    code, ndim = start[2], start[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim > _IDX_MAX_DIMENSIONS:
        raise ValueError(f"{path}: the header declares {ndim} dimensions; "
                         f"at most {_IDX_MAX_DIMENSIONS} are supported")
    header = 4 + 4 * ndim
    sizes = _read_exact(stream, 4 * ndim)
    if len(sizes) < 4 * ndim:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, "
                         f"found {4 + len(sizes)}")
    shape = tuple(int.from_bytes(sizes[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    unit = "1 byte each" if dtype.itemsize == 1 else f"{dtype.itemsize} bytes each"
    declared = f"the header declares shape {shape} of {unit}, {expected} bytes"
    if expected > max_bytes:
        raise ValueError(f"{path}: {declared}, more than the {max_bytes} allowed (max_bytes)")
    if compressed and expected + header > _DEFLATE_MOST * size:
        raise ValueError(f"{path}: {declared}, more than a gzip file of {size} bytes can hold")
    if not compressed and size - header != expected:
        problem = "truncated" if size - header < expected else "trailing bytes"
        raise ValueError(f"{path}: {problem}: shape {shape} needs {expected} data bytes, "
                         f"found {size - header}")
    data = _read_exact(stream, expected)
    if len(data) < expected:
        raise ValueError(f"{path}: truncated: shape {shape} needs {expected} data bytes, found {len(data)}")
    if stream.read(1):
        raise ValueError(f"{path}: trailing bytes after the {expected} data bytes of shape {shape}")
    # astype copies into a writable array in native byte order.
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


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
    count, rows, cols = images.shape
    if count == 0 or rows == 0 or cols == 0:
        raise ValueError(f"{images_path}: holds {count} images of {rows}x{cols} pixels; "
                         "a data set needs at least one image of at least 1x1 pixels")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"holds {len(labels)} labels")
    if labels.max() > 9:
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
    paths = [path for path in found.values() if path is not None]
    train_x, train_y = _read_mnist_pair(paths[0], paths[1])
    test_x, test_y = _read_mnist_pair(paths[2], paths[3])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"{directory}: train images are {train_x.shape[1:]} "
                         f"but test images are {test_x.shape[1:]}")
    rows, cols = train_x.shape[1:]

    def scale(x: np.ndarray) -> np.ndarray:
        x = x / 255.0
        return x.reshape(len(x), rows * cols) if flatten else x

    return Dataset(scale(train_x), train_y, scale(test_x), test_y, image_shape=(rows, cols))


def load_mnist10k(flatten: bool = True) -> Dataset:
    """Load the 10,000 bundled MNIST digits: the first 8,000 to train, the last 2,000 held out.

    The split is the files' own order, which is already a random shuffle of
    MNIST (per held-out class: 178 to 222 images), so any IDX reader
    reproduces it without a seed. Pixels are divided by 255 and images
    flattened to 784 columns unless ``flatten=False``.

    >>> ds = load_mnist10k()
    >>> ds.train_images.shape, ds.test_images.shape, ds.image_shape, ds.classes
    ((8000, 784), (2000, 784), (28, 28), 10)
    >>> ds.train_labels[:10].tolist(), float(ds.train_images.max())
    ([9, 9, 1, 2, 1, 3, 9, 5, 8, 9], 1.0)
    """
    folder = resources.files("corgi") / "data"
    with resources.as_file(folder / _MNIST10K_FILES[0]) as images_path, \
            resources.as_file(folder / _MNIST10K_FILES[1]) as labels_path:
        images, labels = _read_mnist_pair(Path(images_path), Path(labels_path))
    rows, cols = images.shape[1:]
    images = images / 255.0
    if flatten:
        images = images.reshape(len(images), rows * cols)
    train = slice(0, MNIST10K_TRAIN)
    test = slice(MNIST10K_TRAIN, len(images))
    return Dataset(images[train], labels[train], images[test], labels[test], image_shape=(rows, cols))
