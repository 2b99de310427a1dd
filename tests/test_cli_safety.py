"""The command line under bad input: outputs never overwritten or written into an input,
arguments checked before any work, non-finite numbers never reported, clear errors."""

import json
import shutil

import numpy as np
import pytest
from checkpoints import with_metadata
from PIL import Image

from overfeat_scratch.cli import main
from overfeat_scratch.common.checks import InputError, InputTypeError
from overfeat_scratch.datasets.scenes import generate_scenes, write_coco
from overfeat_scratch.detect.detection import detector_from_classifier
from overfeat_scratch.detect.localize import build_regressor, input_record, single_digit_config
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.networks import build_from_specs, build_network
from overfeat_scratch.nn.train import TrainConfig, save_checkpoint, train


def localizer_checkpoint(path, classifier):
    """An untrained localizer checkpoint (one scale): what train-regressor writes."""
    meta = {"objective": "box-regression", "epoch": 0, **input_record(True, (1.0,))}
    regressor = build_regressor(seed=1)
    return save_checkpoint(path, regressor, None, meta, {"classifier": classifier})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Untrained localizers (on a detector and on plain mini), scene folders, a run."""
    root = tmp_path_factory.mktemp("safety")
    mini = build_network("mini", seed=0)
    localizer_checkpoint(root / "localizer.npz", detector_from_classifier(mini))
    localizer_checkpoint(root / "plain.npz", mini)
    write_coco(root / "singles", generate_scenes(2, 6, "test", single_digit_config()))
    write_coco(root / "scenes", generate_scenes(2, 5, "test"))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 32)
    images = rng.random((32, 1, 32, 32), dtype=np.float32)
    config = TrainConfig(1, 16, 0.01, (), 1.0, 0.9, 0.0, "he", 2, False)
    net = build_network("mini", seed=1)
    train(net, config, (images, labels), out_dir=root / "run", progress=False, log=None)
    return root


def files_of(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of the command line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def localize_args(work, *more):
    return ["localize", "--checkpoint", work / "localizer.npz", "--top", "1", *more]


# --------------------------------------------------------------------------------------
# Outputs: inputs never written, existing outputs never replaced without --overwrite


@pytest.mark.parametrize(
    "flag, target",
    [("--draw", "singles/images"), ("--draw", "singles"), ("--out", "singles/preds.json")],
)
def test_outputs_never_go_into_the_input_folder(work, capsys, flag, target):
    before = files_of(work / "singles")
    code, _, err = run(capsys, *localize_args(work, work / "singles", flag, work / target))
    assert code == 2
    assert f"{flag} {work / target}: would write into the input {work / 'singles'}" in err
    assert files_of(work / "singles") == before


def test_drawings_never_replace_an_input_image(work, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "a.png")
    before = files_of(folder)
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, *localize_args(work, folder / "a.png", "--draw", folder, *extra))
        assert code == 2 and "would write into the input" in err
    assert files_of(folder) == before


def test_existing_outputs_need_overwrite(work, tmp_path, capsys):
    preds, drawn = tmp_path / "preds.json", tmp_path / "drawn"
    preds.write_text("[]")
    drawn.mkdir()
    (drawn / "keep.txt").write_text("mine")
    for flag, path, message in (
        ("--out", preds, "already exists; choose a new name, or pass --overwrite"),
        ("--draw", drawn, "the folder is not empty; choose a new folder, or pass --overwrite"),
    ):
        code, _, err = run(capsys, *localize_args(work, work / "singles", flag, path))
        assert code == 2 and f"{flag} {path}: {message}" in err
    assert preds.read_text() == "[]"
    code, out, _ = run(
        capsys,
        *localize_args(work, work / "singles", "--out", preds, "--draw", drawn, "--overwrite"),
    )
    assert code == 0 and json.loads(preds.read_text())
    assert (drawn / "keep.txt").read_text() == "mine" and len(list(drawn.glob("*.png"))) == 2


def forbid(monkeypatch, module, name):
    """Make ``module.name`` fail the test if called: the work it stands for must not start."""

    def called(*args, **kwargs):
        raise AssertionError(f"{name} ran before the arguments were checked")

    monkeypatch.setattr(module, name, called)


def test_training_refuses_a_longer_run_s_folder_before_any_work(work, capsys, monkeypatch):
    import overfeat_scratch.datasets.mnist as mnist

    forbid(monkeypatch, mnist, "load_mnist")
    before = files_of(work / "run")
    code, _, err = run(capsys, "train", "--epochs", "1", "--out", work / "run")
    assert code == 2 and f"--out {work / 'run'}: the folder is not empty" in err
    assert files_of(work / "run") == before
    # A file where the run's folder should go, found before an epoch, not after.
    code, _, err = run(capsys, "train", "--out", work / "run" / "log.csv")
    assert code == 2 and "exists and is not a folder; expected a folder" in err


def test_resuming_writes_only_into_the_resumed_run_s_folder(work, tmp_path, capsys, monkeypatch):
    import overfeat_scratch.datasets.mnist as mnist

    forbid(monkeypatch, mnist, "load_mnist")
    checkpoint = work / "run" / "checkpoint.npz"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    code, _, err = run(capsys, "train", "--resume", checkpoint, "--epochs", "2", "--out", other)
    assert code == 2 and "the folder is not empty" in err
    # Its own folder passes the output check; a run already at epoch 1 has nothing to do
    # for --epochs 1, and says so instead of naming files it never wrote.
    code, out, err = run(
        capsys, "train", "--resume", checkpoint, "--epochs", "1", "--out", work / "run"
    )
    assert code == 2 and out == ""
    assert "the checkpoint is already at epoch 1, so --epochs 1 leaves nothing to train" in err


def test_localize_out_naming_a_folder_fails_before_any_image(work, tmp_path, capsys, monkeypatch):
    import overfeat_scratch.detect.localize as localize

    forbid(monkeypatch, localize, "localize")
    code, _, err = run(capsys, *localize_args(work, work / "singles", "--out", tmp_path))
    assert code == 2 and f"--out {tmp_path}: is a folder; expected a file name" in err


def test_plots_must_be_png_files(work, tmp_path, capsys):
    gt = work / "scenes" / "annotations.json"
    (tmp_path / "preds.json").write_text("[]")
    code, _, err = run(
        capsys, "evaluate-detections", gt, tmp_path / "preds.json", "--plot", tmp_path / "x.xyz"
    )
    assert code == 2 and "--plot" in err and "expected a .png file name, got 'x.xyz'" in err
    assert not (tmp_path / "x.xyz").exists()


# --------------------------------------------------------------------------------------
# Silently wrong results


def test_localize_top_1_prints_one_top_1_error_in_range(work, capsys):
    code, out, _ = run(capsys, *localize_args(work, work / "singles"))
    assert code == 0
    line = next(row for row in out.splitlines() if row.startswith("localization error"))
    assert line.count("top-1") == 1
    value = float(line.split("top-1 ")[1].rstrip("%"))
    assert 0 <= value <= 100


def tiny_rgb_network(weight=0.1):
    """A 3-channel network with a small window (8), its weights all ``weight``."""
    specs = [
        paper.LayerSpec("conv", 4, 3, pool=2, pool_stride=2),
        paper.LayerSpec("full", 5, 3, relu=False),
    ]
    net = build_from_specs(specs, 3, "tiny", seed=0)
    for layer in net:
        for key in layer.params:
            layer.params[key][...] = weight
    return net


@pytest.fixture
def overflowing_weights(monkeypatch, tmp_path):
    """Released weights whose values are finite but overflow float32 on any image."""
    import overfeat_scratch.nn.weights as weights

    monkeypatch.setattr(weights, "load_released_weights", lambda *a, **k: tiny_rgb_network(3e38))
    (tmp_path / "w").write_bytes(b"")
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "img.png")
    return tmp_path


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_classify_and_dense_refuse_non_finite_scores(overflowing_weights, capsys):
    folder = overflowing_weights
    args = ["--weights", folder / "w", "--model", "fast", folder / "img.png"]
    code, out, err = run(capsys, "classify", *args)
    assert code == 2 and "nan" not in out.lower()
    assert "the class probabilities: 5 of 5 values are NaN or infinite; refusing" in err
    code, _, err = run(capsys, "dense", *args, "--out", folder / "map.npy")
    assert code == 2 and "the class scores:" in err and "NaN or infinite" in err
    assert not (folder / "map.npy").exists()


def test_a_nan_checkpoint_is_refused_by_every_command(work, tmp_path, capsys):
    arrays = dict(np.load(work / "run" / "checkpoint.npz", allow_pickle=False))
    arrays["param/conv2.w"] = arrays["param/conv2.w"].copy()
    arrays["param/conv2.w"].flat[3] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "nan.npz", "--limit", "10")
    assert code == 2 and out == "" and "parameter conv2.w: contains 1 NaN" in err
    code, _, err = run(
        capsys, "train", "--resume", tmp_path / "nan.npz", "--epochs", "2", "--out", tmp_path / "r"
    )
    assert code == 2 and "parameter conv2.w: contains 1 NaN" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_localize_refuses_scores_that_overflow(work, tmp_path, capsys):
    """Finite weights that overflow float32 give NaN probabilities: refused, rather than
    read as windows below every confidence, that is, as "nothing found"."""
    detector = detector_from_classifier(build_network("mini", seed=0))
    detector["full5"].params["w"][...] = 3e38
    localizer_checkpoint(tmp_path / "overflow.npz", detector)
    for command in ("localize", "detect"):
        code, out, err = run(
            capsys, command, "--checkpoint", tmp_path / "overflow.npz", work / "singles"
        )
        assert code == 2 and out == ""
        assert "the class probabilities at scale 1.0:" in err and "NaN or infinite" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
        (["train", "--epochs", "-1"], "argument --epochs: expected an integer >= 1, got -1"),
        (["train", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1"),
        (["train", "--batch-size", "-1"], "argument --batch-size: expected an integer >= 1"),
        (["train", "--limit", "0"], "argument --limit: expected an integer >= 1, got 0"),
        (["train", "--limit", "-1"], "argument --limit: expected an integer >= 1, got -1"),
        (["train", "--seed", "-3"], "argument --seed: expected an integer in [0, 4294967295]"),
        (["evaluate", "--limit", "0"], "argument --limit: expected an integer >= 1, got 0"),
        (["classify", "--top", "-1"], "argument --top: expected an integer >= 1, got -1"),
        (["classify", "--max-memory", "0"], "argument --max-memory: expected a finite number > 0"),
        (["detect", "--show", "-1"], "argument --show: expected an integer >= 0, got -1"),
        (["detect", "--min-score", "nan"], "argument --min-score: expected a finite number >= 0"),
        (["detect", "--nms-iou", "1.5"], "argument --nms-iou: expected a finite number in [0, 1]"),
        (["detect", "--draw-min-score=-inf"], "argument --draw-min-score: expected a finite"),
        (["localize", "--min-confidence", "nan"], "argument --min-confidence: expected a finite"),
        (["localize", "--min-confidence", "2"], "--min-confidence: expected a finite number in [0"),
        (["localize", "--threshold", "inf"], "argument --threshold: expected a finite number, got"),
        (["localize", "--top-classes", "0"], "argument --top-classes: expected an integer >= 1"),
        (["localize", "--top", "0"], "argument --top: expected an integer >= 1, got 0"),
        (["localize", "--top", "-1"], "argument --top: expected an integer >= 1, got -1"),
        (["localize", "--max-size", "0"], "argument --max-size: expected an integer >= 1, got 0"),
        (["localize", "--top", "x"], "argument --top: expected an integer >= 1, got 'x'"),
        (["train-detector", "--scenes", "0"], "argument --scenes: expected an integer >= 1"),
        (["train-regressor", "--test-scenes", "0"], "argument --test-scenes: expected an integ"),
        (["train-regressor", "--per-scale", "0"], "argument --per-scale: expected an integer >="),
        (["train-regressor", "--scene-seed", "-1"], "argument --scene-seed: expected an integer"),
        (["demo", "--repeats", "0"], "argument --repeats: expected an integer >= 1, got 0"),
        (["summary", "fast", "--size", "0", "5"], "argument --size: expected an integer >= 1"),
    ],
)
def test_numbers_out_of_range_are_refused_in_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv, *(["X"] if argv[0] in ("localize", "detect") else []))
    assert code == 2 and out == ""
    assert message in err and len(err.splitlines()) == 1
    assert err.startswith(f"overfeat-scratch {argv[0]}: error: ")


# --------------------------------------------------------------------------------------
# COCO categories, detection on plain mini, memory, metadata, messages


def only_category(folder, target, digit):
    """A copy of a scene folder that lists one digit's category (and its boxes) only."""
    shutil.copytree(folder, target)
    data = json.loads((target / "annotations.json").read_text())
    keep = [c for c in data["categories"] if c["name"] == str(digit)]
    data["categories"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] == keep[0]["id"]]
    (target / "annotations.json").write_text(json.dumps(data))
    return keep[0]["id"]


def test_a_folder_listing_some_digits_gets_results_for_those(work, tmp_path, capsys):
    folder = tmp_path / "some"
    cid = only_category(work / "scenes", folder, 7)
    preds = tmp_path / "preds.json"
    code, out, _ = run(capsys, *localize_args(work, folder, "--top", "5", "--out", preds))
    assert code == 0
    results = json.loads(preds.read_text())
    assert all(r["category_id"] == cid for r in results)
    assert "left out: the folder lists no category for them" in out


def test_evaluate_detections_refuses_a_zero_width_true_box(work, tmp_path, capsys):
    data = json.loads((work / "scenes" / "annotations.json").read_text())
    data["annotations"][0]["bbox"][2] = 0
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "preds.json").write_text("[]")
    code, _, err = run(capsys, "evaluate-detections", tmp_path / "gt.json", tmp_path / "preds.json")
    assert code == 2 and "annotations[0] (id 1): bbox" in err and "non-positive width" in err


def test_detect_refuses_a_regressor_on_plain_mini(work, capsys):
    code, out, err = run(capsys, "detect", "--checkpoint", work / "plain.npz", work / "scenes")
    assert code == 2 and out == ""
    assert "which has 10 outputs and no background class" in err


def test_huge_images_are_refused_with_the_estimate_and_a_way_out(work, tmp_path, capsys):
    from overfeat_scratch.cli import localize_memory
    from overfeat_scratch.detect.localize import Localizer
    from overfeat_scratch.detect.pyramid import SCALE_FACTORS, SCALE_SETS

    # The reported case: 6000 x 6000 at one scale is far above the default 4 GiB.
    localizer = Localizer.from_checkpoint()
    factors = [SCALE_FACTORS[i] for i in SCALE_SETS[1]]
    assert localize_memory(localizer, 6000, 6000, factors, True, 1) > 8 * 2**30
    image = tmp_path / "big.png"
    Image.fromarray(np.zeros((600, 500), np.uint8)).save(image)
    code, out, err = run(capsys, *localize_args(work, image, "--max-memory", "0.05"))
    assert code == 2 and out == ""
    assert "big.png (600x500) at 1 scale(s) would take about" in err
    assert "downscale it with --max-size, or use fewer --scales" in err
    code, out, _ = run(
        capsys, *localize_args(work, image, "--max-memory", "0.05", "--max-size", "100")
    )
    assert code == 0 and "big.png (id 1)" in out


def test_dense_refuses_a_huge_image_and_downscales_with_max_size(monkeypatch, tmp_path, capsys):
    import overfeat_scratch.nn.weights as weights

    monkeypatch.setattr(weights, "load_released_weights", lambda *a, **k: tiny_rgb_network())
    (tmp_path / "w").write_bytes(b"")
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(tmp_path / "img.png")
    args = ["dense", "--weights", tmp_path / "w", "--model", "fast", tmp_path / "img.png"]
    code, _, err = run(capsys, *args, "--out", tmp_path / "m.npy", "--max-memory", "0.001")
    assert code == 2 and "on a 300x400 image would take about" in err and "--max-size" in err
    code, out, _ = run(
        capsys, *args, "--out", tmp_path / "m.npy", "--max-memory", "0.001", "--max-size", "40"
    )
    assert code == 0 and "for a 30x40 image (downscaled from 300x400)" in out
    assert np.load(tmp_path / "m.npy").shape == tiny_rgb_network().output_shape((3, 30, 40))


def test_edited_checkpoint_metadata_is_a_clear_error(work, tmp_path, capsys):
    source = work / "run" / "checkpoint.npz"
    no_network = with_metadata(tmp_path / "a.npz", source, lambda m: m.pop("network"))
    code, _, err = run(capsys, "evaluate", "--checkpoint", no_network)
    assert code == 2 and "metadata has no 'network' field" in err
    text = with_metadata(tmp_path / "b.npz", source, lambda m: m.update(network="mini"))
    code, _, err = run(capsys, "evaluate", "--checkpoint", text)
    assert code == 2 and "metadata field 'network' is 'mini'; expected an object" in err
    no_dropout = with_metadata(tmp_path / "c.npz", source, lambda m: m.pop("dropout"))
    code, _, err = run(
        capsys, "train", "--resume", no_dropout, "--epochs", "2", "--out", tmp_path / "r"
    )
    assert code == 2 and "metadata has no 'dropout' field" in err


def test_a_folder_without_images_is_an_error(work, tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    data = json.loads((work / "scenes" / "annotations.json").read_text())
    (folder / "annotations.json").write_text(json.dumps({**data, "images": [], "annotations": []}))
    code, out, err = run(capsys, *localize_args(work, folder))
    assert code == 2 and out == "" and "lists no images; expected at least one" in err


def test_two_images_drawn_to_one_file_are_refused(work, tmp_path, capsys):
    folder = tmp_path / "twins"
    shutil.copytree(work / "scenes", folder)
    (folder / "other").mkdir()
    shutil.copy(folder / "images" / "000002.png", folder / "other" / "000001.png")
    data = json.loads((folder / "annotations.json").read_text())
    data["images"][1]["file_name"] = "other/000001.png"
    (folder / "annotations.json").write_text(json.dumps(data))
    code, _, err = run(capsys, *localize_args(work, folder, "--draw", tmp_path / "d"))
    assert code == 2 and "would both be drawn to 000001.png" in err


@pytest.mark.parametrize(
    "error",
    [
        KeyError("a bug"),
        TypeError("a bug"),
        ValueError("a bug deep inside NumPy"),
        RuntimeError("x"),
    ],
)
def test_a_bug_shows_its_traceback_instead_of_a_bad_input_message(monkeypatch, error):
    """Only the package's own bad-input errors and OSError become status 2; anything else
    is a bug, and main lets it through with its traceback."""
    import overfeat_scratch.cli as cli

    def broken(args):
        raise error

    monkeypatch.setattr(cli, "cmd_summary", broken)
    with pytest.raises(type(error), match=str(error)):
        cli.main(["summary", "fast"])


@pytest.mark.parametrize(
    "error",
    [InputError("wrong shape"), InputTypeError("not a number"), FileNotFoundError("no such file")],
)
def test_bad_input_is_status_2_and_one_line(monkeypatch, capsys, error):
    import overfeat_scratch.cli as cli

    def refuses(args):
        raise error

    monkeypatch.setattr(cli, "cmd_summary", refuses)
    assert cli.main(["summary", "fast"]) == 2
    assert capsys.readouterr().err == f"overfeat-scratch summary: error: {error}\n"
