"""Tests for corgi.datasets: the bundled digits, the split, batching and the MNIST IDX reader."""

import gzip
import io
from importlib import resources

import numpy as np
import pytest

from corgi.datasets import (
    Dataset, _parse_digits, _stratified_split, batches, load_digits, load_mnist, one_hot,
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
    train_x, _, test_x, _ = write_mnist(tmp_path)
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
    train_x, train_y, test_x, test_y = fake_mnist(np.random.default_rng(2))
    write_mnist(tmp_path, ".gz", arrays=(train_x, train_y, test_x, np.array([7, 10, 1])))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: labels must lie in 0..9"):
        load_mnist(tmp_path)


def test_train_and_test_image_sizes_must_agree(tmp_path):
    train_x, train_y, _, test_y = fake_mnist(np.random.default_rng(3))
    write_mnist(tmp_path, arrays=(train_x, train_y, np.zeros((3, 20, 20), np.uint8), test_y))
    with pytest.raises(ValueError, match="test images"):
        load_mnist(tmp_path)
