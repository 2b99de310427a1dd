"""The greedy box merge of OverFeat's localization (paper Sec. 4.3), three ways.

Every window of a dense evaluation predicts a box for each of its top classes, so
one object is found hundreds of times, by neighbouring windows and at several
scales. OverFeat does not pick one of those boxes and suppress the rest (non-maximum
suppression); it *accumulates* them: repeatedly take the two boxes that agree most,
replace them by their average, and add up their confidences. A box that many
windows agree on ends up with a large summed confidence; a stray prediction stays
alone with the small confidence of its one window.

The algorithm, for boxes ``(n, 4)`` as ``[x0, y0, x1, y1]`` in image pixels, their
classes ``(n,)`` and confidences ``(n,)`` (the class output of the window that
predicted the box, >= 0)::

    repeat:
        (b1, b2) = the pair of alive boxes of the same class with the smallest
                   match_score
        if match_score(b1, b2) > t: stop
        replace b1 and b2 by box_merge(b1, b2)

A merged box's confidence is the sum of the confidences of every input merged into
it. The result (:class:`MergeResult`) also says how many inputs each output holds
(``counts``) and, for each input, which output it ended in (``members``). Outputs
are sorted by confidence, largest first.

Parameters
----------
``score``: what "agree" means. The paper defines the match score as "the sum of the
distance between centers of the two bounding boxes and the intersection area of
the boxes". Read literally that sum *grows* with the overlap, so its minimum would
pair boxes that do not overlap at all: the wrong direction for an argmin. The
intent is clearly "close centres and a large overlap", so this module offers three
scores that are small for boxes describing the same object:

- ``"center_iou"`` (default): ``||c1 - c2|| / ((diag1 + diag2) / 2) + (1 - IoU)``.
  The centre distance is divided by the mean diagonal so that the score does not
  depend on the image's scale (two 20-pixel boxes 10 pixels apart agree as badly
  as two 200-pixel boxes 100 pixels apart), and ``1 - IoU`` replaces the
  intersection area, which has the wrong sign and is not scale-free either. The
  centre term separates boxes that do not overlap at all (their ``1 - IoU`` is 1
  whatever their distance); the IoU term separates concentric boxes of different
  sizes (their centre term is 0).
- ``"iou"``: ``1 - IoU`` alone, the overlap criterion of non-maximum suppression.
- ``"center"``: the normalised centre distance alone.

Degenerate boxes get a definite answer rather than a NaN:

- identical boxes score exactly 0 in every convention (tested first, so no
  rounding can spoil it); hence ``t = 0`` merges exact duplicates and nothing else
  (except, for ``"center"``, boxes that share a centre exactly);
- the IoU is the package's one rule (:mod:`overfeat_scratch.ops.boxes`): 0 unless the boxes share an
  area greater than zero, so two zero-size boxes have IoU 0 (and, being identical,
  score 0 by the rule above when they are the same box);
- the mean diagonal is floored at ``TINY`` (1e-12 pixels) so that two zero-size boxes
  do not divide by zero: two distinct points score ``distance / 1e-12``, huge, and
  never merge.

``average``: how ``box_merge`` averages two boxes, coordinate by coordinate.

- ``"pair"`` (the paper): the plain mean ``(b1 + b2) / 2``. Simple, but a box that
  already holds 50 inputs counts no more than a lone stray box, so the order of the
  merges moves the result.
- ``"count"``: the mean weighted by how many inputs each box holds, so a merged box
  is the mean of *all* the inputs it holds, whatever the order of the merges.
- ``"confidence"``: weighted by the boxes' summed confidences, so confident windows
  pull harder. When both confidences are 0 it falls back to ``"count"``.

Rounding could push a weighted mean a hair outside the two coordinates it averages;
the result is clamped to ``[min(a, b), max(a, b)]``, so a merged box always lies
within the hull of the inputs it holds. (The three rules are one formula,
``(a * wa + b * wb) / (wa + wb)``; with ``wa = wb = 1`` it is exactly ``(a + b) / 2``.)

``threshold`` ``t``: merge while the best score is ``<= t``. Scores are >= 0, so a
negative ``t`` merges nothing; ``t = 0`` merges exact duplicates only. With the
default score, ``t = 0.5`` merges boxes whose centres are a fifth of a diagonal
apart and overlap with an IoU of about 0.7. The paper does not give its ``t``.

Only boxes of the same class are ever merged: two classes found at one place are
two answers, and both are kept.

Determinism
-----------
Ties are common (boxes on an integer grid, duplicated windows), so the order of the
merges must not depend on how the input happened to be ordered. The inputs are
first sorted canonically with ``np.lexsort`` on ``(class, x0, y0, x1, y1,
confidence)``, so every permutation of the input gives the same sorted array and
hence the same output (*permutation invariance*; ``members`` follows the inputs).
In that order:

- among pairs with the same best score, the lexicographically smallest ``(i, j)``,
  ``i < j``, merges first;
- the merged box takes slot ``i``; slot ``j`` dies;
- a pair's score is always evaluated as ``score(box[i], box[j])`` with ``i < j``;
- the outputs are sorted by confidence, largest first, ties by slot.

All scores are float64, computed by one plain Python function, :func:`pair_score`
(built by :func:`pair_score_rule` on :func:`.boxes.iou`), compiled three times: with
``numba.njit`` for the CPU loops, with ``numba.vectorize`` as a NumPy ufunc that the
literal reference applies to whole arrays (:func:`match_scores`), and with
``numba.cuda.jit(device=True)`` for the GPU. Each operation (``+ - * /``, ``sqrt``,
``min``, ``max``) is correctly rounded in IEEE arithmetic, and none of the
compilations reorders them, so the implementations make the same decisions and return
the same floats. On the CUDA simulator this holds exactly. A real GPU compiler may
contract ``a * b + c`` into one fused multiply-add (one rounding instead of two), so
there a score can differ in its last bit, and a near-tie between two pairs could then
be resolved the other way.

Implementations
---------------
1. :func:`merge_literal`: the reference. Every round recomputes the whole ``n x n``
   score matrix with NumPy (dead boxes, the diagonal, pairs ``j <= i`` and pairs of
   different classes masked with ``+inf``) and takes its argmin. ``O(n^2)`` per
   merge, ``O(n^3)`` in all: for small inputs and for checking the others.
2. :func:`merge_fast`: keeps, for every alive box, its best partner and that score,
   and after a merge updates only what the merge changed: one pass over the merged
   box's class, plus a rescan of the few rows whose best partner got worse.
   Compiled loops (Numba). ``O(n_c^2)`` to start (``n_c``: boxes of a class), then
   about ``O(n_c)`` per merge: thousands of times faster than the reference at a
   few thousand boxes (``benchmarks/bench_merge.py``).
3. :func:`overfeat_scratch.cuda.merge.merge_cuda`: the same bookkeeping on the GPU,
   one round per host iteration.

The backends choose: ``get_backend(name).greedy_merge(...)`` is :func:`merge_fast` on
``"numpy"`` and :func:`~overfeat_scratch.cuda.merge.merge_cuda` on ``"cuda"``, so a
network and its merge run in one place. :func:`match_scores` gives the whole score
matrix; the IoU matrix is :func:`.boxes.iou_matrix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from ..common.checks import InputError, InputTypeError, check_positive_int
from . import boxes as box_rules
from .boxes import check_boxes, columns

# Codes of the score and averaging conventions, as the compiled loops see them.
SCORES = {"center_iou": 0, "iou": 1, "center": 2}
AVERAGES = {"pair": 0, "count": 1, "confidence": 2}
SCORE_CENTER_IOU, SCORE_IOU, SCORE_CENTER = 0, 1, 2
AVERAGE_PAIR, AVERAGE_COUNT, AVERAGE_CONFIDENCE = 0, 1, 2

REAL_TYPES = (int, float, np.integer, np.floating)

# Entries of the score matrix that the literal merge computes at once.
BLOCK_ENTRIES = 1 << 22

# Floor of the mean diagonal that normalises the centre distance, in pixels.
TINY = 1e-12


@dataclass(frozen=True)
class MergeResult:
    """The merged boxes, sorted by confidence (largest first).

    - ``boxes``: ``(m, 4)`` float64 ``[x0, y0, x1, y1]``;
    - ``classes``: ``(m,)`` int64;
    - ``confidences``: ``(m,)`` float64, each the sum over the inputs it holds;
    - ``counts``: ``(m,)`` int64, how many inputs each output holds;
    - ``members``: ``(n,)`` int64, for input ``k`` the index of its output:
      ``boxes[members[k]]`` is where input ``k`` ended.
    """

    boxes: np.ndarray
    classes: np.ndarray
    confidences: np.ndarray
    counts: np.ndarray
    members: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------------------
# The scalar rules, written once. These are plain Python functions: the literal
# reference calls them as they are, merge_fast calls their numba.njit compilations,
# and the CUDA kernels their numba.cuda.jit(device=True) compilations. They call no
# other function of this module (a compiled function can only call compiled ones).


def pair_score_rule(iou):
    """The match score as a function of boxes ``a`` and ``b``, built on the IoU rule
    ``iou``: the plain :func:`.boxes.iou` for the reference, its ``njit`` or CUDA
    device compilation for the compiled loops (a compiled function can only call
    compiled ones, so each compilation gets the IoU compiled the same way)."""

    def pair_score(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1, kind):
        """The match score of boxes ``a`` and ``b`` (float64); ``kind``: a ``SCORES``
        code. :func:`match_scores` computes the same operations in the same order."""
        if ax0 == bx0 and ay0 == by0 and ax1 == bx1 and ay1 == by1:
            return 0.0
        result = 0.0
        if kind != SCORE_IOU:
            wa = ax1 - ax0
            ha = ay1 - ay0
            wb = bx1 - bx0
            hb = by1 - by0
            dx = (ax0 + ax1) * 0.5 - (bx0 + bx1) * 0.5
            dy = (ay0 + ay1) * 0.5 - (by0 + by1) * 0.5
            dist = math.sqrt(dx * dx + dy * dy)
            norm = (math.sqrt(wa * wa + ha * ha) + math.sqrt(wb * wb + hb * hb)) * 0.5
            norm = max(norm, TINY)
            result = dist / norm
        if kind != SCORE_CENTER:
            result = result + (1.0 - iou(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1))
        return result

    return pair_score


pair_score = pair_score_rule(box_rules.iou)


def merge_weights(average, count_a, count_b, conf_a, conf_b):
    """``(wa, wb)``: the weights of boxes ``a`` and ``b`` in their average."""
    if average == AVERAGE_COUNT:
        return float(count_a), float(count_b)
    if average == AVERAGE_CONFIDENCE:
        if conf_a + conf_b > 0.0:
            return conf_a, conf_b
        return float(count_a), float(count_b)
    return 1.0, 1.0


def merged_coordinate(a, b, wa, wb):
    """``(a * wa + b * wb) / (wa + wb)``, clamped to ``[min(a, b), max(a, b)]``."""
    value = (a * wa + b * wb) / (wa + wb)
    return min(max(value, min(a, b)), max(a, b))


_pair_score_compiled = pair_score_rule(box_rules.iou_compiled)
_pair_score = numba.njit(cache=False, nogil=True)(_pair_score_compiled)
# The same rule as a NumPy ufunc (compiled at its first call): boxes broadcast against
# boxes, one score per pair.
_pair_score_ufunc = numba.vectorize(nopython=True)(_pair_score_compiled)


def merge_into_rule(weights, coordinate):
    """The step that merges two boxes, built on the rules ``weights`` and ``coordinate``
    (plain, ``njit`` or CUDA device compilations of :func:`merge_weights` and
    :func:`merged_coordinate`)."""

    def merge_into(b, conf, counts, i, j, average):
        """Box ``j`` joins box ``i``: slot ``i`` takes their average (by ``average``, an
        ``AVERAGES`` code), their summed confidence and their summed count."""
        wa, wb = weights(average, counts[i], counts[j], conf[i], conf[j])
        for k in range(4):
            b[i, k] = coordinate(b[i, k], b[j, k], wa, wb)
        conf[i] = conf[i] + conf[j]
        counts[i] = counts[i] + counts[j]

    return merge_into


merge_into = merge_into_rule(merge_weights, merged_coordinate)
_merge_weights = numba.njit(cache=False, nogil=True)(merge_weights)
_merged_coordinate = numba.njit(cache=False, nogil=True)(merged_coordinate)
_merge_into = numba.njit(cache=False, nogil=True)(
    merge_into_rule(_merge_weights, _merged_coordinate)
)


# --------------------------------------------------------------------------------------
# Checking the input, the canonical order, and the result.


class Prepared(NamedTuple):
    """Checked input in canonical order, as the three implementations take it."""

    order: np.ndarray  # sorted position -> input index
    boxes: np.ndarray  # (n, 4) float64, C-contiguous, a fresh copy
    classes: np.ndarray  # (n,) int64
    confidences: np.ndarray  # (n,) float64, a fresh copy
    class_start: np.ndarray  # (n,) int64: first sorted slot of each box's class
    class_stop: np.ndarray  # (n,) int64: one past its last
    threshold: float
    score: int  # a SCORES code
    average: int  # an AVERAGES code


def _numeric(x, name: str, ndim: int | None, kinds: str, what: str) -> np.ndarray:
    """``x`` as an array (of rank ``ndim`` unless None) whose dtype kind is in ``kinds``."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as error:  # ragged nested lists, for example
        raise InputError(f"{name}: expected {what}, got {type(x).__name__} ({error})") from None
    # An empty list arrives as float64: let it pass as any numeric kind.
    if arr.dtype.kind not in kinds and not (arr.size == 0 and arr.dtype.kind in "iufb"):
        raise InputTypeError(f"{name}: expected {what}, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name}: expected {what}, got shape {arr.shape}")
    return arr


def check_code(value, table: dict, name: str) -> int:
    """The code of the convention ``value`` in ``table``, or a clear error."""
    if not isinstance(value, str) or value not in table:
        choices = ", ".join(repr(k) for k in table)
        raise InputError(f"{name}: expected one of {choices}, got {value!r}")
    return table[value]


def prepare(boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"):
    """Check every argument of the merge and sort the rows canonically: a :class:`Prepared`."""
    boxes = check_boxes(boxes)
    n = boxes.shape[0]
    classes = _numeric(classes, "classes", 1, "iub", "a (n,) array of integer class labels")
    conf = _numeric(confidences, "confidences", 1, "iuf", "a (n,) array of real confidences")
    if classes.shape[0] != n or conf.shape[0] != n:
        raise InputError(
            f"greedy merge: lengths disagree: {n} boxes, {classes.shape[0]} classes, "
            f"{conf.shape[0]} confidences; expected one class and one confidence per box"
        )
    classes = classes.astype(np.int64)
    conf = np.array(conf, dtype=np.float64) + 0.0
    if not np.isfinite(conf).all():
        bad = np.flatnonzero(~np.isfinite(conf))
        raise InputError(
            f"confidences: {bad.size} NaN or infinite value(s) (first at index {bad[0]}); "
            "expected finite confidences >= 0"
        )
    if (conf < 0).any():
        bad = np.flatnonzero(conf < 0)
        raise InputError(
            f"confidences: {bad.size} negative value(s) (first at index {bad[0]}: "
            f"{conf[bad[0]]}); expected confidences >= 0"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, REAL_TYPES):
        raise InputTypeError(f"threshold: expected a real number, got {threshold!r}")
    if not np.isfinite(threshold):
        raise InputError(f"threshold: expected a finite number, got {threshold}")
    kind = check_code(score, SCORES, "score")
    avg = check_code(average, AVERAGES, "average")

    # np.lexsort sorts by its last key first: class, then x0, y0, x1, y1, confidence.
    order = np.lexsort((conf, boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], classes))
    classes = classes[order]
    # Sorted by class first, each class is one run of slots: [start, stop).
    labels, first, sizes = np.unique(classes, return_index=True, return_counts=True)
    run = np.repeat(np.arange(labels.size), sizes)
    return Prepared(
        order=order,
        boxes=np.ascontiguousarray(boxes[order]),
        classes=classes,
        confidences=np.ascontiguousarray(conf[order]),
        class_start=first[run].astype(np.int64),
        class_stop=(first + sizes)[run].astype(np.int64),
        threshold=float(threshold),
        score=kind,
        average=avg,
    )


def assemble(prep: Prepared, boxes, confidences, counts, alive, parent) -> MergeResult:
    """The :class:`MergeResult` of a finished merge, from its slot arrays.

    ``parent[j]`` is the slot that slot ``j`` was merged into (``-1`` while alive);
    merges always go into the smaller slot, so ``parent[j] < j`` and one pass in
    slot order resolves every input's final slot.
    """
    n = prep.boxes.shape[0]
    root = np.arange(n)
    for k in range(n):
        if parent[k] >= 0:
            root[k] = root[parent[k]]
    slots = np.flatnonzero(alive)
    conf = confidences[slots]
    # Confidence descending; ties by slot (lexsort is stable, slots are ascending).
    out = slots[np.lexsort((slots, -conf))]
    position = np.full(n, -1, dtype=np.int64)
    position[out] = np.arange(out.size)
    members = np.empty(n, dtype=np.int64)
    members[prep.order] = position[root]
    return MergeResult(
        boxes=np.array(boxes[out], dtype=np.float64).reshape(-1, 4),
        classes=prep.classes[out].copy(),
        confidences=np.array(confidences[out], dtype=np.float64),
        counts=np.array(counts[out], dtype=np.int64),
        members=members,
    )


# --------------------------------------------------------------------------------------
# Whole score matrices (NumPy). The same operations as pair_score, in the same order.


def _score_matrix(a, b, kind):
    """``S[p, q] = pair_score(a[p], b[q])`` for checked float64 boxes: the compiled
    rule, broadcast over every pair by a NumPy ufunc, so it is the same number to the
    last bit."""
    return _pair_score_ufunc(*columns(a, 0), *columns(b, 1), kind)


def match_scores(a, b, score: str = "center_iou") -> np.ndarray:
    """The ``(len(a), len(b))`` float64 matrix of match scores between two sets of boxes.

    ``a, b``: ``(p, 4)`` and ``(q, 4)`` ``[x0, y0, x1, y1]`` boxes; ``score``: one of
    ``"center_iou"``, ``"iou"``, ``"center"`` (see the module docstring). Entry
    ``[p, q]`` equals :func:`pair_score` of ``a[p]`` and ``b[q]`` to the last bit.
    """
    a = check_boxes(a, "match_scores a")
    b = check_boxes(b, "match_scores b")
    return _score_matrix(a, b, check_code(score, SCORES, "score"))


# --------------------------------------------------------------------------------------
# 1. The reference: the whole score matrix, every round


def merge_literal(
    boxes,
    classes,
    confidences,
    threshold=0.5,
    score="center_iou",
    average="pair",
    max_rounds=None,
) -> MergeResult:
    """The greedy merge as the paper states it: argmin of the whole score matrix, each round.

    ``O(n^2)`` time per merge. The matrix is computed in blocks of rows, so memory
    stays bounded at any ``n`` (about 32 MB per block); every entry is still
    recomputed every round. ``max_rounds``: stop after that many merges (to time the
    first rounds of a merge too long to finish); ``None`` runs to the end.
    """
    if max_rounds is not None:
        max_rounds = check_positive_int(max_rounds, "max_rounds", minimum=0)
    prep = prepare(boxes, classes, confidences, threshold, score, average)
    b, cls = prep.boxes, prep.classes
    conf = prep.confidences
    n = b.shape[0]
    counts = np.ones(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    parent = np.full(n, -1, dtype=np.int64)
    rows_per_block = max(1, BLOCK_ENTRIES // max(n, 1))
    columns = np.arange(n)
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        best, bi, bj = np.inf, -1, -1
        for r0 in range(0, n, rows_per_block):
            r1 = min(n, r0 + rows_per_block)
            s = _score_matrix(b[r0:r1], b, prep.score)
            rows = columns[r0:r1, None]
            valid = (
                (columns[None, :] > rows)
                & (cls[r0:r1, None] == cls[None, :])
                & alive[r0:r1, None]
                & alive[None, :]
            )
            s[~valid] = np.inf
            # np.argmin returns the first minimum in row-major order: the smallest
            # (i, j) among ties. A later block wins only with a strictly smaller score.
            flat = int(np.argmin(s))
            if s.flat[flat] < best:
                best = s.flat[flat]
                bi, bj = r0 + flat // n, flat % n
        if bi < 0 or not best <= prep.threshold:
            break
        merge_into(b, conf, counts, bi, bj, prep.average)
        alive[bj] = False
        parent[bj] = bi
        rounds += 1
    return assemble(prep, b, conf, counts, alive, parent)


# --------------------------------------------------------------------------------------
# 2. Best partners, updated after each merge (compiled loops)
#
# Invariant: for every alive slot r, (best_score[r], best[r]) is the smallest
# (score(r, c), c) over the alive slots c != r of r's class; best[r] = -1 and
# best_score[r] = inf when r has no partner. Scanning c in ascending order and
# replacing only on a strictly smaller score keeps the smallest c among ties.
#
# The best pair is the smallest (best_score[r], min(r, best[r]), max(r, best[r]))
# over the alive rows. Why that is the lexicographically smallest pair (i*, j*)
# among those with the smallest score s*: row i*'s best score cannot be below s*
# (s* is the minimum) and j* reaches it, so row i*'s best score is s*. A partner
# k < i* with score s* would make (k, i*) a smaller tied pair than (i*, j*):
# impossible; a partner i* < k < j* with score s* likewise. So j* is the smallest
# index with score s* in row i*, and row i* offers exactly (s*, i*, j*). Every
# other row offers some pair with score >= s*, which as a triple is >= the
# smallest one, (s*, i*, j*). The same holds within each class, so each class keeps
# its own best triple, and a merge, which touches one class, rescans that class's
# rows only; the global best is the smallest of the classes' triples.
#
# After merging slot j into slot i, only pairs involving i or j changed. For each
# other alive row c of the class, with s = score(i, c) of the new box:
# - best[c] not i or j: its best over the unchanged candidates is still best[c];
#   the only new contender is i: it wins if s is smaller, or equal with i < best[c].
# - best[c] == i or j (the partner it had, old score s0, is gone or changed): every
#   other candidate scores >= s0, and a tie at s0 has an index above best[c] >= i.
#   So if s <= s0 the new box i is the best partner; otherwise the row is rescanned
#   over its whole class ("stale").
# Row i is rescanned in the same pass over the class.
#
# Each class keeps its alive slots packed and ascending at the start of its run
# of slots (``live``), so passes skip the dead: a death shifts the rest of the
# class's list left by one.


@numba.njit(cache=False, nogil=True)
def _score_slots(b, i, j, kind):
    """The score of slots ``i`` and ``j``, always evaluated in the order (smaller, larger)."""
    if j < i:
        i, j = j, i
    return _pair_score(b[i, 0], b[i, 1], b[i, 2], b[i, 3], b[j, 0], b[j, 1], b[j, 2], b[j, 3], kind)


@numba.njit(cache=False, nogil=True)
def _rescan_row(b, live, lo, hi, r, kind, best, best_score):
    """Row ``r``'s best partner among the alive slots ``live[lo:hi]`` (ascending)."""
    best_c, best_s = -1, np.inf
    for q in range(lo, hi):
        c = live[q]
        if c != r:
            s = _score_slots(b, r, c, kind)
            if s < best_s:
                best_s, best_c = s, c
    best[r] = best_c
    best_score[r] = best_s


@numba.njit(cache=False, nogil=True)
def _class_best(live, lo, hi, best, best_score):
    """The smallest ``(score, smaller slot, larger slot)`` over the rows ``live[lo:hi]``."""
    top_s, top_i, top_j = np.inf, -1, -1
    for q in range(lo, hi):
        r = live[q]
        p = best[r]
        if p >= 0:
            s = best_score[r]
            i, j = min(r, p), max(r, p)
            if s < top_s or (s == top_s and (i < top_i or (i == top_i and j < top_j))):
                top_s, top_i, top_j = s, i, j
    return top_s, top_i, top_j


@numba.njit(cache=False, nogil=True)
def _merge_fast_loop(b, conf, counts, first, kind, average, threshold, parent):
    """Merge in place; returns ``alive``.

    Class ``g`` (0, 1, ...) holds the slots ``first[g]:first[g + 1]``.
    ``parent[j]``: the slot that ``j`` was merged into.
    """
    n = b.shape[0]
    groups = first.shape[0] - 1
    alive = np.ones(n, dtype=np.bool_)
    live = np.arange(n)
    size = first[1:] - first[:-1]
    best = np.full(n, -1, dtype=np.int64)
    best_score = np.full(n, np.inf)
    stale = np.empty(n, dtype=np.int64)
    # Every pair of a class once, updating both rows. Row r sees its candidates in
    # ascending order: first c < r (as the outer loop reaches c), then c > r (its own
    # inner loop), so a strictly smaller score keeps the smallest index among ties.
    for g in range(groups):
        for r in range(first[g], first[g + 1]):
            for c in range(r + 1, first[g + 1]):
                s = _score_slots(b, r, c, kind)
                if s < best_score[r]:
                    best_score[r], best[r] = s, c
                if s < best_score[c]:
                    best_score[c], best[c] = s, r
    top_s = np.full(groups, np.inf)
    top_i = np.full(groups, -1, dtype=np.int64)
    top_j = np.full(groups, -1, dtype=np.int64)
    for g in range(groups):
        top_s[g], top_i[g], top_j[g] = _class_best(live, first[g], first[g + 1], best, best_score)
    while True:
        # The best pair: the smallest of the classes' best triples.
        g = -1
        for h in range(groups):
            if top_i[h] >= 0 and (
                g < 0
                or top_s[h] < top_s[g]
                or (top_s[h] == top_s[g] and (top_i[h], top_j[h]) < (top_i[g], top_j[g]))
            ):
                g = h
        if g < 0 or not top_s[g] <= threshold:
            break
        i, j = top_i[g], top_j[g]
        _merge_into(b, conf, counts, i, j, average)
        alive[j] = False
        parent[j] = i
        best[j], best_score[j] = -1, np.inf
        # Drop j from the class's packed list (found by bisection: it is ascending).
        lo = first[g]
        hi = lo + size[g]
        q = lo + np.searchsorted(live[lo:hi], j)
        live[q : hi - 1] = live[q + 1 : hi]
        size[g] -= 1
        hi -= 1
        # One pass over the class: row i from scratch, the others updated or marked stale.
        new_c, new_s = -1, np.inf
        n_stale = 0
        for q in range(lo, hi):
            c = live[q]
            if c == i:
                continue
            s = _score_slots(b, i, c, kind)
            if s < new_s:
                new_s, new_c = s, c
            p = best[c]
            if p == i or p == j:
                if s <= best_score[c]:
                    best[c], best_score[c] = i, s
                else:
                    stale[n_stale] = c
                    n_stale += 1
            elif s < best_score[c] or (s == best_score[c] and i < p):
                best[c], best_score[c] = i, s
        best[i], best_score[i] = new_c, new_s
        for q in range(n_stale):
            _rescan_row(b, live, lo, hi, stale[q], kind, best, best_score)
        top_s[g], top_i[g], top_j[g] = _class_best(live, lo, hi, best, best_score)
    return alive


def merge_fast(
    boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"
) -> MergeResult:
    """The greedy merge with best partners kept up to date (compiled loops).

    Same result as :func:`merge_literal`, bit for bit. Each merge costs one pass over
    the alive boxes of the merged box's class, plus a rescan of each row whose best
    partner got worse; pairs of different classes are never scored.
    """
    prep = prepare(boxes, classes, confidences, threshold, score, average)
    n = prep.boxes.shape[0]
    counts = np.ones(n, dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    b, conf = prep.boxes, prep.confidences
    # Classes are runs of slots: their first slots, and one past the last.
    first = np.unique(np.append(prep.class_start, n))
    alive = _merge_fast_loop(
        b, conf, counts, first, prep.score, prep.average, prep.threshold, parent
    )
    return assemble(prep, b, conf, counts, alive, parent)
