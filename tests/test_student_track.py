"""The student track: the core pieces, checked against the package's references.

Every test here takes the functions it checks from the ``impl`` fixture: the module of
``pytest --student PATH`` when given (a student's version of
``student/overfeat_student.py``), else the package's own functions, so CI runs the same
tests through the same route. Run one task with its marker, e.g.
``pytest --student student/overfeat_student.py -m student_pool``.

The references are the package's loops (``*_naive``), numerical gradients, the
dense-equals-sliding property, the literal merge and an all-point AP written out here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conv_cases, pool_cases
from test_merge import assert_same, merge_cases

from overfeat_scratch.ops.conv import conv2d_backward_naive, conv2d_naive
from overfeat_scratch.ops.gradcheck import numerical_gradient, relative_error
from overfeat_scratch.ops.merge import merge_literal
from overfeat_scratch.ops.offset_pool import offset_max_pool2d_naive
from overfeat_scratch.ops.pool import max_pool2d_backward_naive, max_pool2d_naive
from student import TASKS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "student" / "overfeat_student.py"
# float64 throughout: the loop references and the code under test agree to rounding.
TOL = 1e-10


# --------------------------------------------------------------------------------------
# The convolution's backward pass


@pytest.mark.student_conv
@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1))
def test_conv_backward_matches_the_loops(impl, case, seed):
    x, w, b, stride, padding = case
    y = conv2d_naive(x, w, b, stride, padding)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    got = impl.conv2d_backward(dy, x, w, stride, padding)
    want = conv2d_backward_naive(dy, x, w, stride, padding)
    for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
        assert np.shape(g) == e.shape, f"{name}: shape {np.shape(g)}, expected {e.shape}"
        assert relative_error(g, e) < TOL, f"{name}: relative error {relative_error(g, e):.1e}"


@pytest.mark.student_conv
@settings(max_examples=5)
@given(case=conv_cases(max_n=1, max_c=2, max_o=2, max_side=6, max_kernel=3))
def test_conv_backward_is_the_numerical_gradient(impl, case):
    x, w, b, stride, padding = case
    r = np.random.default_rng(0).standard_normal(conv2d_naive(x, w, b, stride, padding).shape)
    dx, dw, db = impl.conv2d_backward(r, x, w, stride, padding)

    def loss():
        return float(np.sum(conv2d_naive(x, w, b, stride, padding) * r))

    for name, got, param in (("dx", dx, x), ("dw", dw, w), ("db", db, b)):
        error = relative_error(got, numerical_gradient(loss, param))
        assert error < 1e-6, f"{name}: relative error {error:.1e} against central differences"


# --------------------------------------------------------------------------------------
# Max pooling


@pytest.mark.student_pool
@given(case=pool_cases())
def test_pool_forward_matches_the_loops(impl, case):
    x, kernel, stride = case
    y, arg = impl.max_pool2d_forward(x, kernel, stride)
    want_y, want_arg = max_pool2d_naive(x, kernel, stride)
    np.testing.assert_array_equal(y, want_y)
    # The winner of each window, the first maximum in row-major order on ties.
    np.testing.assert_array_equal(np.asarray(arg), want_arg)


@pytest.mark.student_pool
@given(case=pool_cases(), seed=st.integers(0, 2**32 - 1))
def test_pool_backward_routes_each_gradient_to_its_winner(impl, case, seed):
    x, kernel, stride = case
    _, arg = max_pool2d_naive(x, kernel, stride)
    dy = np.random.default_rng(seed).standard_normal(arg.shape)
    got = impl.max_pool2d_backward(dy, arg, x.shape, kernel, stride)
    want = max_pool2d_backward_naive(dy, arg, x.shape, kernel, stride)
    assert relative_error(got, want) < TOL


@pytest.mark.student_pool
def test_pool_backward_adds_up_where_windows_overlap(impl):
    """A 3x3 input whose centre wins all four 2x2 windows of stride 1."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    y, arg = impl.max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 5.0))
    dx = impl.max_pool2d_backward(np.ones((1, 1, 2, 2)), arg, x.shape, 2, 1)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


# --------------------------------------------------------------------------------------
# Offset pooling and interleaving


@pytest.mark.student_offset
@given(case=pool_cases())
def test_offset_pooling_matches_the_loops(impl, case):
    x, kernel, stride = case
    got = impl.offset_max_pool2d(x, kernel, stride)
    want = offset_max_pool2d_naive(x, kernel, stride)
    assert np.shape(got)[:2] == (stride, stride)
    for dy in range(stride):
        for dx in range(stride):
            h, w = want[dy][dx].shape[2:]
            np.testing.assert_array_equal(got[dy, dx, :, :, :h, :w], want[dy][dx])
            assert not np.any(got[dy, dx, :, :, h:, :]) and not np.any(got[dy, dx, :, :, :, w:])


@pytest.mark.student_offset
@given(
    seed=st.integers(0, 2**32 - 1),
    kernel=st.integers(1, 3),
    h=st.integers(3, 11),
    w=st.integers(3, 11),
)
def test_interleaved_offsets_equal_pooling_at_every_position(impl, seed, kernel, h, w):
    """The point of offset pooling: with windows ``kernel`` apart, pooling at every
    offset and interleaving the maps gives the pooling of *every* position (stride 1)."""
    x = np.random.default_rng(seed).standard_normal((1, 2, h, w))
    fine = max_pool2d_naive(x, kernel, 1)[0]
    got = impl.interleave_offsets(impl.offset_max_pool2d(x, kernel, kernel), *fine.shape[2:])
    np.testing.assert_array_equal(got, fine)


# --------------------------------------------------------------------------------------
# The greedy merge


@pytest.mark.student_merge
@settings(max_examples=15)
@given(data=st.data())
def test_merge_matches_the_literal_merge(impl, data):
    case = data.draw(merge_cases(max_n=20))
    args = (case["boxes"], case["classes"], case["confidences"], case["threshold"])
    kwargs = {"score": case["score"], "average": case["average"]}
    assert_same(impl.greedy_merge(*args, **kwargs), merge_literal(*args, **kwargs))


@pytest.mark.student_merge
def test_merge_by_hand(impl):
    """Two boxes of class 0 one pixel apart merge into their midpoint with the summed
    confidence; the far box and the box of class 1 stay."""
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    result = impl.greedy_merge(boxes, [0, 0, 0, 1], [0.5, 0.25, 0.5, 0.1], threshold=0.5)
    assert len(result) == 3
    np.testing.assert_allclose(result.boxes[0], [0.5, 0, 10.5, 10])
    assert result.confidences[0] == 0.75 and result.counts.tolist() == [2, 1, 1]


# --------------------------------------------------------------------------------------
# Average precision


def voc_all_point_ap(precision, recall) -> float:
    """VOC 2010's all-point AP written out independently: pad the curve with (0, 0)
    and (1, 0), make precision non-increasing from the right, and add up precision
    times the recall steps where recall changes."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@pytest.mark.student_ap
def test_ap_interpolates_precision(impl):
    """A miss, then two hits: precision (0, 1/2, 2/3) rises after the first recall
    step, so interpolation changes the answer: 1/2 * 2/3 + 1/2 * 2/3 = 2/3, where the
    raw precision would give 1/2 * 1/2 + 1/2 * 2/3 = 7/12."""
    hits = np.array([0, 1, 1], dtype=float)  # 2 objects
    recall = np.cumsum(hits) / 2
    precision = np.cumsum(hits) / np.arange(1, 4)
    assert impl.average_precision(precision, recall) == pytest.approx(2 / 3)
    assert voc_all_point_ap(precision, recall) == pytest.approx(2 / 3)
    assert impl.average_precision(np.array([]), np.array([])) == 0.0


@pytest.mark.student_ap
@given(
    hits=st.lists(st.booleans(), min_size=1, max_size=30),
    missed=st.integers(0, 5),
)
def test_ap_matches_an_independent_voc_implementation(impl, hits, missed):
    hits = np.array(hits, dtype=float)
    total = int(hits.sum()) + missed
    if total == 0:
        return
    recall = np.cumsum(hits) / total
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    got = impl.average_precision(precision, recall)
    assert got == pytest.approx(voc_all_point_ap(precision, recall), abs=1e-12)


# --------------------------------------------------------------------------------------
# The route itself


def test_every_task_has_tests():
    source = Path(__file__).read_text()
    for marker in TASKS:
        assert f"@pytest.mark.{marker}\n" in source, marker


def run_pytest(*args) -> subprocess.CompletedProcess:
    """This test file in a pytest of its own, with ``args``; only student tests are
    selected by the callers, so that these tests never run themselves again."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, __file__]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)


def test_the_template_fails_every_task_with_not_implemented():
    """The template, run through ``--student``: every student test fails, and says the
    function is not written yet; nothing else breaks."""
    result = run_pytest("--student", str(TEMPLATE), "-m", " or ".join(TASKS))
    out = result.stdout
    assert result.returncode == 1, out[-2000:]
    source = Path(__file__).read_text()
    marked = sum(source.count(f"@pytest.mark.{marker}\n") for marker in TASKS)
    assert f"{marked} failed" in out, out[-2000:]
    assert out.count("NotImplementedError") >= marked, out[-2000:]


def test_a_missing_student_file_is_a_clear_error(tmp_path):
    result = run_pytest("--student", str(tmp_path / "none.py"), "-m", "student_ap")
    assert result.returncode != 0
    assert "no such file; expected a Python module" in result.stdout + result.stderr
