"""Offset max pooling and interleaving on the GPU, matching :mod:`overfeat_scratch.ops.offset_pool`.

Shapes (``s`` the pool stride, ``k`` its kernel):

- :func:`offset_max_pool2d`: ``x: (N, C, H, W) -> y: (s, s, N, C, Hq, Wq)``,
  ``Hq = (H - k) // s + 1``; ``y[dy, dx, n, c, i, j]`` is the maximum of the
  ``k x k`` window at row ``dy + s*i``, column ``dx + s*j``, or 0 where that
  window runs past the map (those entries are never read).
- :func:`interleave_offsets`: ``y: (s, s, N, C, Ho, Wo) -> (N, C, Hf, Wf)`` with
  ``fine[n, c, p, q] = y[p % s, q % s, n, c, p // s, q // s]``.

Both kernels run one thread per element of what they write, on a 1-D grid in C
order: each output element is written exactly once, and consecutive threads write
consecutive addresses (coalesced stores). Offset pooling reads each input element
about ``(k/s)^2 * s^2 = k^2`` times, from neighbouring threads, so the reads hit
the cache; interleaving is a pure gather.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..ops.offset_pool import check_interleave_args, check_offset_args
from . import THREADS, as_device, blocks_for, check_out, unravel4


@cuda.jit
def offset_max_pool_kernel(x, y, kernel, stride):
    """One thread per ``(dy, dx, n, c, i, j)``: the max of one window, or 0 past the map."""
    index = cuda.grid(1)
    _, _, _, chans, hq, wq = y.shape
    height, width = x.shape[2], x.shape[3]
    if index < y.size:
        # (dy, dx, n) flattened into one leading index, then split.
        lead, c, i, j = unravel4(index, chans, hq, wq)
        n = lead % x.shape[0]
        offset = lead // x.shape[0]
        dy, dx = offset // stride, offset % stride
        h0, w0 = dy + i * stride, dx + j * stride
        if h0 + kernel > height or w0 + kernel > width:
            y[dy, dx, n, c, i, j] = 0.0
        else:
            best = x[n, c, h0, w0]
            for u in range(kernel):
                for v in range(kernel):
                    value = x[n, c, h0 + u, w0 + v]
                    if value > best:
                        best = value
            y[dy, dx, n, c, i, j] = best


@cuda.jit
def interleave_kernel(y, fine):
    """One thread per fine output ``(n, c, p, q)``: gather from offset ``(p % s, q % s)``."""
    index = cuda.grid(1)
    s = y.shape[0]
    _, chans, fh, fw = fine.shape
    if index < fine.size:
        n, c, p, q = unravel4(index, chans, fh, fw)
        fine[n, c, p, q] = y[p % s, q % s, n, c, p // s, q // s]


def offset_max_pool2d(x, kernel, stride=None, out=None):
    """All ``s*s`` offset poolings as one device array ``(s, s, N, C, Hq, Wq)``."""
    kernel, stride = check_offset_args(x, kernel, stride)
    x = as_device(x, "offset_max_pool2d x")
    n, c, h, w = x.shape
    shape = (stride, stride, n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
    y = check_out(out, shape, np.float32, "offset_max_pool2d")
    if y.size:
        offset_max_pool_kernel[blocks_for(y.size), THREADS](x, y, kernel, stride)
    return y


def interleave_offsets(y, fine_h: int, fine_w: int, out=None):
    """The ``(N, C, fine_h, fine_w)`` fine map from per-offset maps ``(s, s, N, C, Ho, Wo)``."""
    _, _, n, c, _, _ = check_interleave_args(y, fine_h, fine_w)
    y = as_device(y, "interleave_offsets y")
    fine = check_out(out, (n, c, fine_h, fine_w), np.float32, "interleave_offsets")
    if fine.size:
        interleave_kernel[blocks_for(fine.size), THREADS](y, fine)
    return fine
