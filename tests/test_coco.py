"""The COCO reader and writer: round trips of annotations and results, and a clear
error, naming the file and the entry, for every way a file can be wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_scratch.datasets.coco import (
    ANNOTATIONS_FILE,
    CocoAnnotation,
    CocoImage,
    CocoResult,
    annotations_json,
    bbox_problem,
    check_inside_images,
    read_annotations,
    read_json,
    read_results,
    results_json,
    write_annotations,
    write_results,
)

IMAGES = [CocoImage(1, "images/a.png", 40, 30), CocoImage(7, "b.png", 20, 50)]
CATEGORIES = {3: "cat", 1: "dog"}
ANNOTATIONS = [
    CocoAnnotation(1, 1, 3, (0, 0, 10, 5)),
    CocoAnnotation(2, 7, 1, (2.5, 4, 1.5, 40), iscrowd=True),
    CocoAnnotation(5, 1, 1, (30, 20, 10, 10), extra={"mnist_index": 12, "note": [1, {"a": None}]}),
]
RESULTS = [
    CocoResult(1, 3, (0.5, 0, 10, 5), 0.9),
    CocoResult(7, 1, (0, 0, 0, 0), -2),
]


def annotations_dict():
    return annotations_json(IMAGES, ANNOTATIONS, CATEGORIES)


def results_list():
    return results_json(RESULTS)


# --------------------------------------------------------------------------------------
# Round trips


def test_annotations_round_trip(tmp_path):
    path = write_annotations(tmp_path / "a" / ANNOTATIONS_FILE, IMAGES, ANNOTATIONS, CATEGORIES)
    for source in (path, str(path)):
        coco = read_annotations(source, image_files=True)
        assert coco.source == str(path)
        assert coco.images == IMAGES and coco.annotations == ANNOTATIONS
        assert list(coco.categories.items()) == list(CATEGORIES.items())  # file order kept
        assert coco.image_ids == (1, 7)
    data = json.loads(path.read_text())
    assert data["annotations"][0] == {
        "id": 1,
        "image_id": 1,
        "bbox": [0, 0, 10, 5],
        "area": 50,
        "category_id": 3,
        "iscrowd": 0,
    }
    assert data["annotations"][1]["iscrowd"] == 1 and data["annotations"][2]["mnist_index"] == 12
    assert data["categories"] == [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}]
    # The folder holding the file reads the same, where a folder is allowed.
    folder = read_annotations(tmp_path / "a", folder_ok=True, image_files=True)
    assert folder.source == str(path) and folder.annotations == ANNOTATIONS
    # Without image_files, only the image ids are read.
    assert read_annotations(path).images == [CocoImage(1), CocoImage(7)]


def test_info_comes_first_and_image_fields_left_out_are_not_written(tmp_path):
    images = [CocoImage(4)]
    anns = [CocoAnnotation(None, 4, 1, (1, 1, 2, 2))]
    data = annotations_json(images, anns, {1: "x"}, info={"seed": 3})
    assert list(data) == ["info", "images", "annotations", "categories"]
    assert data["images"] == [{"id": 4}]
    path = write_annotations(tmp_path / "gt.json", images, anns, {1: "x"}, info={"seed": 3})
    coco = read_annotations(path)
    assert coco.images == images and coco.annotations[0].bbox == (1, 1, 2, 2)
    assert json.loads(path.read_text())["info"] == {"seed": 3}


def test_results_round_trip(tmp_path):
    path = write_results(tmp_path / "results.json", RESULTS)
    assert read_results(path).results == RESULTS
    assert json.loads(path.read_text())[0] == {
        "image_id": 1,
        "category_id": 3,
        "bbox": [0.5, 0, 10, 5],
        "score": 0.9,
    }
    # Checked against the ground truth, the ids stay where the file uses them.
    truth = read_annotations(annotations_dict())
    assert read_results(path, truth).results == RESULTS


def test_results_with_their_own_categories_are_translated_by_name():
    truth = read_annotations(annotations_dict())
    own = {
        "categories": [{"id": 40, "name": "dog"}, {"id": 41, "name": "cat"}],
        "annotations": [{"image_id": 7, "category_id": 41, "bbox": [0, 0, 1, 1], "score": 1}],
    }
    assert read_results(own, truth).results == [CocoResult(7, 3, (0, 0, 1, 1), 1)]
    # Without a ground truth the file's own ids stay, checked against its categories.
    assert read_results(own).results[0].category_id == 41


def test_parsed_data_is_read_as_a_file_is(tmp_path):
    data = annotations_dict()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data, indent=4))
    assert read_json(data, "ground truth") == ("<ground truth>", data)
    assert read_json(path, "ground truth") == (str(path), data)
    assert read_annotations(data).annotations == read_annotations(path).annotations


# --------------------------------------------------------------------------------------
# Files that cannot be read


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.json: no such file; expected the results as"):
        read_results(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r": is a folder; expected the results as a COCO JSON"):
        read_results(tmp_path)
    with pytest.raises(ValueError, match=r"the folder holds no annotations\.json; expected the"):
        read_annotations(tmp_path, name="ground truth", folder_ok=True)
    with pytest.raises(ValueError, match=r": is a folder; expected the annotations as a COCO"):
        read_annotations(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"the file is empty; expected JSON"),
        (" \n\t", r"the file is empty; expected JSON"),
        ('{"images": [', r"the JSON ends early, at line 1 column 13; is the file truncated\?"),
        ('{"images": [\n  {"id": 1},\n  ', r"the JSON ends early, at line 2 column 13; is"),
        ('{"images": [{"file_name": "a.p', r"the JSON ends early, at line 1 column 31; is"),
        ('{"images": [] "annotations": []}', r"not valid JSON at line 1 column 15: Expecting ','"),
        ('{"images": [1, 2,], "a": 1}', r"not valid JSON at line 1 column 18: Expecting value"),
        ('{"images": []}\n{"images": []}', r"not valid JSON at line 2 column 1: Extra data"),
        ("{'images': []}", r"not valid JSON at line 1 column 2: Expecting property name"),
        ("\ufeff{}", r"not valid JSON at line 1 column 1: Unexpected UTF-8 BOM"),
        ("[" * 100_000, r"the JSON is nested too deeply to read"),
    ],
)
def test_broken_json_is_placed_by_line_and_column(tmp_path, text, message):
    path = tmp_path / "gt.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"gt\.json: " + message):
        read_annotations(path)


def test_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "gt.json"
    path.write_bytes(b'{"images": "\xff"}')
    with pytest.raises(ValueError, match=r"gt\.json: not UTF-8 text"):
        read_annotations(path)


# --------------------------------------------------------------------------------------
# Valid JSON that is not a valid COCO file


def edit(path, value):
    """An edit that puts ``value`` at ``path`` in the data (``DELETE``: removes it)."""

    def change(data):
        *keys, last = path
        target = data
        for key in keys:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
        return data

    return change


DELETE = object()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: [d], r"expected a JSON object, got list"),
        (edit(["images"], DELETE), r"expected a list under 'images'"),
        (edit(["annotations"], {}), r"expected a list under 'annotations'"),
        (edit(["categories"], None), r"expected a list under 'categories'"),
        (edit(["categories", 1], 5), r"categories\[1\] is int, expected a JSON object"),
        (edit(["categories", 0, "id"], DELETE), r"categories\[0\] has no 'id'"),
        (edit(["categories", 0, "id"], True), r"categories\[0\]: 'id' is True, expected an int"),
        (edit(["categories", 0, "id"], 3.0), r"categories\[0\]: 'id' is 3\.0, expected an int"),
        (edit(["categories", 1, "name"], 1), r"categories\[1\]: 'name' is 1, expected a string"),
        (edit(["categories", 1, "id"], 3), r"categories\[1\]: category id 3 appears twice"),
        (
            edit(["categories", 1, "name"], "cat"),
            r"categories\[1\]: category name 'cat' appears twice \(ids 3 and 1\); categories are",
        ),
        (edit(["images", 1, "id"], 1), r"images\[1\]: image id 1 appears twice"),
        (edit(["images", 0, "id"], "1"), r"images\[0\]: 'id' is '1', expected an integer"),
        (edit(["images", 0], []), r"images\[0\] is list, expected a JSON object"),
        (edit(["annotations", 1], "x"), r"annotations\[1\] is str, expected a JSON object"),
        (edit(["annotations", 1, "bbox"], DELETE), r"annotations\[1\] \(id 2\) has no 'bbox'"),
        (
            edit(["annotations", 0, "image_id"], None),
            r"annotations\[0\] \(id 1\): 'image_id' is None, expected an integer",
        ),
        (
            edit(["annotations", 0, "category_id"], "3"),
            r"annotations\[0\] \(id 1\): 'category_id' is '3', expected an integer",
        ),
        (
            edit(["annotations", 0, "bbox"], "0 0 5 5"),
            r"annotations\[0\] \(id 1\): 'bbox' is '0 0 5 5', expected a list \[x, y, w, h\]",
        ),
        (
            edit(["annotations", 0, "bbox"], [1, 2, 3]),
            r"annotations\[0\] \(id 1\): bbox \[1, 2, 3\] is not four finite numbers",
        ),
        (
            edit(["annotations", 2, "bbox"], [1, float("nan"), 3, 4]),
            r"annotations\[2\] \(id 5\): bbox \[1, nan, 3, 4\] is not four finite numbers",
        ),
        (
            edit(["annotations", 0, "bbox"], [1, True, 3, 4]),
            r"annotations\[0\] \(id 1\): bbox \[1, True, 3, 4\] is not four finite numbers",
        ),
        (
            edit(["annotations", 0, "bbox"], [1, 2, 0, 4]),
            r"annotations\[0\] \(id 1\): bbox \[1, 2, 0, 4\] has a non-positive width or height",
        ),
        (
            edit(["annotations", 0, "bbox"], [1, 2, 3, -4]),
            r"annotations\[0\] \(id 1\): bbox \[1, 2, 3, -4\] has a non-positive width",
        ),
        (
            edit(["annotations", 0, "image_id"], 2),
            r"annotations\[0\] \(id 1\): image_id 2 is not among the images",
        ),
        (
            edit(["annotations", 0, "category_id"], 2),
            r"annotations\[0\] \(id 1\): category_id 2 is not among the categories",
        ),
        (
            edit(["annotations", 0, "iscrowd"], 2),
            r"annotations\[0\] \(id 1\): iscrowd is 2, expected 0 or 1",
        ),
        (
            edit(["annotations", 0, "iscrowd"], None),
            r"annotations\[0\] \(id 1\): iscrowd is None, expected 0 or 1",
        ),
        (
            edit(["annotations", 0], {"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}),
            r"annotations\[0\]: category_id 2 is not among the categories",  # no id to name
        ),
    ],
)
def test_bad_annotations_name_the_file_and_entry(tmp_path, change, message):
    data = change(annotations_dict())
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"gt\.json: " + message):
        read_annotations(path)
    with pytest.raises(ValueError, match=r"<annotations>: " + message):
        read_annotations(data)


@pytest.mark.parametrize(
    "change, message",
    [
        (edit(["images", 0, "file_name"], DELETE), r"images\[0\] has no 'file_name'"),
        (edit(["images", 0, "file_name"], 3), r"images\[0\]: 'file_name' is 3, expected a str"),
        (edit(["images", 1, "width"], 2.5), r"images\[1\]: 'width' is 2\.5, expected an integer"),
        (edit(["images", 1, "height"], DELETE), r"images\[1\] has no 'height'"),
    ],
)
def test_a_reader_of_image_files_needs_their_names_and_sizes(tmp_path, change, message):
    data = change(annotations_dict())
    read_annotations(data)  # a reader that opens no image does not look at them
    with pytest.raises(ValueError, match=r"<annotations>: " + message):
        read_annotations(data, image_files=True)


def test_the_stricter_rules_of_a_scene_reader():
    data = annotations_dict()
    with pytest.raises(ValueError, match=r"categories\[0\] \(id 3\) is named 'cat'; expected one"):
        read_annotations(data, names=("dog", "bird"))
    assert read_annotations(data, names=("cat", "dog")).categories == CATEGORIES
    with pytest.raises(ValueError, match=r"annotations\[1\] \(id 2\): crowd annotations are not"):
        read_annotations(data, crowds=False)
    # Boxes inside their images: the last one reaches the corner of its 40 x 30 image.
    check_inside_images(read_annotations(data, image_files=True))
    data["annotations"][2]["bbox"] = [30, 21, 10, 10]
    coco = read_annotations(data, image_files=True)
    with pytest.raises(
        ValueError, match=r"annotations\[2\] \(id 5\): bbox \[30, 21, 10, 10\] lies"
    ):
        check_inside_images(coco)
    data["annotations"][0]["bbox"] = [-1, 0, 5, 5]
    with pytest.raises(
        ValueError, match=r"annotations\[0\] \(id 1\): .* outside image 1 \(40x30\)"
    ):
        check_inside_images(read_annotations(data, image_files=True))


def test_non_finite_literals_parse_and_are_refused_by_the_fields(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": NaN}]')
    with pytest.raises(ValueError, match=r"results\[0\]: 'score' is nan, expected a finite num"):
        read_results(path)
    path.write_text('[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, Infinity], "score": 1}]')
    with pytest.raises(ValueError, match=r"results\[0\]: bbox \[0, 0, 1, inf\] is not four finite"):
        read_results(path)
    text = json.dumps(annotations_dict()).replace(
        '"bbox": [0, 0, 10, 5]', '"bbox": [0, 0, 10, -Infinity]'
    )
    path.write_text(text)
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 1\): bbox \[0, 0, 10, -inf\] is"):
        read_annotations(path)


def result_edit(index, key, value):
    def change(rows):
        if value is DELETE:
            del rows[index][key]
        else:
            rows[index][key] = value
        return rows

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: 3, r"expected a JSON list of detections, got int"),
        (lambda rows: {"detections": rows}, r"expected a list under 'annotations'"),
        (lambda rows: rows + [7], r"results\[2\] is int, expected a JSON object"),
        (result_edit(1, "score", DELETE), r"results\[1\] has no 'score'"),
        (result_edit(1, "score", True), r"results\[1\]: 'score' is True, expected a number"),
        (result_edit(0, "score", float("inf")), r"results\[0\]: 'score' is inf, expected a fin"),
        (result_edit(0, "image_id", 1.0), r"results\[0\]: 'image_id' is 1\.0, expected an int"),
        (result_edit(0, "bbox", [0, 0, 5, -1]), r"results\[0\]: bbox \[0, 0, 5, -1\] has a neg"),
        (result_edit(0, "bbox", [0, 0, 5]), r"results\[0\]: bbox \[0, 0, 5\] is not four finite"),
        (lambda rows: {"annotations": rows}, None),  # the object form reads the same
        (
            lambda rows: {"annotations": rows, "categories": [{"id": 3, "name": "cat"}]},
            r"annotations\[1\]: category_id 1 is not among the file's categories",
        ),
    ],
)
def test_bad_results_name_the_file_and_entry(tmp_path, change, message):
    rows = change(results_list())
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows))
    if message is None:
        assert read_results(path).results == RESULTS
        return
    with pytest.raises(ValueError, match=r"results\.json: " + message):
        read_results(path)


def test_results_must_name_the_ground_truths_images_and_categories():
    truth = read_annotations(annotations_dict())
    rows = results_list()
    rows[1]["image_id"] = 2
    with pytest.raises(
        ValueError, match=r"<results>: results\[1\]: image_id 2 is not among the gr"
    ):
        read_results(rows, truth)
    rows = results_list()
    rows[0]["category_id"] = 2
    with pytest.raises(ValueError, match=r"results\[0\]: category_id 2 is not among the ground tr"):
        read_results(rows, truth)
    own = {"annotations": [], "categories": [{"id": 3, "name": "dog"}, {"id": 1, "name": "cow"}]}
    with pytest.raises(
        ValueError,
        match=r"<results>: categories\[1\]: category 'cow' \(id 1\) is not a category of the "
        r"ground truth <annotations>",
    ):
        read_results(own, truth)
    own["categories"][1]["name"] = "dog"
    with pytest.raises(ValueError, match=r"categories\[1\]: category name 'dog' appears twice"):
        read_results(own, truth)


def test_the_writers_refuse_what_the_readers_would(tmp_path):
    bad = [CocoAnnotation(1, 1, 3, (0, 0, 0, 5))]
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 1\): bbox .* non-positive"):
        write_annotations(tmp_path / "gt.json", IMAGES, bad, CATEGORIES)
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 1\): image_id 9 is not among"):
        write_annotations(
            tmp_path / "gt.json", IMAGES, [ANNOTATIONS[0]._replace(image_id=9)], {3: "c"}
        )
    with pytest.raises(ValueError, match=r"results\[0\]: 'score' is nan"):
        write_results(tmp_path / "r.json", [RESULTS[0]._replace(score=float("nan"))])
    with pytest.raises(ValueError, match=r"extra keys \['bbox'\] would replace COCO's own"):
        annotations_json(IMAGES, [ANNOTATIONS[0]._replace(extra={"bbox": 1})], CATEGORIES)
    assert not list(tmp_path.iterdir())


def test_bbox_problem():
    assert bbox_problem([0, 0, 1, 1]) is None and bbox_problem((0.5, 0, 1e-9, 3)) is None
    assert "non-positive" in bbox_problem([0, 0, 0, 1])
    assert bbox_problem([0, 0, 0, 1], empty_ok=True) is None
    assert "negative" in bbox_problem([0, 0, -1, 1], empty_ok=True)
    for bad in ([0, 0, 1], [0, 0, 1, None], [0, 0, 1, False], "0 0 1 1", [0, 0, 1, float("nan")]):
        assert "is not four finite numbers" in bbox_problem(bad)


# --------------------------------------------------------------------------------------
# The round trip, for any valid content

NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)


@st.composite
def coco_contents(draw):
    """Images with sizes, uniquely named categories, annotations inside their images."""
    image_ids = draw(st.lists(st.integers(-5, 10**12), min_size=1, max_size=4, unique=True))
    images = [
        CocoImage(i, draw(NAMES), draw(st.integers(1, 500)), draw(st.integers(1, 500)))
        for i in image_ids
    ]
    cids = draw(st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True))
    names = draw(st.lists(NAMES, min_size=len(cids), max_size=len(cids), unique=True))
    categories = dict(zip(cids, names, strict=True))
    annotations = []
    for k in range(draw(st.integers(0, 6))):
        image = draw(st.sampled_from(images))
        x = draw(st.integers(0, image.width - 1))
        y = draw(st.integers(0, image.height - 1))
        w = draw(st.one_of(st.integers(1, image.width - x), st.floats(0.25, image.width - x)))
        h = draw(st.integers(1, image.height - y))
        extra = draw(st.dictionaries(st.sampled_from(["mnist_index", "note"]), st.integers()))
        annotations.append(
            CocoAnnotation(
                draw(st.one_of(st.none(), st.just(k + 1))),
                image.id,
                draw(st.sampled_from(cids)),
                (x, y, w, h),
                draw(st.booleans()),
                extra,
            )
        )
    return images, annotations, categories


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=30)
@given(
    content=coco_contents(),
    results=st.lists(
        st.builds(
            CocoResult,
            st.integers(-(2**63), 2**63),
            st.integers(-(2**63), 2**63),
            st.tuples(FINITE, FINITE, st.floats(0, 1e6), st.floats(0, 1e6)),
            FINITE,
        ),
        max_size=5,
    ),
)
def test_what_is_written_reads_back_the_same(tmp_path_factory, content, results):
    folder = tmp_path_factory.mktemp("coco")
    images, annotations, categories = content
    path = write_annotations(folder / ANNOTATIONS_FILE, images, annotations, categories)
    coco = read_annotations(folder, folder_ok=True, image_files=True)
    assert coco.images == images and coco.annotations == annotations
    assert list(coco.categories.items()) == list(categories.items())
    check_inside_images(coco)
    assert write_annotations(path, coco.images, coco.annotations, coco.categories) == path
    assert read_annotations(path, image_files=True).annotations == annotations
    path = write_results(folder / "results.json", results)
    assert read_results(path).results == results
