"""ReLU and dropout, forward and backward.

ReLU: ``y = max(x, 0)``; its gradient passes where the output is positive.

Dropout (inverted): in training each element is kept with probability ``1 - p``
and scaled by ``1 / (1 - p)`` so that the expected output equals the input; in
evaluation it is the identity, so a trained network needs no rescaling.

The keep/drop decision for element ``i`` is a hash of ``(seed, i)``, not a draw
from a stateful generator: the NumPy and CUDA backends then drop exactly the same
elements for the same seed, and a run is reproducible from the seed alone.
The CUDA kernels are in :mod:`overfeat_scratch.cuda.activations`.
"""

from __future__ import annotations

import numba
import numpy as np

from ..common.checks import InputError, check_float_array
from .parallel import blocks, run_tiles

MASK32 = np.uint64(0xFFFFFFFF)


def relu_naive(x):
    """ReLU with a loop over the elements (the spec)."""
    y = np.empty_like(x)
    for i, v in enumerate(x.flat):
        y.flat[i] = v if v > 0 else 0
    return y


# Elements per tile when an elementwise pass is shared among the worker threads
# (:mod:`.parallel`); smaller arrays run in one piece.
ELEMENTS_PER_TILE = 1 << 18


def elementwise(job, size):
    """Run ``job(start, stop)`` over ``range(size)`` in tiles on the worker threads."""
    run_tiles(lambda tile: job(*tile), blocks(size, ELEMENTS_PER_TILE))


def relu_forward(x, inplace=False):
    """``y = max(x, 0)``; with ``inplace``, ``x`` itself is overwritten and returned."""
    check_float_array(x, "relu input x")
    y = x if inplace and x.flags.c_contiguous else np.empty_like(x, order="C")
    source, target = np.ascontiguousarray(x).reshape(-1), y.reshape(-1)
    zero = x.dtype.type(0)
    elementwise(lambda a, b: np.maximum(source[a:b], zero, out=target[a:b]), x.size)
    if inplace and y is not x:
        x[...] = y
        return x
    return y


@numba.njit(cache=False, nogil=True)
def _relu_backward_kernel(dy, y, dx):
    for i in range(dx.shape[0]):
        dx[i] = dy[i] if y[i] > 0 else 0


def relu_backward(dy, y):
    """``dx = dy`` where the output was positive, else 0 (the kink at 0 gets 0)."""
    dy, y = np.ascontiguousarray(dy), np.ascontiguousarray(y)
    dx = np.empty(np.broadcast_shapes(dy.shape, y.shape), dtype=np.result_type(dy, y))
    if dx.shape != dy.shape or dx.shape != y.shape or dx.dtype != dy.dtype:
        # Broadcasting or mixed types: the same rule in plain NumPy (a blocked
        # gradient is +0, even where dy is negative or NaN, as in the kernel).
        return np.where(y > 0, dy, dx.dtype.type(0)).astype(dx.dtype, copy=False)
    flat = dy.reshape(-1), y.reshape(-1), dx.reshape(-1)
    elementwise(lambda a, b: _relu_backward_kernel(*(v[a:b] for v in flat)), dx.size)
    return dx


def fmix32(h):
    """MurmurHash3's 32-bit finaliser on uint64 arrays holding 32-bit values."""
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & MASK32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & MASK32
    return h ^ (h >> np.uint64(16))


def dropout_threshold(p: float) -> int:
    """Elements whose 32-bit hash is below this are dropped (probability ``p``)."""
    return min(int(round(p * 2**32)), 2**32 - 1)


def seed_hash(seed: int) -> int:
    """The per-call key mixed into every element's hash."""
    return int(fmix32(np.uint64(seed & 0xFFFFFFFF) ^ np.uint64(0x2545F491)))


def dropout_keep_mask(size: int, p: float, seed: int):
    """``keep[i] = hash(seed, i) >= p * 2**32``, a uint8 array of ``size`` elements.

    ``hash(seed, i) = fmix32((i * 0x9E3779B9 + seed_hash(seed)) mod 2**32)``.
    """
    i = np.arange(size, dtype=np.uint64)
    h = fmix32((i * np.uint64(0x9E3779B9) + np.uint64(seed_hash(seed))) & MASK32)
    return (h >= np.uint64(dropout_threshold(p))).astype(np.uint8)


def check_dropout_p(p):
    if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
        raise InputError(f"dropout: expected a drop probability 0 <= p < 1, got {p!r}")
    return float(p)


def dropout_naive(x, p, seed):
    """Dropout with a loop over the elements (the spec); returns ``(y, keep)``."""
    p = check_dropout_p(p)
    keep = dropout_keep_mask(x.size, p, seed).reshape(x.shape)
    y = np.empty_like(x)
    for i in range(x.size):
        y.flat[i] = x.flat[i] / (1 - p) if keep.flat[i] else 0
    return y, keep


@numba.njit(cache=False, nogil=True)
def _dropout_kernel(x, y, keep, start, key, threshold, scale):
    """Elements ``start .. start + len(x)`` of the mask and the output: the hash of
    :func:`dropout_keep_mask` per element, and ``y = x * keep * scale`` in NumPy's
    order, so both are bit-identical to the NumPy expressions."""
    for k in range(x.size):
        h = ((start + k) * 0x9E3779B9 + key) & 0xFFFFFFFF
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        h ^= h >> 16
        kept = 1 if h >= threshold else 0
        keep[k] = kept
        y[k] = x[k] * x.dtype.type(kept) * scale


def dropout_forward(x, p, seed):
    """Training-mode dropout; returns ``(y, keep)`` with ``keep`` a uint8 mask.

    The mask is :func:`dropout_keep_mask`'s, computed per element in compiled code
    on the worker threads (NumPy's version builds five uint64 temporaries per
    element: about 10 ns an element, against well under 1 ns here).
    """
    check_float_array(x, "dropout input x")
    p = check_dropout_p(p)
    source = np.ascontiguousarray(x).reshape(-1)
    y, keep = np.empty_like(source), np.empty(source.size, np.uint8)
    key, threshold = np.uint64(seed_hash(seed)), np.uint64(dropout_threshold(p))
    scale = x.dtype.type(1.0 / (1.0 - p))
    elementwise(
        lambda a, b: _dropout_kernel(
            source[a:b], y[a:b], keep[a:b], np.uint64(a), key, threshold, scale
        ),
        source.size,
    )
    return y.reshape(x.shape), keep.reshape(x.shape)


def dropout_backward(dy, keep, p):
    """The gradient flows through kept elements, scaled like the forward pass."""
    return dy * keep * dy.dtype.type(1.0 / (1.0 - p))
