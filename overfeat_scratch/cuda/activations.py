"""ReLU and dropout on the GPU, matching :mod:`overfeat_scratch.ops.activations`.

Every kernel here is one thread per element on a 1-D grid over the flattened
(C-contiguous) array, each element read and written once. Shapes are whatever the
layer passes (``(N, C, H, W)`` or ``(N, D)``); the wrappers flatten and restore them.

Dropout's keep mask is not drawn from a random generator: element ``i`` is kept
when a hash of ``(seed, i)`` is at least ``p * 2**32``, the same hash as
:func:`overfeat_scratch.ops.activations.dropout_keep_mask`, so the NumPy and CUDA
backends drop exactly the same elements for the same seed.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, uint64

from ..common.checks import InputError, check_float_array
from ..ops.activations import check_dropout_p, dropout_threshold, seed_hash
from . import THREADS, as_device, blocks_for, check_out

# The hash works on 32-bit values held in uint64, as in the NumPy version: every
# constant is a uint64 so that Numba never mixes signed and unsigned integers
# (which it would do in float64).
MASK32 = np.uint64(0xFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B9)
MIX1 = np.uint64(0x85EBCA6B)
MIX2 = np.uint64(0xC2B2AE35)
SHIFT16 = np.uint64(16)
SHIFT13 = np.uint64(13)


@cuda.jit(device=True)
def fmix32(h):
    """MurmurHash3's 32-bit finaliser, as :func:`overfeat_scratch.ops.activations.fmix32`."""
    h ^= h >> SHIFT16
    h = (h * MIX1) & MASK32
    h ^= h >> SHIFT13
    h = (h * MIX2) & MASK32
    return h ^ (h >> SHIFT16)


@cuda.jit
def relu_forward_kernel(x, y):
    """``y[i] = max(x[i], 0)``; a NaN stays NaN, as with ``np.maximum``."""
    i = cuda.grid(1)
    if i < x.size:
        value = x[i]
        y[i] = float32(0) if value <= 0 else value


@cuda.jit
def relu_backward_kernel(dy, y, dx):
    """``dx[i] = dy[i]`` where the output was positive, else 0."""
    i = cuda.grid(1)
    if i < dy.size:
        dx[i] = dy[i] if y[i] > 0 else float32(0)


@cuda.jit
def dropout_forward_kernel(x, y, keep, key, threshold, scale):
    """``keep[i] = hash(seed, i) >= threshold``; ``y[i] = x[i] * keep[i] * scale``.

    ``key = seed_hash(seed)``. The multiplications are NumPy's, in NumPy's order,
    so ``y`` is bit-identical to the NumPy backend's.
    """
    i = cuda.grid(1)
    if i < x.size:
        h = fmix32((uint64(i) * GOLDEN + key) & MASK32)
        kept = 1 if h >= threshold else 0
        keep[i] = kept
        y[i] = x[i] * float32(kept) * scale


@cuda.jit
def dropout_backward_kernel(dy, keep, dx, scale):
    """``dx[i] = dy[i] * keep[i] * scale``."""
    i = cuda.grid(1)
    if i < dy.size:
        dx[i] = dy[i] * float32(keep[i]) * scale


def flat(array):
    """A 1-D view of a contiguous device array."""
    return array.reshape(array.size)


def relu_forward(x, out=None):
    check_float_array(x, "relu input x")
    x = as_device(x, "relu x")
    y = check_out(out, x.shape, np.float32, "relu_forward")
    if x.size:
        relu_forward_kernel[blocks_for(x.size), THREADS](flat(x), flat(y))
    return y


def relu_backward(dy, y, out=None):
    check_float_array(dy, "relu output gradient dy")
    if tuple(dy.shape) != tuple(y.shape):
        raise InputError(f"relu backward: dy shape {dy.shape} != y shape {y.shape}")
    dy, y = as_device(dy, "relu dy"), as_device(y, "relu y")
    dx = check_out(out, dy.shape, np.float32, "relu_backward")
    if dy.size:
        relu_backward_kernel[blocks_for(dy.size), THREADS](flat(dy), flat(y), flat(dx))
    return dx


def dropout_forward(x, p, seed, out=None):
    """Training-mode dropout; returns device arrays ``(y, keep)``, ``keep`` uint8."""
    check_float_array(x, "dropout input x")
    p = check_dropout_p(p)
    x = as_device(x, "dropout x")
    out = (None, None) if out is None else out
    y = check_out(out[0], x.shape, np.float32, "dropout_forward y")
    keep = check_out(out[1], x.shape, np.uint8, "dropout_forward keep")
    if x.size:
        dropout_forward_kernel[blocks_for(x.size), THREADS](
            flat(x),
            flat(y),
            flat(keep),
            np.uint64(seed_hash(seed)),
            np.uint64(dropout_threshold(p)),
            np.float32(1.0 / (1.0 - p)),
        )
    return y, keep


def dropout_backward(dy, keep, p, out=None):
    """The gradient flows through kept elements, scaled like the forward pass."""
    check_float_array(dy, "dropout output gradient dy")
    p = check_dropout_p(p)
    if tuple(dy.shape) != tuple(keep.shape):
        raise InputError(f"dropout backward: dy shape {dy.shape} != keep shape {keep.shape}")
    dy, keep = as_device(dy, "dropout dy"), as_device(keep, "dropout keep", dtype=np.uint8)
    dx = check_out(out, dy.shape, np.float32, "dropout_backward")
    if dy.size:
        dropout_backward_kernel[blocks_for(dy.size), THREADS](
            flat(dy), flat(keep), flat(dx), np.float32(1.0 / (1.0 - p))
        )
    return dx
