"""Greedy non-maximum suppression (NMS): the loops, NumPy, and a CUDA bitmask.

OverFeat turns its many overlapping predicted boxes into detections by *merging*
them (paper Section 4.3). The usual alternative, and the usual baseline, is greedy
non-maximum suppression, per class:

1. sort the boxes by score, highest first (equal scores keep their input order);
2. walk down the list: a box that nothing has suppressed is *kept*, and it
   suppresses every later box of the same class whose IoU with it is greater than
   ``iou_threshold``.

The result is the kept boxes' indices into the input, in that walk's order
(descending score). With ``max_output`` the walk stops after that many are kept,
which gives the same boxes as keeping all and cutting the list.

Boxes are corners ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1``. The
intersection over union is the package's one rule, :func:`.boxes.iou` (every rung
computes it with the same operations in float64, so they agree to the bit): boxes
that only touch have IoU 0, and so does a box of zero area with any box, itself
included, so a zero-area box never suppresses and is never suppressed. Classes are
integers; boxes of different classes never suppress each other.

Three rungs, one answer:

- :func:`nms_naive`: the definition, in plain Python loops: the reference.
- :func:`nms`: NumPy. Per kept box, one vectorised IoU row against the later boxes
  of its class that are still alive: ``O(n * kept)`` work in a Python loop of
  ``kept`` steps.
- :func:`overfeat_scratch.cuda.nms.nms`: a kernel fills an ``(n, ceil(n/64))``
  bitmask of "sorted box ``j`` is suppressed by sorted box ``i``" (all pairs at
  once, in parallel), then the host walks the mask once, OR-ing the rows of the
  boxes it keeps. The walk is inherently sequential (whether box ``i`` suppresses
  anything depends on whether it was itself suppressed), so GPU implementations
  commonly leave it to the host; it touches ``n/64`` words per kept box.

The backends choose: ``get_backend(name).non_max_suppression(...)`` is :func:`nms` on
``"numpy"`` and :func:`overfeat_scratch.cuda.nms.nms` on ``"cuda"``.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError, InputTypeError, check_positive_int
from .boxes import check_boxes, iou, iou_broadcast


def _real_array(x, name: str, dtype) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise InputTypeError(f"{name}: expected real numbers, got an array of dtype {array.dtype}")
    if array.dtype.kind == "b":
        raise InputTypeError(f"{name}: expected numbers, got booleans")
    return array.astype(dtype, copy=False)


def check_nms_args(boxes, scores, classes=None, iou_threshold=0.5, max_output=None):
    """Validate NMS arguments; return ``(boxes, scores, classes, iou_threshold, max_output)``.

    ``boxes``: ``(n, 4)`` corners, made float64; ``scores``: ``(n,)``, float64;
    ``classes``: ``(n,)`` integers, int64 (None: one class, all zeros);
    ``iou_threshold``: a number in ``[0, 1]``, as float; ``max_output``: None or an
    integer ``>= 0`` (None stays None). An empty ``boxes`` may also be ``[]``.

    Raises ``TypeError`` for non-numbers, ``ValueError`` for wrong shapes, NaN or
    infinite values, inverted boxes (``x1 < x0`` or ``y1 < y0``, with the first
    such index) and thresholds outside ``[0, 1]``.
    """
    boxes = check_boxes(boxes, "nms boxes")
    n = boxes.shape[0]
    scores = _real_array(scores, "nms scores", np.float64)
    if scores.shape != (n,):
        raise InputError(f"nms scores: expected shape ({n},) for {n} boxes, got {scores.shape}")
    if classes is None:
        classes = np.zeros(n, dtype=np.int64)
    else:
        classes = np.asarray(classes)
        if classes.dtype.kind not in "iu":
            raise InputTypeError(f"nms classes: expected integers, got dtype {classes.dtype}")
        if classes.shape != (n,):
            raise InputError(
                f"nms classes: expected shape ({n},) for {n} boxes, got {classes.shape}"
            )
        classes = classes.astype(np.int64, copy=False)
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"nms scores: {int(bad.sum())} NaN or infinite value(s), the first for box "
            f"{first}; expected finite numbers"
        )
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.number)):
        raise InputTypeError(f"nms iou_threshold: expected a number, got {iou_threshold!r}")
    iou_threshold = float(iou_threshold)
    if not 0.0 <= iou_threshold <= 1.0:  # also refuses NaN
        raise InputError(f"nms iou_threshold: expected a number in [0, 1], got {iou_threshold}")
    if max_output is not None:
        max_output = check_positive_int(max_output, "nms max_output", minimum=0)
    return boxes, scores, classes, iou_threshold, max_output


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; equal scores keep their input order."""
    return np.argsort(-scores, kind="stable")


# --------------------------------------------------------------------------------------
# 1. The reference: loops


def nms_naive(boxes, scores, classes=None, iou_threshold=0.5, max_output=None) -> np.ndarray:
    """Greedy per-class NMS with loops; the kept indices, int64, by descending score."""
    boxes, scores, classes, threshold, max_output = check_nms_args(
        boxes, scores, classes, iou_threshold, max_output
    )
    box_list, score_list, class_list = boxes.tolist(), scores.tolist(), classes.tolist()
    # sorted() is stable: equal scores keep their input order.
    order = sorted(range(len(box_list)), key=lambda i: -score_list[i])
    suppressed = [False] * len(order)
    keep = []
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        if max_output is not None and len(keep) == max_output:
            break
        keep.append(i)
        for j in order[position + 1 :]:
            if (
                not suppressed[j]
                and class_list[j] == class_list[i]
                and iou(*box_list[i], *box_list[j]) > threshold
            ):
                suppressed[j] = True
    return np.array(keep, dtype=np.int64)


# --------------------------------------------------------------------------------------
# 2. NumPy: one vectorised IoU row per kept box


def nms(boxes, scores, classes=None, iou_threshold=0.5, max_output=None) -> np.ndarray:
    """Greedy per-class NMS (NumPy); the kept indices, int64, by descending score.

    - ``boxes``: ``(n, 4)`` corners ``x0, y0, x1, y1`` (any real dtype; computed in
      float64);
    - ``scores``: ``(n,)``; equal scores are taken in input order;
    - ``classes``: ``(n,)`` integers, or None for a single class;
    - ``iou_threshold``: in ``[0, 1]``; a later box is suppressed when its IoU with a
      kept box of its class is *greater* than this (1 suppresses nothing, 0 every
      overlapping box);
    - ``max_output``: keep at most this many (None: no limit).

    Identical to :func:`nms_naive`.
    """
    boxes, scores, classes, threshold, max_output = check_nms_args(
        boxes, scores, classes, iou_threshold, max_output
    )
    order = score_order(scores)
    boxes, classes = boxes[order], classes[order]
    n = order.size
    alive = np.ones(n, dtype=bool)
    keep = []
    limit = n if max_output is None else min(n, max_output)
    for p in range(n):
        if len(keep) == limit:
            break
        if not alive[p]:
            continue
        keep.append(p)
        later = p + 1 + np.flatnonzero(alive[p + 1 :] & (classes[p + 1 :] == classes[p]))
        if later.size:
            overlap = iou_broadcast(*boxes[p], *boxes[later].T)
            alive[later[overlap > threshold]] = False
    return order[np.array(keep, dtype=np.int64)].astype(np.int64)
