"""The greedy box merge: the three implementations agree, and the result is right.

The literal reference, the compiled one and the CUDA kernels (on the simulator:
``NUMBA_ENABLE_CUDASIM=1``, so CUDA cases stay at a dozen boxes) must return the
same boxes, confidences, counts and memberships. Properties are checked on random
inputs with clusters, duplicates and integer-grid ties; small cases are checked
against numbers worked out by hand from the definitions.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import cuda_available, cuda_settings, needs_cuda_marker

from overfeat_scratch.nn.backend import get_backend
from overfeat_scratch.ops.boxes import iou_matrix
from overfeat_scratch.ops.merge import (
    AVERAGES,
    SCORES,
    MergeResult,
    match_scores,
    merge_fast,
    merge_literal,
    pair_score,
    prepare,
)

AVAILABLE = cuda_available()
needs_cuda = needs_cuda_marker()
if AVAILABLE:
    from overfeat_scratch.cuda import SIMULATOR
    from overfeat_scratch.cuda.merge import merge_cuda

SETTINGS = cuda_settings(30)
# The simulator runs one Python thread per CUDA thread: few, tiny examples.
CUDA_SETTINGS = settings(SETTINGS, max_examples=12)

METHODS = ["literal", "fast"] + (["cuda"] if AVAILABLE else [])
ROOT2 = math.sqrt(2.0)


@st.composite
def merge_cases(draw, max_n=40):
    """Keyword arguments of a merge: clustered, grid (ties) or scattered boxes."""
    n = draw(st.integers(0, max_n))
    layout = draw(st.sampled_from(["clusters", "grid", "scatter"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if layout == "clusters":
        k = int(rng.integers(1, 4))
        centres = rng.uniform(0, 60, (k, 2))
        sizes = rng.uniform(5, 30, (k, 2))
        which = rng.integers(0, k, n)
        centre = centres[which] + rng.normal(0, 0.15, (n, 2)) * sizes[which]
        half = sizes[which] * rng.uniform(0.8, 1.25, (n, 2)) / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
    elif layout == "grid":
        corner = rng.integers(0, 6, (n, 2))
        boxes = np.concatenate([corner, corner + rng.integers(0, 4, (n, 2))], axis=1)
        boxes = boxes.astype(np.float64)
    else:
        corner = rng.uniform(0, 50, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(0, 20, (n, 2))], axis=1)
    classes = rng.integers(0, draw(st.integers(1, 3)), n)
    if draw(st.booleans()):
        conf = rng.integers(0, 3, n).astype(np.float64)  # ties and zeros
    else:
        conf = rng.uniform(0, 1, n)
    if n >= 2 and draw(st.booleans()):
        # Duplicates: whole rows, or the same box with another confidence.
        k = int(rng.integers(1, n))
        src, dst = rng.integers(0, n, k), rng.choice(n, k, replace=False)
        boxes[dst], classes[dst] = boxes[src], classes[src]
        if draw(st.booleans()):
            conf[dst] = conf[src]
    return {
        "boxes": boxes,
        "classes": classes,
        "confidences": conf,
        "threshold": draw(st.sampled_from([-0.5, 0.0, 0.25, 0.5, 0.8, 1.2, 2.5])),
        "score": draw(st.sampled_from(list(SCORES))),
        "average": draw(st.sampled_from(list(AVERAGES))),
    }


def merge(*args, method, **kwargs):
    """The merge implemented by ``method``; on CUDA with blocks of 4 threads (the
    simulator is slow)."""
    if method == "cuda":
        return merge_cuda(*args, **kwargs, threads=4, row_blocks=1)
    return {"literal": merge_literal, "fast": merge_fast}[method](*args, **kwargs)


def assert_same(got: MergeResult, want: MergeResult, atol=0.0):
    """Same outputs: boxes and confidences to ``atol``, the rest exactly."""
    np.testing.assert_array_equal(got.classes, want.classes)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.members, want.members)
    np.testing.assert_allclose(got.boxes, want.boxes, rtol=0, atol=atol)
    np.testing.assert_allclose(got.confidences, want.confidences, rtol=0, atol=atol)


def check_result(case, result: MergeResult):
    """The properties every merge result must have."""
    boxes, classes = np.asarray(case["boxes"], float), np.asarray(case["classes"])
    conf = np.asarray(case["confidences"], float)
    n, m = len(boxes), len(result)
    assert result.boxes.shape == (m, 4) and result.boxes.dtype == np.float64
    assert result.members.shape == (n,)
    if n:
        assert result.members.min() >= 0 and result.members.max() < m
    # Every output holds its members, and nothing else.
    np.testing.assert_array_equal(result.counts, np.bincount(result.members, minlength=m))
    assert (result.counts >= 1).all()
    for o in range(m):
        held = result.members == o
        assert (classes[held] == result.classes[o]).all()
        # Within the hull of its members (exactly: merged coordinates are clamped).
        low = boxes[held].min(axis=0)
        high = boxes[held].max(axis=0)
        assert (result.boxes[o, :2] >= low[:2]).all() and (result.boxes[o, :2] <= high[:2]).all()
        assert (result.boxes[o, 2:] >= low[2:]).all() and (result.boxes[o, 2:] <= high[2:]).all()
        np.testing.assert_allclose(result.confidences[o], conf[held].sum(), rtol=1e-12)
    np.testing.assert_allclose(result.confidences.sum(), conf.sum(), rtol=1e-12)
    assert (np.diff(result.confidences) <= 0).all(), "sorted by confidence, largest first"
    assert (result.boxes[:, 2:] >= result.boxes[:, :2]).all()
    # Nothing left that should have merged.
    scores = match_scores(result.boxes, result.boxes, case["score"])
    same = result.classes[:, None] == result.classes[None, :]
    upper = np.triu(np.ones((m, m), dtype=bool), 1)
    assert (scores[same & upper] > case["threshold"]).all()


# --------------------------------------------------------------------------------------
# The three implementations agree


@SETTINGS
@given(merge_cases())
def test_fast_equals_literal(case):
    want = merge_literal(**case)
    got = merge_fast(**case)
    assert_same(got, want)  # bit for bit
    check_result(case, want)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_equals_literal_large_clusters(seed):
    """Many boxes per cluster: rows whose best partner got worse are rescanned often."""
    rng = np.random.default_rng(seed)
    n = 300
    centres = rng.uniform(0, 300, (4, 2))
    which = rng.integers(0, 4, n)
    centre = centres[which] + rng.normal(0, 6, (n, 2))
    half = rng.uniform(20, 30, (n, 2))
    case = {
        "boxes": np.round(np.concatenate([centre - half, centre + half], axis=1)),
        "classes": rng.integers(0, 2, n),
        "confidences": rng.uniform(0, 1, n),
        "threshold": 0.6,
        "score": "center_iou",
        "average": ["pair", "count"][seed],
    }
    want = merge_literal(**case)
    assert_same(merge_fast(**case), want)
    assert len(want) < n // 4
    check_result(case, want)


@needs_cuda
@pytest.mark.cuda
@CUDA_SETTINGS
@given(
    merge_cases(max_n=10),
    st.sampled_from([4, 8]),
    st.sampled_from([1, 2]),
)
def test_cuda_equals_literal(case, threads, row_blocks):
    """Blocks of 4 or 8 threads: the reductions span several blocks."""
    want = merge_literal(**case)
    got = merge_cuda(**case, threads=threads, row_blocks=row_blocks)
    # Exact on the simulator; a GPU may fuse multiply-adds (last-bit differences).
    assert_same(got, want, atol=0.0 if SIMULATOR else 1e-12)


@needs_cuda
@pytest.mark.cuda
def test_cuda_clusters_and_entry_point():
    rng = np.random.default_rng(3)
    n = 10
    centre = rng.uniform(0, 40, (2, 2))[rng.integers(0, 2, n)] + rng.normal(0, 1, (n, 2))
    boxes = np.concatenate([centre - 5, centre + 5], axis=1)
    args = (boxes, rng.integers(0, 2, n), rng.uniform(0, 1, n), 0.8)
    want = merge_literal(*args)
    assert len(want) < n
    assert_same(merge_cuda(*args, threads=4, row_blocks=2), want)
    # The backend's entry point, with the default block size.
    args = ([A, B, A], [0, 0, 0], [1.0, 2.0, 3.0], 0.7, "iou")
    assert_same(get_backend("cuda").greedy_merge(*args), merge_literal(*args))
    with pytest.raises(ValueError, match="threads: expected a power of two"):
        merge_cuda(*args, threads=6)


# --------------------------------------------------------------------------------------
# Properties


@SETTINGS
@given(merge_cases(max_n=60), st.integers(0, 2**32 - 1))
def test_permutation_invariance(case, seed):
    n = len(case["boxes"])
    perm = np.random.default_rng(seed).permutation(n)
    shuffled = dict(case)
    for key in ("boxes", "classes", "confidences"):
        shuffled[key] = case[key][perm]
    a = merge_fast(**case)
    b = merge_fast(**shuffled)
    check_result(case, a)
    np.testing.assert_array_equal(b.boxes, a.boxes)
    np.testing.assert_array_equal(b.classes, a.classes)
    np.testing.assert_array_equal(b.confidences, a.confidences)
    np.testing.assert_array_equal(b.counts, a.counts)
    # Shuffled input k is input perm[k]: it ends in an output with the same content
    # (the same index, except between outputs that are exact copies of each other).
    for field in ("boxes", "classes", "confidences", "counts"):
        got = getattr(b, field)[b.members]
        np.testing.assert_array_equal(got, getattr(a, field)[a.members[perm]])


@SETTINGS
@given(merge_cases(max_n=30))
def test_negative_threshold_merges_nothing(case):
    case["threshold"] = -1e-9
    result = merge_fast(**case)
    n = len(case["boxes"])
    assert len(result) == n
    np.testing.assert_array_equal(np.sort(result.members), np.arange(n))
    np.testing.assert_array_equal(result.boxes[result.members], case["boxes"])
    np.testing.assert_array_equal(result.confidences[result.members], case["confidences"])


@pytest.mark.parametrize("score", ["center_iou", "iou"])
@pytest.mark.parametrize("method", METHODS)
def test_zero_threshold_merges_exact_duplicates(score, method):
    rng = np.random.default_rng(7)
    corner = rng.integers(0, 5, (5, 2))
    distinct = np.unique(np.concatenate([corner, corner + rng.integers(0, 3, (5, 2))], 1), axis=0)
    copies = rng.integers(1, 4, len(distinct))
    boxes = np.repeat(distinct, copies, axis=0).astype(np.float64)
    conf = rng.uniform(0, 1, len(boxes))
    result = merge(boxes, np.zeros(len(boxes), int), conf, 0.0, score, method=method)
    assert len(result) == len(distinct)
    np.testing.assert_array_equal(np.sort(result.counts), np.sort(copies))
    np.testing.assert_array_equal(result.boxes[result.members], boxes)
    # Below zero, not even duplicates merge.
    assert len(merge_fast(boxes, np.zeros(len(boxes), int), conf, -1e-12, score)) == len(boxes)


def test_match_scores_is_pair_score_and_symmetric():
    rng = np.random.default_rng(1)
    corner = rng.integers(0, 8, (12, 2))
    a = np.concatenate([corner, corner + rng.integers(0, 4, (12, 2))], 1).astype(np.float64)
    a[3] = a[7]
    for name, code in SCORES.items():
        s = match_scores(a, a, name)
        assert s.dtype == np.float64 and s.shape == (12, 12)
        np.testing.assert_array_equal(s, s.T)
        assert (np.diag(s) == 0).all() and s[3, 7] == 0
        want = [[pair_score(*p, *q, code) for q in a] for p in a]
        np.testing.assert_array_equal(s, np.array(want))


# --------------------------------------------------------------------------------------
# Hand-computed cases

A = [0.0, 0.0, 2.0, 2.0]
B = [1.0, 0.0, 3.0, 2.0]  # A shifted right by 1: intersection 2, union 6


@pytest.mark.parametrize(
    ("a", "b", "iou", "center"),
    [
        # centres (1, 1) and (2, 1): distance 1; both diagonals 2*sqrt(2).
        (A, B, 1 / 3, 1 / (2 * ROOT2)),
        # Concentric, 4x4 around A's centre: IoU 4/16, centre distance 0.
        (A, [-1.0, -1.0, 3.0, 3.0], 0.25, 0.0),
        # Disjoint, 10 apart: IoU 0, distance 10 over a mean diagonal of 2*sqrt(2).
        (A, [10.0, 0.0, 12.0, 2.0], 0.0, 10 / (2 * ROOT2)),
        # A point at A's centre: no overlap area; centres equal.
        ([1.0, 1.0, 1.0, 1.0], A, 0.0, 0.0),
        # A segment along A's middle: IoU 0; centres equal.
        ([1.0, 0.0, 1.0, 2.0], A, 0.0, 0.0),
        # Two distinct points: union 0, IoU 0; diagonal floored at 1e-12.
        ([1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], 0.0, ROOT2 / 1e-12),
        # Identical points: IoU 0 (no area, the package's rule), yet score 0 (identical).
        ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], 0.0, 0.0),
        # Identical boxes: IoU 1, score 0.
        (B, B, 1.0, 0.0),
        # Sharing only the top-left corner, or only the bottom-right one: a quarter of
        # A, IoU 1/4; centres 1/sqrt(2) apart over a mean diagonal of 1.5 sqrt(2).
        (A, [0.0, 0.0, 1.0, 1.0], 0.25, 1 / 3),
        (A, [1.0, 1.0, 2.0, 2.0], 0.25, 1 / 3),
    ],
)
def test_scores_by_hand(a, b, iou, center):
    identical = a == b
    a, b = np.array([a]), np.array([b])
    np.testing.assert_allclose(iou_matrix(a, b)[0, 0], iou, rtol=1e-15)
    # Identical boxes score exactly 0 in every convention, whatever their IoU.
    iou_score = 0.0 if identical else 1 - iou
    np.testing.assert_allclose(match_scores(a, b, "iou")[0, 0], iou_score, rtol=1e-15)
    np.testing.assert_allclose(match_scores(a, b, "center")[0, 0], center, rtol=1e-15)
    both = 0.0 if identical else center + 1 - iou
    np.testing.assert_allclose(match_scores(a, b, "center_iou")[0, 0], both, rtol=1e-15)
    if iou == 1.0:
        for name in SCORES:
            assert match_scores(a, b, name)[0, 0] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_pair_merge_by_hand(method):
    # score("iou") = 1 - 1/3 = 2/3 <= 0.7: merged into the mean of the two boxes.
    result = merge([B, A], [4, 4], [2.0, 1.0], 0.7, "iou", method=method)
    np.testing.assert_array_equal(result.boxes, [[0.5, 0.0, 2.5, 2.0]])
    np.testing.assert_array_equal(result.confidences, [3.0])
    np.testing.assert_array_equal(result.counts, [2])
    np.testing.assert_array_equal(result.classes, [4])
    np.testing.assert_array_equal(result.members, [0, 0])
    # 2/3 > 0.6: no merge; outputs by confidence.
    result = merge([A, B], [4, 4], [1.0, 2.0], 0.6, "iou", method=method)
    np.testing.assert_array_equal(result.boxes, [B, A])
    np.testing.assert_array_equal(result.members, [1, 0])
    # center: 1/(2 sqrt 2) = 0.354; center_iou: 0.354 + 0.667 = 1.02.
    assert len(merge([A, B], [0, 0], [1, 1], 0.36, "center", method=method)) == 1
    assert len(merge([A, B], [0, 0], [1, 1], 0.35, "center", method=method)) == 2
    assert len(merge([A, B], [0, 0], [1, 1], 1.03, "center_iou", method=method)) == 1
    assert len(merge([A, B], [0, 0], [1, 1], 1.01, "center_iou", method=method)) == 2


# A, a duplicate of A, then B: the duplicates merge first (score 0), then the pair
# (A+A) with B (score 2/3), weighted by each rule.
@pytest.mark.parametrize(
    ("average", "conf", "x0", "x1"),
    [
        ("pair", [1.0, 1.0, 2.0], (0 + 1) / 2, (2 + 3) / 2),
        ("count", [1.0, 1.0, 2.0], (2 * 0 + 1 * 1) / 3, (2 * 2 + 1 * 3) / 3),
        ("confidence", [1.0, 1.0, 2.0], (2 * 0 + 2 * 1) / 4, (2 * 2 + 2 * 3) / 4),
        ("confidence", [1.0, 1.0, 6.0], (2 * 0 + 6 * 1) / 8, (2 * 2 + 6 * 3) / 8),
        # Confidences summing to less than 1 still weigh by confidence.
        (
            "confidence",
            [0.125, 0.125, 0.5],
            (0.25 * 0 + 0.5 * 1) / 0.75,
            (0.25 * 2 + 0.5 * 3) / 0.75,
        ),
        # All confidences 0: weighted by counts.
        ("confidence", [0.0, 0.0, 0.0], (2 * 0 + 1 * 1) / 3, (2 * 2 + 1 * 3) / 3),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_averaging_by_hand(average, conf, x0, x1, method):
    result = merge([A, A, B], [0, 0, 0], conf, 0.7, "iou", average, method=method)
    np.testing.assert_allclose(result.boxes, [[x0, 0.0, x1, 2.0]], rtol=1e-15)
    np.testing.assert_allclose(result.confidences, [sum(conf)], rtol=1e-15)
    np.testing.assert_array_equal(result.counts, [3])


@pytest.mark.parametrize("method", METHODS)
def test_greedy_order_by_hand(method):
    # iou scores: (A, B) 1 - 90/110 = 0.18, (B, C) 1 - 80/120 = 0.33, (A, C) 1 - 70/130.
    a, b, c = [0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [3.0, 0.0, 13.0, 10.0]
    # (A, B) first -> [0.5, 0, 10.5, 10]; against C: 1 - 75/125 = 0.4 > 0.35: stop.
    result = merge([c, b, a], [0] * 3, [1.0] * 3, 0.35, "iou", method=method)
    np.testing.assert_array_equal(result.boxes, [[0.5, 0, 10.5, 10], c])
    np.testing.assert_array_equal(result.members, [1, 0, 0])
    # With t = 0.45 the third merge happens: the mean of [0.5, 0, 10.5, 10] and C.
    result = merge([c, b, a], [0] * 3, [1.0] * 3, 0.45, "iou", method=method)
    np.testing.assert_array_equal(result.boxes, [[1.75, 0, 11.75, 10]])


@pytest.mark.parametrize("method", METHODS)
def test_tie_takes_smallest_pair(method):
    # (A, B) and (B, C) both score 2/3 (iou); (A, B) comes first in the canonical
    # order, so B goes with A, and C stays: 1 - 1/7 against the merged box.
    c = [2.0, 0.0, 4.0, 2.0]
    for order in ([A, B, c], [c, B, A], [B, c, A]):
        result = merge(order, [0] * 3, [1.0] * 3, 0.7, "iou", method=method)
        np.testing.assert_array_equal(result.boxes, [[0.5, 0.0, 2.5, 2.0], c])


@pytest.mark.parametrize("method", METHODS)
def test_classes_never_merge(method):
    result = merge([A, A, A], [2, 1, 2], [1.0, 5.0, 1.0], 10.0, method=method)
    np.testing.assert_array_equal(result.classes, [1, 2])
    np.testing.assert_array_equal(result.confidences, [5.0, 2.0])
    np.testing.assert_array_equal(result.members, [1, 0, 1])


def test_prepare_sorts_by_class_and_gives_each_slot_its_class_run():
    # Classes 1, 0, 1, 2 sort to 0 | 1 1 | 2: slots 0, 1-2, 3, each with its run
    # [start, stop) (the CUDA kernels read them).
    boxes = [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3], [3, 3, 4, 4]]
    prep = prepare(boxes, [1, 0, 1, 2], [1.0, 2.0, 3.0, 4.0])
    assert prep.classes.tolist() == [0, 1, 1, 2] and prep.order.tolist() == [1, 0, 2, 3]
    assert prep.class_start.tolist() == [0, 1, 1, 3]
    assert prep.class_stop.tolist() == [1, 3, 3, 4]


@pytest.mark.parametrize("merge_function", [merge_literal, merge_fast])
def test_a_confidence_of_minus_zero_comes_out_as_zero(merge_function):
    # -0.0 passes the check (it is not below 0); the output holds 0.0, not -0.0.
    result = merge_function([A, [10.0, 10.0, 12.0, 12.0]], [0, 0], [-0.0, 1.0])
    assert result.confidences.tolist() == [1.0, 0.0]
    assert not np.signbit(result.confidences).any()


@pytest.mark.parametrize("merge_function", [merge_literal, merge_fast])
def test_default_threshold_is_one_half(merge_function):
    # Two 10x10 boxes 5 apart: centre distance 5 over the mean diagonal 10 sqrt(2), plus
    # 1 - IoU = 1 - 50 / 150: a score of 1.02, so they stay apart at the default 0.5.
    boxes, classes, confidences = [[0, 0, 10, 10], [5, 0, 15, 10]], [0, 0], [1.0, 1.0]
    assert pair_score(*boxes[0], *boxes[1], SCORES["center_iou"]) == pytest.approx(
        5 / (10 * ROOT2) + 2 / 3
    )
    assert len(merge_function(boxes, classes, confidences)) == 2
    assert len(merge_function(boxes, classes, confidences, threshold=1.1)) == 1


def test_center_score_merges_concentric_boxes_at_zero():
    big = [-1.0, -1.0, 3.0, 3.0]
    assert len(merge_fast([A, big], [0, 0], [1, 1], 0.0, "center")) == 1
    assert len(merge_fast([A, big], [0, 0], [1, 1], 0.0, "center_iou")) == 2


def test_output_ties_by_slot_and_max_rounds():
    boxes = [[20.0, 0, 22, 2], A, [10.0, 0, 12, 2]]
    result = merge_fast(boxes, [0, 0, 0], [1.0, 1.0, 1.0])
    # Equal confidences: in canonical (x0) order.
    np.testing.assert_array_equal(result.boxes[:, 0], [0, 10, 20])
    np.testing.assert_array_equal(result.members, [2, 0, 1])
    # Boxes that differ in x0 only: x0 decides, not the input order.
    for merge_function in (merge_literal, merge_fast):
        result = merge_function([[5, 0, 6, 1], [0, 0, 6, 1]], [0, 0], [1.0, 1.0], threshold=-1)
        np.testing.assert_array_equal(result.boxes[:, 0], [0, 5])
        np.testing.assert_array_equal(result.members, [1, 0])
    dupes = [A] * 4
    assert len(merge_literal(dupes, [0] * 4, [1.0] * 4, max_rounds=2)) == 2
    assert len(merge_literal(dupes, [0] * 4, [1.0] * 4)) == 1


# --------------------------------------------------------------------------------------
# Degenerate input


@pytest.mark.parametrize("method", METHODS)
def test_no_boxes_and_one_box(method):
    for empty in (np.zeros((0, 4)), []):
        result = merge(empty, [], [], method=method)
        assert len(result) == 0
        assert result.boxes.shape == (0, 4) and result.members.shape == (0,)
    result = merge([[1, 2, 3, 4]], [7], [0.5], method=method)
    np.testing.assert_array_equal(result.boxes, [[1.0, 2.0, 3.0, 4.0]])
    assert result.boxes.dtype == np.float64
    np.testing.assert_array_equal(result.classes, [7])
    np.testing.assert_array_equal(result.members, [0])
    np.testing.assert_array_equal(result.counts, [1])


@pytest.mark.parametrize("method", METHODS)
def test_zero_area_boxes(method):
    points = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [1, 0, 1, 2]]
    result = merge(points, [0] * 4, [1.0, 2.0, 3.0, 4.0], 0.5, method=method)
    # The two identical points merge (score 0); the others score >= 1.
    np.testing.assert_array_equal(result.counts, [1, 2, 1])
    np.testing.assert_array_equal(result.boxes[1], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result.confidences, [4.0, 3.0, 3.0])


GOOD = {"boxes": [A, B], "classes": [0, 0], "confidences": [1.0, 1.0]}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"boxes": [[0, 0, 1], [0, 0, 1]]}, ValueError, r"boxes: expected an \(n, 4\) array"),
        ({"boxes": [0, 0, 1, 1]}, ValueError, r"boxes: expected an \(n, 4\) array"),
        ({"boxes": [["a", "b", "c", "d"]] * 2}, TypeError, "boxes: expected"),
        ({"classes": [0]}, ValueError, "lengths disagree: 2 boxes, 1 classes"),
        ({"confidences": [1.0, 1.0, 1.0]}, ValueError, "lengths disagree"),
        ({"boxes": [A, [0, np.nan, 1, 1]]}, ValueError, r"1 box\(es\) contain NaN"),
        ({"boxes": [A, [0, 0, np.inf, 1]]}, ValueError, "NaN or infinite"),
        (
            {"boxes": [A, [2, 0, 1, 1], [0, 3, 1, 1]], "classes": [0] * 3, "confidences": [1] * 3},
            ValueError,
            r"boxes: box 1 is inverted, x1 < x0 or y1 < y0 .*2 box\(es\) in all",
        ),
        (
            {"confidences": [1.0, -0.5]},
            ValueError,
            r"confidences: 1 negative value\(s\) \(first at index 1: -0.5\)",
        ),
        (
            {"confidences": [1.0, np.nan]},
            ValueError,
            r"confidences: 1 NaN or infinite value\(s\) \(first at index 1\)",
        ),
        ({"classes": [0.0, 1.0]}, TypeError, "classes: expected a .* integer class labels"),
        ({"threshold": np.nan}, ValueError, "threshold: expected a finite number"),
        ({"threshold": np.inf}, ValueError, "threshold: expected a finite number"),
        ({"threshold": "0.5"}, TypeError, "threshold: expected a real number"),
        ({"score": "iou_center"}, ValueError, "score: expected one of 'center_iou'"),
        ({"average": "mean"}, ValueError, "average: expected one of 'pair'"),
    ],
)
def test_bad_input(method, change, error, match):
    with pytest.raises(error, match=match):
        merge(**{**GOOD, **change}, method=method)


def test_bad_backend_and_matrix_input():
    with pytest.raises(ValueError, match="unknown backend 'gpu'; expected one of"):
        get_backend("gpu").greedy_merge(**GOOD)
    with pytest.raises(ValueError, match=r"match_scores b: box 0 is inverted, x1 < x0"):
        match_scores([A], [[1, 1, 0, 0]])
    with pytest.raises(ValueError, match="score: expected one of"):
        match_scores([A], [B], "area")
    with pytest.raises(ValueError, match=r"iou_matrix a: expected an \(n, 4\)"):
        iou_matrix(np.zeros((2, 5)), [B])


def test_numpy_module_does_not_import_numba_cuda():
    code = (
        "import sys; import numba; before = 'numba.cuda' in sys.modules; "
        "import overfeat_scratch.ops.merge; "
        "print(before, 'numba.cuda' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    if out[0] == "True":
        pytest.skip("importing numba alone already imports numba.cuda here")
    assert out == ["False", "False"]
