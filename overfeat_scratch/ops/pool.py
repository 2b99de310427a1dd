"""Max pooling, forward and backward: the loops, then compiled loops (Numba).

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

import numba
import numpy as np

from ..common.checks import InputError, check_float_array, check_positive_int, conv_output_size
from .parallel import blocks, run_tiles


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
# 2. The NumPy backend: one compiled pass over the windows
#
# A strided view of all windows and one ``np.argmax`` (then ``take_along_axis``)
# reads every input several times; these loops (Numba) read each window once and
# keep the running maximum and its position. The 3x3 pools run a copy of the loop
# with the sizes fixed, which the compiler unrolls; the 2x2 pools (``mini``'s and
# the fast model's) compare the window as a tree, which it also turns into vector
# code; other sizes run the loop with run-time sizes. Every (image, channel) plane
# pools on its own, so the planes are shared among the package's worker threads in
# blocks (:mod:`.parallel`).
# ``cache=False``: nothing is written to disk.


@numba.njit(cache=False, nogil=True, inline="always")
def _max_pool_loop(x, kernel, stride, y, arg):
    n, c, ho, wo = y.shape
    for a in range(n):
        for ci in range(c):
            for i in range(ho):
                r0 = i * stride
                for j in range(wo):
                    c0 = j * stride
                    best = x[a, ci, r0, c0]
                    where = np.int32(0)
                    for u in range(kernel):
                        for v in range(kernel):
                            value = x[a, ci, r0 + u, c0 + v]
                            # np.argmax's rule: strictly greater wins, the first NaN wins.
                            take = (value > best) | ((value != value) & (best == best))
                            best = value if take else best
                            where = np.int32(u * kernel + v) if take else where
                    y[a, ci, i, j] = best
                    arg[a, ci, i, j] = where


@numba.njit(cache=False, nogil=True)
def _max_pool_any(x, kernel, stride, y, arg):
    _max_pool_loop(x, kernel, stride, y, arg)


@numba.njit(cache=False, nogil=True)
def _max_pool_2x2(x, kernel, stride, y, arg):
    """The 2x2, stride-2 pool as a tree: the winner of each row of the window, then
    the winner of the two rows. Its chains are two comparisons long instead of
    three, and the compiler turns it into vector code (2.1x faster than
    :func:`_max_pool_loop` on ``mini``'s pool1; written out, because the same tree
    through a small inlined helper ran 1.4x slower). It keeps np.argmax's rule: a
    row's winner is its first maximum (or first NaN), and the second row wins only if
    its winner is strictly greater (or the first NaN), so the first maximum of the
    four in reading order wins, as in the loop."""
    n, c, ho, wo = y.shape
    for a in range(n):
        for ci in range(c):
            for i in range(ho):
                top = x[a, ci, 2 * i]
                bottom = x[a, ci, 2 * i + 1]
                out = y[a, ci, i]
                where = arg[a, ci, i]
                for j in range(wo):
                    p, q = top[2 * j], top[2 * j + 1]
                    r, s = bottom[2 * j], bottom[2 * j + 1]
                    # each "take" is np.argmax's rule for a later value against an earlier one
                    take = (q > p) | ((q != q) & (p == p))
                    m0 = q if take else p
                    k0 = np.int32(1) if take else np.int32(0)
                    take = (s > r) | ((s != s) & (r == r))
                    m1 = s if take else r
                    k1 = np.int32(3) if take else np.int32(2)
                    take = (m1 > m0) | ((m1 != m1) & (m0 == m0))
                    out[j] = m1 if take else m0
                    where[j] = k1 if take else k0


@numba.njit(cache=False, nogil=True)
def _max_pool_3x3(x, kernel, stride, y, arg):
    _max_pool_loop(x, 3, 3, y, arg)


# (kernel, stride) -> a loop compiled for those sizes.
_MAX_POOL_LOOPS = {(2, 2): _max_pool_2x2, (3, 3): _max_pool_3x3}


@numba.njit(cache=False, nogil=True)
def _max_pool_backward_kernel(dy, arg, kernel, stride, dx):
    """Add each gradient to its window's winner; zeroes each plane of ``dx`` first
    (in the worker that fills it, so the plane is in its cache)."""
    n, c, ho, wo = dy.shape
    for a in range(n):
        for ci in range(c):
            dx[a, ci] = 0
            for i in range(ho):
                for j in range(wo):
                    where = arg[a, ci, i, j]
                    u, v = where // kernel, where % kernel
                    dx[a, ci, i * stride + u, j * stride + v] += dy[a, ci, i, j]


@numba.njit(cache=False, nogil=True)
def _max_pool_backward_2x2(dy, arg, kernel, stride, dx):
    """:func:`_max_pool_backward_kernel` for the 2x2, stride-2 pool, whose windows do
    not overlap: each input pixel is written once, with its window's gradient if it
    won the window and 0 if not, so no zeroing pass comes first (1.9x faster on
    ``mini``'s pool1). Rows and columns that no window covers (odd sizes) get 0."""
    n, c, ho, wo = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for a in range(n):
        for ci in range(c):
            for i in range(ho):
                grad = dy[a, ci, i]
                where = arg[a, ci, i]
                top = dx[a, ci, 2 * i]
                bottom = dx[a, ci, 2 * i + 1]
                for j in range(wo):
                    g, k = grad[j], where[j]
                    top[2 * j] = g if k == 0 else 0
                    top[2 * j + 1] = g if k == 1 else 0
                    bottom[2 * j] = g if k == 2 else 0
                    bottom[2 * j + 1] = g if k == 3 else 0
                for col in range(2 * wo, w):
                    top[col] = 0
                    bottom[col] = 0
            for row in range(2 * ho, h):
                dx[a, ci, row] = 0


# Planes (image, channel) per tile of work for the worker threads, at least; and the
# fewest input numbers worth a tile (a small pool is done before a second worker
# would have started).
PLANES_PER_TILE = 64
MIN_TILE_ELEMENTS = 1 << 18


def as_planes(a):
    """``(N, C, H, W)`` as ``(N*C, 1, H, W)``: each plane pools on its own."""
    n, c, h, w = a.shape
    return np.ascontiguousarray(a).reshape(n * c, 1, h, w)


def plane_tiles(x_shape):
    """Blocks ``(start, stop)`` of the planes of an input of ``x_shape``: no more
    tiles than the input has ``MIN_TILE_ELEMENTS`` numbers (at least one), and none
    of fewer than ``PLANES_PER_TILE`` planes unless the input has fewer."""
    n, c, h, w = x_shape
    size = max(PLANES_PER_TILE, -(-(n * c) // max(1, n * c * h * w // MIN_TILE_ELEMENTS)))
    return blocks(n * c, size)


def max_pool2d_forward(x, kernel, stride=None):
    """Max pooling; returns ``(y, arg)`` as :func:`max_pool2d_naive` does."""
    kernel, stride, ho, wo = check_pool_args(x, kernel, stride)
    n, c, _, _ = x.shape
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    arg = np.empty((n, c, ho, wo), dtype=np.int32)
    loop = _MAX_POOL_LOOPS.get((kernel, stride), _max_pool_any)
    planes, y_planes, arg_planes = as_planes(x), as_planes(y), as_planes(arg)

    def job(tile):
        p0, p1 = tile
        loop(planes[p0:p1], kernel, stride, y_planes[p0:p1], arg_planes[p0:p1])

    run_tiles(job, plane_tiles(x.shape))
    return y, arg


def max_pool2d_backward(dy, arg, x_shape, kernel, stride=None):
    """Gradient of :func:`max_pool2d_forward`.

    One pass over the outputs, each adding its gradient to the input that won its
    window (where overlapping windows share a winner, the gradients add).
    """
    check_float_array(dy, "max_pool2d output gradient dy", ndim=4)
    stride = kernel if stride is None else stride
    if tuple(arg.shape) != tuple(dy.shape):
        raise InputError(f"max_pool2d backward: arg shape {arg.shape} != dy shape {dy.shape}")
    # The compiled loop does not check bounds: check that every write lands in dx.
    n, c, ho, wo = dy.shape
    x_shape = tuple(int(d) for d in x_shape)
    need = (n, c, (ho - 1) * stride + kernel, (wo - 1) * stride + kernel)
    if (
        len(x_shape) != 4
        or x_shape[:2] != need[:2]
        or any(have < want for have, want in zip(x_shape[2:], need[2:], strict=True))
    ):
        raise InputError(
            f"max_pool2d backward: input shape {x_shape} cannot give output {dy.shape} "
            f"with kernel {kernel} and stride {stride}"
        )
    if arg.size and (arg.min() < 0 or arg.max() >= kernel * kernel):
        raise InputError(f"max_pool2d backward: arg must lie in [0, {kernel * kernel})")
    dx = np.empty(x_shape, dtype=dy.dtype)
    dy_planes, arg_planes, dx_planes = as_planes(dy), as_planes(arg), as_planes(dx)

    loop = _max_pool_backward_2x2 if (kernel, stride) == (2, 2) else _max_pool_backward_kernel

    def job(tile):
        p0, p1 = tile
        loop(dy_planes[p0:p1], arg_planes[p0:p1], kernel, stride, dx_planes[p0:p1])

    run_tiles(job, plane_tiles(x_shape))
    return dx
