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

Results per class are keyed by category name, in natural order ("2" before
"10"); category names must be unique. Boxes may be of zero width or height (they
overlap nothing, so such a ground-truth box can never be found); negative sizes
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

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets.scenes import ANNOTATIONS_FILE, bbox_problem
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
# Reading JSON with the place of an error

_SPACE = re.compile(r"[ \t\n\r]*")


class _JsonScanner:
    """Parses a JSON document, itself walking the top-level object and the lists under it
    (entries are decoded by :mod:`json`), so that an error names the entry it is in.
    """

    def __init__(self, text: str, source: str, root: str):
        self.text, self.source, self.root = text, source, root
        self.decoder = json.JSONDecoder()

    def skip(self, pos: int) -> int:
        return _SPACE.match(self.text, pos).end()

    def fail(self, place: str, pos: int, message: str):
        place = f" {place}" if place else ""
        line = self.text.count("\n", 0, pos) + 1
        if self.skip(pos) >= len(self.text):
            raise ValueError(
                f"{self.source}: the JSON ends early{place} (line {line}); is the file truncated?"
            )
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        raise ValueError(
            f"{self.source}: not valid JSON{place} at line {line} column {column}: {message}"
        )

    def leaf(self, pos: int, where: str):
        try:
            return self.decoder.raw_decode(self.text, pos)
        except json.JSONDecodeError as error:
            # A string left open runs to the end of the text: the file was cut there.
            cut = error.msg.startswith("Unterminated string")
            self.fail(
                f"in {where}" if where else "", len(self.text) if cut else error.pos, error.msg
            )

    def value(self, pos: int, where: str, depth: int):
        pos = self.skip(pos)
        head = self.text[pos : pos + 1]
        if head == "[" and depth <= 1:
            return self.array(pos, where, depth)
        if head == "{" and depth == 0:
            return self.object(pos)
        return self.leaf(pos, where)

    def array(self, pos: int, where: str, depth: int):
        items = []
        pos = self.skip(pos + 1)
        if self.text.startswith("]", pos):
            return items, pos + 1
        while True:
            item, pos = self.value(pos, f"{where}[{len(items)}]", depth + 1)
            items.append(item)
            pos = self.skip(pos)
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("]", pos):
                return items, pos + 1
            else:
                self.fail(f"after {where}[{len(items) - 1}]", pos, "expected ',' or ']'")

    def object(self, pos: int):
        result = {}
        pos = self.skip(pos + 1)
        if self.text.startswith("}", pos):
            return result, pos + 1
        while True:
            pos = self.skip(pos)
            if not self.text.startswith('"', pos):
                self.fail("at the top level", pos, "expected a quoted key")
            key, pos = self.leaf(pos, "a key")
            pos = self.skip(pos)
            if not self.text.startswith(":", pos):
                self.fail(f"after the key {key!r}", pos, "expected ':'")
            result[key], pos = self.value(pos + 1, key, 1)
            pos = self.skip(pos)
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("}", pos):
                return result, pos + 1
            else:
                self.fail(f"after {key!r}", pos, "expected ',' or '}'")

    def document(self):
        if not self.text.strip():
            raise ValueError(f"{self.source}: the file is empty; expected JSON")
        data, pos = self.value(0, self.root, 0)
        pos = self.skip(pos)
        if pos != len(self.text):
            self.fail("after the end of the document", pos, "extra data")
        return data


def parse_json(text: str, source: str, root: str = ""):
    """``json.loads(text)``, but an error names ``source`` and the entry it is in.

    Entries of a top-level list are named ``root[k]``, those of a list under a
    top-level key ``key[k]``; a file that ends early says so.
    """
    return _JsonScanner(text, source, root).document()


def _read_source(source, what: str, root: str, folder_ok: bool):
    """``(name, parsed JSON)`` of a path, or of data already parsed (named ``<what>``)."""
    if not isinstance(source, (str, os.PathLike)):
        return f"<{what}>", source
    path = Path(source)
    if path.is_dir():
        if not folder_ok:
            raise ValueError(f"{path}: is a folder; expected the {what} as a COCO JSON file")
        if not (path / ANNOTATIONS_FILE).is_file():
            raise ValueError(
                f"{path}: the folder holds no {ANNOTATIONS_FILE}; expected the {what} as a "
                f"COCO JSON file or a scene folder with {ANNOTATIONS_FILE}"
            )
        path = path / ANNOTATIONS_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no such file; expected the {what} as COCO JSON")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
    return str(path), parse_json(text, str(path), root)


# --------------------------------------------------------------------------------------
# Ground truth and results


def _field(source, where, entry, key, kinds, kind_name):
    if not isinstance(entry, dict):
        raise ValueError(f"{source}: {where} is {type(entry).__name__}, expected a JSON object")
    if key not in entry:
        raise ValueError(f"{source}: {where} has no {key!r}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{source}: {where}: {key!r} is {value!r}, expected {kind_name}")
    return value


def _integer(source, where, entry, key):
    return _field(source, where, entry, key, int, "an integer")


def _number(source, where, entry, key) -> float:
    value = _field(source, where, entry, key, (int, float), "a number")
    if not math.isfinite(value):
        raise ValueError(f"{source}: {where}: {key!r} is {value!r}, expected a finite number")
    return float(value)


def _bbox(source, where, entry) -> list:
    bbox = _field(source, where, entry, "bbox", list, "a list [x, y, w, h]")
    if len(bbox) != 4 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
    ):
        raise ValueError(f"{source}: {where}: bbox {bbox} is not four finite numbers [x, y, w, h]")
    if bbox[2] < 0 or bbox[3] < 0:
        raise ValueError(f"{source}: {where}: bbox {bbox} has a negative width or height")
    return [float(v) for v in bbox]


def _list_under(source, data, key):
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get(key), list):
        raise ValueError(f"{source}: expected a list under {key!r}")
    return data[key]


def _read_categories(source, data) -> dict:
    """``{category_id: name}`` in file order; ids and names both unique."""
    categories, names = {}, {}
    for k, entry in enumerate(_list_under(source, data, "categories")):
        where = f"categories[{k}]"
        cid = _integer(source, where, entry, "id")
        name = _field(source, where, entry, "name", str, "a string")
        if cid in categories:
            raise ValueError(f"{source}: {where}: category id {cid} appears twice")
        if name in names:
            raise ValueError(
                f"{source}: {where}: category name {name!r} appears twice (ids {names[name]} "
                f"and {cid}); classes are told apart by name"
            )
        categories[cid], names[name] = name, cid
    return categories


def _class_order(names) -> list:
    """Names in natural order: numeric names by value ("2" before "10"), then the rest."""
    return sorted(names, key=lambda s: (0, int(s), s) if s.isdecimal() else (1, 0, s))


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

    Anything malformed is a ``ValueError`` naming the file and the entry: invalid or
    truncated JSON, missing keys, wrong types, a bbox that is not four finite numbers
    or has a width or height that is not positive (the scene reader's rule,
    :func:`~overfeat_scratch.datasets.scenes.bbox_problem`), duplicate image or category ids
    or category
    names, an annotation whose image or category is not listed.
    """
    source, data = _read_source(source, "ground truth", "", folder_ok=True)
    categories = _read_categories(source, data)
    image_ids = []
    seen = set()
    for k, entry in enumerate(_list_under(source, data, "images")):
        image_id = _integer(source, f"images[{k}]", entry, "id")
        if image_id in seen:
            raise ValueError(f"{source}: images[{k}]: image id {image_id} appears twice")
        seen.add(image_id)
        image_ids.append(image_id)

    rows = []
    for k, entry in enumerate(_list_under(source, data, "annotations")):
        where = f"annotations[{k}]"
        if isinstance(entry, dict) and "id" in entry:
            where += f" (id {entry['id']})"
        image_id = _integer(source, where, entry, "image_id")
        cid = _integer(source, where, entry, "category_id")
        bbox = _field(source, where, entry, "bbox", list, "a list [x, y, w, h]")
        problem = bbox_problem(bbox)
        if problem:
            raise ValueError(f"{source}: {where}: {problem}")
        bbox = [float(v) for v in bbox]
        if image_id not in seen:
            raise ValueError(f"{source}: {where}: image_id {image_id} is not among the images")
        if cid not in categories:
            raise ValueError(f"{source}: {where}: category_id {cid} is not among the categories")
        crowd = entry.get("iscrowd", 0)
        if crowd not in (0, 1):  # True and False compare equal to 1 and 0
            raise ValueError(f"{source}: {where}: iscrowd is {crowd!r}, expected 0 or 1")
        rows.append((image_id, cid, bbox, bool(crowd)))

    return GroundTruth(
        source=source,
        image_ids=tuple(image_ids),
        categories=categories,
        image_id=np.array([r[0] for r in rows], dtype=np.int64),
        category_id=np.array([r[1] for r in rows], dtype=np.int64),
        boxes=xywh_to_xyxy([r[2] for r in rows]),
        crowd=np.array([r[3] for r in rows], dtype=bool),
    )


def load_results(source, ground_truth: GroundTruth) -> Detections:
    """Read and check COCO results against ``ground_truth``.

    ``source``: a path to a JSON file, or parsed data: a list of ``{"image_id",
    "category_id", "bbox": [x, y, w, h], "score"}`` (category ids those of the
    ground truth), or an object with such a list under ``annotations`` and,
    optionally, its own ``categories``, translated to the ground truth's by name.
    Errors are ``ValueError``\\ s naming the file and the entry (``results[k]``,
    or ``annotations[k]`` in an object).
    """
    source, data = _read_source(source, "results", "results", folder_ok=False)
    translate = None
    if isinstance(data, dict):
        entries, name = _list_under(source, data, "annotations"), "annotations"
        if "categories" in data:
            by_name = {n: cid for cid, n in ground_truth.categories.items()}
            translate = {}
            for cid, cat_name in _read_categories(source, data).items():
                if cat_name not in by_name:
                    raise ValueError(
                        f"{source}: category {cat_name!r} (id {cid}) is not a category of the "
                        f"ground truth {ground_truth.source}"
                    )
                translate[cid] = by_name[cat_name]
    elif isinstance(data, list):
        entries, name = data, "results"
    else:
        raise ValueError(f"{source}: expected a JSON list of detections, got {type(data).__name__}")

    images = set(ground_truth.image_ids)
    known = ground_truth.categories if translate is None else translate
    rows = []
    for k, entry in enumerate(entries):
        where = f"{name}[{k}]"
        image_id = _integer(source, where, entry, "image_id")
        cid = _integer(source, where, entry, "category_id")
        bbox = _bbox(source, where, entry)
        score = _number(source, where, entry, "score")
        if image_id not in images:
            raise ValueError(
                f"{source}: {where}: image_id {image_id} is not among the ground truth's images"
            )
        if cid not in known:
            whose = "the ground truth's" if translate is None else "the file's"
            raise ValueError(
                f"{source}: {where}: category_id {cid} is not among {whose} categories"
            )
        rows.append((image_id, cid if translate is None else translate[cid], bbox, score))

    return Detections(
        source=source,
        image_id=np.array([r[0] for r in rows], dtype=np.int64),
        category_id=np.array([r[1] for r in rows], dtype=np.int64),
        boxes=xywh_to_xyxy([r[2] for r in rows]),
        scores=np.array([r[3] for r in rows], dtype=np.float64),
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
        raise ValueError(
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


def _check_thresholds(iou_thresholds) -> tuple:
    try:
        thresholds = tuple(float(t) for t in iou_thresholds)
    except (TypeError, ValueError):
        raise TypeError(
            f"evaluate_detections: iou_thresholds must be numbers, got {iou_thresholds!r}"
        ) from None
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise ValueError(
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
        raise ValueError(
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
# Figures and the command line


def plot_pr_curves(result: DetectionEvaluation, path, title: str | None = None) -> Path:
    """Save the precision-recall curves at IoU 0.5 of the classes with ground truth (PNG).

    Each class is drawn twice: its raw precision (thin) and the interpolated
    precision whose area is its AP (a step line, labelled with AP50).
    """
    from ..common.plots import new_figure, save_figure

    fig = new_figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    for name in result.scored_classes:
        c = result.per_class[name]
        if c.recall.size == 0:
            ax.plot([], [], label=f"{name}: AP50 0.000 (no detections)")
            continue
        (line,) = ax.plot(c.recall, c.precision, linewidth=0.7, alpha=0.4)
        envelope = interpolated_precision(c.precision)
        ax.plot(
            np.concatenate([[0.0], c.recall]),
            np.concatenate([[envelope[0]], envelope]),
            drawstyle="steps-pre",
            color=line.get_color(),
            linewidth=1.5,
            label=f"{name}: AP50 {c.ap50:.3f}",
        )
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    if title is None:
        title = f"precision-recall at IoU 0.5, mAP50 {_or_none(result.map50) or 0:.3f}"
    ax.set_title(title, fontsize=10)
    if result.scored_classes:
        ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


def evaluate_detections_main(
    gt_path,
    preds_path,
    as_json: bool,
    *,
    plot=None,
    interpolation: str = "all-point",
) -> int:
    """Evaluate a COCO results file against COCO ground truth and print the outcome.

    Prints :meth:`DetectionEvaluation.summary` (or, with ``as_json``, one JSON object:
    :meth:`DetectionEvaluation.to_json`); ``plot``: also save the precision-recall
    curves there. Returns 0. Malformed input raises ``ValueError`` (the command
    line reports it).
    """
    result = evaluate_detections(gt_path, preds_path, interpolation=interpolation)
    if plot:
        plot_pr_curves(result, plot)
    if as_json:
        print(json.dumps(result.to_json()))
    else:
        print(f"ground truth {gt_path}, results {preds_path}")
        print(result.summary())
        if plot:
            print(f"precision-recall curves: {plot}")
    return 0
