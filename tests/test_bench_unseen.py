"""The second scene generator: its own code, its seeds, its scenes and one evaluation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location(
    "bench_unseen", ROOT / "benchmarks" / "bench_unseen.py"
)
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)
ROBUSTNESS = importlib.util.spec_from_file_location(
    "bench_robustness", ROOT / "benchmarks" / "bench_robustness.py"
)


def test_it_shares_no_drawing_code_with_the_package_generator():
    # From the package it takes the MNIST reader, the Scene tuple, the localizer and
    # the metrics: nothing that draws or transforms an image.
    import ast

    tree = ast.parse((ROOT / "benchmarks" / "bench_unseen.py").read_text())
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module.startswith("overfeat_scratch")
        for alias in node.names
    }
    modules = {module for module, _ in imported}
    assert "overfeat_scratch.ops.image" not in modules
    assert {name for module, name in imported if module.endswith("datasets.scenes")} <= {
        "Scene",
        "coco_dict",
    }


def test_its_seeds_are_its_own():
    robustness = importlib.util.module_from_spec(ROBUSTNESS)
    ROBUSTNESS.loader.exec_module(robustness)
    grid = {
        robustness.seed_of(i, t)
        for i in range(len(robustness.points()))
        for t in ("localization", "detection")
    }
    ours = set(bench.SEEDS.values()) | set(bench.TUNING_SEEDS.values())
    assert len(ours) == 4 and not ours & grid
    # Training uses seeds below 100, tuning of the package's scenes 97-99 and 9000 up.
    assert min(ours) >= 100 and max(ours) < 9000
    assert not set(bench.SEEDS.values()) & set(bench.TUNING_SEEDS.values())


def test_scenes_are_reproducible_and_their_boxes_hold_their_digits():
    scenes, facts = bench.unseen_scenes(12, 123, single=False)
    again, _ = bench.unseen_scenes(12, 123, single=False)
    first, _ = bench.unseen_scenes(4, 123, single=False)
    for a, b in zip(scenes, again, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.annotations == b.annotations
    for a, b in zip(first, scenes[:4], strict=True):  # a shorter run is a prefix
        np.testing.assert_array_equal(a.image, b.image)
    counts = [len(s.annotations) for s in scenes]
    assert min(counts) >= 1 and max(counts) <= 5 and len(set(counts)) > 1
    assert {f["dark"] for f in facts} == {True, False}
    assert {f["jpeg"] for f in facts} == {True, False}
    for scene, fact in zip(scenes, facts, strict=True):
        h, w = scene.image.shape
        assert scene.image.dtype == np.uint8 and 96 <= min(h, w) and max(h, w) <= 192
        ground = np.median(scene.image)
        for ann in scene.annotations:
            x0, y0, x1, y1 = ann["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0 <= ann["label"] <= 9
            # The digit's ink stands off the ground inside its box, on the side of
            # the ink (dark ink below the paper, light ink above the ground).
            inside = scene.image[y0:y1, x0:x1].astype(float)
            extreme = inside.min() if fact["dark"] else inside.max()
            assert abs(extreme - ground) > 40
    single, _ = bench.unseen_scenes(5, 124, single=True)
    assert all(len(s.annotations) == 1 for s in single)


def test_digit_patches_are_cropped_to_their_box_and_turned():
    from overfeat_scratch.datasets.mnist import load_mnist

    images, _ = load_mnist("test")
    rng = np.random.default_rng(0)
    heights = []
    for index in range(20):
        alpha = bench.digit_alpha(rng, images[index])
        assert alpha.min() >= 0 and alpha.max() <= 1
        # Cropped where the opacity reaches BOX_ALPHA: every edge row and column does.
        for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
            assert edge.max() >= bench.BOX_ALPHA
        heights.append(alpha.shape[0])
    low, high = bench.RANGES["height"]
    assert min(heights) >= low - 4 and max(heights) <= high * 1.2


def test_clutter_marks_are_small_and_stay_off_the_digits():
    rng = np.random.default_rng(1)
    boxes = [(20, 20, 60, 70)]
    marks = bench._clutter(rng, (150, 160), boxes)
    # Nothing within the box grown by the margin.
    assert marks[18:72, 18:62].max() == 0
    assert marks.max() > 0
    # The marks are smaller than the smallest digit, or a mark could be a 1.
    assert bench.CLUTTER_SIZE < bench.RANGES["height"][0]


def test_one_evaluation_scores_both_tasks_and_the_groups():
    out = bench.run_task(None, "localization", 3, bench.TUNING_SEEDS["localization"])
    assert 0 <= out["score"] <= 1 and out["n"] == 3
    assert all(0 <= g["score"] <= 1 for g in out["groups"].values())
    det = bench.run_task(None, "detection", 2, bench.TUNING_SEEDS["detection"])
    assert 0 <= det["score"] <= 1


def test_committed_results_cover_both_models_variants_and_tasks():
    results = json.loads((ROOT / "benchmarks/results/unseen.json").read_text())
    for model in ("shipped", "before"):
        for variant in bench.VARIANTS:
            for task in ("localization", "detection"):
                record = results[f"{model}|{variant}|{task}"]
                assert record["n"] >= 300 and record["seed"] == bench.SEEDS[task]
                assert record["variant"] == variant and 0 <= record["score"] <= 1
                assert set(record["groups"]) == set(bench.GROUPS)


def test_upright_scenes_are_the_same_scenes_with_upright_digits():
    drawn, drawn_facts = bench.unseen_scenes(6, 125, single=True)
    upright, upright_facts = bench.unseen_scenes(6, 125, True, bench.UPRIGHT)
    for a, b, fa, fb in zip(drawn, upright, drawn_facts, upright_facts, strict=True):
        # The same digit on the same canvas, in the same light (polarity, JPEG).
        assert a.annotations[0]["mnist_index"] == b.annotations[0]["mnist_index"]
        assert a.image.shape == b.image.shape and fa["dark"] == fb["dark"]
        assert fa["jpeg"] == fb["jpeg"]
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = (
            a.annotations[0]["box"],
            b.annotations[0]["box"],
        )
        assert (ax1 - ax0, ay1 - ay0) != (bx1 - bx0, by1 - by0)  # turned or widened


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--n", "0"])
    assert "--n and --jobs must be positive" in capsys.readouterr().err
