"""Boxes: the one intersection over union, the box checks, and the two box formats.

Everything in the package that compares boxes uses the rule written here: the greedy
merge and NMS (NumPy and CUDA), the box regressor's training measure, the evaluator
and the scene generator. So they agree on every pair of boxes, degenerate ones
included.

Boxes are corners ``[x0, y0, x1, y1]`` ("xyxy") unless said otherwise; COCO files
store ``[x, y, w, h]`` ("xywh"), converted by :func:`xywh_to_xyxy` and
:func:`xyxy_to_xywh`.

**The convention.** ``IoU(a, b) = area(a & b) / area(a | b)`` when the two boxes
share an area greater than zero, and ``0`` otherwise:

- boxes that only touch (a shared edge or corner) have IoU 0;
- an empty box (zero width or height) has IoU 0 with every box, its own copy
  included: it covers no pixel, so there is nothing for it to match;
- an inverted box (``x1 < x0`` or ``y1 < y0``) counts as empty.

Because a shared area greater than zero makes the union greater than zero, the
division never divides by zero and the rule needs no special case. The rule itself
accepts any finite box, so that compiled loops and GPU kernels need no error path;
the entry points that take boxes from a user (the merge, NMS, the evaluator) call
:func:`check_boxes` first, which refuses inverted and non-finite boxes with a message
naming the first bad one, since an inverted box there is nearly always
``[x, y, w, h]`` passed as corners.

The rule is written once, as the scalar function :func:`iou`. The NumPy functions
below repeat its operations in the same order on whole arrays, so they agree with
it to the last bit; ``numba.njit`` compiles it for the CPU loops (:data:`iou_compiled`)
and :mod:`overfeat_scratch.cuda.boxes` compiles it for the GPU.
"""

from __future__ import annotations

import numba
import numpy as np

from ..common.checks import InputError, InputTypeError

FORMATS = ("xyxy", "xywh")


def iou(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1):
    """The intersection over union of boxes ``a`` and ``b`` (corners), as a float.

    A plain Python function: the loop references call it as it is, and it is compiled
    for the CPU (:data:`iou_compiled`) and the GPU (``cuda.boxes.iou_device``).
    """
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union


iou_compiled = numba.njit(cache=False, nogil=True)(iou)


# --------------------------------------------------------------------------------------
# The same rule on arrays. The coordinates broadcast against each other: columns of
# one set against rows of another give a matrix, equal shapes give one IoU per row.


def _sides(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1):
    """Width and height of the intersection; negative where the boxes are apart."""
    return np.minimum(ax1, bx1) - np.maximum(ax0, bx0), np.minimum(ay1, by1) - np.maximum(ay0, by0)


def iou_broadcast(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1) -> np.ndarray:
    """:func:`iou` on broadcast coordinate arrays, float64; no checks."""
    iw, ih = _sides(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1)
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    out = np.zeros(np.broadcast(inter, union).shape)
    np.divide(inter, union, out=out, where=(iw > 0) & (ih > 0))
    return out


def intersection_broadcast(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1) -> np.ndarray:
    """The area of ``a & b`` on broadcast coordinate arrays (0 where apart); no checks."""
    iw, ih = _sides(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1)
    return np.maximum(iw, 0) * np.maximum(ih, 0)


def columns(boxes: np.ndarray, axis: int) -> tuple:
    """The four coordinates of ``(n, 4)`` boxes as arrays shaped to broadcast:
    ``axis=0`` gives ``(n, 1)`` columns, ``axis=1`` gives ``(1, n)`` rows."""
    return tuple(np.expand_dims(boxes[:, k], 1 - axis) for k in range(4))


# --------------------------------------------------------------------------------------
# Checks and formats


def _coordinates(boxes, name: str, box_format: str) -> np.ndarray:
    """``boxes`` as a fresh C-contiguous ``(n, 4)`` float64 array of finite numbers."""
    if box_format not in FORMATS:
        raise InputError(f"{name}: box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    what = "an (n, 4) array of " + (
        "corners [x0, y0, x1, y1]" if box_format == "xyxy" else "boxes [x, y, w, h]"
    )
    try:
        arr = np.asarray(boxes)
    except (ValueError, TypeError) as error:  # ragged nested lists, for example
        raise InputError(f"{name}: expected {what}, got {type(boxes).__name__} ({error})") from None
    # An empty list arrives as float64: let it pass as any numeric kind.
    if arr.dtype.kind not in "iuf" and not (arr.size == 0 and arr.dtype.kind in "iufb"):
        raise InputTypeError(f"{name}: expected real numbers in {what}, got dtype {arr.dtype}")
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)  # no boxes, given as []
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{name}: expected {what}, got shape {arr.shape}")
    # + 0.0 turns -0.0 into 0.0, so that sorting cannot tell them apart.
    arr = np.array(arr, dtype=np.float64, order="C") + 0.0
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name}: {int(bad.sum())} box(es) contain NaN or infinite values (the first is "
            f"box {first}: {arr[first].tolist()}); expected finite coordinates"
        )
    return arr


def check_boxes(boxes, name: str = "boxes", box_format: str = "xyxy") -> np.ndarray:
    """``boxes`` as a fresh ``(n, 4)`` float64 corner array, checked.

    ``box_format``: ``"xyxy"`` (corners, returned as they are) or ``"xywh"``
    (converted to corners). Refuses, naming ``name`` and the first bad box: a shape
    other than ``(n, 4)`` (``[]`` is no boxes), non-numbers, NaN or infinite values,
    inverted corners (``x1 < x0`` or ``y1 < y0``) and negative widths or heights.
    """
    arr = _coordinates(boxes, name, box_format)
    if box_format == "xywh":
        negative = (arr[:, 2] < 0) | (arr[:, 3] < 0)
        if negative.any():
            first = int(np.flatnonzero(negative)[0])
            raise InputError(
                f"{name}: box {first} has a negative width or height ({arr[first].tolist()}); "
                "expected [x, y, w, h] with w >= 0 and h >= 0"
            )
        return xywh_to_xyxy(arr)
    inverted = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if inverted.any():
        first = int(np.flatnonzero(inverted)[0])
        raise InputError(
            f"{name}: box {first} is inverted, x1 < x0 or y1 < y0 ({arr[first].tolist()}; "
            f"{int(inverted.sum())} box(es) in all); expected corners [x0, y0, x1, y1] with "
            "x0 <= x1 and y0 <= y1 (convert [x, y, w, h] boxes to corners first)"
        )
    return arr


def xywh_to_xyxy(boxes) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes ``(n, 4)`` as corners ``[x0, y0, x1, y1]``, float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_to_xywh(boxes) -> np.ndarray:
    """Corners ``[x0, y0, x1, y1]`` ``(n, 4)`` as COCO ``[x, y, w, h]`` boxes, float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def areas(boxes) -> np.ndarray:
    """The area of each corner box ``(n, 4)``; inverted boxes count as empty (0)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


# --------------------------------------------------------------------------------------
# The entry points


def iou_matrix(a, b, box_format: str = "xyxy", name: str = "iou_matrix") -> np.ndarray:
    """The ``(len(a), len(b))`` float64 matrix of :func:`iou` between two sets of boxes.

    ``a, b``: ``(m, 4)`` and ``(n, 4)`` boxes in ``box_format`` (``"xyxy"`` or
    ``"xywh"``). The shapes and values are checked (finite numbers); inverted boxes
    are empty, as the convention says.
    """
    a = _as_corners(a, f"{name} a", box_format)
    b = _as_corners(b, f"{name} b", box_format)
    return iou_broadcast(*columns(a, 0), *columns(b, 1))


def iou_pairs(a, b, name: str = "iou_pairs") -> np.ndarray:
    """The IoU of ``a[k]`` with ``b[k]`` for every row of two ``(n, 4)`` corner arrays."""
    a = _as_corners(a, f"{name} a", "xyxy")
    b = _as_corners(b, f"{name} b", "xyxy")
    if a.shape != b.shape:
        raise InputError(f"{name}: expected two arrays of one shape, got {a.shape} and {b.shape}")
    return iou_broadcast(*a.T, *b.T)


def intersection_matrix(a, b, name: str = "intersection_matrix") -> np.ndarray:
    """The ``(len(a), len(b))`` areas of ``a[p] & b[q]`` for corner boxes (0 where apart)."""
    a = _as_corners(a, f"{name} a", "xyxy")
    b = _as_corners(b, f"{name} b", "xyxy")
    return intersection_broadcast(*columns(a, 0), *columns(b, 1))


def _as_corners(boxes, name: str, box_format: str) -> np.ndarray:
    arr = _coordinates(boxes, name, box_format)
    return xywh_to_xyxy(arr) if box_format == "xywh" else arr
