"""The student track's route: which implementation the student tests check.

``pytest --student PATH`` (or ``OVERFEAT_STUDENT=PATH``) points the tests marked
``student_*`` at the functions of the module in ``PATH`` (``student/overfeat_student.py``
is the template). Without it they check the package's own functions, through the same
route: that is how CI keeps the route, and the tests, honest.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

# task marker -> the functions a student writes for it
TASKS = {
    "student_conv": ("conv2d_backward",),
    "student_pool": ("max_pool2d_forward", "max_pool2d_backward"),
    "student_offset": ("offset_max_pool2d", "interleave_offsets"),
    "student_merge": ("greedy_merge",),
    "student_ap": ("average_precision",),
}


def package_functions() -> SimpleNamespace:
    """The package's own implementations, with the student template's signatures."""
    from overfeat_scratch.detect.evaluation import average_precision
    from overfeat_scratch.ops import conv, offset_pool, pool
    from overfeat_scratch.ops.merge import merge_literal

    def conv2d_backward(dy, x, w, stride=1, padding=0):
        return conv.conv2d_backward(dy, x, w, stride, padding)

    def greedy_merge(
        boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"
    ):
        return merge_literal(boxes, classes, confidences, threshold, score, average)

    return SimpleNamespace(
        conv2d_backward=conv2d_backward,
        max_pool2d_forward=pool.max_pool2d_forward,
        max_pool2d_backward=pool.max_pool2d_backward,
        offset_max_pool2d=offset_pool.offset_max_pool2d,
        interleave_offsets=offset_pool.interleave_offsets,
        greedy_merge=greedy_merge,
        average_precision=lambda precision, recall: average_precision(precision, recall),
    )


def student_path(config) -> str | None:
    return config.getoption("--student") or os.environ.get("OVERFEAT_STUDENT") or None


def load_student(path: str) -> SimpleNamespace:
    """The module at ``path``, checked for every function of every task."""
    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"--student {path}: no such file; expected a Python module")
    spec = importlib.util.spec_from_file_location("overfeat_student_under_test", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [n for names in TASKS.values() for n in names if not hasattr(module, n)]
    if missing:
        raise AttributeError(
            f"--student {path}: defines no {', '.join(missing)}; start from "
            "student/overfeat_student.py, which has every function"
        )
    return SimpleNamespace(**{n: getattr(module, n) for names in TASKS.values() for n in names})
