"""The fully connected layer on the GPU, through the convolution GEMMs.

``y = x @ w.T + b`` with ``x: (N, D)``, ``w: (O, D)``, ``b: (O,)``, ``y: (N, O)``.

A linear layer *is* a 1x1 convolution of a 1x1 image: ``x`` as ``(N, D, 1, 1)``,
``w`` as ``(O, D, 1, 1)``. Reshaping a contiguous device array is free, so this
module has no kernel of its own: the forward pass is the tiled GEMM of
:func:`overfeat_scratch.cuda.conv.conv2d_forward` (rows ``o``, columns ``n``,
reduction ``d``), and the backward pass its three gradient kernels
(``dx = dy @ w``, ``dw = dy.T @ x``, ``db = sum(dy)``). With a 1x1 kernel the
implicit im2col is the identity, and the split reduction keeps the GPU busy even
at batch 1, where the product is a matrix-vector product.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError, check_float_array
from ..ops.linear import check_linear_args
from . import as_device, check_out
from .conv import conv2d_backward, conv2d_forward


def linear_forward(x, w, b, tile=None, rb=None, splits=None, out=None):
    """``y = x @ w.T + b`` as a device array ``(N, O)``; ``out``: optional ``(N, O)``."""
    check_linear_args(x, w, b)
    x, w = as_device(x, "linear x"), as_device(w, "linear w")
    (n, d), o = x.shape, w.shape[0]
    if out is not None:
        out = check_out(out, (n, o), np.float32, "linear_forward").reshape(n, o, 1, 1)
    y = conv2d_forward(
        x.reshape(n, d, 1, 1), w.reshape(o, d, 1, 1), b, tile=tile, rb=rb, splits=splits, out=out
    )
    return y.reshape(n, o)


def linear_backward(dy, x, w, tile=None, rb=None, splits=None):
    """Returns device arrays ``(dx, dw, db)``: ``dy @ w``, ``dy.T @ x``, ``dy.sum(0)``."""
    check_float_array(dy, "linear output gradient dy", ndim=2)
    if tuple(dy.shape) != (x.shape[0], w.shape[0]):
        raise InputError(
            f"linear backward: dy has shape {tuple(dy.shape)}, expected {(x.shape[0], w.shape[0])}"
        )
    dy = as_device(dy, "linear dy")
    x, w = as_device(x, "linear x"), as_device(w, "linear w")
    (n, d), o = x.shape, w.shape[0]
    dx, dw, db = conv2d_backward(
        dy.reshape(n, o, 1, 1),
        x.reshape(n, d, 1, 1),
        w.reshape(o, d, 1, 1),
        tile=tile,
        rb=rb,
        splits=splits,
    )
    return dx.reshape(n, d), dw.reshape(o, d), db
