"""The shipped mini weights, the evaluate command and the main job."""

import json
from pathlib import Path

import numpy as np
import pytest

from overfeat_scratch.cli import main
from overfeat_scratch.datasets.digits import SHIPPED, mnist_windows
from overfeat_scratch.datasets.mnist import data_checksum, load_mnist
from overfeat_scratch.detect.localize import SHIPPED_REGRESSOR as SHIPPED_LOCALIZER
from overfeat_scratch.nn.train import evaluate, load_checkpoint

RECORD = json.loads(SHIPPED.with_suffix(".json").read_text())


def test_shipped_weights_reach_their_stated_test_error():
    net, meta, _ = load_checkpoint(SHIPPED, expected_network="mini")
    assert meta["data_checksum"] == data_checksum("train")[: len(meta["data_checksum"])]
    assert meta["epoch"] == RECORD["epochs"]
    images, labels = load_mnist("test")
    error, _ = evaluate(net, mnist_windows(images), labels.astype(np.int64))
    # The same arithmetic as when the weights were written; allow one digit for
    # summation-order differences between BLAS builds.
    assert abs(error - RECORD["test_error"]) <= 1 / len(images)
    assert RECORD["test_error"] <= 0.008  # the target the default config must reach
    assert RECORD["test_error"] == pytest.approx(meta["history"][-1]["test_error"])


def test_evaluate_command_json(capsys):
    assert main(["evaluate", "--json", "--limit", "1000"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 1000 and 0 <= result["test_error"] < 0.02
    assert np.sum(result["confusion"]) == 1000


def test_evaluate_command_plot_and_bad_checkpoint(tmp_path, capsys):
    plot = tmp_path / "confusion.png"
    assert main(["evaluate", "--limit", "200", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    assert "bad.npz" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_writes_the_scene_figure(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("scene_class_maps.png", "localization_merge.png", "detections.png"):
        figure = tmp_path / name
        assert figure.is_file() and str(figure) in out
    assert "classified the first 2000 MNIST test digits" in out
    assert "localization error top-1" in out and "mAP@0.5" in out
    assert "== fast model" in out and "== accurate model" in out


LOCALIZER_RECORD = json.loads(SHIPPED_LOCALIZER.with_suffix(".json").read_text())


def test_shipped_localizer_reaches_its_stated_error_on_a_subset():
    """The shipped localizer (regressor + detector) on the first held-out scenes of its
    recorded benchmark: within a few scenes of the stated error there."""
    from overfeat_scratch.datasets.scenes import generate_scenes
    from overfeat_scratch.detect.localize import (
        Localizer,
        evaluate_localization,
        single_digit_config,
    )

    localizer = Localizer.from_checkpoint()
    assert localizer.classifier.name == "mini-detector" and localizer.class_specific
    record = LOCALIZER_RECORD["localization"]
    n = 100
    scenes = generate_scenes(n, record["seed"], "test", single_digit_config())
    error = evaluate_localization(localizer, scenes)
    # 100 of the 1,000 benchmark scenes: the error there may differ from the whole
    # set's by a few scenes, not more.
    assert error["top1"] <= record["top1_error"] + 0.04
    assert error["top5"] <= error["top1"]


def test_shipped_detector_scores_near_its_stated_map_on_a_subset():
    """Detection with the shipped networks on the first held-out scenes of the recorded
    benchmark, scored by the package's evaluator."""
    from overfeat_scratch.datasets.scenes import coco_dict, generate_scenes
    from overfeat_scratch.detect.detection import detect
    from overfeat_scratch.detect.evaluation import evaluate_detections
    from overfeat_scratch.detect.localize import Localizer

    record = LOCALIZER_RECORD["detection"]
    localizer = Localizer.from_checkpoint()
    n = 40
    scenes = generate_scenes(n, record["seed"], "test")
    gt = coco_dict(scenes, [f"{k:06d}.png" for k in range(1, n + 1)])
    results = []
    for k, scene in enumerate(scenes, start=1):
        for pred in detect(localizer, scene.image).top(100):
            x0, y0, x1, y1 = pred["box"]
            box = [x0, y0, x1 - x0, y1 - y0]
            results.append(
                {
                    "image_id": k,
                    "category_id": pred["label"] + 1,
                    "bbox": box,
                    "score": pred["score"],
                }
            )
    evaluation = evaluate_detections(gt, results)
    # 40 of the 500 benchmark scenes: mAP there varies by a few points around the whole set's.
    assert evaluation.map50 >= record["map50"] - 0.08


ROBUSTNESS = json.loads(
    (Path(__file__).resolve().parents[1] / "benchmarks/results/robustness.json").read_text()
)


def test_shipped_localizer_reads_dark_ink_on_light_paper():
    """Dark ink on light paper, one point of the robustness benchmark: the shipped
    localizer (trained on varied scenes, reading them normalised) stays near its
    recorded error on the point's first scenes, where the localizer trained on default
    scenes only misses most digits."""
    import dataclasses

    from overfeat_scratch.datasets.scenes import SceneConfig, generate_scenes
    from overfeat_scratch.detect.localize import (
        PLAIN_REGRESSOR,
        Localizer,
        evaluate_localization,
        single_digit_config,
    )

    shipped = ROBUSTNESS["shipped|polarity=dark|localization"]
    before = ROBUSTNESS["before|polarity=dark|localization"]
    assert shipped["seed"] == before["seed"]
    config = single_digit_config(dataclasses.replace(SceneConfig(), dark=1.0))
    scenes = generate_scenes(50, shipped["seed"], "test", config)
    error = evaluate_localization(Localizer.from_checkpoint(), scenes)["top1"]
    # 50 of the point's 300 scenes: within a few scenes of the whole point's error.
    assert error <= shipped["top1_error"] + 0.06
    plain = evaluate_localization(Localizer.from_checkpoint(PLAIN_REGRESSOR), scenes)["top1"]
    assert plain >= before["top1_error"] - 0.15 and plain > error + 0.3


def test_shipped_localizer_holds_on_the_second_generator():
    """Scenes of the second, independent generator (``benchmarks/bench_unseen.py``):
    the shipped localizer stays near its recorded error on the first 50 benchmark
    scenes; the one trained on default scenes only misses most of them."""
    import importlib.util

    from overfeat_scratch.detect.localize import (
        PLAIN_REGRESSOR,
        Localizer,
        evaluate_localization,
    )

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_unseen", root / "benchmarks" / "bench_unseen.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = json.loads((root / "benchmarks/results/unseen.json").read_text())
    shipped = results["shipped|as drawn|localization"]
    before = results["before|as drawn|localization"]
    scenes, _ = bench.unseen_scenes(50, shipped["seed"], single=True)
    error = evaluate_localization(Localizer.from_checkpoint(), scenes)["top1"]
    # 50 of the 300 scenes: within a few scenes of the whole set's error.
    assert error <= shipped["score"] + 0.06
    plain = evaluate_localization(Localizer.from_checkpoint(PLAIN_REGRESSOR), scenes)["top1"]
    assert plain >= before["score"] - 0.15 and plain > error + 0.3
