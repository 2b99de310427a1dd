"""The greedy box merge on the GPU, matching :mod:`overfeat_scratch.ops.merge` exactly.

The bookkeeping is that of :func:`~overfeat_scratch.ops.merge.merge_fast`: for every
alive slot, its best partner and that score (ties: the smallest index). Boxes,
confidences, counts and partners stay on the device; the host runs one round per
iteration, reading back three numbers (the best pair and its score) to decide
whether to go on. One round is five launches:

1. :func:`best_pair_kernel`: one thread per slot offers ``(score, min(r, p),
   max(r, p))`` for its best partner ``p``; a tree in shared memory keeps the
   lexicographically smallest triple of the block, one per block.
2. :func:`final_pair_kernel`: one block reduces the per-block triples the same way
   (each thread first runs through a strided slice of them). The smallest triple
   is the pair to merge (see the argument in :mod:`overfeat_scratch.ops.merge`).
3. :func:`merge_pair_kernel`: one thread averages the two boxes into slot ``i``,
   adds confidences and counts, and kills slot ``j``.
4. :func:`merge_update_kernel`: one thread per slot of the class scores the new box
   against its slot and updates that slot's best partner, or appends the slot to a
   list of rows to rescan (an atomic counter) when its best partner got worse.
   Slot ``i`` always goes on the list.
5. :func:`row_best_kernel`: one *block* per listed row (a grid-stride loop over the
   list): the block's threads stride over the row's class, each keeping its best
   ``(score, index)``, and a tree in shared memory keeps the smallest. The same
   kernel, with every row listed, computes the partners at the start.

Every pair score is :func:`overfeat_scratch.ops.merge.pair_score`, compiled as a device
function, evaluated in the order (smaller slot, larger slot) as on the CPU. On the
simulator the result equals the CPU's to the last bit. On a GPU the compiler may
fuse a multiply and an add into one FMA (one rounding instead of two), so a score
can differ in its last bit from the CPU's, and a near-tie between two pairs may
then be resolved the other way. Identical boxes still score exactly 0 (that case
is decided by comparing coordinates, not by arithmetic).

Block sizes are parameters. Shared arrays must have compile-time shapes, so each
block size is its own set of kernels, made by :func:`make_kernels` and cached.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64, int64

from ..common.checks import InputError, check_positive_int
from ..ops.merge import (
    MergeResult,
    assemble,
    merge_into_rule,
    merge_weights,
    merged_coordinate,
    pair_score_rule,
    prepare,
)
from . import SIMULATOR, THREADS, blocks_for
from .boxes import iou_device

# The scalar rules of the CPU code, compiled for the device.
_pair_score = cuda.jit(device=True)(pair_score_rule(iou_device))
_merge_into = cuda.jit(device=True)(
    merge_into_rule(cuda.jit(device=True)(merge_weights), cuda.jit(device=True)(merged_coordinate))
)

# Index offered by a slot with no partner: larger than any slot.
NO_PAIR = 1 << 62


@cuda.jit(device=True)
def score_slots(b, i, j, kind):
    """The score of slots ``i`` and ``j``, evaluated in the order (smaller, larger)."""
    if j < i:
        i, j = j, i
    return _pair_score(b[i, 0], b[i, 1], b[i, 2], b[i, 3], b[j, 0], b[j, 1], b[j, 2], b[j, 3], kind)


@cuda.jit(device=True)
def triple_less(s1, i1, j1, s2, i2, j2):
    """Whether ``(s1, i1, j1) < (s2, i2, j2)`` lexicographically."""
    return s1 < s2 or (s1 == s2 and (i1 < i2 or (i1 == i2 and j1 < j2)))


@functools.cache
def make_kernels(threads: int):
    """The kernels whose blocks have ``threads`` threads (a power of two)."""

    @cuda.jit(device=True)
    def reduce_triples(sh_s, sh_i, sh_j, s, i, j):
        """The smallest ``(s, i, j)`` of the block, returned to thread 0."""
        tid = cuda.threadIdx.x
        sh_s[tid] = s
        sh_i[tid] = i
        sh_j[tid] = j
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if tid < step:
                o = tid + step
                if triple_less(sh_s[o], sh_i[o], sh_j[o], sh_s[tid], sh_i[tid], sh_j[tid]):
                    sh_s[tid] = sh_s[o]
                    sh_i[tid] = sh_i[o]
                    sh_j[tid] = sh_j[o]
            cuda.syncthreads()
            step //= 2
        return sh_s[0], sh_i[0], sh_j[0]

    @cuda.jit
    def best_pair_kernel(alive, best, best_score, part_s, part_i, part_j):
        """One thread per slot; one ``(score, i, j)`` per block, the block's smallest."""
        sh_s = cuda.shared.array(threads, float64)
        sh_i = cuda.shared.array(threads, int64)
        sh_j = cuda.shared.array(threads, int64)
        r = cuda.grid(1)
        s, i, j = math.inf, NO_PAIR, NO_PAIR
        if r < best.shape[0]:
            p = best[r]
            if alive[r] != 0 and p >= 0:
                s, i, j = best_score[r], min(r, p), max(r, p)
        s, i, j = reduce_triples(sh_s, sh_i, sh_j, s, i, j)
        if cuda.threadIdx.x == 0:
            part_s[cuda.blockIdx.x] = s
            part_i[cuda.blockIdx.x] = i
            part_j[cuda.blockIdx.x] = j

    @cuda.jit
    def final_pair_kernel(part_s, part_i, part_j, result):
        """One block: the smallest of the per-block triples, as float64 ``[s, i, j]``."""
        sh_s = cuda.shared.array(threads, float64)
        sh_i = cuda.shared.array(threads, int64)
        sh_j = cuda.shared.array(threads, int64)
        tid = cuda.threadIdx.x
        s, i, j = math.inf, NO_PAIR, NO_PAIR
        for q in range(tid, part_s.shape[0], threads):
            if triple_less(part_s[q], part_i[q], part_j[q], s, i, j):
                s, i, j = part_s[q], part_i[q], part_j[q]
        s, i, j = reduce_triples(sh_s, sh_i, sh_j, s, i, j)
        if tid == 0:
            result[0] = s
            result[1] = i
            result[2] = j

    @cuda.jit
    def row_best_kernel(b, alive, start, stop, rows, n_rows, kind, best, best_score):
        """One block per row of ``rows[:n_rows[0]]``: its best partner over its class.

        Each thread scans columns ``start + tid, start + tid + threads, ...`` in
        ascending order, keeping a strictly smaller score (so the smallest index
        among its ties); the tree keeps the smallest ``(score, index)``. A column
        with no finite score is never taken, as on the CPU.
        """
        sh_s = cuda.shared.array(threads, float64)
        sh_c = cuda.shared.array(threads, int64)
        sh_zero = cuda.shared.array(threads, int64)
        tid = cuda.threadIdx.x
        q = cuda.blockIdx.x
        count = n_rows[0]
        while q < count:
            r = rows[q]
            best_s, best_c = math.inf, NO_PAIR
            c = start[r] + tid
            while c < stop[r]:
                if c != r and alive[c] != 0:
                    s = score_slots(b, r, c, kind)
                    if s < best_s:
                        best_s, best_c = s, c
                c += threads
            # The triple tree on (score, column, 0): the smallest score, then column.
            s, c, _ = reduce_triples(sh_s, sh_c, sh_zero, best_s, best_c, 0)
            if tid == 0:
                if c == NO_PAIR:
                    best[r] = -1
                    best_score[r] = math.inf
                else:
                    best[r] = c
                    best_score[r] = s
            cuda.syncthreads()  # the tree is free again before the next row
            q += cuda.gridDim.x

    return best_pair_kernel, final_pair_kernel, row_best_kernel


@cuda.jit
def merge_pair_kernel(b, conf, counts, alive, best, best_score, n_rows, i, j, average):
    """One thread: merge slot ``j`` into slot ``i``; empty the list of rows to rescan."""
    if cuda.grid(1) == 0:
        _merge_into(b, conf, counts, i, j, average)
        alive[j] = 0
        best[j] = -1
        best_score[j] = math.inf
        n_rows[0] = 0


@cuda.jit
def merge_update_kernel(b, alive, i, j, lo, hi, kind, best, best_score, rows, n_rows):
    """One thread per slot ``c`` of the class ``[lo, hi)``: the new box ``i`` as its partner.

    The rules (argued in :mod:`overfeat_scratch.ops.merge`): a slot whose best partner
    was ``i`` or ``j`` takes the new box if it scores no worse, else is listed for a
    rescan; any other slot takes the new box if it scores better, or equal with a
    smaller index. Slot ``i`` is always listed.
    """
    c = lo + cuda.grid(1)
    if c < hi and alive[c] != 0:
        if c == i:
            rows[cuda.atomic.add(n_rows, 0, 1)] = c
        else:
            s = score_slots(b, i, c, kind)
            p = best[c]
            if p == i or p == j:
                if s <= best_score[c]:
                    best[c] = i
                    best_score[c] = s
                else:
                    rows[cuda.atomic.add(n_rows, 0, 1)] = c
            elif s < best_score[c] or (s == best_score[c] and i < p):
                best[c] = i
                best_score[c] = s


def default_row_blocks() -> int:
    """Blocks of the row kernel: two per multiprocessor (two on the simulator)."""
    if SIMULATOR:
        return 2
    return 2 * cuda.get_current_device().MULTIPROCESSOR_COUNT


def merge_cuda(
    boxes,
    classes,
    confidences,
    threshold=0.5,
    score="center_iou",
    average="pair",
    threads=None,
    row_blocks=None,
) -> MergeResult:
    """The greedy merge with Numba-CUDA kernels; same arguments and result as
    :func:`overfeat_scratch.ops.merge.merge_fast`.

    ``threads``: threads per block of every kernel, a power of two (default
    ``THREADS``: 256, 32 on the simulator). ``row_blocks``: blocks of the row
    kernel, which loops over the rows to rescan (default: two per multiprocessor).
    """
    threads = THREADS if threads is None else check_positive_int(threads, "threads")
    if threads & (threads - 1) or threads > 1024:
        raise InputError(f"threads: expected a power of two up to 1024, got {threads}")
    row_blocks = default_row_blocks() if row_blocks is None else row_blocks
    row_blocks = check_positive_int(row_blocks, "row_blocks")
    prep = prepare(boxes, classes, confidences, threshold, score, average)
    n = prep.boxes.shape[0]
    parent = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return assemble(
            prep, prep.boxes, prep.confidences, np.ones(n, np.int64), np.ones(n, bool), parent
        )
    best_pair, final_pair, row_best = make_kernels(threads)
    b = cuda.to_device(prep.boxes)
    conf = cuda.to_device(prep.confidences)
    counts = cuda.to_device(np.ones(n, dtype=np.int64))
    alive = cuda.to_device(np.ones(n, dtype=np.uint8))
    best = cuda.to_device(np.full(n, -1, dtype=np.int64))
    best_score = cuda.to_device(np.full(n, np.inf))
    start = cuda.to_device(prep.class_start)
    stop = cuda.to_device(prep.class_stop)
    rows = cuda.to_device(np.arange(n, dtype=np.int64))  # at first: every row
    n_rows = cuda.to_device(np.array([n], dtype=np.int64))
    pair_blocks = blocks_for(n, threads)
    part_s = cuda.device_array(pair_blocks, dtype=np.float64)
    part_i = cuda.device_array(pair_blocks, dtype=np.int64)
    part_j = cuda.device_array(pair_blocks, dtype=np.int64)
    result = cuda.device_array(3, dtype=np.float64)
    found = cuda.pinned_array(3, dtype=np.float64)

    row_best_launch = row_best[row_blocks, threads]
    best_pair_launch = best_pair[pair_blocks, threads]
    final_pair_launch = final_pair[1, threads]
    row_best_launch(b, alive, start, stop, rows, n_rows, prep.score, best, best_score)
    while True:
        best_pair_launch(alive, best, best_score, part_s, part_i, part_j)
        final_pair_launch(part_s, part_i, part_j, result)
        result.copy_to_host(found)
        top, i, j = float(found[0]), int(found[1]), int(found[2])
        if not top <= prep.threshold:
            break
        merge_pair_kernel[1, 1](
            b, conf, counts, alive, best, best_score, n_rows, i, j, prep.average
        )
        lo, hi = int(prep.class_start[i]), int(prep.class_stop[i])
        merge_update_kernel[blocks_for(hi - lo, threads), threads](
            b, alive, i, j, lo, hi, prep.score, best, best_score, rows, n_rows
        )
        row_best_launch(b, alive, start, stop, rows, n_rows, prep.score, best, best_score)
        parent[j] = i
    return assemble(
        prep,
        b.copy_to_host(),
        conf.copy_to_host(),
        counts.copy_to_host(),
        alive.copy_to_host() != 0,
        parent,
    )
