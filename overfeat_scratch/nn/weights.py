"""The authors' released weight files, and their preprocessing.

``net_weight_0`` (fast) and ``net_weight_1`` (accurate) are raw little-endian
float32 with no header. For each convolution or fully connected layer in order:
the weights as ``(out, in, kh, kw)``, then the bias ``(out,)``. Fully connected
layers are stored as the convolutions they are (``kh = kw = 6`` for the fast
model's layer 6, 5 for the accurate model's layer 7, then 1), which is exactly the
shape of :class:`~overfeat_scratch.nn.layers.FullyConnected`'s weight, so every
tensor lands in its layer without reshaping.

The files are not distributed with this project; :func:`save_released_weights`
writes a network in the same layout (the tests use it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..common.checks import InputError
from ..common.fileio import atomic_write
from . import paper
from .layers import Sequential
from .networks import build_network

FILE_NAMES = {"fast": "net_weight_0", "accurate": "net_weight_1"}
_DTYPE = np.dtype("<f4")


def load_released_weights(path, model: str, backend="numpy") -> Sequential:
    """The ``model`` network (``"fast"`` or ``"accurate"``) with the weights in ``path``.

    The file's size must be exactly the network's parameter count times 4 bytes;
    anything else (a truncated download, the other model's file) is a
    ``ValueError`` stating the expected and the actual number of floats.
    """
    path = Path(path)
    net = build_network(model, seed=None)
    expected = net.num_parameters()
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    size = os.path.getsize(path)
    if size != expected * _DTYPE.itemsize:
        other = {v: k for k, v in paper.PARAMETERS.items()}.get(size // 4)
        hint = f" (that is the {other} model's size)" if other and other != model else ""
        raise InputError(
            f"weight file {path}: expected {expected:,} float32 values "
            f"({expected * 4:,} bytes) for the {model} model, found {size / 4:,.2f} "
            f"floats ({size:,} bytes){hint}"
        )
    flat = np.memmap(path, dtype=_DTYPE, mode="r")
    offset = 0
    state = {}
    for name, layer, key in net.named_parameters():
        shape = layer.params[key].shape
        count = int(np.prod(shape))
        state[name] = np.asarray(flat[offset : offset + count], dtype=np.float32).reshape(shape)
        offset += count
    del flat
    bad = [name for name, value in state.items() if not np.isfinite(value).all()]
    if bad:
        raise InputError(f"weight file {path}: NaN or infinite values in {', '.join(bad)}")
    net.load_state_dict(state)
    return net.to(backend) if backend != "numpy" else net


def save_released_weights(net: Sequential, path) -> Path:
    """Write ``net``'s parameters in the released layout (atomically)."""
    state = net.state_dict()

    def write(f):
        for name, _, _ in net.named_parameters():
            f.write(np.ascontiguousarray(state[name], dtype=_DTYPE).tobytes())

    return atomic_write(path, write)


def preprocess(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` RGB image in 0..255 to the ``(1, 3, H, W)`` float32 input.

    The released networks subtract one scalar mean and divide by one scalar
    standard deviation for all three channels.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"preprocess: expected an (H, W, 3) RGB image, got shape {image.shape}")
    x = (image.astype(np.float32) - np.float32(paper.PIXEL_MEAN)) / np.float32(paper.PIXEL_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
