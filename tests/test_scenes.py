"""Digit scenes: drawn as configured, boxes tight, test digits only, COCO round trip."""

import dataclasses
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import scene_configs

from overfeat_scratch.cli import main
from overfeat_scratch.mnist import data_checksum, load_mnist
from overfeat_scratch.scenes import (
    SceneConfig,
    box_overlap,
    fragment,
    generate_scenes,
    ink_box,
    make_scene,
    read_coco,
    render_digit,
    write_coco,
)


def digits_only(shape, annotations, images, background=0):
    """The canvas a clutter-free scene must be: background, then each digit by maximum."""
    canvas = np.full(shape, background, dtype=np.uint8)
    for ann in annotations:
        x0, y0, x1, y1 = ann["box"]
        patch = render_digit(images[ann["mnist_index"]], y1 - y0)
        assert patch.shape == (y1 - y0, x1 - x0)
        canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], patch)
    return canvas


@settings(max_examples=20)
@given(config=scene_configs(), seed=st.integers(0, 2**32 - 1))
def test_scenes_respect_the_config(config, seed):
    images, labels = load_mnist("test")
    canvas, annotations = make_scene(np.random.default_rng(seed), config, images, labels)
    h, w = canvas.shape
    assert canvas.dtype == np.uint8
    assert config.min_size <= h <= config.max_size and config.min_size <= w <= config.max_size
    assert config.min_digits <= len(annotations) <= config.max_digits
    indices = [ann["mnist_index"] for ann in annotations]
    assert len(set(indices)) == len(indices)
    for k, ann in enumerate(annotations):
        x0, y0, x1, y1 = ann["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert config.min_digit_height <= y1 - y0 <= config.max_digit_height
        assert ann["label"] == labels[ann["mnist_index"]]
        # Compositing is a maximum: the digit's ink is on the canvas whatever the clutter.
        patch = render_digit(images[ann["mnist_index"]], y1 - y0)
        assert np.all(canvas[y0:y1, x0:x1] >= patch)
        for other in annotations[:k]:
            iou, covered = box_overlap(ann["box"], other["box"])
            assert iou <= config.max_iou and covered <= config.max_covered


@settings(max_examples=15)
@given(config=scene_configs(clutter=False), seed=st.integers(0, 2**32 - 1))
def test_clutter_free_scenes_are_exactly_the_test_digits(config, seed):
    """Without clutter the canvas is the background and the resized test digits, nothing else."""
    images, labels = load_mnist("test")
    canvas, annotations = make_scene(np.random.default_rng(seed), config, images, labels)
    expected = digits_only(canvas.shape, annotations, images, config.background)
    np.testing.assert_array_equal(canvas, expected)


@settings(max_examples=15)
@given(config=scene_configs(clutter=True), seed=st.integers(0, 2**32 - 1))
def test_fragments_stay_off_the_digits(config, seed):
    images, labels = load_mnist("test")
    config = dataclasses.replace(config, noise=0.0, fragments=20.0)
    canvas, annotations = make_scene(np.random.default_rng(seed), config, images, labels)
    expected = digits_only(canvas.shape, annotations, images, config.background)
    inside = np.zeros(canvas.shape, dtype=bool)
    for x0, y0, x1, y1 in (ann["box"] for ann in annotations):
        inside[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(canvas[inside], expected[inside])
    assert np.any(canvas[~inside] > expected[~inside])


@settings(max_examples=30)
@given(index=st.integers(0, 9999), height=st.integers(20, 96))
def test_rendered_digits_are_their_own_tight_box(index, height):
    digit = load_mnist("test")[0][index]
    patch = render_digit(digit, height)
    assert patch.dtype == np.uint8 and patch.shape[0] == height
    assert ink_box(patch) == (0, 0, patch.shape[1], patch.shape[0])
    x0, y0, x1, y1 = ink_box(digit)
    assert patch.shape[1] == max(1, round((x1 - x0) * height / (y1 - y0)))


def test_boxes_are_tight_on_the_canvas():
    images, labels = load_mnist("test")
    config = SceneConfig(background=0).without_clutter()
    for seed in range(10):
        canvas, annotations = make_scene(np.random.default_rng(seed), config, images, labels)
        outside = canvas.copy()
        for ann in annotations:
            x0, y0, x1, y1 = ann["box"]
            inside = canvas[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any()
            assert inside[:, 0].any() and inside[:, -1].any()
            outside[y0:y1, x0:x1] = 0
        assert not outside.any()


def test_same_seed_same_scenes_and_prefixes_agree():
    a = generate_scenes(4, seed=11)
    b = generate_scenes(4, seed=11)
    c = generate_scenes(2, seed=11)
    d = generate_scenes(4, seed=12)
    for (ia, aa), (ib, ab) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        assert aa == ab
    for (ia, aa), (ic, ac) in zip(a, c, strict=False):
        np.testing.assert_array_equal(ia, ic)
        assert aa == ac
    assert any(
        x.image.shape != y.image.shape or x.annotations != y.annotations
        for x, y in zip(a, d, strict=True)
    )


@pytest.mark.parametrize("split", ["test", "train"])
def test_scenes_use_only_digits_of_their_split(split):
    images = load_mnist(split)[0]
    config = SceneConfig(background=0).without_clutter()
    for canvas, annotations in generate_scenes(5, seed=3, split=split, config=config):
        assert all(0 <= ann["mnist_index"] < len(images) for ann in annotations)
        np.testing.assert_array_equal(canvas, digits_only(canvas.shape, annotations, images))


def test_default_scenes_cover_the_ranges():
    scenes = generate_scenes(60, seed=0)
    counts = {len(anns) for _, anns in scenes}
    heights = [a["box"][3] - a["box"][1] for _, anns in scenes for a in anns]
    sides = [side for image, _ in scenes for side in image.shape]
    assert counts == {1, 2, 3, 4, 5}
    assert 20 <= min(heights) < 30 and 55 < max(heights) <= 64
    assert 96 <= min(sides) < 110 and 180 < max(sides) <= 192
    assert any(image.shape[0] != image.shape[1] for image, _ in scenes)
    # Clutter: bright ink outside every digit's box.
    image, annotations = scenes[0]
    outside = image.copy()
    for ann in annotations:
        x0, y0, x1, y1 = ann["box"]
        outside[y0:y1, x0:x1] = 0
    assert (outside > 200).sum() > 50


def test_fragments_are_small_pieces_with_ink():
    config = SceneConfig()
    digits = load_mnist("train")[0]
    rng = np.random.default_rng(0)
    for k in range(50):
        piece = fragment(rng, config, digits[k])
        assert 8 <= piece.shape[0] <= 12 and 8 <= piece.shape[1] <= 12
        assert piece.max() > 127


def test_impossible_scenes_raise_instead_of_dropping_digits():
    images, labels = load_mnist("test")
    config = SceneConfig(
        min_size=40, max_size=40, min_digits=5, max_digits=5, max_digit_height=40, max_iou=0.0
    )
    with pytest.raises(ValueError, match="could not place digit"):
        make_scene(np.random.default_rng(0), config, images, labels)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"min_digit_height": 10}, "20 <= min_digit_height"),
        ({"max_digit_height": 100}, "max_digit_height <= 96"),
        ({"min_digits": 3, "max_digits": 2}, "min_digits <= max_digits"),
        ({"max_iou": 1.5}, "max_iou"),
        ({"background": 300}, "background"),
        ({"max_fragment": 30}, "max_fragment <= 28"),
    ],
)
def test_bad_configs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**fields)


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco")
    scenes = generate_scenes(5, seed=4)
    write_coco(folder, scenes, info={"seed": 4})
    return folder, scenes


def test_coco_round_trip(coco_folder):
    folder, scenes = coco_folder
    images, annotations, classes = read_coco(folder)
    assert classes == {d + 1: d for d in range(10)}
    assert [i for i, _, _ in images] == [1, 2, 3, 4, 5]
    for (_, name, pixels), anns, (canvas, expected) in zip(
        images, annotations, scenes, strict=True
    ):
        assert (folder / name).is_file() and name.endswith(".png")
        np.testing.assert_array_equal(pixels, canvas)
        assert anns == expected
    data = json.loads((folder / "annotations.json").read_text())
    assert data["info"] == {"seed": 4}
    first = data["annotations"][0]
    x0, y0, x1, y1 = scenes[0].annotations[0]["box"]
    assert first["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    assert first["area"] == (x1 - x0) * (y1 - y0)
    assert first["category_id"] == scenes[0].annotations[0]["label"] + 1
    assert first["iscrowd"] == 0 and first["image_id"] == 1
    assert {c["name"] for c in data["categories"]} == {str(d) for d in range(10)}


def copy_folder(src, dst, edit=None):
    """Copy a COCO folder, passing the parsed JSON through ``edit`` first."""
    data = json.loads((src / "annotations.json").read_text())
    if edit is not None:
        edit(data)
    (dst / "images").mkdir(parents=True)
    for entry in data["images"]:
        target = dst / entry["file_name"]
        if (src / entry["file_name"]).is_file():
            target.write_bytes((src / entry["file_name"]).read_bytes())
    (dst / "annotations.json").write_text(json.dumps(data))
    return dst


def test_classes_are_read_by_category_name(coco_folder, tmp_path):
    folder, scenes = coco_folder

    def shuffle_ids(data):
        new_ids = list(range(50, 60))
        random.Random(0).shuffle(new_ids)
        mapping = {cat["id"]: new for cat, new in zip(data["categories"], new_ids, strict=True)}
        for cat in data["categories"]:
            cat["id"] = mapping[cat["id"]]
        data["categories"].reverse()
        for ann in data["annotations"]:
            ann["category_id"] = mapping[ann["category_id"]]

    _, annotations, classes = read_coco(copy_folder(folder, tmp_path, shuffle_ids))
    assert sorted(classes.values()) == list(range(10)) and min(classes) >= 50
    assert annotations == [anns for _, anns in scenes]


def test_colour_images_are_read_as_grey(coco_folder, tmp_path):
    from PIL import Image

    folder, scenes = coco_folder
    copy = copy_folder(folder, tmp_path)
    path = copy / "images" / "000001.png"
    Image.open(path).convert("RGB").save(path)
    images, _, _ = read_coco(copy)
    np.testing.assert_array_equal(images[0][2], scenes[0].image)


def set_first(key, value, where="annotations"):
    def edit(data):
        data[where][0][key] = value

    return edit


def bbox_outside(data):
    width = data["images"][0]["width"]
    data["annotations"][0]["bbox"] = [width - 5, 0, 10, 10]


def drop_image_file(data):
    data["images"][0]["file_name"] = "images/missing.png"


def rename_category(data):
    data["categories"][3]["name"] = "three"


@pytest.mark.parametrize(
    "edit, message",
    [
        (set_first("bbox", [1, 1, -4, 5]), r"annotations\[0\] \(id 1\).*non-positive"),
        (set_first("bbox", [1, 1, 0, 5]), r"annotations\[0\].*non-positive"),
        (bbox_outside, r"annotations\[0\].*outside image 1"),
        (set_first("bbox", [1, 2, 3]), r"annotations\[0\].*four finite numbers"),
        (set_first("bbox", [1, float("nan"), 3, 3]), r"annotations\[0\].*four finite numbers"),
        (
            set_first("image_id", 99),
            r"annotations\[0\] \(id 1\): image_id 99 is not among the images",
        ),
        (
            set_first("category_id", 99),
            r"annotations\[0\] \(id 1\): category_id 99 is not among the categories",
        ),
        (
            set_first("iscrowd", 1),
            r"annotations\[0\] \(id 1\): crowd annotations are not supported",
        ),
        (set_first("width", 7, "images"), r"images\[0\] \(id 1\).*the entry says 7x"),
        (drop_image_file, r"images\[0\] \(id 1\): image file .*missing\.png does not exist"),
        (rename_category, r"categories\[3\] \(id 4\) is named 'three'"),
    ],
)
def test_bad_folders_are_clear_errors(coco_folder, tmp_path, edit, message):
    folder, _ = coco_folder
    with pytest.raises(ValueError, match=r"annotations\.json: " + message):
        read_coco(copy_folder(folder, tmp_path, edit))


def test_missing_or_malformed_annotations_file(tmp_path):
    with pytest.raises(ValueError, match=r"annotations\.json: no such file"):
        read_coco(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"annotations\.json: not valid JSON"):
        read_coco(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match=r"annotations\.json: expected a list under 'annotations'"):
        read_coco(tmp_path)


def test_scenes_command(tmp_path, capsys):
    out = tmp_path / "scenes"
    args = ["scenes", "--n", "3", "--seed", "5", "--out", str(out), "--max-digits", "2"]
    assert main(args + ["--no-clutter"]) == 0
    printed = capsys.readouterr().out
    assert "3 scenes of MNIST test digits" in printed and "digits per class" in printed
    images, annotations, _ = read_coco(out)
    assert len(images) == 3 and all(1 <= len(anns) <= 2 for anns in annotations)
    info = json.loads((out / "annotations.json").read_text())["info"]
    assert info["split"] == "test" and info["seed"] == 5
    assert info["mnist"] == data_checksum("test") and info["config"]["fragments"] == 0
    for (_, _, pixels), anns in zip(images, annotations, strict=True):
        outside = pixels.copy()
        for x0, y0, x1, y1 in (a["box"] for a in anns):
            outside[y0:y1, x0:x1] = SceneConfig.background
        assert np.all(outside == SceneConfig.background)


def test_scenes_command_reports_bad_arguments(tmp_path, capsys):
    args = ["scenes", "--n", "1", "--seed", "0", "--out", str(tmp_path), "--min-size", "10"]
    assert main(args) == 2
    assert "scenes: error: SceneConfig" in capsys.readouterr().err
