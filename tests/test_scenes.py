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
from overfeat_scratch.datasets.mnist import data_checksum, load_mnist
from overfeat_scratch.datasets.scenes import (
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


def digits_only(shape, annotations, images, background=0, ink=255):
    """The canvas a clutter-free scene must be: background, then each digit by maximum
    (its pixels scaled so that 255 becomes ``ink``)."""
    canvas = np.full(shape, background, dtype=np.uint8)
    for ann in annotations:
        x0, y0, x1, y1 = ann["box"]
        patch = render_digit(images[ann["mnist_index"]], y1 - y0)
        assert patch.shape == (y1 - y0, x1 - x0)
        if ink != 255:
            patch = np.clip(np.rint(patch * (ink / 255)), 0, 255).astype(np.uint8)
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
        ({"min_digit_height": 10}, "12 <= min_digit_height"),
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


def name_a_digit_twice(data):
    data["categories"][4]["name"] = "3"


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
        (name_a_digit_twice, r"categories\[4\]: category name '3' appears twice \(ids 4 and 5\)"),
    ],
)
def test_bad_folders_are_clear_errors(coco_folder, tmp_path, edit, message):
    folder, _ = coco_folder
    with pytest.raises(ValueError, match=r"annotations\.json: " + message):
        read_coco(copy_folder(folder, tmp_path, edit))


@pytest.mark.parametrize(
    "name, message",
    [
        ("{outside}", r"is not a path relative to the folder"),
        ("/etc/passwd", r"is not a path relative to the folder"),
        ("../outside.png", r"leads out of the folder"),
        ("images/../../outside.png", r"leads out of the folder"),
    ],
)
def test_image_files_must_lie_inside_the_folder(coco_folder, tmp_path, name, message):
    folder, _ = coco_folder
    copy = copy_folder(folder, tmp_path / "copy")
    # A readable image of the right size outside the folder: a reader that followed
    # the name would open it without complaint.
    outside = tmp_path / "outside.png"
    outside.write_bytes((copy / "images" / "000001.png").read_bytes())
    data = json.loads((copy / "annotations.json").read_text())
    data["images"][0]["file_name"] = name.format(outside=outside)
    (copy / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\.json: images\[0\]: file_name .*" + message):
        read_coco(copy)


def test_image_names_that_stay_inside_the_folder_are_read(coco_folder, tmp_path):
    folder, scenes = coco_folder
    copy = copy_folder(folder, tmp_path / "copy")
    data = json.loads((copy / "annotations.json").read_text())
    data["images"][0]["file_name"] = "./images/../images/000001.png"
    (copy / "annotations.json").write_text(json.dumps(data))
    images, _, _ = read_coco(copy)
    np.testing.assert_array_equal(images[0][2], scenes[0].image)


def test_missing_or_malformed_annotations_file(tmp_path):
    with pytest.raises(ValueError, match=r"annotations\.json: no such file"):
        read_coco(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"annotations\.json: the JSON ends early, at line 1"):
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


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--min-size", "10"], "--min-size 10: every canvas must hold the smallest digit, 20 "),
        (["--min-size", "14", "--varied"], "expected --min-size >= 16"),
        (["--min-size", "200"], "--min-size 200 is larger than --max-size 192; expected"),
        (["--min-digits", "3", "--max-digits", "2"], "--min-digits 3 is larger than --max-d"),
        (["--max-size", "5000"], "argument --max-size: expected an integer in [1, 4096], got"),
        (["--n", "0"], "argument --n: expected an integer >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: expected an integer in [0, 4294967295], got -1"),
    ],
)
def test_scenes_command_reports_bad_arguments(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    args = ["scenes", "--n", "1", "--seed", "0", "--out", str(out)]
    assert main(args + flags) == 2
    err = capsys.readouterr().err
    assert message in err and "SceneConfig" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_scenes_command_refuses_a_folder_that_holds_anything(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["scenes", "--n", "3", "--seed", "5", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["scenes", "--n", "1", "--seed", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: the folder is not empty" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["scenes", "--n", "1", "--seed", "6", "--out", str(out), "--overwrite"]) == 0
    images, _, _ = read_coco(out)
    assert len(images) == 1


# --------------------------------------------------------------------------------------
# Ranges: photometry and layout drawn per scene


def test_default_scenes_are_the_ones_made_before_properties_varied():
    """The SHA-256 of six benchmark scenes as the generator made them before any
    property became a range (fixed values draw nothing from the generator)."""
    import hashlib

    digest = hashlib.sha256()
    single = SceneConfig(min_digits=1, max_digits=1)
    for s in generate_scenes(3, 2013, "test") + generate_scenes(3, 2014, "test", single):
        digest.update(s.image.tobytes())
        digest.update(repr(s.annotations).encode())
    assert digest.hexdigest() == "363880ea39126e34b962f26a8e26c3b4f918f17123bf6351054c188cb14ebc39"


def test_a_range_of_one_value_is_that_value():
    fixed = generate_scenes(3, 7, config=SceneConfig(background=40, noise=8.0, ink=200))
    ranged = generate_scenes(
        3, 7, config=SceneConfig(background=(40, 40), noise=(8.0, 8.0), ink=[200, 200])
    )
    for a, b in zip(fixed, ranged, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.annotations == b.annotations


def test_dark_scenes_are_the_light_ones_turned_round():
    light = generate_scenes(4, 8)
    dark = generate_scenes(4, 8, config=SceneConfig(dark=1.0))
    for a, b in zip(light, dark, strict=True):
        np.testing.assert_array_equal(b.image, 255 - a.image)
        assert a.annotations == b.annotations


@settings(max_examples=15)
@given(
    background=st.integers(0, 120),
    ink=st.integers(130, 255),
    seed=st.integers(0, 2**32 - 1),
)
def test_background_and_ink_levels(background, ink, seed):
    """Clutter-free, noise-free scenes: the ground is exactly the background grey and
    the digits are scaled so that full ink (255) is the ink level."""
    images, labels = load_mnist("test")
    config = SceneConfig(background=background, ink=ink).without_clutter()
    canvas, annotations = make_scene(np.random.default_rng(seed), config, images, labels)
    expected = digits_only(canvas.shape, annotations, images, background, ink)
    np.testing.assert_array_equal(canvas, expected)
    full = [
        render_digit(images[a["mnist_index"]], a["box"][3] - a["box"][1]).max() == 255
        for a in annotations
    ]
    assert canvas.max() == ink or not any(full)
    assert np.all(canvas <= ink) and np.median(canvas) == background


def test_ranges_are_drawn_per_scene_within_their_bounds():
    config = SceneConfig(background=(10, 90), ink=(150, 250)).without_clutter()
    scenes = generate_scenes(40, 9, config=config)
    grounds = [int(np.median(s.image)) for s in scenes]
    peaks = [int(s.image.max()) for s in scenes]
    assert all(10 <= g <= 90 for g in grounds) and max(grounds) - min(grounds) > 40
    assert all(150 <= p <= 250 for p in peaks) and max(peaks) - min(peaks) > 50


def test_noise_over_the_digits():
    """Background-only noise leaves bright ink untouched; noise over the whole image
    does not (and both leave the ground noisy)."""
    config = SceneConfig(fragments=0.0, noise=12.0)
    kept = generate_scenes(3, 10, config=config)
    noisy = generate_scenes(3, 10, config=dataclasses.replace(config, noise_over_digits=1))
    images = load_mnist("test")[0]
    for a, b in zip(kept, noisy, strict=True):
        assert a.annotations == b.annotations
        for ann in a.annotations:
            x0, y0, x1, y1 = ann["box"]
            patch = render_digit(images[ann["mnist_index"]], y1 - y0)
            full = patch >= 120  # far above the noisy ground (24 + 8 standard deviations)
            assert full.sum() >= 5
            # Ink is drawn over the ground by maximum (another digit's ink may add to it).
            assert np.all(a.image[y0:y1, x0:x1][full] >= patch[full])
            assert np.any(b.image[y0:y1, x0:x1][full] < patch[full])
        assert np.std(b.image[b.image < 100]) > 5


def test_clutter_on_digits_touches_them():
    images = load_mnist("test")[0]
    config = SceneConfig(noise=0.0, fragments=30.0, clutter_on_digits=1.0)
    touched = 0
    for canvas, annotations in generate_scenes(5, 11, config=config):
        expected = digits_only(canvas.shape, annotations, images, config.background)
        for ann in annotations:
            x0, y0, x1, y1 = ann["box"]
            touched += np.any(canvas[y0:y1, x0:x1] != expected[y0:y1, x0:x1])
    assert touched > 0


def test_blur_spreads_the_ink_and_keeps_the_boxes():
    sharp = generate_scenes(3, 12, config=SceneConfig(background=0).without_clutter())
    soft = generate_scenes(3, 12, config=SceneConfig(background=0, blur=1.5).without_clutter())
    for a, b in zip(sharp, soft, strict=True):
        assert a.annotations == b.annotations
        assert np.count_nonzero(b.image) > np.count_nonzero(a.image)
        assert b.image.max() < a.image.max()
        # Total ink is kept by the normalised kernel (up to rounding and the edges).
        assert abs(int(b.image.sum()) - int(a.image.sum())) < 0.02 * a.image.sum()


@settings(max_examples=25)
@given(index=st.integers(0, 9999), height=st.integers(12, 19))
def test_shrunk_digits_are_tight_and_about_the_height(index, height):
    digit = load_mnist("test")[0][index]
    patch = render_digit(digit, height)
    x0, y0, x1, y1 = ink_box(digit)
    if y1 - y0 <= height:  # a wide digit, enlarged: exactly the height (see above)
        assert patch.shape[0] == height
    else:
        assert height - 1 <= patch.shape[0] <= height
    assert ink_box(patch) == (0, 0, patch.shape[1], patch.shape[0])


def test_training_ranges_make_scenes_across_their_ranges():
    from overfeat_scratch.datasets.scenes import TRAINING_RANGES

    scenes = generate_scenes(120, 13, "train", TRAINING_RANGES)
    heights = [a["box"][3] - a["box"][1] for s in scenes for a in s.annotations]
    grounds = np.array([np.median(s.image) for s in scenes])
    assert min(heights) < 20 and max(heights) > 80
    assert np.any(grounds < 40) and np.any(grounds > 200)  # dark ink on light paper too
    assert {len(s.annotations) for s in scenes} == {1, 2, 3, 4, 5}


def test_plain_scenes_are_default_scenes_on_the_configs_layout():
    from overfeat_scratch.datasets.scenes import PLAIN_FIELDS, TRAINING_RANGES

    plain = TRAINING_RANGES.plain_scene()
    defaults = SceneConfig()
    assert all(getattr(plain, name) == getattr(defaults, name) for name in PLAIN_FIELDS)
    assert plain.plain == 0 and plain.max_digits == TRAINING_RANGES.max_digits
    # plain = 1: every scene is drawn from that config (the one draw deciding it is
    # skipped, as for every probability of 0 or 1).
    always = generate_scenes(4, 21, "train", dataclasses.replace(TRAINING_RANGES, plain=1.0))
    expected = generate_scenes(4, 21, "train", plain)
    for a, b in zip(always, expected, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.annotations == b.annotations
    # A small canvas caps the default heights at its size.
    small = SceneConfig(
        min_size=40, max_size=48, max_digits=1, min_digit_height=12, max_digit_height=40
    ).plain_scene()
    assert small.max_digit_height == 40 and small.min_digit_height == 20


def test_a_share_of_plain_scenes():
    # Plain scenes are light digits on grey 24 (their median 25-30: noise clipped at
    # 0, fragments); the ranges' grounds spread over 0-96 and half are turned
    # round, so few of them land there by chance.
    from overfeat_scratch.datasets.scenes import TRAINING_RANGES

    ranges = dataclasses.replace(TRAINING_RANGES, plain=0.0)
    mixed = dataclasses.replace(ranges, plain=0.5)
    scenes = generate_scenes(120, 17, "train", mixed)
    near = np.mean([23 <= np.median(s.image) <= 31 for s in scenes])
    assert 0.35 < near < 0.75
    none = generate_scenes(120, 17, "train", ranges)
    assert np.mean([23 <= np.median(s.image) <= 31 for s in none]) < 0.15


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"background": (50, 20)}, "background"),
        ({"background": (0, 1, 2)}, "background"),
        ({"noise": (-1.0, 3.0)}, "noise"),
        ({"blur": float("nan")}, "blur"),
        ({"ink": 20, "background": 24}, "brighter than every background"),
        ({"ink": (120, 255), "background": (0, 130)}, "brighter than every background"),
        ({"dark": 1.5}, "dark"),
        ({"clutter_on_digits": -0.1}, "clutter_on_digits"),
        ({"plain": 2.0}, "plain"),
    ],
)
def test_bad_ranges_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**fields)


def test_scene_config_records_round_trip():
    from overfeat_scratch.datasets.scenes import (
        TRAINING_RANGES,
        scene_config_from_record,
        scene_config_record,
    )

    record = json.loads(json.dumps(scene_config_record(TRAINING_RANGES)))
    assert scene_config_from_record(record) == TRAINING_RANGES
    assert scene_config_from_record(None) == SceneConfig()
    with pytest.raises(ValueError, match="unknown fields"):
        scene_config_from_record({"colour": 3})


def test_scenes_command_draws_varied_scenes(tmp_path):
    from overfeat_scratch.datasets.scenes import TRAINING_RANGES

    out = tmp_path / "varied"
    assert main(["scenes", "--n", "4", "--seed", "3", "--out", str(out), "--varied"]) == 0
    info = json.loads((out / "annotations.json").read_text())["info"]
    assert info["config"]["background"] == list(TRAINING_RANGES.background)
    images, annotations, _ = read_coco(out)
    expected = generate_scenes(4, 3, "test", TRAINING_RANGES)
    for (_, _, pixels), scene in zip(images, expected, strict=True):
        np.testing.assert_array_equal(pixels, scene.image)


def test_shading_lights_the_same_scene_unevenly():
    """A scene with shading is the scene without it (same digits, places, noise) with
    a ramp added that rises by ``shading`` grey levels across it; the localizer's
    flattening undoes it."""
    from overfeat_scratch.detect.pyramid import scene_input
    from overfeat_scratch.ops.image import shading_plane

    even = generate_scenes(6, 21, "test", SceneConfig(noise_over_digits=1.0))
    lit = generate_scenes(6, 21, "test", SceneConfig(noise_over_digits=1.0, shading=80.0))
    for a, b in zip(even, lit, strict=True):
        assert a.annotations == b.annotations
        lifted = b.image.astype(np.int64) - a.image.astype(np.int64)
        unclipped = b.image < 255
        assert lifted.min() >= 0 and lifted[unclipped].max() in (79, 80, 81)
        assert abs(sum(abs(v) for v in shading_plane(b.image.astype(np.float32))[1:]) - 80) < 4
        # Flattened and normalised, the lit scene reads like the even one.
        flat = scene_input(b.image, normalize=True, flatten=True)
        reference = scene_input(a.image, normalize=True, flatten=True)
        np.testing.assert_array_equal(reference, scene_input(a.image, normalize=True))
        # What is left is mostly the contrast step's gain, moved by ink clipped at 255.
        unflattened = np.abs(scene_input(b.image, normalize=True) - reference).mean()
        assert np.abs(flat - reference).mean() < 0.3 * unflattened
        assert np.median(np.abs(flat - reference)) < 2 / 255


def test_shading_ranges_are_drawn_and_checked():
    scenes = generate_scenes(20, 4, "test", SceneConfig(shading=(0, 96)))
    # The ramp's direction is drawn per scene: its brightest corner moves around.
    corners = {
        np.argmax([s.image[0, 0], s.image[0, -1], s.image[-1, 0], s.image[-1, -1]]) for s in scenes
    }
    assert len(corners) >= 3
    with pytest.raises(ValueError, match="shading"):
        SceneConfig(shading=(-1.0, 20.0))
    with pytest.raises(ValueError, match="shading"):
        SceneConfig(shading=300.0)


# --------------------------------------------------------------------------------------
# Handwriting: width, slant and pen drawn per digit


def test_handwriting_draws_nothing_at_its_defaults():
    # The defaults (aspect 1, rotation 0, stroke 0) draw nothing: the same scenes as
    # a config that names them.
    named = SceneConfig(aspect=(1.0, 1.0), rotation=0.0, stroke=0.0)
    for a, b in zip(generate_scenes(4, 31), generate_scenes(4, 31, config=named), strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.annotations == b.annotations


def test_turned_digits_are_the_rendered_digit_turned_and_their_own_tight_box():
    from overfeat_scratch.datasets.scenes import reshape_digit
    from overfeat_scratch.ops.image import rotate_bilinear

    images, _ = load_mnist("test")
    # One digit on a clean canvas: the canvas holds exactly the rendered digit, made
    # wider by the aspect and turned, at some height of the range.
    config = SceneConfig(
        max_digits=1, rotation=20.0, aspect=1.2, fragments=0.0, noise=0.0, background=0
    )
    for scene in generate_scenes(6, 32, "test", config):
        (ann,) = scene.annotations
        x0, y0, x1, y1 = ann["box"]
        ink = scene.image[y0:y1, x0:x1]
        assert scene.image.sum() == ink.sum()  # nothing outside the box
        digit = images[ann["mnist_index"]]
        matches = [
            h
            for h in range(config.min_digit_height, config.max_digit_height + 1)
            if np.array_equal(reshape_digit(render_digit(digit, h, 1.2), 20.0), ink)
        ]
        assert len(matches) == 1, matches
    # Drawn per digit from ranges: widths and slants spread.
    ranged = SceneConfig(rotation=(-30, 30), aspect=(0.7, 1.4), fragments=0.0)
    shapes = [
        (a["box"][2] - a["box"][0]) / (a["box"][3] - a["box"][1])
        for s in generate_scenes(12, 32, "test", ranged)
        for a in s.annotations
    ]
    assert max(shapes) / min(shapes) > 2
    # reshape_digit: 0 degrees and no stroke is the patch itself; a quarter turn is
    # exact, and is what rotate_bilinear gives, cropped to the ink.
    patch = render_digit(images[0], 40)
    np.testing.assert_array_equal(reshape_digit(patch), patch)
    turned = reshape_digit(patch, 90.0)
    np.testing.assert_array_equal(turned, np.rot90(patch))
    expected = np.clip(np.rint(rotate_bilinear(patch, 90.0)), 0, 255).astype(np.uint8)
    bx0, by0, bx1, by1 = ink_box(expected)
    np.testing.assert_array_equal(turned, expected[by0:by1, bx0:bx1])


def test_strokes_widen_and_narrow():
    from overfeat_scratch.datasets.scenes import reshape_digit

    images, _ = load_mnist("test")
    patch = render_digit(images[3], 48)
    wide, narrow = reshape_digit(patch, stroke=1), reshape_digit(patch, stroke=-1)
    ink = np.count_nonzero(patch > 127)
    assert np.count_nonzero(wide > 127) > 1.2 * ink
    assert 0 < np.count_nonzero(narrow > 127) < 0.8 * ink
    # Widened by a pixel on every side of the ink box, narrowed within it.
    assert wide.shape == (patch.shape[0] + 2, patch.shape[1] + 2)
    assert narrow.shape[0] <= patch.shape[0] and narrow.shape[1] <= patch.shape[1]
    with pytest.raises(ValueError, match="no ink left"):
        reshape_digit(np.eye(3, dtype=np.uint8) * 255, stroke=-1)


def test_small_digits_are_only_widened():
    # Below MIN_THINNED_HEIGHT a digit's strokes would break: stroke = 1 widens all.
    from overfeat_scratch.datasets.scenes import MIN_THINNED_HEIGHT

    config = SceneConfig(
        min_digit_height=20, max_digit_height=MIN_THINNED_HEIGHT - 1, stroke=1.0, fragments=0.0
    )
    plain = dataclasses.replace(config, stroke=0.0)
    widened, upright = generate_scenes(6, 33, config=config), generate_scenes(6, 33, config=plain)
    for a, b in zip(widened, upright, strict=True):
        # The same digits (a probability of 1 draws nothing, and neither does the
        # choice to narrow below MIN_THINNED_HEIGHT), each box a pixel larger on every
        # side (the places differ: the free places of a larger box).
        assert [x["mnist_index"] for x in a.annotations] == [
            x["mnist_index"] for x in b.annotations
        ]
        for x, y in zip(a.annotations, b.annotations, strict=True):
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = x["box"], y["box"]
            assert ay1 - ay0 == by1 - by0 + 2 and ax1 - ax0 == bx1 - bx0 + 2


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"rotation": (-50.0, 10.0)}, "rotation"),
        ({"rotation": float("nan")}, "rotation"),
        ({"aspect": (0.2, 1.0)}, "aspect"),
        ({"aspect": 3.0}, "aspect"),
        ({"stroke": 1.5}, "stroke"),
    ],
)
def test_bad_handwriting_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        SceneConfig(**fields)
