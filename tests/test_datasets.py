"""Tests for corgi.datasets: the bundled digits, the split, batching and the MNIST IDX reader."""

import gzip
import io
from importlib import resources

import numpy as np
import pytest

from corgi.datasets import (
    Dataset,
    _parse_digits,
    _stratified_split,
    batches,
    load_digits,
    load_mnist,
    load_mnist10k,
    one_hot,
    read_idx,
)

pytestmark = pytest.mark.timeout(60)

# Per-class row counts of the scikit-learn digits file (classes 0..9).
DIGIT_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def raw_digits() -> np.ndarray:
    source = resources.files("corgi") / "data" / "digits.csv.gz"
    return np.loadtxt(io.BytesIO(gzip.decompress(source.read_bytes())), delimiter=",")


def sorted_rows(table: np.ndarray) -> np.ndarray:
    return table[np.lexsort(table.T[::-1])]


# ---------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_ranges():
    ds = load_digits()
    assert isinstance(ds, Dataset)
    assert ds.image_shape == (8, 8) and ds.classes == 10
    for images, labels in ((ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)):
        assert images.dtype == np.float64 and labels.dtype == np.int64
        assert images.ndim == 2 and images.shape[1] == 64
        assert labels.shape == (len(images),)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert set(np.unique(labels)) == set(range(10))
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    # Pixels are exactly k/16: the scaling is /16, not /max or standardisation.
    all_images = np.concatenate([ds.train_images, ds.test_images])
    assert np.array_equal(all_images * 16, np.round(all_images * 16))
    assert all_images.max() == 1.0 and all_images.min() == 0.0


def test_digits_label_counts_and_stratification():
    ds = load_digits(test_fraction=0.2)
    train_counts = np.bincount(ds.train_labels, minlength=10)
    test_counts = np.bincount(ds.test_labels, minlength=10)
    assert (train_counts + test_counts).tolist() == DIGIT_CLASS_COUNTS
    assert int((train_counts + test_counts).sum()) == 1797
    assert test_counts.tolist() == [round(0.2 * n) for n in DIGIT_CLASS_COUNTS]


def test_digits_split_is_a_partition_of_the_file():
    ds = load_digits(seed=3)
    rebuilt = np.concatenate([
        np.column_stack([ds.train_images * 16, ds.train_labels]),
        np.column_stack([ds.test_images * 16, ds.test_labels]),
    ])
    # Every source row appears exactly once across train and test (as a multiset).
    assert np.array_equal(sorted_rows(np.round(rebuilt)), sorted_rows(raw_digits()))


def test_stratified_split_indices_are_disjoint_and_complete():
    labels = np.repeat(np.arange(10), 17)
    train, test = _stratified_split(labels, 0.25, np.random.default_rng(0))
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    assert np.bincount(labels[test]).tolist() == [4] * 10  # round(0.25 * 17)
    # Neither split should come back grouped by class.
    assert not np.all(np.diff(labels[train]) >= 0)


def test_digits_same_seed_same_split():
    a, b = load_digits(seed=7), load_digits(seed=7)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(a, field), getattr(b, field))


def test_digits_different_seeds_differ():
    a, b = load_digits(seed=0), load_digits(seed=1)
    assert not np.array_equal(a.test_images, b.test_images)
    assert not np.array_equal(a.train_labels, b.train_labels)


def test_digits_unflattened_and_fraction_options():
    flat, square = load_digits(seed=2), load_digits(seed=2, flatten=False)
    assert square.train_images.shape == (len(flat.train_images), 8, 8)
    assert np.array_equal(square.train_images.reshape(-1, 64), flat.train_images)
    everything = load_digits(test_fraction=0.0)
    assert everything.test_images.shape == (0, 64) and len(everything.train_labels) == 1797
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            load_digits(test_fraction=bad)


def csv_gz(table: np.ndarray) -> bytes:
    return gzip.compress("\n".join(",".join(str(int(v)) for v in row) for row in table).encode())


@pytest.mark.parametrize("mutate, problem", [
    (lambda t: t[:, 1:], "columns"),
    (lambda t: t[:-1], "rows"),
    (lambda t: np.where(np.arange(65) == 64, 10, t), "labels"),
    (lambda t: np.where(np.arange(65) == 3, 17, t), "pixels"),
])
def test_digits_validation_names_file_and_problem(mutate, problem):
    with pytest.raises(ValueError, match=f"digits-test.csv.gz: .*{problem}"):
        _parse_digits(csv_gz(mutate(raw_digits())), "digits-test.csv.gz")


def test_digits_validation_rejects_garbage():
    with pytest.raises(ValueError, match="junk.csv.gz"):
        _parse_digits(b"not gzip at all", "junk.csv.gz")
    with pytest.raises(ValueError, match="ragged.csv.gz"):
        _parse_digits(gzip.compress(b"1,2,3\n1,2\n"), "ragged.csv.gz")


# ---------------------------------------------------------------- one_hot and batches


def test_one_hot():
    labels = np.array([3, 0, 9, 3])
    encoded = one_hot(labels)
    assert encoded.shape == (4, 10) and encoded.dtype == np.float64
    assert np.array_equal(encoded.sum(axis=1), np.ones(4))
    assert np.array_equal(encoded.argmax(axis=1), labels)
    assert encoded[0, 3] == 1.0 and encoded[0].sum() == 1.0
    small = one_hot(np.array([1, 0]), classes=2, dtype=np.float32)
    assert small.dtype == np.float32 and small.tolist() == [[0, 1], [1, 0]]
    assert one_hot(np.array([], dtype=np.int64)).shape == (0, 10)
    for bad in (np.array([10]), np.array([-1]), np.array([0.5]), np.array([[1]])):
        with pytest.raises(ValueError):
            one_hot(bad)


@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_batches_cover_every_example_once_per_epoch(n, batch_size):
    images = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    labels = np.arange(n)
    got = list(batches(images, labels, batch_size, np.random.default_rng(0)))
    sizes = [len(y) for _, y in got]
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    seen = np.concatenate([y for _, y in got])
    assert np.array_equal(np.sort(seen), labels)
    for x, y in got:  # images and labels stay paired
        assert np.array_equal(x, images[y])


def test_batches_shuffle_and_reproducibility():
    images, labels = np.zeros((50, 1)), np.arange(50)
    rng = np.random.default_rng(1)
    first = np.concatenate([y for _, y in batches(images, labels, 7, rng)])
    second = np.concatenate([y for _, y in batches(images, labels, 7, rng)])
    assert not np.array_equal(first, labels)  # shuffled
    assert not np.array_equal(first, second)  # the generator advances between epochs
    again = np.concatenate([y for _, y in batches(images, labels, 7, np.random.default_rng(1))])
    assert np.array_equal(first, again)
    with pytest.raises(ValueError):
        next(batches(images, labels[:-1], 7, rng))
    with pytest.raises(ValueError):
        next(batches(images, labels, 0, rng))


# ---------------------------------------------------------------- MNIST / IDX


def idx_bytes(array: np.ndarray, code: int = 0x08, dtype: str = ">u1") -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(dtype).tobytes()


def write(path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def fake_mnist(rng: np.random.Generator, n_train: int = 5, n_test: int = 3):
    train_x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    train_x[0, 0, 0], test_x[0, 0, 0] = 255, 0
    return train_x, np.array([5, 0, 4, 1, 9][:n_train]), test_x, np.array([7, 2, 1][:n_test])


def write_mnist(directory, suffix: str = "", arrays=None) -> tuple:
    arrays = arrays or fake_mnist(np.random.default_rng(0))
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for stem, array in zip(stems, arrays):
        write(directory / (stem + suffix), idx_bytes(array))
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist_plain_and_gzipped(tmp_path, suffix):
    train_x, train_y, test_x, test_y = write_mnist(tmp_path, suffix)
    ds = load_mnist(tmp_path)
    assert ds.image_shape == (28, 28) and ds.classes == 10
    assert ds.train_images.shape == (5, 784) and ds.test_images.shape == (3, 784)
    assert ds.train_images.dtype == np.float64 and ds.train_labels.dtype == np.int64
    assert np.allclose(ds.train_images, train_x.reshape(5, 784) / 255.0)
    assert np.allclose(ds.test_images, test_x.reshape(3, 784) / 255.0)
    assert ds.train_images[0, 0] == 1.0 and ds.test_images[0, 0] == 0.0
    assert ds.train_labels.tolist() == train_y.tolist()
    assert ds.test_labels.tolist() == test_y.tolist()


def test_load_mnist_mixed_compression_and_unflattened(tmp_path):
    _, _, test_x, _ = write_mnist(tmp_path)
    # Replace one file by its gzipped form: either spelling is accepted per file.
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(test_x))
    ds = load_mnist(str(tmp_path), flatten=False)
    assert ds.train_images.shape == (5, 28, 28)
    assert np.allclose(ds.test_images * 255.0, test_x)


def test_read_idx_other_types_big_endian(tmp_path):
    values = np.array([[1, -2, 70000], [2**31 - 1, 0, -(2**31)]], dtype=np.int32)
    write(tmp_path / "ints.idx", idx_bytes(values, code=0x0C, dtype=">i4"))
    got = read_idx(tmp_path / "ints.idx")
    assert got.dtype == np.int32 and np.array_equal(got, values)
    floats = np.array([0.5, -1.25, 3e10])
    write(tmp_path / "f.idx.gz", idx_bytes(floats, code=0x0E, dtype=">f8"))
    assert np.array_equal(read_idx(tmp_path / "f.idx.gz"), floats)
    got[0, 0] = 9  # returned arrays are writable copies


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(missing)


def test_missing_file_names_paths_tried(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in message
    assert "train-images" not in message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_bad_magic(tmp_path, suffix):
    write_mnist(tmp_path, suffix)
    name = "train-images-idx3-ubyte" + suffix
    write(tmp_path / name, b"\x12\x34" + idx_bytes(np.zeros((5, 28, 28)))[2:])
    with pytest.raises(ValueError, match=f"{name}: bad IDX magic"):
        load_mnist(tmp_path)


def test_wrong_dtype_code(tmp_path):
    arrays = write_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(arrays[1], code=0x0D, dtype=">f4"))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: expected 1-D unsigned bytes"):
        load_mnist(tmp_path)
    write(tmp_path / "odd", b"\x00\x00\x07\x01" + bytes(8))
    with pytest.raises(ValueError, match="odd: unknown IDX type code 0x07"):
        read_idx(tmp_path / "odd")


def test_truncated(tmp_path):
    write_mnist(tmp_path, ".gz")
    name = "t10k-images-idx3-ubyte.gz"
    data = idx_bytes(np.zeros((3, 28, 28)))
    write(tmp_path / name, data[:-10])
    with pytest.raises(ValueError, match=f"{name}: truncated"):
        load_mnist(tmp_path)
    write(tmp_path / name, data[:9])  # cut inside the dimension sizes
    with pytest.raises(ValueError, match=f"{name}: truncated header"):
        load_mnist(tmp_path)
    write(tmp_path / name, data + b"\x00")
    with pytest.raises(ValueError, match=f"{name}: trailing bytes"):
        load_mnist(tmp_path)
    (tmp_path / name).write_bytes(gzip.compress(data)[:-12])  # damaged gzip stream
    with pytest.raises(ValueError, match=name):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path):
    train_x, train_y, test_x, test_y = fake_mnist(np.random.default_rng(1))
    write_mnist(tmp_path, arrays=(train_x, train_y[:4], test_x, test_y))
    with pytest.raises(ValueError, match="5 images.*4 labels") as info:
        load_mnist(tmp_path)
    assert "train-images-idx3-ubyte" in str(info.value)
    assert "train-labels-idx1-ubyte" in str(info.value)


def test_label_out_of_range(tmp_path):
    train_x, train_y, test_x, _ = fake_mnist(np.random.default_rng(2))
    write_mnist(tmp_path, ".gz", arrays=(train_x, train_y, test_x, np.array([7, 10, 1])))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: labels must lie in 0..9"):
        load_mnist(tmp_path)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    train_x, train_y, _, test_y = fake_mnist(np.random.default_rng(3))
    write_mnist(tmp_path, arrays=(train_x, train_y, np.zeros((3, 20, 20), np.uint8), test_y))
    with pytest.raises(ValueError, match="test images"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------- hostile IDX headers


def header(code: int, dims) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_dimensions_whose_product_overflows_int64_name_the_file(tmp_path, suffix):
    # 2^32-1 cubed overflows a 64-bit product; the check works with Python integers
    path = tmp_path / ("huge-idx3-ubyte" + suffix)
    write(path, header(0x08, [2**32 - 1] * 3) + bytes(10))
    with pytest.raises(ValueError, match=f"{path.name}: the header declares shape \\(4294967295, 4294967295, "
                                          f"4294967295\\) of 1 byte each, {(2**32 - 1) ** 3} bytes, more than"):
        read_idx(path)


def test_255_dimensions_name_the_file(tmp_path):
    path = tmp_path / "many-idx"
    write(path, header(0x08, [1] * 255) + bytes(1))
    with pytest.raises(ValueError, match="many-idx: the header declares 255 dimensions; at most 32 are supported"):
        read_idx(path)
    short = tmp_path / "short-idx.gz"  # 255 dimensions announced, the header ends early
    write(short, bytes([0, 0, 0x08, 255]) + bytes(40))
    with pytest.raises(ValueError, match="short-idx.gz: the header declares 255 dimensions"):
        read_idx(short)


@pytest.mark.parametrize("shape, what", [((3, 0, 0), "3 images of 0x0 pixels"), ((0, 28, 28), "0 images of 28x28")])
def test_empty_images_are_refused_naming_the_file(tmp_path, shape, what):
    arrays = list(fake_mnist(np.random.default_rng(4)))
    arrays[2] = np.zeros(shape, np.uint8)
    arrays[3] = arrays[3][: shape[0]]
    write_mnist(tmp_path, ".gz", arrays=tuple(arrays))
    with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte.gz: holds {what}"):
        load_mnist(tmp_path)


def test_a_gzip_bomb_is_refused_after_its_header_without_inflating(tmp_path, monkeypatch):
    # 64 MiB of zeros behind a header that declares 2^40 bytes: the file is about 64 KiB
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    parts = [packer.compress(header(0x08, [2**20, 1024, 1024]))]
    block = bytes(1 << 20)
    parts += [packer.compress(block) for _ in range(64)]
    parts.append(packer.flush())
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 100_000
    inflated = []
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        data = real_read(self, size)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting_read)
    with pytest.raises(ValueError, match="bomb-idx3-ubyte.gz: the header declares shape \\(1048576, 1024, 1024\\)"):
        read_idx(path)
    assert sum(inflated) <= 16  # the 4-byte start and the 12 bytes of dimensions, nothing more
    # under the absolute bound, the file's own size still refuses it: deflate packs at most 1032:1
    with pytest.raises(ValueError, match="more than a gzip file of \\d+ bytes can hold"):
        read_idx(path, max_bytes=2**41)
    assert sum(inflated) <= 32


def test_a_gzip_file_that_inflates_to_more_than_its_header_says_stops_reading(tmp_path, monkeypatch):
    path = tmp_path / "long-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(header(0x08, [4]) + bytes(4) + bytes(1 << 20)))
    with pytest.raises(ValueError, match="long-idx1-ubyte.gz: trailing bytes after the 4 data bytes"):
        read_idx(path)


def test_max_bytes_bounds_what_a_plain_file_may_declare(tmp_path):
    path = tmp_path / "x-idx2-ubyte"
    write(path, header(0x08, [100, 100]) + bytes(10_000))
    assert read_idx(path, max_bytes=10_000).shape == (100, 100)
    with pytest.raises(ValueError, match="x-idx2-ubyte: .* 10000 bytes, more than the 9999 allowed"):
        read_idx(path, max_bytes=9_999)
    with pytest.raises(TypeError, match="read_idx: max_bytes must be a whole number"):
        read_idx(path, max_bytes=1e6)


# ---------------------------------------------------------------- the bundled MNIST digits


def published(readme: str, name: str) -> str:
    """The sha256 the data README gives for ``name`` ("images" or "labels")."""
    import re

    return re.search(rf"{name} `([0-9a-f]{{64}})`", readme).group(1)


def test_bundled_files_match_their_published_checksums():
    import hashlib

    folder = resources.files("corgi") / "data"
    readme = (folder / "README.md").read_text()
    for name, stem in (("images", "mnist10k-images-idx3-ubyte.gz"), ("labels", "mnist10k-labels-idx1-ubyte.gz")):
        assert hashlib.sha256((folder / stem).read_bytes()).hexdigest() == published(readme, name)
    digits = hashlib.sha256((folder / "digits.csv.gz").read_bytes()).hexdigest()
    assert f"`{digits}`" in readme


def test_mnist10k_split_shapes_and_class_counts():
    ds = load_mnist10k()
    assert ds.image_shape == (28, 28) and ds.classes == 10
    assert ds.train_images.shape == (8000, 784) and ds.test_images.shape == (2000, 784)
    assert ds.train_images.dtype == np.float64 and ds.train_labels.dtype == np.int64
    # per class, as the data's provenance note gives them
    counts = np.bincount(np.concatenate([ds.train_labels, ds.test_labels]), minlength=10)
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    held_out = np.bincount(ds.test_labels, minlength=10)
    assert held_out.min() >= 150  # every class is well represented in the held-out 2,000
    # pixels are bytes / 255, and the split is the files' order: the first 8,000, then the rest
    everything = np.concatenate([ds.train_images, ds.test_images]) * 255
    assert np.array_equal(everything, np.round(everything)) and everything.max() == 255
    folder = resources.files("corgi") / "data"
    with resources.as_file(folder / "mnist10k-images-idx3-ubyte.gz") as path:
        raw = read_idx(path)
    assert np.array_equal(raw[8000:].reshape(2000, 784), np.round(ds.test_images * 255))
    square = load_mnist10k(flatten=False)
    assert square.train_images.shape == (8000, 28, 28)
    assert np.array_equal(square.test_images.reshape(2000, 784), ds.test_images)
