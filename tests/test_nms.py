"""Greedy non-maximum suppression: hand cases, the greedy rule's properties, and the
three rungs (loops, NumPy, the CUDA bitmask on the simulator) agreeing exactly.

Boxes in the random cases sit on a small integer grid: IoUs are then computed
exactly, equal scores and IoUs exactly at the threshold are common, and every
rung must break those ties the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import cuda_available, cuda_settings, needs_cuda_marker

from overfeat_scratch.nn.backend import get_backend
from overfeat_scratch.ops.boxes import iou, iou_matrix
from overfeat_scratch.ops.nms import nms, nms_naive

AVAILABLE = cuda_available()
needs_cuda = needs_cuda_marker()
if AVAILABLE:
    from overfeat_scratch.cuda import nms as cuda_nms
# The simulator runs one Python thread per CUDA thread: few, small examples.
CUDA_SETTINGS = cuda_settings(12)

RUNGS = [nms_naive, nms]


@st.composite
def nms_cases(draw, max_n=24, distinct=None):
    """``(boxes (n, 4), scores (n,), classes (n,), threshold)``: boxes on a 0..20 grid,
    some of zero width or height; scores with ties unless ``distinct``."""
    n = draw(st.integers(0, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    corner = rng.integers(0, 14, size=(n, 2))
    size = rng.integers(0, 8, size=(n, 2))
    size[rng.random(n) < 0.8] |= 1  # mostly positive sizes, some empty boxes
    boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float64)
    distinct = draw(st.booleans()) if distinct is None else distinct
    if distinct:
        scores = rng.permutation(n) / max(n, 1) + 0.01
    else:
        scores = rng.integers(0, 4, size=n) / 4.0
    classes = rng.integers(0, draw(st.integers(1, 3)), size=n)
    threshold = draw(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]) | st.floats(0.0, 1.0))
    return boxes, scores, classes, threshold


# --------------------------------------------------------------------------------------
# Hand cases


@pytest.mark.parametrize("rung", RUNGS)
def test_hand_case_overlap_and_far_box(rung):
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]
    scores = [0.9, 0.8, 0.7]
    # IoU(0, 1) = 81 / (100 + 100 - 81) = 0.68: suppressed at 0.5, kept at 0.7.
    assert rung(boxes, scores, iou_threshold=0.5).tolist() == [0, 2]
    assert rung(boxes, scores, iou_threshold=0.7).tolist() == [0, 1, 2]


@pytest.mark.parametrize("rung", RUNGS)
def test_a_suppressed_box_suppresses_nothing(rung):
    # IoU(A, B) = IoU(B, C) = 50 / 150 = 1/3, IoU(A, C) = 0 (they touch). B falls to A,
    # so C survives although B would have suppressed it.
    boxes = [[10, 0, 20, 10], [0, 0, 10, 10], [5, 0, 15, 10]]  # C, A, B
    scores = [0.7, 0.9, 0.8]
    assert rung(boxes, scores, iou_threshold=0.3).tolist() == [1, 0]
    assert rung(boxes, scores, iou_threshold=0.4).tolist() == [1, 2, 0]


@pytest.mark.parametrize("rung", RUNGS)
def test_iou_exactly_at_the_threshold_is_not_suppressed(rung):
    # Areas 2 and 1, intersection 1: IoU = 1 / 2, exactly.
    boxes = [[0, 0, 2, 1], [0, 0, 1, 1]]
    assert iou(*boxes[0], *boxes[1]) == 0.5
    assert rung(boxes, [1.0, 0.5], iou_threshold=0.5).tolist() == [0, 1]
    assert rung(boxes, [1.0, 0.5], iou_threshold=0.4999).tolist() == [0]


@pytest.mark.parametrize("rung", RUNGS)
def test_equal_scores_go_in_input_order(rung):
    boxes = [[0, 0, 4, 4]] * 3 + [[10, 10, 12, 12]]
    scores = [0.5, 0.5, 0.5, 0.5]
    assert rung(boxes, scores).tolist() == [0, 3]
    assert rung(boxes, [0.2, 0.5, 0.5, 0.9]).tolist() == [3, 1]


@pytest.mark.parametrize("rung", RUNGS)
def test_classes_never_suppress_each_other(rung):
    boxes = [[0, 0, 4, 4]] * 4
    scores = [0.4, 0.9, 0.7, 0.8]
    assert rung(boxes, scores, [0, 1, 0, 1]).tolist() == [1, 2]
    assert rung(boxes, scores, [0, 1, 2, 3]).tolist() == [1, 3, 2, 0]
    assert rung(boxes, scores).tolist() == [1]  # one class when classes is None


@pytest.mark.parametrize("rung", RUNGS)
def test_zero_area_boxes_have_iou_zero(rung):
    """An empty box (zero width or height) overlaps nothing, not even its copy."""
    line, point, big = [2, 1, 2, 5], [3, 3, 3, 3], [0, 0, 10, 10]
    assert iou(*line, *line) == 0.0 and iou(*line, *big) == 0.0
    assert iou_matrix([point], [point, big, line])[0].tolist() == [0, 0, 0]
    boxes = [big, line, line, point, point]
    assert rung(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], iou_threshold=0.0).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("rung", RUNGS)
def test_threshold_ends(rung):
    boxes = [[0, 0, 4, 4], [0, 0, 4, 4], [3, 3, 5, 5], [4, 0, 6, 2]]
    scores = [0.9, 0.8, 0.7, 0.6]
    # 1: nothing is suppressed, not even an identical box (IoU 1 is not > 1).
    assert rung(boxes, scores, iou_threshold=1.0).tolist() == [0, 1, 2, 3]
    # 0: every box overlapping a kept one goes; a box that only touches stays.
    assert rung(boxes, scores, iou_threshold=0.0).tolist() == [0, 3]


@pytest.mark.parametrize("rung", RUNGS)
def test_max_output_cuts_the_kept_list(rung):
    boxes = [[0, 0, 4, 4], [0, 0, 4, 4], [10, 0, 14, 4], [20, 0, 24, 4]]
    scores = [0.9, 0.8, 0.7, 0.6]
    assert rung(boxes, scores, max_output=2).tolist() == [0, 2]
    assert rung(boxes, scores, max_output=10).tolist() == [0, 2, 3]
    assert rung(boxes, scores, max_output=0).tolist() == []


@pytest.mark.parametrize("rung", RUNGS)
def test_empty_input(rung):
    for boxes in (np.zeros((0, 4)), []):
        kept = rung(boxes, np.zeros(0), np.zeros(0, dtype=np.int64))
        assert kept.dtype == np.int64 and kept.shape == (0,)


def test_integer_and_float32_inputs_give_the_same_answer():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = np.array([3, 2, 1])
    want = nms(boxes.astype(np.float64), scores.astype(np.float64)).tolist()
    assert nms(boxes, scores).tolist() == want
    assert nms(boxes.astype(np.float32), scores.astype(np.float32)).tolist() == want


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"boxes": np.zeros((3, 3))}, ValueError, r"\(n, 4\) array of corners"),
        ({"boxes": np.zeros((2, 3, 4))}, ValueError, r"\(n, 4\) array"),
        ({"scores": np.zeros(2)}, ValueError, r"scores: expected shape \(3,\)"),
        ({"classes": np.zeros(3)}, TypeError, "classes: expected integers"),
        ({"classes": np.zeros(4, dtype=int)}, ValueError, r"classes: expected shape \(3,\)"),
        ({"boxes": [[0, 0, 1, 1], [0, np.nan, 1, 1], [0, 0, 1, 1]]}, ValueError, "box 1"),
        ({"scores": [0.5, np.nan, 0.1]}, ValueError, "scores: 1 NaN or infinite"),
        ({"boxes": [[0, 0, 1, 1], [0, 0, 1, 1], [3, 0, 2, 1]]}, ValueError, "box 2 is inverted"),
        ({"boxes": [[0, 0, 1, 1], [0, 5, 1, 4], [0, 0, 1, 1]]}, ValueError, "box 1 is inverted"),
        ({"boxes": np.array([["a"] * 4] * 3)}, TypeError, "expected real numbers"),
        ({"iou_threshold": -0.1}, ValueError, r"expected a number in \[0, 1\]"),
        ({"iou_threshold": 1.5}, ValueError, r"expected a number in \[0, 1\]"),
        ({"iou_threshold": float("nan")}, ValueError, r"in \[0, 1\], got nan"),
        ({"iou_threshold": "0.5"}, TypeError, "iou_threshold: expected a number"),
        ({"max_output": -1}, ValueError, "max_output: expected an integer >= 0"),
        ({"max_output": 1.5}, TypeError, "max_output: expected an integer"),
    ],
)
@pytest.mark.parametrize("rung", RUNGS)
def test_bad_arguments_are_clear_errors(rung, kwargs, error, message):
    args = {
        "boxes": [[0, 0, 1, 1], [0, 0, 2, 2], [5, 5, 6, 6]],
        "scores": [0.1, 0.2, 0.3],
        "classes": None,
        "iou_threshold": 0.5,
        "max_output": None,
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        rung(**args)


def test_the_numpy_backend_runs_the_numpy_rung():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]
    scores = [0.9, 0.8, 0.7]
    assert get_backend("numpy").non_max_suppression(boxes, scores).tolist() == [0, 2]
    assert get_backend("numpy").non_max_suppression is nms
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        get_backend("torch")


# --------------------------------------------------------------------------------------
# Properties of the greedy rule


@settings(max_examples=60)
@given(case=nms_cases())
def test_numpy_matches_the_loops(case):
    boxes, scores, classes, threshold = case
    want = nms_naive(boxes, scores, classes, threshold)
    np.testing.assert_array_equal(nms(boxes, scores, classes, threshold), want)
    for limit in (0, 1, 3):
        got = nms(boxes, scores, classes, threshold, max_output=limit)
        np.testing.assert_array_equal(got, want[:limit])


@settings(max_examples=40)
@given(case=nms_cases())
def test_greedy_rule_properties(case):
    boxes, scores, classes, threshold = case
    kept = nms(boxes, scores, classes, threshold)
    n = len(boxes)
    # Indices by descending score, equal scores in input order.
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), -scores))] = np.arange(n)
    assert np.all(np.diff(rank[kept]) > 0)
    kept_set = set(kept.tolist())
    for a in kept:
        for b in kept:
            if a != b and classes[a] == classes[b]:
                assert iou(*boxes[a], *boxes[b]) <= threshold
    for j in set(range(n)) - kept_set:
        assert any(
            classes[i] == classes[j] and rank[i] < rank[j] and iou(*boxes[i], *boxes[j]) > threshold
            for i in kept
        )


@settings(max_examples=30)
@given(case=nms_cases(distinct=True), seed=st.integers(0, 2**32 - 1))
def test_permuting_the_input_keeps_the_same_boxes(case, seed):
    boxes, scores, classes, threshold = case
    kept = nms(boxes, scores, classes, threshold)
    perm = np.random.default_rng(seed).permutation(len(boxes))
    kept_perm = nms(boxes[perm], scores[perm], classes[perm], threshold)
    np.testing.assert_array_equal(perm[kept_perm], kept)


@settings(max_examples=30)
@given(case=nms_cases())
def test_classes_are_independent_problems(case):
    boxes, scores, classes, threshold = case
    kept = nms(boxes, scores, classes, threshold)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        alone = members[nms(boxes[members], scores[members], None, threshold)]
        np.testing.assert_array_equal(kept[classes[kept] == c], alone)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12))
def test_the_iou_matrix_matches_the_scalar_rule_bit_for_bit(seed, n):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 10, size=(n + 1, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0, 6, size=(n + 1, 2))], axis=1)
    empty = rng.random(n + 1) < 0.2
    boxes[empty, 2] = boxes[empty, 0]  # zero width
    row = iou_matrix(boxes[:1], boxes[1:])[0]
    assert row.tolist() == [iou(*boxes[0].tolist(), *b.tolist()) for b in boxes[1:]]


# --------------------------------------------------------------------------------------
# CUDA: the bitmask kernel on the simulator


@needs_cuda
@pytest.mark.cuda
def test_cuda_mask_hand_case():
    # Sorted already: A, B overlaps A (IoU 0.68), C far away, D overlaps C, another class.
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [21, 21, 31, 31]], float)
    classes = np.array([0, 0, 0, 1])
    for block in (1, 3, 4):
        mask = cuda_nms.suppression_mask(boxes, classes, 0.5, block=block).copy_to_host()
        assert mask.dtype == np.uint64 and mask.shape == (4, 1)
        assert mask[:, 0].tolist() == [0b0010, 0, 0, 0]
    assert cuda_nms.walk_mask(mask).tolist() == [0, 2, 3]
    assert cuda_nms.walk_mask(mask, max_output=2).tolist() == [0, 2]


@needs_cuda
@pytest.mark.cuda
@CUDA_SETTINGS
@given(case=nms_cases(max_n=10), block=st.sampled_from([1, 2, 4, 8]))
def test_cuda_matches_the_loops(case, block):
    boxes, scores, classes, threshold = case
    want = nms_naive(boxes, scores, classes, threshold)
    got = cuda_nms.nms(boxes, scores, classes, threshold, block=block)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@needs_cuda
@pytest.mark.cuda
def test_cuda_masks_longer_than_one_word():
    """70 boxes: two mask words per row, and row tiles that cross the word boundary."""
    rng = np.random.default_rng(7)
    x0 = np.sort(rng.integers(0, 200, 70))
    boxes = np.stack([x0, x0 % 5, x0 + rng.integers(3, 12, 70), x0 % 5 + 8], 1).astype(float)
    scores = rng.integers(0, 10, 70) / 10
    classes = rng.integers(0, 2, 70)
    want = nms(boxes, scores, classes, 0.3)
    assert 10 < want.size < 70
    got = cuda_nms.nms(boxes, scores, classes, 0.3, block=16)
    np.testing.assert_array_equal(got, want)
    # The CUDA backend's entry point, with the default block.
    got = get_backend("cuda").non_max_suppression(boxes, scores, classes, 0.3)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cuda_nms.nms(boxes, scores, classes, 0.3, max_output=5), want[:5])


@needs_cuda
@pytest.mark.cuda
def test_cuda_empty_input_and_errors():
    assert cuda_nms.nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="box 0 is inverted"):
        cuda_nms.nms([[2, 0, 1, 1]], [0.5])
    with pytest.raises(ValueError, match="at most 1024 threads"):
        cuda_nms.nms([[0, 0, 1, 1]], [0.5], block=2048)
