"""Losses on the GPU: softmax cross-entropy and L2, matching :mod:`overfeat_scratch.ops.losses`.

Each returns ``(loss, grad)``: the loss as a Python float and its gradient as a
device array of the first argument's shape. The loss is reduced on the device;
only that scalar (and a count of invalid labels) is copied to the host.

Shapes: ``logits: (N, C, *S)`` with ``labels: (N, *S)``; ``pred, target: (N, K, *S)``
with ``weight: (N, *S)``. The kernels view them as ``(N, C, L)`` and ``(N, L)``,
``L = prod(S)`` (1 without spatial axes).

The reduction has two kernels: the loss kernel (one thread per position or
element, 1-D grid) sums its block's terms with :func:`~overfeat_scratch.cuda.block_sum`
and writes one partial sum per block; :func:`sum_partials_kernel`, a single block,
adds the partial sums in a fixed order. Sums are in float64, so the loss does not
drift with the number of positions; the gradients are float32 and computed with
the NumPy backend's operations in its order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from ..common.checks import InputError, InputTypeError, check_float_array
from ..ops.losses import check_l2_args, check_labels
from . import THREADS, as_device, block_sum, blocks_for, check_out, is_device_array


@cuda.jit
def softmax_cross_entropy_kernel(z, labels, grad, partial, count):
    """One thread per position ``(n, l)``: softmax over the C classes, loss and gradient.

    ``grad[n, c, l] = (exp(z - max) / sum - [c == label]) / count``; the thread's
    loss term ``log(sum) - (z[label] - max)`` joins its block's sum in
    ``partial[0, block]``, and an out-of-range label counts in ``partial[1, block]``
    (its gradient is NaN; the host wrapper raises).
    """
    index = cuda.grid(1)
    batch, classes, spots = z.shape
    shared = cuda.shared.array(THREADS, float64)
    term = float64(0)
    bad = float64(0)
    if index < batch * spots:
        n = index // spots
        spot = index - n * spots
        label = labels[n, spot]
        if label < 0 or label >= classes:
            bad = 1.0
            for c in range(classes):
                grad[n, c, spot] = math.nan
        else:
            # Subtracting the maximum first keeps exp from overflowing.
            top = z[n, 0, spot]
            for c in range(1, classes):
                top = max(top, z[n, c, spot])
            total = float32(0)
            for c in range(classes):
                total += math.exp(z[n, c, spot] - top)
            term = float64(math.log(total) - (z[n, label, spot] - top))
            for c in range(classes):
                g = math.exp(z[n, c, spot] - top) / total
                if c == label:
                    g -= float32(1)
                grad[n, c, spot] = g / count
    term = block_sum(shared, term)
    bad = block_sum(shared, bad)
    if cuda.threadIdx.x == 0:
        partial[0, cuda.blockIdx.x] = term
        partial[1, cuda.blockIdx.x] = bad


@cuda.jit
def l2_kernel(pred, target, weight, weighted, grad, partial, batch_f):
    """One thread per element ``(n, k, l)``: ``diff = weight[n, l] * (pred - target)``.

    ``grad = diff / N``; the term ``diff * (pred - target)`` joins the block's sum in
    ``partial[0, block]``.
    """
    index = cuda.grid(1)
    _, channels, spots = pred.shape
    shared = cuda.shared.array(THREADS, float64)
    term = float64(0)
    if index < pred.size:
        n = index // (channels * spots)
        rest = index - n * channels * spots
        k = rest // spots
        spot = rest - k * spots
        d = pred[n, k, spot] - target[n, k, spot]
        diff = d
        if weighted:
            diff = d * weight[n, spot]
        grad[n, k, spot] = diff / batch_f
        term = float64(diff * d)
    term = block_sum(shared, term)
    if cuda.threadIdx.x == 0:
        partial[0, cuda.blockIdx.x] = term


@cuda.jit
def sum_partials_kernel(partial, result):
    """One block: ``result[r] = sum(partial[r, :])`` for each row ``r``.

    Each thread adds a strided slice, then :func:`block_sum`; thread 0 writes.
    """
    tid = cuda.threadIdx.x
    shared = cuda.shared.array(THREADS, float64)
    for r in range(partial.shape[0]):
        total = float64(0)
        for b in range(tid, partial.shape[1], THREADS):
            total += partial[r, b]
        total = block_sum(shared, total)
        if tid == 0:
            result[r] = total


def reduce_partials(partial):
    """Sum each row of ``partial`` on the device; copy only the sums to the host."""
    result = cuda.device_array(partial.shape[0], dtype=np.float64)
    sum_partials_kernel[1, THREADS](partial, result)
    return result.copy_to_host()


def check_device_labels(logits, labels):
    """Shape and dtype of labels already on the device (their range is checked there)."""
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if np.dtype(labels.dtype).kind not in "iu":
        raise InputTypeError(
            f"softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}"
        )
    if tuple(labels.shape) != expected:
        raise InputError(
            f"softmax_cross_entropy: labels have shape {tuple(labels.shape)}, expected {expected}"
        )
    if not labels.is_c_contiguous():
        raise InputError("softmax_cross_entropy: labels must be a C-contiguous device array")
    return labels


def softmax_cross_entropy(logits, labels, out=None):
    """Mean over all ``N * prod(S)`` positions of ``-log softmax(logits)[label]``.

    ``labels``: host integers (checked and uploaded as int32) or a device array.
    Returns ``(loss, grad)`` with ``grad`` a device array; ``out``: optional grad buffer.
    """
    check_float_array(logits, "softmax_cross_entropy logits")
    if len(logits.shape) < 2:
        raise InputError(f"softmax_cross_entropy: expected logits (N, C, ...), got {logits.shape}")
    if is_device_array(labels):
        labels = check_device_labels(logits, labels)
    else:
        labels = cuda.to_device(check_labels(logits, labels).astype(np.int32))
    logits = as_device(logits, "softmax_cross_entropy logits")
    n, c = logits.shape[:2]
    spots = math.prod(logits.shape[2:])
    count = n * spots
    grad = check_out(out, logits.shape, np.float32, "softmax_cross_entropy grad")
    if count == 0 or c == 0:
        return math.nan, grad
    blocks = blocks_for(count)
    partial = cuda.device_array((2, blocks), dtype=np.float64)
    softmax_cross_entropy_kernel[blocks, THREADS](
        logits.reshape(n, c, spots),
        labels.reshape(n, spots),
        grad.reshape(n, c, spots),
        partial,
        np.float32(count),
    )
    total, bad = reduce_partials(partial)
    if bad:
        raise InputError(
            f"softmax_cross_entropy: {int(bad)} label(s) outside [0, {c - 1}] "
            "(labels must be class indices)"
        )
    return float(total / count), grad


_no_weight = {}


def l2_loss(pred, target, weight=None, out=None):
    """``0.5 * sum(weight * (pred - target)**2) / N``; returns ``(loss, grad)``.

    ``weight: (N, *S)`` (host or device) optionally scales each position.
    """
    check_l2_args(pred, target, weight)
    pred, target = as_device(pred, "l2_loss prediction"), as_device(target, "l2_loss target")
    n = pred.shape[0]
    channels = pred.shape[1] if len(pred.shape) > 1 else 1
    spots = math.prod(pred.shape[2:])
    grad = check_out(out, pred.shape, np.float32, "l2_loss grad")
    if pred.size == 0:
        return math.nan, grad
    if weight is None:
        if "w" not in _no_weight:
            _no_weight["w"] = cuda.device_array((1, 1), dtype=np.float32)
        weight2 = _no_weight["w"]
    else:
        weight2 = as_device(weight, "l2_loss weight").reshape(n, spots)
    blocks = blocks_for(pred.size)
    partial = cuda.device_array((1, blocks), dtype=np.float64)
    l2_kernel[blocks, THREADS](
        pred.reshape(n, channels, spots),
        target.reshape(n, channels, spots),
        weight2,
        weight is not None,
        grad.reshape(n, channels, spots),
        partial,
        np.float32(n),
    )
    (total,) = reduce_partials(partial)
    return 0.5 * float(total) / n, grad
