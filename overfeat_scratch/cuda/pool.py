"""Max pooling on the GPU, forward and backward, matching :mod:`overfeat_scratch.ops.pool`.

Shapes: ``x: (N, C, H, W)``, ``y, arg: (N, C, Ho, Wo)`` with ``Ho = (H - k) // s + 1``;
``arg[n, c, i, j] = u*k + v`` is the winner's position inside its window (int32),
the first maximum in row-major order, exactly as ``np.argmax`` picks it (a NaN wins,
the first one, as in NumPy).

Both kernels use one thread per element of what they write, on a 1-D grid in C
order, so each element is written once and neighbouring threads touch
neighbouring memory.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32

from ..common.checks import InputError, check_float_array
from ..ops.pool import check_pool_args
from . import THREADS, as_device, blocks_for, check_out, kernel_jit, unravel4


@cuda.jit
def max_pool_forward_kernel(x, y, arg, kernel, stride):
    """One thread per output ``(n, c, i, j)``: scan its ``k x k`` window in row-major order."""
    index = cuda.grid(1)
    _, chans, ho, wo = y.shape
    if index < y.size:
        n, c, i, j = unravel4(index, chans, ho, wo)
        h0, w0 = i * stride, j * stride
        best = x[n, c, h0, w0]
        best_at = 0
        for u in range(kernel):
            for v in range(kernel):
                value = x[n, c, h0 + u, w0 + v]
                # Strictly greater keeps the first maximum; a NaN beats any number
                # (but not an earlier NaN), as in np.argmax.
                if value > best or (value != value and best == best):
                    best = value
                    best_at = u * kernel + v
        y[n, c, i, j] = best
        arg[n, c, i, j] = best_at


@kernel_jit(THREADS, 80)  # 3 blocks per SM: 37.5% occupancy
def max_pool_backward_kernel(dy, arg, dx, kernel, stride):
    """One thread per input ``(n, c, h, w)``: gather, no atomics.

    The thread visits every window that contains its pixel, ``(i, j)`` with
    ``s*i <= h < s*i + k``, and adds ``dy[n, c, i, j]`` where that window's winner
    is this pixel. Overlapping pools (``s < k``) work the same way. The windows are
    visited in output order, the order in which the NumPy backend's loop adds them.
    """
    index = cuda.grid(1)
    _, chans, height, width = dx.shape
    _, _, ho, wo = dy.shape
    if index < dx.size:
        n, c, h, w = unravel4(index, chans, height, width)
        # First and last window along each axis that covers this pixel.
        i_first = 0 if h < kernel else (h - kernel + stride) // stride
        j_first = 0 if w < kernel else (w - kernel + stride) // stride
        i_last = min(ho - 1, h // stride)
        j_last = min(wo - 1, w // stride)
        total = float32(0)
        for i in range(i_first, i_last + 1):
            for j in range(j_first, j_last + 1):
                if arg[n, c, i, j] == (h - i * stride) * kernel + (w - j * stride):
                    total += dy[n, c, i, j]
        dx[n, c, h, w] = total


def max_pool2d_forward(x, kernel, stride=None, out=None):
    """Max pooling; returns device arrays ``(y, arg)``. ``out``: optional ``(y, arg)``."""
    kernel, stride, ho, wo = check_pool_args(x, kernel, stride)
    x = as_device(x, "max_pool2d x")
    shape = (x.shape[0], x.shape[1], ho, wo)
    out = (None, None) if out is None else out
    y = check_out(out[0], shape, np.float32, "max_pool2d_forward y")
    arg = check_out(out[1], shape, np.int32, "max_pool2d_forward arg")
    if y.size:
        max_pool_forward_kernel[blocks_for(y.size), THREADS](x, y, arg, kernel, stride)
    return y, arg


def max_pool2d_backward(dy, arg, x_shape, kernel, stride=None, out=None):
    """Gradient of :func:`max_pool2d_forward`: a device array of shape ``x_shape``."""
    check_float_array(dy, "max_pool2d output gradient dy", ndim=4)
    stride = kernel if stride is None else stride
    if tuple(arg.shape) != tuple(dy.shape):
        raise InputError(f"max_pool2d backward: arg shape {arg.shape} != dy shape {dy.shape}")
    dy = as_device(dy, "max_pool2d dy")
    arg = as_device(arg, "max_pool2d arg", dtype=np.int32)
    dx = check_out(out, x_shape, np.float32, "max_pool2d_backward")
    if dx.size:
        max_pool_backward_kernel[blocks_for(dx.size), THREADS](dy, arg, dx, kernel, stride)
    return dx
