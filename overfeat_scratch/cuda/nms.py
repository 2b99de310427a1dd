"""Greedy non-maximum suppression on the GPU: a suppression bitmask, then one host walk.

Same definition and same answer as :func:`overfeat_scratch.ops.nms.nms` (read its
module docstring for the rule; the IoU is :func:`overfeat_scratch.ops.boxes.iou`, compiled
as a device function). With the
boxes sorted by descending score (equal scores in input order):

1. **The mask, on the device.** ``mask[i, w]`` is a 64-bit word whose bit ``b``
   says "sorted box ``j = 64*w + b`` is suppressed by sorted box ``i``": ``j > i``,
   the same class, and ``IoU(i, j) > iou_threshold``. A thread block of ``block``
   threads owns ``block`` rows ``i`` (one per thread) against one tile of 64
   columns ``j``: its threads first copy the 64 column boxes and their classes
   into shared memory together, then each thread compares its own row box with
   all 64 and writes its word once. Grid: ``(ceil(n/64), ceil(n/block))``; no
   atomics, every word has one writer. Only the upper triangle (``j > i``) can be
   set, so blocks left of the diagonal write zeros.
2. **The walk, on the host.** Down the sorted boxes, keeping a row of "removed"
   bits: box ``i`` is kept when its bit is clear, and then its mask row is OR-ed in.
   This step is sequential by nature (whether ``i`` suppresses anything depends on
   whether it survived), costs ``ceil(n/64)`` word operations per kept box, and
   is what GPU NMS implementations commonly leave to the host.

The kernel computes in float64 like the NumPy rungs, so on the simulator the
results are identical bit for bit. A GPU compiler may fuse a multiply and an add
into one rounded operation (FMA) in the union's sum of areas; where boxes'
products are exact (pixel coordinates, small integers or halves) this changes
nothing, and otherwise it can only flip a pair whose IoU lies within a rounding
error of the threshold.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float64, int64, uint64

from ..common.checks import InputError, check_positive_int
from ..ops.nms import check_nms_args, score_order
from . import SMALL_LAUNCHES, as_device, blocks_for, check_out
from .boxes import iou_device

# Columns per mask word (and per column tile of the kernel).
WORD = 64
# Rows (threads) per block of the mask kernel: small on the simulator, where each
# thread is a Python thread.
DEFAULT_BLOCK = 4 if SMALL_LAUNCHES else 64


def words_for(n: int) -> int:
    """64-bit words per row of an ``n``-box suppression mask (at least one)."""
    return max(1, (n + WORD - 1) // WORD)


@cuda.jit
def suppression_mask_kernel(boxes, classes, threshold, mask):
    """Block ``(bx, by)``: rows ``by*blockDim + t`` against columns ``64*bx .. 64*bx + 63``."""
    n = boxes.shape[0]
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    col0 = cuda.blockIdx.x * WORD
    row = cuda.blockIdx.y * threads + tid

    tile = cuda.shared.array((WORD, 4), float64)
    tile_class = cuda.shared.array(WORD, int64)
    count = min(WORD, n - col0)
    for k in range(tid, count, threads):
        for c in range(4):
            tile[k, c] = boxes[col0 + k, c]
        tile_class[k] = classes[col0 + k]
    cuda.syncthreads()

    if row < n:
        x0, y0, x1, y1 = boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3]
        label = classes[row]
        word = uint64(0)
        # Only later boxes (j > row) can be suppressed by this one.
        for k in range(max(0, row + 1 - col0), count):
            if tile_class[k] == label:
                overlap = iou_device(x0, y0, x1, y1, tile[k, 0], tile[k, 1], tile[k, 2], tile[k, 3])
                if overlap > threshold:
                    word |= uint64(1) << uint64(k)
        mask[row, cuda.blockIdx.x] = word


def suppression_mask(boxes, classes, iou_threshold: float, block: int | None = None, out=None):
    """The ``(n, ceil(n/64))`` uint64 suppression mask of boxes already in walk order.

    ``boxes``: ``(n, 4)`` corners, ``classes``: ``(n,)`` integers, host or device
    arrays (host ones are uploaded as float64 and int64), sorted by descending
    score. Bit ``b`` of ``mask[i, w]`` is set when box ``64*w + b`` comes after box
    ``i``, has its class, and overlaps it with IoU greater than ``iou_threshold``.
    ``block``: threads (rows) per block, 1 to 1024; ``out``: an optional device
    array for the mask. Returns a device array.
    """
    block = DEFAULT_BLOCK if block is None else check_positive_int(block, "nms block")
    if block > 1024:
        raise InputError(f"nms block: at most 1024 threads per block, got {block}")
    if len(boxes.shape) != 2 or boxes.shape[1] != 4 or tuple(classes.shape) != boxes.shape[:1]:
        raise InputError(
            f"suppression_mask: expected boxes (n, 4) and classes (n,), got "
            f"{tuple(boxes.shape)} and {tuple(classes.shape)}"
        )
    n = boxes.shape[0]
    boxes = as_device(boxes, "nms boxes", dtype=np.float64)
    classes = as_device(classes, "nms classes", dtype=np.int64)
    mask = check_out(out, (n, words_for(n)), np.uint64, "suppression_mask")
    if n:
        grid = (words_for(n), blocks_for(n, block))
        suppression_mask_kernel[grid, block](boxes, classes, float(iou_threshold), mask)
    return mask


def walk_mask(mask: np.ndarray, max_output: int | None = None) -> np.ndarray:
    """The sequential pass: positions (in walk order) of the kept boxes, int64.

    ``mask``: the host copy of :func:`suppression_mask`'s result.
    """
    n = mask.shape[0]
    limit = n if max_output is None else min(n, max_output)
    removed = np.zeros(mask.shape[1], dtype=np.uint64)
    keep = []
    for i in range(n):
        if len(keep) == limit:
            break
        if (int(removed[i // WORD]) >> (i % WORD)) & 1:
            continue
        keep.append(i)
        removed |= mask[i]
    return np.array(keep, dtype=np.int64)


def nms(
    boxes, scores, classes=None, iou_threshold=0.5, max_output=None, block: int | None = None
) -> np.ndarray:
    """Greedy per-class NMS with the mask on the GPU; the kept indices, int64, on the host.

    Arguments as :func:`overfeat_scratch.ops.nms.nms` (host arrays), plus ``block``:
    threads per block of the mask kernel (default 64 on a GPU, 4 on the simulator).
    """
    boxes, scores, classes, threshold, max_output = check_nms_args(
        boxes, scores, classes, iou_threshold, max_output
    )
    order = score_order(scores)
    if order.size == 0 or max_output == 0:
        return np.zeros(0, dtype=np.int64)
    mask = suppression_mask(boxes[order], classes[order], threshold, block)
    return order[walk_mask(mask.copy_to_host(), max_output)].astype(np.int64)
