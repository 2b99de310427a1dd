"""2-D convolution, forward and backward: the loops, then im2col.

OverFeat's "convolution" is a cross-correlation: the kernel is not flipped,

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, c, s*i + u - p, s*j + v - p]

with stride ``s``, zero padding ``p`` and ``x`` read as zero outside the image.
Flipping would only relabel the learned weights, so networks never bother.

Shapes: ``x: (N, C, H, W)``, ``w: (O, C, kh, kw)``, ``b: (O,)``,
``y: (N, O, Ho, Wo)`` with ``Ho = (H + 2p - kh) // s + 1``.

This module holds

1. :func:`conv2d_naive` and :func:`conv2d_backward_naive`, plain loops: the spec;
2. :func:`conv2d_forward` and :func:`conv2d_backward`, one matrix product over an
   ``as_strided`` im2col view (and, for the input gradient, :func:`col2im`, a
   compiled Numba loop): the NumPy backend.

The CUDA kernels are in :mod:`overfeat_scratch.cuda.conv` (imported only when the
CUDA backend is used, so that the NumPy path never pays for Numba-CUDA).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..common.checks import (
    InputError,
    check_float_array,
    check_positive_int,
    check_same_dtype,
    conv_output_size,
)


def check_conv_args(x, w, b, stride, padding):
    """Validate a convolution's arguments; return ``(Ho, Wo)``."""
    check_float_array(x, "conv2d input x", ndim=4)
    check_float_array(w, "conv2d weight w", ndim=4)
    check_float_array(b, "conv2d bias b", ndim=1)
    check_same_dtype("conv2d", x, w, b)
    stride = check_positive_int(stride, "conv2d stride")
    padding = check_positive_int(padding, "conv2d padding", minimum=0)
    n, c, h, wd = x.shape
    o, cw, kh, kw = w.shape
    if cw != c:
        raise InputError(
            f"conv2d: input has {c} channels but the weight expects {cw} "
            f"(weight shape {tuple(w.shape)}, input shape {tuple(x.shape)})"
        )
    if b.shape[0] != o:
        raise InputError(f"conv2d: bias has {b.shape[0]} entries, expected {o} (one per filter)")
    ho = conv_output_size(h, kh, stride, padding, "conv2d height")
    wo = conv_output_size(wd, kw, stride, padding, "conv2d width")
    return ho, wo


def check_conv_backward_args(dy, x, w, stride, padding):
    """Validate a convolution's backward arguments; return ``(Ho, Wo)``."""
    o = w.shape[0]
    ho, wo = check_conv_args(x, w, np.zeros(o, w.dtype), stride, padding)
    check_float_array(dy, "conv2d output gradient dy", ndim=4)
    expected = (x.shape[0], o, ho, wo)
    if tuple(dy.shape) != expected:
        raise InputError(f"conv2d backward: dy has shape {tuple(dy.shape)}, expected {expected}")
    return ho, wo


# --------------------------------------------------------------------------------------
# 1. The reference: loops


def conv2d_naive(x, w, b, stride=1, padding=0):
    """Convolution with loops over every output element. The spec for the rest."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    n, _, _, _ = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i_n in range(n):
        for i_o in range(o):
            for i in range(ho):
                for j in range(wo):
                    window = xp[i_n, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[i_n, i_o, i, j] = np.sum(window * w[i_o]) + b[i_o]
    return y


def conv2d_backward_naive(dy, x, w, stride=1, padding=0):
    """Gradients of :func:`conv2d_naive` by the chain rule, one output at a time.

    Each output ``y[n, o, i, j]`` touched one window of ``x`` through ``w[o]``;
    its gradient flows back along the same window.
    Returns ``(dx, dw, db)``.
    """
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    _, _, ho, wo = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(o, dtype=dy.dtype)
    for i_n in range(n):
        for i_o in range(o):
            for i in range(ho):
                for j in range(wo):
                    g = dy[i_n, i_o, i, j]
                    rows = slice(i * stride, i * stride + kh)
                    cols = slice(j * stride, j * stride + kw)
                    dw[i_o] += g * xp[i_n, :, rows, cols]
                    dxp[i_n, :, rows, cols] += g * w[i_o]
                    db[i_o] += g
    dx = dxp[:, :, padding : padding + h, padding : padding + wd]
    return np.ascontiguousarray(dx), dw, db


# --------------------------------------------------------------------------------------
# 2. The NumPy backend: im2col + one matrix product


def pad_input(x, padding):
    """Zero-pad the two spatial axes (no copy when ``padding == 0``)."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def window_view(xp, kh, kw, stride, ho, wo):
    """A read-only view ``(N, C, kh, kw, Ho, Wo)`` of every window of ``xp``, no copy.

    ``view[n, c, u, v, i, j] == xp[n, c, stride*i + u, stride*j + v]``.
    """
    sn, sc, sh, sw = xp.strides
    return as_strided(
        xp,
        shape=(xp.shape[0], xp.shape[1], kh, kw, ho, wo),
        strides=(sn, sc, sh, sw, stride * sh, stride * sw),
        writeable=False,
    )


def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """Columns ``(C*kh*kw, N*Ho*Wo)``: one column per output position.

    Row order is ``(c, u, v)``, matching ``w.reshape(O, C*kh*kw)``; column order
    is ``(n, i, j)``. This is the only copy the forward pass makes.

    ``out``: a ``(C, kh, kw, N, Ho, Wo)`` array (or a view of one) to write the
    columns into; the ``(C*kh*kw, N*Ho*Wo)`` matrix is then its reshape.
    """
    n, c, h, wd = x.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    view = window_view(pad_input(x, padding), kh, kw, stride, ho, wo)
    if out is not None:
        out[...] = view.transpose(1, 2, 3, 0, 4, 5)
        return out
    if n == 1:
        return view[0].reshape(c * kh * kw, ho * wo)
    return view.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * ho * wo)


# col2im is a compiled loop (Numba): one pass over the columns, adding straight into
# the unpadded gradient and skipping the taps that fall into the padding. It is
# single-threaded on purpose: BLAS keeps its worker threads spinning between calls,
# and a second thread pool fighting them for the cores costs more than it gains.
# ``cache=False``: nothing is written to disk.


@numba.njit(cache=False, nogil=True)
def _span(offset, stride, size, count):
    """``(lo, hi)``: the ``j < count`` with ``0 <= j*stride + offset < size``."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    top = size - 1 - offset
    hi = min(count, top // stride + 1) if top >= 0 else 0
    return lo, max(lo, hi)


@numba.njit(cache=False, nogil=True)
def _col2im_kernel(cols, n, c, h, w, kh, kw, stride, padding, ho, wo, dx):
    """``dx[n, c, s*i + u - p, s*j + v - p] += cols[(c*kh + u)*kw + v, (n*Ho + i)*Wo + j]``.

    ``cols`` is ``(C*kh*kw, N*Ho*Wo)`` C-contiguous; ``dx`` is the flat ``(N*C*H*W,)``
    gradient. Each row of ``cols`` (one kernel tap) is read once, front to back.
    """
    hw = h * w
    for ci in range(c):
        for u in range(kh):
            i_lo, i_hi = _span(u - padding, stride, h, ho)
            for v in range(kw):
                j_lo, j_hi = _span(v - padding, stride, w, wo)
                row = cols[(ci * kh + u) * kw + v]
                for a in range(n):
                    dst0 = (a * c + ci) * hw + v - padding
                    src0 = a * ho * wo
                    for i in range(i_lo, i_hi):
                        d = dst0 + (i * stride + u - padding) * w
                        src = src0 + i * wo
                        if stride == 1:  # unit stride on both sides: vectorizes
                            for j in range(j_lo, j_hi):
                                dx[d + j] += row[src + j]
                        else:
                            for j in range(j_lo, j_hi):
                                dx[d + j * stride] += row[src + j]


def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
    """The adjoint of :func:`im2col`: add every column back onto its window.

    Overlapping windows add up; taps that fall into the padding are dropped.
    Instead of ``np.add.at`` over every element (or one strided slice add per
    kernel tap) this is one compiled pass over the columns.
    """
    n, c, h, wd = x_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    dx = np.zeros(n * c * h * wd, dtype=cols.dtype)
    _col2im_kernel(np.ascontiguousarray(cols), n, c, h, wd, kh, kw, stride, padding, ho, wo, dx)
    dx = dx.reshape(n, c, h, wd)
    return dx


def to_nchw(y_mat, n, o, ho, wo):
    """``(O, N*Ho*Wo)`` matrix to a contiguous ``(N, O, Ho, Wo)`` array."""
    if n == 1:
        return y_mat.reshape(1, o, ho, wo)
    return np.ascontiguousarray(y_mat.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))


def from_nchw(dy):
    """Contiguous ``(N, O, Ho, Wo)`` to the ``(O, N*Ho*Wo)`` matrix of :func:`to_nchw`."""
    n, o, ho, wo = dy.shape
    if n == 1:
        return dy.reshape(o, ho * wo)
    return dy.transpose(1, 0, 2, 3).reshape(o, n * ho * wo)


# A batch is cut into groups of about this many columns (output positions) per
# matrix product: enough to read the weights once for many columns, few enough
# that a group's columns are still in cache when the product reads them. A group
# of one image writes its (O, Ho*Wo) block of the NCHW output in place.
GROUP_COLUMNS = 1024


def conv2d_forward(x, w, b, stride=1, padding=0, keep_cols=False):
    """Convolution as one GEMM: ``y = w.reshape(O, -1) @ im2col(x) + b``.

    A large batch runs as one such product per group of images (see
    ``GROUP_COLUMNS``). ``keep_cols=True`` (training) returns ``(y, cols)``: the
    groups write their columns into one ``(C*kh*kw, N*Ho*Wo)`` matrix, which the
    backward pass reuses for the weight gradient instead of building it again.
    """
    ho, wo = check_conv_args(x, w, b, stride, padding)
    n, c = x.shape[:2]
    o, _, kh, kw = w.shape
    w_mat = w.reshape(o, -1)
    positions = ho * wo
    group = max(1, GROUP_COLUMNS // positions)
    if n <= group:
        cols = im2col(x, kh, kw, stride, padding)
        y = to_nchw(w_mat @ cols + b[:, None], n, o, ho, wo)
        return (y, cols) if keep_cols else y
    y = np.empty((n, o, positions), dtype=np.result_type(w, x))
    kept = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype) if keep_cols else None
    for start in range(0, n, group):
        stop = min(n, start + group)
        if keep_cols:
            im2col(x[start:stop], kh, kw, stride, padding, out=kept[:, :, :, start:stop])
            cols = kept.reshape(c * kh * kw, n * positions)[:, start * positions : stop * positions]
        else:
            cols = im2col(x[start:stop], kh, kw, stride, padding)
        if stop - start == 1:
            np.matmul(w_mat, cols, out=y[start])
        else:
            y[start:stop] = (w_mat @ cols).reshape(o, stop - start, positions).transpose(1, 0, 2)
        y[start:stop] += b[:, None]
    y = y.reshape(n, o, ho, wo)
    return (y, kept.reshape(c * kh * kw, n * positions)) if keep_cols else y


def conv2d_backward(dy, x, w, stride=1, padding=0, input_grad=True, cols=None):
    """Gradients of :func:`conv2d_forward`; returns ``(dx, dw, db)``.

    With ``Y = W @ X_cols``: ``dW = dY @ X_cols.T`` and ``dX_cols = W.T @ dY``,
    then :func:`col2im` folds the columns back into an image. ``input_grad=False``
    skips ``dx`` (returned as ``None``): a network's first layer needs no gradient
    for the image. ``cols``: the forward pass's columns of ``x``, if it kept them.
    """
    o, _, kh, kw = w.shape
    ho, wo = check_conv_backward_args(dy, x, w, stride, padding)
    dy_mat = from_nchw(dy)
    if cols is None:
        cols = im2col(x, kh, kw, stride, padding)
    elif cols.shape != (x.shape[1] * kh * kw, x.shape[0] * ho * wo):
        raise InputError(
            f"conv2d_backward: cols of shape {cols.shape}, expected "
            f"{(x.shape[1] * kh * kw, x.shape[0] * ho * wo)} for input {x.shape}"
        )
    dw = (dy_mat @ cols.T).reshape(w.shape)
    db = dy_mat.sum(axis=1)
    if not input_grad:
        return None, dw, db
    dcols = w.reshape(o, -1).T @ dy_mat
    dx = col2im(dcols, x.shape, kh, kw, stride, padding)
    return dx, dw, db
