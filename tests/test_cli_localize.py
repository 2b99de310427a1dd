"""The train-detector, train-regressor, localize, detect and evaluate-detections commands."""

import json

import numpy as np
import pytest

from overfeat_scratch.cli import main
from overfeat_scratch.datasets.scenes import generate_scenes, write_coco
from overfeat_scratch.detect.localize import single_digit_config
from overfeat_scratch.nn.networks import build_network
from overfeat_scratch.nn.train import save_checkpoint


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny mini, a detector and a regressor trained from it by the commands."""
    root = tmp_path_factory.mktemp("cli")
    save_checkpoint(root / "mini.npz", build_network("mini", seed=0), None, {"epoch": 0})
    common = ["--epochs", "1", "--test-scenes", "2", "--quiet"]
    assert (
        main(
            [
                "train-detector",
                "--checkpoint",
                str(root / "mini.npz"),
                "--scenes",
                "6",
                "--out",
                str(root / "detector"),
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train-regressor",
                "--checkpoint",
                str(root / "detector" / "checkpoint.npz"),
                "--scenes",
                "6",
                "--out",
                str(root / "regressor"),
                *common,
            ]
        )
        == 0
    )
    scenes = generate_scenes(2, 5, "test")
    write_coco(root / "scenes", scenes)
    singles = generate_scenes(2, 6, "test", single_digit_config())
    write_coco(root / "singles", singles)
    return root


def test_train_commands_write_checkpoints_and_logs(workdir):
    for name in ("detector", "regressor"):
        assert (workdir / name / "checkpoint.npz").is_file()
        assert (workdir / name / "log.csv").is_file()
    meta = json.loads(
        np.load(workdir / "regressor" / "checkpoint.npz")["metadata"].tobytes().decode()
    )
    assert meta["objective"] == "box-regression"
    assert meta["edge_errors"] == "box"
    assert meta["extra_networks"]["classifier"]["name"] == "mini-detector"
    # Both record how they read scenes, and the ranges their scenes were drawn from.
    from overfeat_scratch.datasets.scenes import TRAINING_RANGES, scene_config_from_record
    from overfeat_scratch.detect.localize import INPUT_NORMALIZED, Localizer
    from overfeat_scratch.detect.pyramid import WIDE_SCALE_FACTORS

    detector_meta = json.loads(
        np.load(workdir / "detector" / "checkpoint.npz")["metadata"].tobytes().decode()
    )
    for record in (meta, detector_meta):
        assert record["input"] == INPUT_NORMALIZED == "normalized-contrast"
        assert record["scale_factors"] == list(WIDE_SCALE_FACTORS)
    assert scene_config_from_record(detector_meta["scene_config"]) == TRAINING_RANGES
    assert scene_config_from_record(meta["scene_config"]).max_digits == 1
    loc = Localizer.from_checkpoint(workdir / "regressor" / "checkpoint.npz")
    assert loc.normalize and loc.factors == WIDE_SCALE_FACTORS


def read_meta(path) -> dict:
    return json.loads(np.load(path)["metadata"].tobytes().decode())


def test_regressor_edge_errors_are_an_option_kept_by_resume(workdir, tmp_path):
    """``--edge-errors window`` trains the paper's loss and records it; a resumed run
    goes on with the loss its checkpoint records, whatever the option's default; the
    option's choices are the objective's."""
    from overfeat_scratch.cli import build_parser
    from overfeat_scratch.detect.localize import EDGE_ERRORS

    common = ["--test-scenes", "2", "--quiet", "--scenes", "4"]
    detector = str(workdir / "detector" / "checkpoint.npz")
    first = tmp_path / "window"
    args = ["--checkpoint", detector, "--edge-errors", "window", "--epochs", "1"]
    assert main(["train-regressor", *args, "--out", str(first), *common]) == 0
    assert read_meta(first / "checkpoint.npz")["edge_errors"] == "window"
    again = tmp_path / "again"
    resumed = ["--resume", str(first / "checkpoint.npz"), "--epochs", "2"]
    # The scene flags left out: the resumed run takes the recorded ones, not the defaults.
    assert main(["train-regressor", *resumed, "--out", str(again), "--quiet"]) == 0
    meta = read_meta(again / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["edge_errors"] == "window"
    assert meta["scenes"] == read_meta(first / "checkpoint.npz")["scenes"]
    assert meta["scenes"]["train"] == 4 and meta["scenes"]["test"] == 2
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train-regressor"]
    option = next(a for a in sub._actions if a.dest == "edge_errors")
    assert tuple(option.choices) == EDGE_ERRORS


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--scenes", "6"], "started with --scenes 4"),
        (["--test-scenes", "3"], "started with --test-scenes 2"),
        (["--scene-seed", "5"], "started with --scene-seed 1"),
        (["--per-scale", "3"], "started with --per-scale 8"),
        (["--edge-errors", "box"], "started with --edge-errors window"),
        (["--shared"], "started without --shared"),
        (["--plain-scenes"], "started without --plain-scenes"),
    ],
)
def test_resumed_regressor_refuses_flags_that_contradict_its_record(
    workdir, tmp_path, capsys, flags, named
):
    """A resumed run goes on with the scenes and choices it started with; a flag that
    says otherwise is refused before anything is trained or written, naming both."""
    detector = str(workdir / "detector" / "checkpoint.npz")
    first = tmp_path / "first"
    start = ["--checkpoint", detector, "--edge-errors", "window", "--epochs", "1"]
    common = ["--test-scenes", "2", "--quiet", "--scenes", "4"]
    assert main(["train-regressor", *start, "--out", str(first), *common]) == 0
    capsys.readouterr()
    again = tmp_path / "again"
    resumed = ["--resume", str(first / "checkpoint.npz"), "--epochs", "2", "--quiet"]
    assert main(["train-regressor", *resumed, "--out", str(again), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and f"got {flags[0]}" in err
    assert not (again / "checkpoint.npz").exists()
    # The same values as recorded are no contradiction.
    same = ["--scenes", "4", "--test-scenes", "2", "--edge-errors", "window", "--per-scale", "8"]
    assert main(["train-regressor", *resumed, "--out", str(again), *same]) == 0


def test_resumed_detector_refuses_contradicting_flags(workdir, tmp_path, capsys):
    checkpoint = str(workdir / "detector" / "checkpoint.npz")
    resumed = ["train-detector", "--resume", checkpoint, "--epochs", "2", "--quiet"]
    for flags, named in [
        (["--no-mining"], "started without --no-mining"),
        (["--scenes", "7"], "started with --scenes 6"),
        (["--plain-scenes"], "started without --plain-scenes"),
        (["--checkpoint", str(workdir / "mini.npz")], "a resumed run reads its networks"),
    ]:
        assert main([*resumed, "--out", str(tmp_path / "again"), *flags]) == 2
        assert named in capsys.readouterr().err
        assert not (tmp_path / "again" / "checkpoint.npz").exists()


def test_plain_scenes_train_on_raw_input(tmp_path):
    save_checkpoint(tmp_path / "mini.npz", build_network("mini", seed=0), None, {"epoch": 0})
    args = ["--epochs", "1", "--test-scenes", "2", "--quiet", "--scenes", "4", "--plain-scenes"]
    assert (
        main(
            [
                "train-detector",
                "--checkpoint",
                str(tmp_path / "mini.npz"),
                "--out",
                str(tmp_path / "d"),
                *args,
            ]
        )
        == 0
    )
    meta = json.loads(np.load(tmp_path / "d" / "checkpoint.npz")["metadata"].tobytes().decode())
    assert meta["input"] == "raw" and meta["scene_config"]["background"] == 24


def test_localize_writes_coco_results_draws_and_scores(workdir, capsys):
    preds = workdir / "loc.json"
    draw = workdir / "drawn"
    code = main(
        [
            "localize",
            "--checkpoint",
            str(workdir / "regressor" / "checkpoint.npz"),
            "--scales",
            "2",
            "--top",
            "3",
            "--out",
            str(preds),
            "--draw",
            str(draw),
            str(workdir / "singles"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "localization error on 2 single-digit scenes" in out
    results = json.loads(preds.read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    assert all(1 <= r["category_id"] <= 10 and len(r["bbox"]) == 4 for r in results)
    assert len(list(draw.glob("*.png"))) == 2


def test_detect_then_evaluate_detections(workdir, capsys):
    preds = workdir / "det.json"
    code = main(
        [
            "detect",
            "--checkpoint",
            str(workdir / "regressor" / "checkpoint.npz"),
            "--scales",
            "1",
            "--quiet",
            "--out",
            str(preds),
            str(workdir / "scenes"),
        ]
    )
    assert code == 0
    capsys.readouterr()
    gt = workdir / "scenes" / "annotations.json"
    assert main(["evaluate-detections", str(gt), str(preds), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["map50"] <= 1


def test_bad_inputs_are_clear_errors(workdir, tmp_path, capsys):
    assert main(["localize", "--checkpoint", str(workdir / "mini.npz"), str(tmp_path)]) == 2
    assert "expected a box regressor" in capsys.readouterr().err
    assert (
        main(
            [
                "localize",
                "--checkpoint",
                str(workdir / "regressor" / "checkpoint.npz"),
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "COCO scene folder" in capsys.readouterr().err
    assert (
        main(
            [
                "localize",
                "--factors",
                "1,x",
                "--checkpoint",
                str(workdir / "regressor" / "checkpoint.npz"),
                str(workdir / "scenes"),
            ]
        )
        == 2
    )
    assert "--factors" in capsys.readouterr().err


def test_localize_and_detect_can_keep_the_shading(workdir, capsys):
    """``--keep-shading`` reads the image as it is; both ways run and report."""
    checkpoint = str(workdir / "regressor" / "checkpoint.npz")
    for command, folder in (("localize", "singles"), ("detect", "scenes")):
        for flags in ([], ["--keep-shading"]):
            args = [command, str(workdir / folder), "--checkpoint", checkpoint, "--scales", "1"]
            assert main([*args, *flags]) == 0
    assert "localization error on 2 single-digit scenes" in capsys.readouterr().out


def test_new_runs_take_the_scene_defaults_the_help_names():
    """The scene flags default to None (so that a resumed run can tell them given); a
    new run fills in the values its help text promises."""
    from overfeat_scratch.cli import build_parser, settle_scene_flags

    parser = build_parser()
    expected = {
        "train-regressor": {"scenes": 4000, "test_scenes": 500, "scene_seed": 1, "per_scale": 8},
        "train-detector": {"scenes": 24000, "test_scenes": 300, "scene_seed": 11},
    }
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command, values in expected.items():
        args = parser.parse_args([command])
        assert all(getattr(args, flag) is None for flag in values)
        settle_scene_flags(args)
        assert {flag: getattr(args, flag) for flag in values} == values
        helps = {a.dest: a.help for a in sub[command]._actions}
        for flag, value in values.items():
            assert f"(default {value})" in helps[flag]
        given = parser.parse_args([command, "--scenes", "12"])
        settle_scene_flags(given)
        assert given.scenes == 12
