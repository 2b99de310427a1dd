"""The one IoU rule: against pixel counting, its properties, and its compilations
(plain Python, NumPy, ``numba.njit``, CUDA on the simulator) agreeing to the bit.

Random boxes sit on a small integer grid, so that touching edges, shared corners,
identical boxes and empty boxes are common, and the independent reference (count the
unit cells each box covers) is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import cuda
from strategies import cuda_settings, needs_cuda_marker

from overfeat_scratch.ops.boxes import (
    areas,
    check_boxes,
    intersection_matrix,
    iou,
    iou_broadcast,
    iou_compiled,
    iou_matrix,
    iou_pairs,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

needs_cuda = needs_cuda_marker()


@st.composite
def grid_boxes(draw, max_n=8, inverted=False):
    """``(n, 4)`` float64 corner boxes on a 0..8 grid, some empty (and, when asked,
    some inverted)."""
    n = draw(st.integers(0, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    corner = rng.integers(0, 6, size=(n, 2))
    size = rng.integers(0, 4, size=(n, 2))
    boxes = np.concatenate([corner, corner + size], axis=1).astype(np.float64)
    if inverted and n:
        flip = rng.random(n) < 0.3
        boxes[flip] = boxes[flip][:, [2, 1, 0, 3]]
    return boxes


def cells(box) -> set:
    """The unit cells of the grid a corner box covers (none when it is empty or inverted)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return {(x, y) for x in range(x0, x1) for y in range(y0, y1)}


def reference_iou(a, b) -> float:
    """IoU by counting cells: shared cells over covered cells, 0 when nothing is shared."""
    ca, cb = cells(a), cells(b)
    shared = len(ca & cb)
    return shared / len(ca | cb) if shared else 0.0


@given(a=grid_boxes(inverted=True), b=grid_boxes(inverted=True))
def test_iou_counts_shared_cells(a, b):
    """The rule equals the independent cell count, degenerate boxes included."""
    want = np.array([[reference_iou(p, q) for q in b] for p in a]).reshape(len(a), len(b))
    np.testing.assert_allclose(iou_matrix(a, b), want, rtol=1e-15, atol=0)


@given(a=grid_boxes(inverted=True), b=grid_boxes(inverted=True))
def test_intersection_counts_shared_cells(a, b):
    """Every pair's intersection area is the number of cells both boxes cover (exact:
    integer areas in float64)."""
    want = [[len(cells(p) & cells(q)) for q in b] for p in a]
    got = intersection_matrix(a, b)
    assert got.shape == (len(a), len(b))
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float64).reshape(got.shape))


@given(a=grid_boxes(inverted=True), b=grid_boxes(inverted=True))
def test_every_compilation_agrees_to_the_bit(a, b):
    matrix = iou_matrix(a, b)
    for p in range(len(a)):
        for q in range(len(b)):
            args = (*a[p].tolist(), *b[q].tolist())
            assert iou(*args) == matrix[p, q]
            assert iou_compiled(*args) == matrix[p, q]


@given(boxes=grid_boxes(), seed=st.integers(0, 2**32 - 1))
def test_properties(boxes, seed):
    matrix = iou_matrix(boxes, boxes)
    np.testing.assert_array_equal(matrix, matrix.T)  # symmetric
    assert ((matrix >= 0) & (matrix <= 1)).all()
    # A box with area has IoU 1 with itself; an empty one 0 (it covers nothing).
    np.testing.assert_array_equal(np.diag(matrix), (areas(boxes) > 0).astype(float))
    # Moving both boxes, or scaling both by a power of two, changes nothing.
    shift = np.random.default_rng(seed).integers(-50, 50, 2).astype(float)
    moved = boxes + np.tile(shift, 2)
    np.testing.assert_array_equal(iou_matrix(moved, moved), matrix)
    np.testing.assert_array_equal(iou_matrix(boxes * 4, boxes * 4), matrix)


@given(a=grid_boxes(inverted=True), b=grid_boxes(inverted=True))
def test_pairs_are_the_diagonal_of_the_matrix(a, b):
    n = min(len(a), len(b))
    np.testing.assert_array_equal(iou_pairs(a[:n], b[:n]), np.diag(iou_matrix(a[:n], b[:n])))


def test_hand_cases():
    a = [0, 0, 10, 10]
    assert iou(*a, 5, 0, 15, 10) == 50 / 150
    assert iou(*a, 10, 0, 20, 10) == 0.0  # touching along an edge
    assert iou(*a, 10, 10, 20, 20) == 0.0  # touching at a corner
    assert iou(*a, 0, 0, 10, 7) == 0.7  # exactly: 70 / 100
    assert iou(2, 2, 2, 8, 2, 2, 2, 8) == 0.0  # an empty box and its copy
    assert iou(3, 3, 1, 1, 0, 0, 4, 4) == 0.0  # an inverted box counts as empty
    assert iou_matrix(np.zeros((0, 4)), [a]).shape == (0, 1)
    assert iou_matrix([], []).shape == (0, 0)
    xywh = iou_matrix([[0, 0, 10, 10]], [[5, 0, 10, 10]], box_format="xywh")
    assert xywh[0, 0] == 50 / 150
    assert intersection_matrix([a], [[5, 5, 20, 20], [20, 20, 30, 30]]).tolist() == [[25, 0]]
    # Arrays broadcast: one box against a grid of positions.
    grid = iou_broadcast(np.arange(3)[:, None], 0, np.arange(3)[:, None] + 2, 2, 0, 0, 2, 2)
    np.testing.assert_allclose(grid[:, 0], [1, 1 / 3, 0])


def test_iou_pairs_hand_cases():
    """Row by row; an inverted box (the last row's first) is empty."""
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 0, 0], [3, 3, 1, 1]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 3, 3], [0, 0, 0, 0], [0, 0, 4, 4]])
    np.testing.assert_allclose(iou_pairs(a, b), [1 / 7, 1, 0, 0, 0])


@given(boxes=grid_boxes())
def test_formats_round_trip(boxes):
    np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(boxes)), boxes)
    np.testing.assert_array_equal(check_boxes(xyxy_to_xywh(boxes), box_format="xywh"), boxes)
    np.testing.assert_array_equal(areas(boxes), np.prod(xyxy_to_xywh(boxes)[:, 2:], axis=1))


@pytest.mark.parametrize(
    ("boxes", "kwargs", "error", "match"),
    [
        (np.zeros((2, 3)), {}, ValueError, r"boxes: expected an \(n, 4\) array of corners"),
        ([0, 0, 1, 1], {}, ValueError, r"got shape \(4,\)"),
        ([[0, 0], [1]], {}, ValueError, "expected an"),
        ([["a", "b", "c", "d"]], {}, TypeError, "expected real numbers"),
        ([[0, 0, 1, 1], [0, np.nan, 1, 1]], {}, ValueError, r"1 box\(es\) .*box 1"),
        ([[0, 0, np.inf, 1]], {}, ValueError, "NaN or infinite"),
        ([[0, 0, 1, 1], [3, 0, 2, 1]], {}, ValueError, "box 1 is inverted"),
        ([[0, 0, 1, -1]], {"box_format": "xywh"}, ValueError, "box 0 has a negative width"),
        ([[0, 0, 1, 1]], {"box_format": "cxcywh"}, ValueError, "box_format must be"),
    ],
)
def test_check_boxes_names_what_is_wrong(boxes, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_boxes(boxes, **kwargs)


def test_check_boxes_returns_a_fresh_float64_copy():
    given_boxes = np.array([[0, 0, 1, 1]], np.int32)
    checked = check_boxes(given_boxes)
    assert checked.dtype == np.float64 and checked.flags.c_contiguous
    checked[0, 0] = 5
    assert given_boxes[0, 0] == 0
    assert check_boxes([]).shape == (0, 4)
    # -0.0 becomes 0.0, so that sorting cannot tell them apart.
    assert str(check_boxes([[-0.0, 0, 1, 1]])[0, 0]) == "0.0"


def all_pairs_kernel():
    """A kernel writing ``iou_device`` of every pair (a thread per pair); it is built
    on first use, so that collecting this file never compiles CUDA code."""
    from overfeat_scratch.cuda.boxes import iou_device

    @cuda.jit
    def all_pairs(a, b, out):
        p = cuda.threadIdx.x
        q = cuda.threadIdx.y
        if p < a.shape[0] and q < b.shape[0]:
            out[p, q] = iou_device(
                a[p, 0], a[p, 1], a[p, 2], a[p, 3], b[q, 0], b[q, 1], b[q, 2], b[q, 3]
            )

    return all_pairs


@needs_cuda
@pytest.mark.cuda
@cuda_settings(6)
@given(a=grid_boxes(max_n=5, inverted=True), b=grid_boxes(max_n=5, inverted=True))
def test_the_device_function_agrees_to_the_bit(a, b):
    if len(a) == 0 or len(b) == 0:
        return
    out = np.zeros((len(a), len(b)))
    all_pairs_kernel()[(1, 1), (len(a), len(b))](a, b, out)
    np.testing.assert_array_equal(out, iou_matrix(a, b))
