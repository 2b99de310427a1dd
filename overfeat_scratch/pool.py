"""Max pooling, forward and backward: the loops, then strided views.

    y[n, c, i, j] = max_{u, v < k} x[n, c, s*i + u, s*j + v]

OverFeat's pools are non-overlapping (``s == k``); overlapping pools (``s < k``)
work too. Trailing rows and columns that do not fill a window are dropped
("floor" mode), as in the released networks.

Each output also records *which* input won: ``arg[n, c, i, j] = u*k + v``, the
position of the maximum inside its window (the first one, in row-major order,
when several are equal). The backward pass sends each gradient to that one input;
where overlapping windows share a winner, their gradients add.

Shapes: ``x: (N, C, H, W)``, ``y, arg: (N, C, Ho, Wo)``, ``Ho = (H - k) // s + 1``.
The CUDA kernels are in :mod:`overfeat_scratch.cuda.pool`.
"""

from __future__ import annotations

import numpy as np

from .checks import check_float_array, check_positive_int, conv_output_size
from .conv import window_view


def check_pool_args(x, kernel, stride):
    """Validate max-pool arguments; return ``(kernel, stride, Ho, Wo)``."""
    check_float_array(x, "max_pool2d input x", ndim=4)
    kernel = check_positive_int(kernel, "max_pool2d kernel")
    stride = check_positive_int(kernel if stride is None else stride, "max_pool2d stride")
    ho = conv_output_size(x.shape[2], kernel, stride, 0, "max_pool2d height")
    wo = conv_output_size(x.shape[3], kernel, stride, 0, "max_pool2d width")
    return kernel, stride, ho, wo


# --------------------------------------------------------------------------------------
# 1. The reference: loops


def max_pool2d_naive(x, kernel, stride=None):
    """Max pooling with loops; returns ``(y, arg)``."""
    kernel, stride, ho, wo = check_pool_args(x, kernel, stride)
    n, c, _, _ = x.shape
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    arg = np.empty((n, c, ho, wo), dtype=np.int32)
    for i_n in range(n):
        for i_c in range(c):
            for i in range(ho):
                for j in range(wo):
                    rows = slice(i * stride, i * stride + kernel)
                    cols = slice(j * stride, j * stride + kernel)
                    window = x[i_n, i_c, rows, cols]
                    best = int(np.argmax(window))  # first maximum in row-major order
                    arg[i_n, i_c, i, j] = best
                    y[i_n, i_c, i, j] = window.flat[best]
    return y, arg


def max_pool2d_backward_naive(dy, arg, x_shape, kernel, stride=None):
    """Route each output gradient to the input that won its window."""
    stride = kernel if stride is None else stride
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n, c, ho, wo = dy.shape
    for i_n in range(n):
        for i_c in range(c):
            for i in range(ho):
                for j in range(wo):
                    u, v = divmod(int(arg[i_n, i_c, i, j]), kernel)
                    dx[i_n, i_c, i * stride + u, j * stride + v] += dy[i_n, i_c, i, j]
    return dx


# --------------------------------------------------------------------------------------
# 2. The NumPy backend: a strided view of all windows, one argmax


def max_pool2d_forward(x, kernel, stride=None):
    """Max pooling; returns ``(y, arg)`` as :func:`max_pool2d_naive` does."""
    kernel, stride, ho, wo = check_pool_args(x, kernel, stride)
    n, c, _, _ = x.shape
    view = window_view(x, kernel, kernel, stride, ho, wo)  # (N, C, k, k, Ho, Wo)
    windows = view.reshape(n, c, kernel * kernel, ho, wo)
    arg = np.argmax(windows, axis=2).astype(np.int32)
    y = np.take_along_axis(windows, arg[:, :, None], axis=2)[:, :, 0]
    return y, arg


def max_pool2d_backward(dy, arg, x_shape, kernel, stride=None):
    """Gradient of :func:`max_pool2d_forward`.

    Loops over the ``k*k`` window positions (4 or 9 in OverFeat), each a masked
    strided add, instead of a scatter over every element.
    """
    check_float_array(dy, "max_pool2d output gradient dy", ndim=4)
    stride = kernel if stride is None else stride
    if tuple(arg.shape) != tuple(dy.shape):
        raise ValueError(f"max_pool2d backward: arg shape {arg.shape} != dy shape {dy.shape}")
    dx = np.zeros(x_shape, dtype=dy.dtype)
    _, _, ho, wo = dy.shape
    for u in range(kernel):
        for v in range(kernel):
            rows = slice(u, u + stride * (ho - 1) + 1, stride)
            cols = slice(v, v + stride * (wo - 1) + 1, stride)
            dx[:, :, rows, cols] += np.where(arg == u * kernel + v, dy, 0)
    return dx
