"""Losses: softmax cross-entropy (classification) and L2 (box regression).

Both take a network's output map, so the same loss serves one window per image
(``(N, C, 1, 1)``, or ``(N, C)``) and spatial training on dense maps
(``(N, C, H, W)``). Each returns ``(loss, grad)``: the scalar loss, averaged as
stated, and its gradient with respect to the first argument.
The CUDA kernels are in :mod:`overfeat_scratch.cuda.losses`.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError, InputTypeError, check_float_array


def check_labels(logits, labels):
    check_float_array(logits, "softmax_cross_entropy logits")
    if len(logits.shape) < 2:
        raise InputError(f"softmax_cross_entropy: expected logits (N, C, ...), got {logits.shape}")
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise InputTypeError(
            f"softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}"
        )
    if labels.shape != expected:
        raise InputError(
            f"softmax_cross_entropy: labels have shape {labels.shape}, expected {expected}"
        )
    c = logits.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise InputError(
            f"softmax_cross_entropy: labels must lie in [0, {c - 1}], "
            f"got values from {labels.min()} to {labels.max()}"
        )
    return labels


def softmax_cross_entropy_naive(logits, labels):
    """Loops over every position: ``-log softmax(z)[label]``, averaged."""
    labels = check_labels(logits, labels)
    z = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1])
    t = labels.reshape(-1)
    loss = 0.0
    grad = np.empty_like(z)
    for k in range(z.shape[0]):
        m = max(z[k])
        e = [np.exp(v - m) for v in z[k]]
        s = sum(e)
        loss += -(z[k, t[k]] - m - np.log(s))
        for c in range(z.shape[1]):
            grad[k, c] = (e[c] / s - (c == t[k])) / z.shape[0]
    shape = (logits.shape[0],) + tuple(logits.shape[2:]) + (logits.shape[1],)
    return loss / z.shape[0], np.moveaxis(grad.reshape(shape), -1, 1)


def softmax_cross_entropy(logits, labels):
    """Mean over all ``N * H * W`` positions of ``-log softmax(logits)[label]``.

    ``logits: (N, C, ...)``, ``labels: (N, ...)`` integers in ``[0, C)``.
    The gradient is ``(softmax - onehot) / (N * H * W)``. The maximum is
    subtracted first so that ``exp`` never overflows.
    """
    labels = check_labels(logits, labels)
    count = labels.size
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    picked = np.take_along_axis(z, labels[:, None].astype(np.intp), axis=1)
    loss = float(np.sum(np.log(s) - picked) / count)
    grad = e / s
    onehot = np.zeros_like(grad)
    np.put_along_axis(onehot, labels[:, None].astype(np.intp), 1, axis=1)
    grad -= onehot
    grad /= count
    return loss, grad


def check_l2_args(pred, target, weight):
    check_float_array(pred, "l2_loss prediction")
    check_float_array(target, "l2_loss target")
    if pred.shape != target.shape:
        raise InputError(f"l2_loss: prediction shape {pred.shape} != target shape {target.shape}")
    if weight is not None:
        expected = (pred.shape[0],) + tuple(pred.shape[2:])
        if np.shape(weight) != expected:
            raise InputError(f"l2_loss: weight has shape {np.shape(weight)}, expected {expected}")


def l2_loss_naive(pred, target, weight=None):
    """Loops over every element: ``0.5 * w * (pred - target)**2``, summed, over N."""
    check_l2_args(pred, target, weight)
    loss = 0.0
    grad = np.zeros_like(pred)
    n = pred.shape[0]
    for idx in np.ndindex(pred.shape):
        w = 1.0 if weight is None else weight[(idx[0],) + idx[2:]]
        d = pred[idx] - target[idx]
        loss += 0.5 * w * d * d
        grad[idx] = w * d / n
    return loss / n, grad


def l2_loss(pred, target, weight=None):
    """``0.5 * sum(weight * (pred - target)**2) / N``; returns ``(loss, grad)``.

    ``pred, target: (N, K, ...)`` (``K = 4`` box edges for the regressor).
    ``weight: (N, ...)`` optionally scales each position; a weight of 0 leaves a
    window out of training (the regressor skips windows far from the object).
    """
    check_l2_args(pred, target, weight)
    n = pred.shape[0]
    diff = pred - target
    if weight is not None:
        diff = diff * np.asarray(weight, dtype=pred.dtype)[:, None]
        loss = 0.5 * float(np.sum(diff * (pred - target))) / n
    else:
        loss = 0.5 * float(np.sum(diff * diff)) / n
    return loss, diff / pred.dtype.type(n)
