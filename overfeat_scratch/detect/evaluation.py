"""Detection evaluation: COCO ground truth and COCO results in, average precision out.

The detection task is scored by average precision (AP) per class, averaged over
classes (mean AP, mAP). This module computes it from the two files the COCO
format defines:

- **ground truth**: a COCO ``annotations.json`` (a scene folder written by
  :func:`overfeat_scratch.datasets.scenes.write_coco`, the folder itself, or any COCO
  detection file): ``images`` (``id``), ``categories`` (``id``, ``name``) and
  ``annotations`` (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
  optional ``iscrowd``);
- **results**: a JSON list of ``{"image_id", "category_id", "bbox", "score"}``,
  whose category ids are those of the ground truth. (A JSON object with
  ``annotations`` holding such entries is read too; when it also has its own
  ``categories``, its ids are translated to the ground truth's by category
  *name*, the rule every reader of this package follows.)

Both are read and checked by :mod:`overfeat_scratch.datasets.coco`. Results per class
are keyed by category name, in natural order ("2" before "10"); category names must
be unique. A true box needs a width and height above zero; a detected box may be of
zero width or height (it overlaps nothing, so it is a false positive); negative sizes
are errors.

**Matching**, for one IoU threshold ``t``, per image and class: detections are
taken by descending score (equal scores in input order); each one is matched to
the not yet matched ground-truth box with the highest IoU, if that IoU is at least
``t`` (so an IoU of exactly 0.5 counts at 0.5), and is then a true positive.
Otherwise it is a false positive, so a second detection of an object already
found (a duplicate) is a false positive. Equal IoUs go to the ground truth listed
first in the file.

**Crowd regions** (``iscrowd: 1``), as COCO treats them: they are not objects to
find (they do not count among the ground truth, and missing them costs nothing),
and a detection that matches no regular box but lies inside a crowd region is
*ignored*: neither true nor false positive. "Inside" uses COCO's overlap for crowds,
the intersection over the *detection's* area (at least ``t``), and one crowd region
absorbs any number of detections.

**Average precision** of one class: with all its detections in descending score
order (ignored ones dropped) and ``G`` ground-truth boxes, precision and recall
after the ``k`` best are ``TP_k / k`` and ``TP_k / G``. The all-point interpolation
(PASCAL VOC from 2010 on) first makes precision non-increasing from the right,
``p_interp(k) = max_{k' >= k} p(k')``, then sums it over the recall steps::

    AP = sum_k (r_k - r_{k-1}) * p_interp(k),   r_0 = 0

which is the area under the interpolated precision-recall curve. COCO's official
tool instead averages ``p_interp`` sampled at the 101 recall points ``0, 0.01, ...,
1`` (``interpolation="coco101"`` here does that); the two differ by a fraction of a
point on real curves (the 101-point sum is a Riemann approximation of the same
area). A class with ground truth but no detection has AP 0; a class without
ground truth has no AP (``None``): it is reported but left out of the means.

**AP50** is the AP at IoU 0.5 (the PASCAL VOC measure); **AP** (COCO's primary
measure, "AP@[.50:.95]") is the mean of the APs at the IoU thresholds 0.50, 0.55,
..., 0.95. ``map50`` and ``map`` average them over the classes that have ground
truth. Other differences from COCO's tool: every detection counts (COCO keeps the
100 best per image), nothing is reported per object size, and the ``ignore`` flag
of some COCO files is not read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.checks import InputError, InputTypeError
from ..datasets.coco import read_annotations, read_results
from ..ops.boxes import areas, intersection_matrix, iou_matrix, xywh_to_xyxy

COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
INTERPOLATIONS = ("all-point", "coco101")
# COCO's recall points for interpolation="coco101".
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, 101)

# --------------------------------------------------------------------------------------
# Boxes


def crowd_overlap(detections, crowds) -> np.ndarray:
    """COCO's overlap of detections ``(m, 4)`` with crowd regions ``(n, 4)`` (corners):
    the intersection over the detection's own area, ``(m, n)`` (0 for empty detections).
    """
    inter = intersection_matrix(detections, crowds, "crowd_overlap")
    overlap = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, areas(detections)[:, None], out=overlap, where=inter > 0)
    return overlap


# --------------------------------------------------------------------------------------
# Ground truth and results


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """COCO ground truth, checked: one row per annotation, in file order.

    ``boxes``: ``(m, 4)`` corners ``x0, y0, x1, y1`` (float64); ``crowd``: ``(m,)``
    bool; ``categories``: ``{id: name}`` in file order.
    """

    source: str
    image_ids: tuple
    categories: dict
    image_id: np.ndarray
    category_id: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections, checked, with category ids in the ground truth's numbering; input order."""

    source: str
    image_id: np.ndarray
    category_id: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def load_ground_truth(source) -> GroundTruth:
    """Read and check COCO ground truth: a path to a JSON file or to a folder holding
    ``annotations.json``, or the parsed ``dict``.

    Anything malformed is a ``ValueError`` naming the file and the entry, by the rules
    of :func:`~overfeat_scratch.datasets.coco.read_annotations`: invalid or truncated
    JSON, missing keys, wrong types, a bbox that is not four finite numbers or has a
    width or height that is not positive, duplicate image or category ids or category
    names, an annotation whose image or category is not listed.
    """
    coco = read_annotations(source, name="ground truth", folder_ok=True)
    anns = coco.annotations
    return GroundTruth(
        source=coco.source,
        image_ids=coco.image_ids,
        categories=coco.categories,
        image_id=np.array([a.image_id for a in anns], dtype=np.int64),
        category_id=np.array([a.category_id for a in anns], dtype=np.int64),
        boxes=xywh_to_xyxy([a.bbox for a in anns]),
        crowd=np.array([a.iscrowd for a in anns], dtype=bool),
    )


def load_results(source, ground_truth: GroundTruth) -> Detections:
    """Read and check COCO results against ``ground_truth``.

    ``source``: a path to a JSON file, or parsed data: a list of ``{"image_id",
    "category_id", "bbox": [x, y, w, h], "score"}`` (category ids those of the
    ground truth), or an object with such a list under ``annotations`` and,
    optionally, its own ``categories``, translated to the ground truth's by name
    (:func:`~overfeat_scratch.datasets.coco.read_results`). Errors are
    ``ValueError``\\ s naming the file and the entry (``results[k]``, or
    ``annotations[k]`` in an object).
    """
    coco = read_results(source, ground_truth)
    rows = coco.results
    return Detections(
        source=coco.source,
        image_id=np.array([r.image_id for r in rows], dtype=np.int64),
        category_id=np.array([r.category_id for r in rows], dtype=np.int64),
        boxes=xywh_to_xyxy([r.bbox for r in rows]),
        scores=np.array([r.score for r in rows], dtype=np.float64),
    )


# --------------------------------------------------------------------------------------
# Matching and average precision

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


def match_detections(boxes, gt_boxes, gt_crowd=None, iou_thresholds=(0.5,)) -> np.ndarray:
    """Greedy matching in one image and class: ``(T, d)`` int8 status per threshold.

    ``boxes``: ``(d, 4)`` detection corners, *already in descending score order*;
    ``gt_boxes``: ``(g, 4)`` ground-truth corners; ``gt_crowd``: ``(g,)`` bool (None:
    no crowds). Each detection in turn takes the unmatched regular box with the
    highest IoU if that IoU is at least the threshold (:data:`TRUE_POSITIVE`, 1);
    failing that, it is :data:`IGNORED` (-1) when it lies inside a crowd region
    (:func:`crowd_overlap` at least the threshold), else :data:`FALSE_POSITIVE` (0).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    crowd = np.zeros(len(gt_boxes), bool) if gt_crowd is None else np.asarray(gt_crowd, bool)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    status = np.full((thresholds.size, len(boxes)), FALSE_POSITIVE, dtype=np.int8)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return status
    iou = iou_matrix(boxes, gt_boxes[~crowd], name="match_detections")
    inside = crowd_overlap(boxes, gt_boxes[crowd]).max(axis=1, initial=0.0)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(iou.shape[1], dtype=bool)
        for d in range(len(boxes)):
            if iou.shape[1]:
                row = np.where(taken, -1.0, iou[d])
                best = int(np.argmax(row))  # the first of equal IoUs: file order
                if row[best] >= threshold:
                    taken[best] = True
                    status[t, d] = TRUE_POSITIVE
                    continue
            if inside[d] >= threshold:
                status[t, d] = IGNORED
    return status


def precision_recall(status, n_ground_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection of ``status`` (in score order).

    Ignored detections (-1) are dropped first. Recall is 0 throughout when
    ``n_ground_truth`` is 0 (nothing to find).
    """
    status = np.asarray(status)
    hits = status[status != IGNORED] == TRUE_POSITIVE
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, hits.size + 1)
    recall = tp / n_ground_truth if n_ground_truth else np.zeros(hits.size)
    return precision.astype(np.float64), recall.astype(np.float64)


def interpolated_precision(precision) -> np.ndarray:
    """Precision made non-increasing from the right: ``max_{k' >= k} p[k']``."""
    precision = np.asarray(precision, dtype=np.float64)
    return np.maximum.accumulate(precision[::-1])[::-1]


def average_precision(precision, recall, interpolation: str = "all-point") -> float:
    """AP from a precision-recall curve (one point per detection, score order).

    "all-point": ``sum_k (r_k - r_{k-1}) * p_interp(k)`` with ``r_0 = 0`` (VOC 2010+);
    "coco101": the mean of ``p_interp`` at recalls ``0, 0.01, ..., 1``, each read at
    the first detection reaching that recall (0 past the largest recall), as
    COCO's tool does. An empty curve gives 0.
    """
    if interpolation not in INTERPOLATIONS:
        raise InputError(
            f"average_precision: interpolation must be one of {INTERPOLATIONS}, "
            f"got {interpolation!r}"
        )
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.size == 0:
        return 0.0
    envelope = interpolated_precision(precision)
    if interpolation == "all-point":
        return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
    first = np.searchsorted(recall, COCO_RECALL_POINTS, side="left")
    sampled = np.where(first < recall.size, envelope[np.minimum(first, recall.size - 1)], 0.0)
    return float(np.mean(sampled))


# --------------------------------------------------------------------------------------
# The evaluation


@dataclass(frozen=True, eq=False)
class ClassEvaluation:
    """One class's scores.

    ``ap50``: AP at IoU 0.5; ``ap``: the mean of ``ap_per_threshold`` (one per IoU
    threshold of the evaluation); both None for a class without ground truth.
    ``precision``, ``recall``, ``scores``: the curve at IoU 0.5, one point per
    detection in descending score order (ignored detections left out);
    ``max_recall``: its last recall (0 without detections, None without ground
    truth). ``n_ground_truth`` counts regular boxes (not crowd regions).
    """

    name: str
    category_id: int
    n_ground_truth: int
    n_detections: int
    ap50: float | None
    ap: float | None
    ap_per_threshold: tuple
    max_recall: float | None
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray

    def to_json(self, curves: bool = False) -> dict:
        data = {
            "category_id": self.category_id,
            "n_ground_truth": self.n_ground_truth,
            "n_detections": self.n_detections,
            "ap50": self.ap50,
            "ap": self.ap,
            "ap_per_threshold": list(self.ap_per_threshold),
            "max_recall": self.max_recall,
        }
        if curves:
            data.update(
                precision=self.precision.tolist(),
                recall=self.recall.tolist(),
                scores=self.scores.tolist(),
            )
        return data


def _threshold_label(thresholds) -> str:
    if tuple(thresholds) == COCO_IOU_THRESHOLDS:
        return "0.50:0.05:0.95"
    return ",".join(f"{t:.2f}" for t in thresholds)


def _mean_or_nan(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def _or_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass(frozen=True, eq=False)
class DetectionEvaluation:
    """The result of :func:`evaluate_detections`.

    ``map50``: mean AP at IoU 0.5, ``map``: mean AP over ``iou_thresholds``, both over
    the classes with ground truth (NaN when none has any); ``per_class``:
    ``{name: ClassEvaluation}`` for every category of the ground truth, in natural
    name order.
    """

    map50: float
    map: float
    per_class: dict
    iou_thresholds: tuple
    interpolation: str
    n_images: int
    n_ground_truth: int
    n_detections: int

    @property
    def scored_classes(self) -> list:
        """Names of the classes with ground truth: those the means average."""
        return [name for name, c in self.per_class.items() if c.n_ground_truth > 0]

    def summary(self) -> str:
        """A text table: per class ground truth, detections, AP50, AP and max recall; the means."""
        t_label = _threshold_label(self.iou_thresholds)
        width = max([5] + [len(name) for name in self.per_class])

        def number(value):
            return "-" if value is None else f"{value:.3f}"

        head = (
            f"{'class':<{width}}  {'gt':>6}  {'dets':>7}  {'AP50':>6}  "
            f"{'AP':>6}  {'max recall':>10}"
        )
        lines = [head, "-" * len(head)]
        for name, c in self.per_class.items():
            lines.append(
                f"{name:<{width}}  {c.n_ground_truth:>6}  {c.n_detections:>7}  "
                f"{number(c.ap50):>6}  {number(c.ap):>6}  {number(c.max_recall):>10}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'all':<{width}}  {self.n_ground_truth:>6}  {self.n_detections:>7}  "
            f"{number(_or_none(self.map50)):>6}  {number(_or_none(self.map)):>6}"
        )
        scored = len(self.scored_classes)
        lines.append(
            f"mAP50 {number(_or_none(self.map50))}, mAP@[{t_label}] {number(_or_none(self.map))}: "
            f"means over the {scored} class{'es' if scored != 1 else ''} with ground truth"
        )
        lines.append(
            f"{self.n_images} image{'s' if self.n_images != 1 else ''}; "
            f"AP from {self.interpolation} interpolated precision"
        )
        return "\n".join(lines)

    def to_json(self, curves: bool = False) -> dict:
        """A JSON-able dict: ``map50``, ``map``, the settings, counts and ``per_class``
        (``{name: {...}}``; with ``curves``, also each class's precision, recall and
        scores). Undefined values (NaN) are None.
        """
        return {
            "map50": _or_none(self.map50),
            "map": _or_none(self.map),
            "iou_thresholds": list(self.iou_thresholds),
            "interpolation": self.interpolation,
            "n_images": self.n_images,
            "n_ground_truth": self.n_ground_truth,
            "n_detections": self.n_detections,
            "classes_with_ground_truth": self.scored_classes,
            "per_class": {name: c.to_json(curves) for name, c in self.per_class.items()},
        }


def _class_order(names) -> list:
    """Names in natural order: numeric names by value ("2" before "10"), then the rest."""
    return sorted(names, key=lambda s: (0, int(s), s) if s.isdecimal() else (1, 0, s))


def _check_thresholds(iou_thresholds) -> tuple:
    try:
        thresholds = tuple(float(t) for t in iou_thresholds)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"evaluate_detections: iou_thresholds must be numbers, got {iou_thresholds!r}"
        ) from None
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise InputError(
            f"evaluate_detections: iou_thresholds must be numbers in (0, 1], got {iou_thresholds!r}"
        )
    return thresholds


def evaluate_detections(
    ground_truth,
    results,
    iou_thresholds=COCO_IOU_THRESHOLDS,
    interpolation: str = "all-point",
) -> DetectionEvaluation:
    """Average precision per class and its means, from COCO ground truth and results.

    ``ground_truth``: a :class:`GroundTruth`, or what :func:`load_ground_truth`
    reads; ``results``: :class:`Detections`, or what :func:`load_results` reads.
    ``iou_thresholds``: those ``map`` averages over (default 0.50, 0.55, ...,
    0.95); AP50 is always computed at 0.5. ``interpolation``: "all-point" (VOC
    2010+) or "coco101" (COCO's 101 recall points). Rules: the module docstring.
    """
    thresholds = _check_thresholds(iou_thresholds)
    if interpolation not in INTERPOLATIONS:
        raise InputError(
            f"evaluate_detections: interpolation must be one of {INTERPOLATIONS}, "
            f"got {interpolation!r}"
        )
    gt = ground_truth if isinstance(ground_truth, GroundTruth) else load_ground_truth(ground_truth)
    dets = results if isinstance(results, Detections) else load_results(results, gt)
    # Row 0 is IoU 0.5 (AP50 and the curves), then the thresholds of the mean.
    levels = (0.5,) + thresholds

    # Every detection's status at every level, matched per image and class.
    order = np.argsort(-dets.scores, kind="stable")  # equal scores: input order
    status = np.full((len(levels), order.size), FALSE_POSITIVE, dtype=np.int8)
    groups = {}
    for d in order.tolist():
        groups.setdefault((int(dets.image_id[d]), int(dets.category_id[d])), []).append(d)
    gt_groups = {}
    for g in range(gt.image_id.size):
        gt_groups.setdefault((int(gt.image_id[g]), int(gt.category_id[g])), []).append(g)
    for key, members in groups.items():
        truth = gt_groups.get(key, [])
        status[:, members] = match_detections(
            dets.boxes[members], gt.boxes[truth], gt.crowd[truth], levels
        )

    per_class = {}
    by_name = {name: cid for cid, name in gt.categories.items()}
    for name in _class_order(by_name):
        cid = by_name[name]
        n_gt = int(np.sum((gt.category_id == cid) & ~gt.crowd))
        mine = order[dets.category_id[order] == cid]
        curves = [precision_recall(status[level, mine], n_gt) for level in range(len(levels))]
        kept_scores = dets.scores[mine][status[0, mine] != IGNORED]
        if n_gt:
            aps = [average_precision(p, r, interpolation) for p, r in curves]
            ap50, per_threshold = aps[0], tuple(aps[1:])
            ap = float(np.mean(per_threshold))
            max_recall = float(curves[0][1][-1]) if curves[0][1].size else 0.0
        else:
            ap50 = ap = max_recall = None
            per_threshold = (None,) * len(thresholds)
        per_class[name] = ClassEvaluation(
            name=name,
            category_id=cid,
            n_ground_truth=n_gt,
            n_detections=int(mine.size),
            ap50=ap50,
            ap=ap,
            ap_per_threshold=per_threshold,
            max_recall=max_recall,
            precision=curves[0][0],
            recall=curves[0][1],
            scores=kept_scores,
        )

    return DetectionEvaluation(
        map50=_mean_or_nan(c.ap50 for c in per_class.values()),
        map=_mean_or_nan(c.ap for c in per_class.values()),
        per_class=per_class,
        iou_thresholds=thresholds,
        interpolation=interpolation,
        n_images=len(gt.image_ids),
        n_ground_truth=int(np.sum(~gt.crowd)),
        n_detections=int(order.size),
    )


# --------------------------------------------------------------------------------------
# Figures


def plot_pr_curves(result: DetectionEvaluation, path, title: str | None = None) -> Path:
    """Save the precision-recall curves at IoU 0.5 of the classes with ground truth (PNG).

    Each class is drawn twice (:func:`~overfeat_scratch.common.plots.save_pr_curves`):
    its raw precision (thin) and the interpolated precision whose area is its AP (a
    step line, labelled with AP50).
    """
    from ..common.plots import save_pr_curves

    curves = []
    for name in result.scored_classes:
        c = result.per_class[name]
        if c.recall.size == 0:
            curves.append((f"{name}: AP50 0.000 (no detections)", c.recall, c.precision, None))
        else:
            envelope = interpolated_precision(c.precision)
            curves.append((f"{name}: AP50 {c.ap50:.3f}", c.recall, c.precision, envelope))
    if title is None:
        title = f"precision-recall at IoU 0.5, mAP50 {_or_none(result.map50) or 0:.3f}"
    save_pr_curves(curves, path, title)
    return Path(path)
