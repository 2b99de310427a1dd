"""The fully connected (linear) layer, forward and backward.

``y = x @ w.T + b`` with ``x: (N, D)``, ``w: (O, D)``, ``b: (O,)``, ``y: (N, O)``.

The OverFeat networks do not use this layer: their fully connected layers are
convolutions whose kernel covers the whole input map (see
:mod:`overfeat_scratch.ops.conv`), which is what lets them slide over larger images.
``Linear`` is here for heads that act on flat feature vectors, and as the smallest
example of a layer with parameters.
The CUDA kernels are in :mod:`overfeat_scratch.cuda.linear`.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError, check_float_array, check_same_dtype


def check_linear_args(x, w, b):
    check_float_array(x, "linear input x", ndim=2)
    check_float_array(w, "linear weight w", ndim=2)
    check_float_array(b, "linear bias b", ndim=1)
    check_same_dtype("linear", x, w, b)
    if x.shape[1] != w.shape[1]:
        raise InputError(
            f"linear: input has {x.shape[1]} features but the weight expects {w.shape[1]} "
            f"(weight shape {tuple(w.shape)})"
        )
    if b.shape[0] != w.shape[0]:
        raise InputError(f"linear: bias has {b.shape[0]} entries, expected {w.shape[0]}")


def linear_naive(x, w, b):
    """Loops over every output (the spec)."""
    check_linear_args(x, w, b)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            y[n, o] = np.dot(x[n], w[o]) + b[o]
    return y


def linear_forward(x, w, b):
    check_linear_args(x, w, b)
    return x @ w.T + b


def linear_backward(dy, x, w):
    """Returns ``(dx, dw, db)``: ``dx = dy @ w``, ``dw = dy.T @ x``, ``db = sum(dy)``."""
    check_float_array(dy, "linear output gradient dy", ndim=2)
    if dy.shape != (x.shape[0], w.shape[0]):
        raise InputError(
            f"linear backward: dy has shape {dy.shape}, expected {(x.shape[0], w.shape[0])}"
        )
    return dy @ w, dy.T @ x, dy.sum(axis=0)
