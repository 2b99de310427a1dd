"""Offset max pooling: the paper's "fine stride" trick (Fig. 3).

The last pooling layer (3x3, stride 3 in the accurate model) throws away where in
its window the maximum was, so neighbouring outputs of the network are 36 pixels
apart. Pooling the unpooled layer-5 map again at every pixel offset
``(dy, dx) in {0, .., s-1}^2`` gives ``s*s`` pooled maps; sliding the classifier
over each and interleaving the ``s*s`` output maps gives one map with ``s`` times
the resolution: outputs 12 pixels apart.

Shapes (``s`` the pool stride, ``k`` its kernel; OverFeat has ``k == s``):

- :func:`offset_max_pool2d`: ``x: (N, C, H, W) -> (s, s, N, C, Hq, Wq)`` with
  ``Hq = (H - k) // s + 1`` (the size at offset 0, the largest).
  Offset ``dy`` pools rows ``dy + s*i .. dy + s*i + k - 1``; where that runs past
  the map (or at offsets that leave less than one window), the entry is 0 and is
  never read (see below).
- :func:`interleave_offsets`: ``(s, s, N, C, Ho, Wo) -> (N, C, Hf, Wf)`` with
  ``fine[..., s*i + dy, s*j + dx] = out[dy, dx, ..., i, j]``.

Which fine positions exist: the classifier (window ``kc`` pooled cells, stride 1)
at fine row ``p = s*i + dy`` reads unpooled rows ``p .. p + s*(kc-1) + k - 1``, so
the valid rows are exactly ``p = 0 .. H - s*(kc-1) - k``: a contiguous range,
``Hf = H - s*(kc - 1) - k + 1`` (:func:`fine_size`). The accurate model at scale 1
has ``H = 17``, ``kc = 5``, ``s = k = 3``: ``Hf = 3``, as in Table 5.

The CUDA kernels are in :mod:`overfeat_scratch.cuda.offset_pool`.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError, check_float_array, check_positive_int
from .pool import max_pool2d_forward, max_pool2d_naive


def fine_size(side: int, kernel: int, stride: int, classifier_window: int) -> int:
    """Number of fine output rows for an unpooled side ``side`` (see the module text)."""
    size = side - stride * (classifier_window - 1) - kernel + 1
    if size < 1:
        raise InputError(
            f"offset pooling: an unpooled map of side {side} is too small for a "
            f"{kernel}x{kernel}/{stride} pool followed by a {classifier_window}-cell classifier; "
            f"expected at least {stride * (classifier_window - 1) + kernel}"
        )
    return size


def check_offset_args(x, kernel, stride):
    check_float_array(x, "offset_max_pool2d input x", ndim=4)
    kernel = check_positive_int(kernel, "offset_max_pool2d kernel")
    stride = check_positive_int(kernel if stride is None else stride, "offset_max_pool2d stride")
    if x.shape[2] < kernel or x.shape[3] < kernel:
        raise InputError(
            f"offset_max_pool2d: input {x.shape[2]}x{x.shape[3]} is smaller than the "
            f"{kernel}x{kernel} pool; expected at least {kernel}x{kernel}"
        )
    return kernel, stride


def offset_max_pool2d_naive(x, kernel, stride=None):
    """``pooled[dy][dx] = max_pool(x[:, :, dy:, dx:])``: a list of lists of maps.

    An offset that leaves less than one window gives an empty map.
    """
    kernel, stride = check_offset_args(x, kernel, stride)
    n, c, h, w = x.shape
    pooled = []
    for dy in range(stride):
        row = []
        for dx in range(stride):
            if h - dy < kernel or w - dx < kernel:
                row.append(np.zeros((n, c, 0, 0), x.dtype))
            else:
                row.append(max_pool2d_naive(x[:, :, dy:, dx:], kernel, stride)[0])
        pooled.append(row)
    return pooled


def offset_max_pool2d(x, kernel, stride=None):
    """All ``s*s`` offset poolings in one array ``(s, s, N, C, Hq, Wq)``."""
    kernel, stride = check_offset_args(x, kernel, stride)
    n, c, h, w = x.shape
    hq, wq = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = np.zeros((stride, stride, n, c, hq, wq), dtype=x.dtype)
    for dy in range(stride):
        for dx in range(stride):
            if h - dy < kernel or w - dx < kernel:
                continue
            pooled, _ = max_pool2d_forward(x[:, :, dy:, dx:], kernel, stride)
            out[dy, dx, :, :, : pooled.shape[2], : pooled.shape[3]] = pooled
    return out


def check_interleave_args(y, fine_h: int, fine_w: int) -> tuple:
    """Validate :func:`interleave_offsets`' arguments; return ``y.shape``."""
    if len(y.shape) != 6 or y.shape[0] != y.shape[1]:
        raise InputError(f"interleave_offsets: expected (s, s, N, C, H, W), got {tuple(y.shape)}")
    s, _, _, _, ho, wo = y.shape
    if not (0 < fine_h <= s * ho and 0 < fine_w <= s * wo):
        raise InputError(
            f"interleave_offsets: a {fine_h}x{fine_w} fine map needs between 1 and "
            f"{s * ho}x{s * wo} positions for {ho}x{wo} outputs per offset"
        )
    return tuple(y.shape)


def interleave_offsets(y, fine_h: int, fine_w: int):
    """``(s, s, N, C, Ho, Wo)`` classifier maps to the ``(N, C, fine_h, fine_w)`` fine map."""
    s, _, n, c, ho, wo = check_interleave_args(y, fine_h, fine_w)
    fine = y.transpose(2, 3, 4, 0, 5, 1).reshape(n, c, ho * s, wo * s)
    return np.ascontiguousarray(fine[:, :, :fine_h, :fine_w])
