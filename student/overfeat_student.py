"""Your OverFeat: the core pieces, for you to write.

Each function below raises ``NotImplementedError`` until you write it. The package's
own property tests check your code (against loop references, gradient checks and
worked examples): from the repository's root, run

    .venv/bin/python -m pytest --student student/overfeat_student.py -m student_pool

with one marker per task: ``student_conv`` (the convolution's backward pass),
``student_pool`` (max pooling, forward and backward), ``student_offset`` (offset
pooling and interleaving), ``student_merge`` (the greedy merge) and ``student_ap``
(average precision). Without ``-m`` every task runs. Copy this file anywhere and
point ``--student`` at your copy.

You may use NumPy, and the helpers named in each docstring; not the package's own
version of the function you are writing (the tests would then only test the package).
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (you will need it)


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """The gradients of the convolution ``y = conv2d(x, w, b, stride, padding)``.

    Shapes: ``x (N, C, H, W)``, ``w (O, C, K, K)``, ``dy (N, O, Ho, Wo)`` (the gradient
    of the loss by ``y``). Returns ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and
    ``b (O,)``. Cross-correlation, as in the paper: ``y[n, o, i, j] = b[o] +
    sum_{c,u,v} w[o, c, u, v] * xp[n, c, i*stride + u, j*stride + v]``, where ``xp`` is
    ``x`` zero-padded by ``padding`` on each side.
    """
    raise NotImplementedError("conv2d_backward: write the gradients dx, dw and db")


def max_pool2d_forward(x, kernel, stride=None):
    """Max pooling of ``x (N, C, H, W)`` with a ``kernel x kernel`` window every ``stride``
    pixels (``None``: ``stride = kernel``); windows that do not fit are dropped.

    Returns ``(y, arg)``: ``y (N, C, Ho, Wo)`` the maxima and ``arg`` (same shape,
    integers) where each came from, as ``u * kernel + v`` for the window's row ``u`` and
    column ``v``. On ties the first maximum in row-major order wins.
    """
    raise NotImplementedError("max_pool2d_forward: write the pooling and its winners")


def max_pool2d_backward(dy, arg, x_shape, kernel, stride=None):
    """The gradient by ``x`` of :func:`max_pool2d_forward`: each ``dy`` goes to the
    input that won its window (``arg``); windows that overlap add up. Returns ``dx``
    of shape ``x_shape``."""
    raise NotImplementedError("max_pool2d_backward: route each gradient to its winner")


def offset_max_pool2d(x, kernel, stride=None):
    """Offset max pooling (paper Sec. 3.3): for every offset ``(dy, dx)`` in
    ``0..stride-1``, max pooling of ``x[:, :, dy:, dx:]``.

    Returns one array ``(s, s, N, C, Hq, Wq)`` with ``s = stride`` (default
    ``kernel``) and ``Hq, Wq`` the pooled size at offset 0; an offset whose map is
    smaller (or empty) is zero-padded at its bottom and right. You may call your
    :func:`max_pool2d_forward`.
    """
    raise NotImplementedError("offset_max_pool2d: pool at every offset")


def interleave_offsets(y, fine_h, fine_w):
    """The fine map from the classifier's outputs at every offset.

    ``y (s, s, N, C, Ho, Wo)``: output ``(i, j)`` at offset ``(dy, dx)`` belongs at
    fine position ``(i * s + dy, j * s + dx)``. Returns ``(N, C, fine_h, fine_w)``,
    the interleaved map cut to that size.
    """
    raise NotImplementedError("interleave_offsets: put each offset's outputs in place")


def greedy_merge(boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"):
    """The paper's greedy merge (Sec. 4.3), pairs of one class only.

    Repeat: find the pair of alive boxes of the same class with the smallest match
    score (``overfeat_scratch.ops.merge.match_scores`` gives every pair's); if it is
    above ``threshold``, stop; else box ``j`` joins box ``i`` (``i < j``): slot ``i``
    takes their average, summed confidence and count
    (``overfeat_scratch.ops.merge.merge_into(b, conf, counts, i, j, average_code)``) and
    slot ``j`` dies. Ties: the smallest ``(i, j)`` first.

    Start from ``prep = overfeat_scratch.ops.merge.prepare(boxes, classes, confidences,
    threshold, score, average)``: the checked input in canonical order (``prep.boxes``,
    ``prep.classes``, ``prep.confidences``; ``prep.score`` and ``prep.average`` are the
    codes), and end with ``overfeat_scratch.ops.merge.assemble(prep, boxes, conf,
    counts, alive, parent)`` where ``parent[j] = i`` records each merge (``-1`` for
    boxes never merged away). Returns that ``MergeResult``.
    """
    raise NotImplementedError("greedy_merge: write the merge loop")


def average_precision(precision, recall):
    """VOC's all-point average precision of a precision-recall curve.

    ``precision``, ``recall``: one point per detection, in score order (recall never
    decreases). First make precision non-increasing from the right (each point takes
    the best precision at its recall or beyond: the *interpolated* precision), then sum
    ``(r_k - r_{k-1}) * p_interp(k)`` with ``r_0 = 0``. An empty curve gives 0.
    """
    raise NotImplementedError("average_precision: interpolate, then sum")
