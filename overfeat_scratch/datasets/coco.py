"""The COCO detection formats: annotations (the ground truth) and results, read and written.

COCO keeps a detection data set in one JSON file, ``annotations.json``::

    {"images":      [{"id": 1, "file_name": "images/000001.png", "width": 160, "height": 96}],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [x, y, w, h],
                      "area": w * h, "iscrowd": 0}],
     "categories":  [{"id": 4, "name": "3"}]}

and what a detector found in a second one, the *results*: a list of
``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``. Boxes are ``[x, y, w,
h]`` in pixels (top-left corner, width, height); the rest of the package uses corners
``[x0, y0, x1, y1]`` (:func:`~overfeat_scratch.ops.boxes.xywh_to_xyxy` converts).

This module is the package's one reader and writer of both files. The scene folders
(:mod:`.scenes`) and the evaluator (:mod:`overfeat_scratch.detect.evaluation`) read
through it, so a file is checked by the same rules, with the same messages, wherever
it is read:

- a file that is missing, not UTF-8 or not JSON is a ``ValueError`` naming the file
  (and, for broken JSON, the line and column, from :class:`json.JSONDecodeError`);
- a file that is valid JSON but not a valid COCO file is a ``ValueError`` naming the
  file and the entry, e.g. ``annotations.json: annotations[3] (id 4): bbox [1, 2, 3]
  is not four finite numbers [x, y, w, h]``.

The rules: ids are integers, unique among the images and among the categories;
category names are strings, unique too (classes are told apart by *name*, so two files
that number their categories differently still agree); an annotation names a listed
image and category and has a ``bbox`` of four finite numbers with a width and height
above zero (:func:`bbox_problem`), and ``iscrowd`` 0 or 1 if it says; a result has a
``bbox`` of four finite numbers with a width and height of zero or more, and a finite
``score`` (``NaN`` and ``Infinity``, which :mod:`json` reads, are refused there). Keys
the format does not define are kept (the scenes record each digit's ``mnist_index``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..common.checks import InputError
from ..common.fileio import atomic_write

ANNOTATIONS_FILE = "annotations.json"

# The keys of an annotation entry that the reader interprets (the others are kept in
# ``CocoAnnotation.extra``); "area" is written as w * h and not read back.
ANNOTATION_KEYS = ("id", "image_id", "bbox", "area", "category_id", "iscrowd")


class CocoImage(NamedTuple):
    """An image entry. ``file_name``, ``width`` and ``height`` are None unless the reader
    was asked for them (``image_files=True``)."""

    id: int
    file_name: str | None = None
    width: int | None = None
    height: int | None = None


class CocoAnnotation(NamedTuple):
    """A ground-truth annotation: ``bbox`` ``(x, y, w, h)`` as the file has the numbers;
    ``id`` as the file has it (None if absent); ``extra``: the keys COCO does not define."""

    id: object
    image_id: int
    category_id: int
    bbox: tuple
    iscrowd: bool = False
    extra: dict = {}  # the default is shared: the reader always gives a dict of its own


class CocoResult(NamedTuple):
    """One detection of a results file: ``bbox`` ``(x, y, w, h)`` and ``score``."""

    image_id: int
    category_id: int
    bbox: tuple
    score: float


@dataclass(frozen=True, eq=False)
class CocoAnnotations:
    """A checked annotations file: entries in file order, ``categories`` ``{id: name}``."""

    source: str
    images: list
    categories: dict
    annotations: list

    @property
    def image_ids(self) -> tuple:
        return tuple(image.id for image in self.images)


@dataclass(frozen=True, eq=False)
class CocoResults:
    """A checked results file; category ids in the ground truth's numbering when one was given."""

    source: str
    results: list


# --------------------------------------------------------------------------------------
# JSON files


def read_json(source, name: str, folder_ok: bool = False):
    """``(source name, parsed JSON)`` of a COCO file.

    ``source``: a path to a JSON file; with ``folder_ok``, also a folder holding
    :data:`ANNOTATIONS_FILE`; or data already parsed (a dict or a list), returned as it
    is and named ``<name>``. ``name`` says what the file holds ("ground truth",
    "results") in the messages.
    """
    if not isinstance(source, (str, os.PathLike)):
        return f"<{name}>", source
    path = Path(source)
    expected = f"the {name} as a COCO JSON file"
    if path.is_dir():
        if not folder_ok:
            raise InputError(f"{path}: is a folder; expected {expected}")
        if not (path / ANNOTATIONS_FILE).is_file():
            raise InputError(
                f"{path}: the folder holds no {ANNOTATIONS_FILE}; expected {expected} or a "
                f"folder with {ANNOTATIONS_FILE}"
            )
        path = path / ANNOTATIONS_FILE
    if not path.is_file():
        raise InputError(f"{path}: no such file; expected {expected}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error})") from None
    return str(path), decode_json(text, str(path))


def decode_json(text: str, source: str):
    """``json.loads(text)``; an error is a ``ValueError`` that names ``source`` and where the
    text goes wrong (or that it ends early, as a file cut short does)."""
    if not text.strip():
        raise InputError(f"{source}: the file is empty; expected JSON")
    try:
        return json.loads(text)
    except RecursionError:
        raise InputError(f"{source}: the JSON is nested too deeply to read") from None
    except json.JSONDecodeError as error:
        # Nothing but white space after the error, or a string that never closes: the
        # text stops in the middle of the document.
        if not text[error.pos :].strip() or error.msg.startswith("Unterminated string"):
            end = len(text.rstrip())
            line = text.count("\n", 0, end) + 1
            column = end - text.rfind("\n", 0, end)
            raise InputError(
                f"{source}: the JSON ends early, at line {line} column {column}; "
                "is the file truncated?"
            ) from None
        raise InputError(
            f"{source}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None


def write_json(path, data) -> Path:
    """Write ``data`` as indented UTF-8 JSON, atomically; returns the path."""
    text = json.dumps(data, indent=1)
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# --------------------------------------------------------------------------------------
# Entries and their fields


def _field(source, where, entry, key, kinds, expected):
    if not isinstance(entry, dict):
        raise InputError(f"{source}: {where} is {type(entry).__name__}, expected a JSON object")
    if key not in entry:
        raise InputError(f"{source}: {where} has no {key!r}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InputError(f"{source}: {where}: {key!r} is {value!r}, expected {expected}")
    return value


def _integer(source, where, entry, key) -> int:
    return _field(source, where, entry, key, int, "an integer")


def _number(source, where, entry, key) -> int | float:
    value = _field(source, where, entry, key, (int, float), "a number")
    if not math.isfinite(value):
        raise InputError(f"{source}: {where}: {key!r} is {value!r}, expected a finite number")
    return value


def _list_under(source, data, key) -> list:
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if not isinstance(data.get(key), list):
        raise InputError(f"{source}: expected a list under {key!r}")
    return data[key]


def bbox_problem(bbox, empty_ok: bool = False) -> str | None:
    """What is wrong with a COCO ``bbox`` ``[x, y, w, h]``, or ``None``.

    Four finite numbers, and a width and height above zero: a true box of no area
    holds nothing to find. ``empty_ok`` (the rule for results) lets them be zero (such
    a box overlaps nothing, so it is a false positive); negative sizes are refused.
    """
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in bbox
        )
    ):
        return f"bbox {bbox} is not four finite numbers [x, y, w, h]"
    if empty_ok and (bbox[2] < 0 or bbox[3] < 0):
        return f"bbox {bbox} has a negative width or height"
    if not empty_ok and not (bbox[2] > 0 and bbox[3] > 0):
        return f"bbox {bbox} has a non-positive width or height"
    return None


def _bbox(source, where, entry, empty_ok: bool) -> list:
    bbox = _field(source, where, entry, "bbox", list, "a list [x, y, w, h]")
    problem = bbox_problem(bbox, empty_ok)
    if problem:
        raise InputError(f"{source}: {where}: {problem}")
    return bbox


def read_categories(source, data, names=None) -> dict:
    """``{category_id: name}`` of the list under ``categories``, in file order; ids and
    names both unique. ``names``: the names allowed (None: any string)."""
    categories, ids_by_name = {}, {}
    for k, entry in enumerate(_list_under(source, data, "categories")):
        where = f"categories[{k}]"
        cid = _integer(source, where, entry, "id")
        name = _field(source, where, entry, "name", str, "a string")
        if names is not None and name not in names:
            raise InputError(
                f"{source}: {where} (id {cid}) is named {name!r}; expected one of the names "
                + ", ".join(repr(n) for n in names)
            )
        if cid in categories:
            raise InputError(f"{source}: {where}: category id {cid} appears twice")
        if name in ids_by_name:
            raise InputError(
                f"{source}: {where}: category name {name!r} appears twice (ids "
                f"{ids_by_name[name]} and {cid}); categories are told apart by name"
            )
        categories[cid], ids_by_name[name] = name, cid
    return categories


# --------------------------------------------------------------------------------------
# Annotations


def _read_images(source, data, image_files: bool) -> list:
    images, seen = [], set()
    for k, entry in enumerate(_list_under(source, data, "images")):
        where = f"images[{k}]"
        image_id = _integer(source, where, entry, "id")
        if image_id in seen:
            raise InputError(f"{source}: {where}: image id {image_id} appears twice")
        seen.add(image_id)
        if image_files:
            file_name = _field(source, where, entry, "file_name", str, "a string")
            width = _integer(source, where, entry, "width")
            height = _integer(source, where, entry, "height")
            images.append(CocoImage(image_id, file_name, width, height))
        else:
            images.append(CocoImage(image_id))
    return images


def _annotation_where(k: int, annotation_id) -> str:
    """How messages name annotation ``k``: ``annotations[k] (id N)`` when it has an id."""
    return (
        f"annotations[{k}]" if annotation_id is None else f"annotations[{k}] (id {annotation_id})"
    )


def _read_annotation(source, where, entry, image_ids, categories, crowds):
    image_id = _integer(source, where, entry, "image_id")
    cid = _integer(source, where, entry, "category_id")
    bbox = _bbox(source, where, entry, empty_ok=False)
    if image_id not in image_ids:
        raise InputError(f"{source}: {where}: image_id {image_id} is not among the images")
    if cid not in categories:
        raise InputError(f"{source}: {where}: category_id {cid} is not among the categories")
    crowd = entry.get("iscrowd", 0)
    if crowd not in (0, 1):  # True and False compare equal to 1 and 0
        raise InputError(f"{source}: {where}: iscrowd is {crowd!r}, expected 0 or 1")
    if crowd and not crowds:
        raise InputError(f"{source}: {where}: crowd annotations are not supported")
    extra = {key: value for key, value in entry.items() if key not in ANNOTATION_KEYS}
    return CocoAnnotation(entry.get("id"), image_id, cid, tuple(bbox), bool(crowd), extra)


def read_annotations(
    source,
    *,
    name: str = "annotations",
    folder_ok: bool = False,
    names=None,
    image_files: bool = False,
    crowds: bool = True,
) -> CocoAnnotations:
    """Read and check a COCO annotations file (see the module docstring for the rules).

    ``source``, ``name``, ``folder_ok``: as for :func:`read_json`. The stricter rules
    of a reader that needs more:

    - ``names``: the category names allowed (None: any);
    - ``image_files``: the reader opens the images: each image entry needs a
      ``file_name``, ``width`` and ``height`` (:func:`check_inside_images` then checks
      the boxes against the sizes);
    - ``crowds``: whether crowd annotations (``iscrowd: 1``) are accepted.
    """
    source, data = read_json(source, name, folder_ok)
    for key in ("images", "annotations", "categories"):
        _list_under(source, data, key)
    categories = read_categories(source, data, names)
    images = _read_images(source, data, image_files)
    image_ids = {image.id for image in images}
    annotations = []
    for k, entry in enumerate(data["annotations"]):
        where = _annotation_where(k, entry.get("id") if isinstance(entry, dict) else None)
        annotations.append(_read_annotation(source, where, entry, image_ids, categories, crowds))
    return CocoAnnotations(source, images, categories, annotations)


def check_inside_images(coco: CocoAnnotations) -> None:
    """Refuse a box that does not lie inside its image (read with ``image_files=True``,
    so that every image has a size). A reader that opens the images calls this after
    checking their sizes against the entries, so that a wrong size is named as such."""
    sizes = {image.id: (image.width, image.height) for image in coco.images}
    for k, ann in enumerate(coco.annotations):
        x, y, w, h = ann.bbox
        width, height = sizes[ann.image_id]
        if x < 0 or y < 0 or x + w > width or y + h > height:
            where = _annotation_where(k, ann.id)
            raise InputError(
                f"{coco.source}: {where}: bbox {list(ann.bbox)} lies outside image "
                f"{ann.image_id} ({width}x{height})"
            )


def annotations_json(images, annotations, categories: dict, info=None) -> dict:
    """The content of an annotations file: ``images`` (:class:`CocoImage`),
    ``annotations`` (:class:`CocoAnnotation`), ``categories`` ``{id: name}`` and, if
    given, ``info`` (anything JSON-able) first. Image fields that are None are left
    out; each annotation gets ``area`` = w * h and ``iscrowd`` 0 or 1."""
    image_entries = [
        {key: value for key, value in image._asdict().items() if value is not None}
        for image in images
    ]
    entries = []
    for ann in annotations:
        x, y, w, h = ann.bbox
        entry = {
            "id": ann.id,
            "image_id": ann.image_id,
            "bbox": [x, y, w, h],
            "area": w * h,
            "category_id": ann.category_id,
            "iscrowd": int(ann.iscrowd),
        }
        clash = sorted(set(ann.extra) & set(entry))
        if clash:
            raise InputError(f"annotations_json: extra keys {clash} would replace COCO's own")
        entries.append({**entry, **ann.extra})
    data = {
        "images": image_entries,
        "annotations": entries,
        "categories": [{"id": cid, "name": name} for cid, name in categories.items()],
    }
    return data if info is None else {"info": info, **data}


def write_annotations(path, images, annotations, categories: dict, info=None) -> Path:
    """Write an annotations file (:func:`annotations_json`), atomically, after checking it
    by the reader's rules, so that no file is written that the reader would refuse."""
    data = annotations_json(images, annotations, categories, info)
    read_annotations(data)
    return write_json(path, data)


# --------------------------------------------------------------------------------------
# Results


def _translation(source, data, ground_truth) -> dict | None:
    """``{file's category id: ground truth's}`` by name, when a results object has its own
    ``categories``; None when it has none."""
    if not isinstance(data, dict) or "categories" not in data:
        return None
    own = read_categories(source, data)
    if ground_truth is None:
        return {cid: cid for cid in own}
    by_name = {name: cid for cid, name in ground_truth.categories.items()}
    for k, (cid, name) in enumerate(own.items()):
        if name not in by_name:
            raise InputError(
                f"{source}: categories[{k}]: category {name!r} (id {cid}) is not a category of "
                f"the ground truth {ground_truth.source}"
            )
    return {cid: by_name[name] for cid, name in own.items()}


def read_results(source, ground_truth=None) -> CocoResults:
    """Read and check a COCO results file.

    ``source``: a path or parsed data: a list of ``{"image_id", "category_id", "bbox":
    [x, y, w, h], "score"}``, or an object with such a list under ``annotations`` and,
    optionally, its own ``categories``. ``ground_truth``: what the results are scored
    against (a :class:`CocoAnnotations`, or anything with its ``source``,
    ``image_ids`` and ``categories``): every result must name one of its images and
    categories, and a file's own category ids are translated to its ids by name.
    Entries are named ``results[k]``, or ``annotations[k]`` in an object.
    """
    source, data = read_json(source, "results")
    if isinstance(data, dict):
        entries, root = _list_under(source, data, "annotations"), "annotations"
    elif isinstance(data, list):
        entries, root = data, "results"
    else:
        raise InputError(f"{source}: expected a JSON list of detections, got {type(data).__name__}")
    translate = _translation(source, data, ground_truth)
    images = None if ground_truth is None else set(ground_truth.image_ids)
    if translate is not None:
        known, whose = translate, "the file's"
    elif ground_truth is not None:
        known, whose = ground_truth.categories, "the ground truth's"
    else:
        known = None

    results = []
    for k, entry in enumerate(entries):
        where = f"{root}[{k}]"
        image_id = _integer(source, where, entry, "image_id")
        cid = _integer(source, where, entry, "category_id")
        bbox = _bbox(source, where, entry, empty_ok=True)
        score = _number(source, where, entry, "score")
        if images is not None and image_id not in images:
            raise InputError(
                f"{source}: {where}: image_id {image_id} is not among the ground truth's images"
            )
        if known is not None and cid not in known:
            raise InputError(
                f"{source}: {where}: category_id {cid} is not among {whose} categories"
            )
        cid = cid if translate is None else translate[cid]
        results.append(CocoResult(image_id, cid, tuple(bbox), score))
    return CocoResults(source, results)


def results_json(results) -> list:
    """The content of a results file: one entry per :class:`CocoResult`."""
    return [
        {
            "image_id": r.image_id,
            "category_id": r.category_id,
            "bbox": list(r.bbox),
            "score": r.score,
        }
        for r in results
    ]


def write_results(path, results) -> Path:
    """Write a results file (:func:`results_json`), atomically, after checking it by the
    reader's rules."""
    data = results_json(results)
    read_results(data)
    return write_json(path, data)
