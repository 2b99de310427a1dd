"""Fuzzing the command line: every command's numeric flags with values in and out of
range, localize and detect on tiny scenes, and random COCO documents for the
evaluator and the scene reader.

The promises checked: no traceback escapes ``main``; every refusal is status 2 and
one line naming the flag; values in range are accepted; and no command exits 0
after printing a NaN or an infinity.
"""

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overfeat_scratch import cli
from overfeat_scratch.arguments import MAX_SEED
from overfeat_scratch.cli import MAX_CANVAS, main
from overfeat_scratch.datasets.scenes import SceneConfig, generate_scenes, write_coco


def fuzz(examples: int):
    """Few, reproducible examples without a deadline: the suite stays fast and stable."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Flag kinds: ("int", low, high), ("num", low, high, low_open), ("factors",), ("plot",).
POSITIVE = ("int", 1, None)
COUNT = ("int", 0, None)
SEED = ("int", 0, MAX_SEED)
MEMORY = ("num", 0, None, True)
PROBABILITY = ("num", 0, 1, False)
SCORE = ("num", 0, None, False)
MERGE = {
    "--top-classes": POSITIVE,
    "--threshold": ("num", None, None, False),
    "--min-confidence": PROBABILITY,
    "--max-size": POSITIVE,
    "--max-memory": MEMORY,
    "--factors": ("factors",),
}
TRAINING = {"--epochs": POSITIVE, "--seed": SEED}
SCENE_TRAINING = {
    **TRAINING,
    "--scenes": POSITIVE,
    "--test-scenes": POSITIVE,
    "--scene-seed": ("int", 0, MAX_SEED - 1),
}

# Per command: its arguments besides the fuzzed flags (``{d}``: a fresh folder), the
# flags, and the flags it must always be given.
COMMANDS = {
    "summary": (["mini"], {"--size": ("pair", POSITIVE)}, ()),
    "classify": (
        ["--weights", "{d}/w", "--model", "fast", "{d}/img.png"],
        {"--top": POSITIVE, "--max-memory": MEMORY},
        (),
    ),
    "dense": (
        ["--weights", "{d}/w", "--model", "fast", "--out", "{d}/map.npy", "{d}/img.png"],
        {"--max-size": POSITIVE, "--max-memory": MEMORY},
        (),
    ),
    "scenes": (
        ["--out", "{d}/scenes"],
        {
            "--n": POSITIVE,
            "--seed": SEED,
            "--min-digits": POSITIVE,
            "--max-digits": POSITIVE,
            "--min-size": ("int", 1, MAX_CANVAS),
            "--max-size": ("int", 1, MAX_CANVAS),
        },
        ("--n", "--seed"),
    ),
    "train": (
        ["--out", "{d}/run"],
        {**TRAINING, "--batch-size": POSITIVE, "--limit": POSITIVE},
        (),
    ),
    "evaluate": ([], {"--limit": POSITIVE, "--plot": ("plot",)}, ()),
    "train-regressor": (["--out", "{d}/run"], {**SCENE_TRAINING, "--per-scale": POSITIVE}, ()),
    "train-detector": (["--out", "{d}/run"], SCENE_TRAINING, ()),
    "localize": (["{d}/in"], {**MERGE, "--top": POSITIVE}, ()),
    "detect": (
        ["{d}/in"],
        {
            **MERGE,
            "--draw-min-score": SCORE,
            "--nms-iou": PROBABILITY,
            "--min-score": SCORE,
            "--show": COUNT,
        },
        (),
    ),
    "evaluate-detections": (["{d}/gt.json", "{d}/preds.json"], {"--plot": ("plot",)}, ()),
    "demo": (["--out", "{d}/demo"], {"--repeats": POSITIVE, "--seed": SEED}, ()),
}

JUNK = ["", "x", "1.5.2", "0x10", "1e", "--"]


def number_text(value: float) -> str:
    return repr(float(value))


@st.composite
def flag_values(draw, kind):
    """``(text, in range)`` for a flag of ``kind``."""
    if kind[0] == "int":
        _, low, high = kind
        choices = [
            st.integers(low, high if high is not None else low + 10**6).map(
                lambda v: (str(v), True)
            )
        ]
        choices.append(st.integers(low - 10**6, low - 1).map(lambda v: (str(v), False)))
        if high is not None:
            choices.append(st.integers(high + 1, high + 10**6).map(lambda v: (str(v), False)))
        choices.append(st.sampled_from(JUNK + ["2.0", "nan"]).map(lambda v: (v, False)))
        return draw(st.one_of(choices))
    if kind[0] == "num":
        _, low, high, low_open = kind
        lo = -1e6 if low is None else low
        hi = 1e6 if high is None else high
        inside = st.floats(lo, hi, allow_nan=False, exclude_min=low_open)
        choices = [inside.map(lambda v: (number_text(v), True))]
        step = st.floats(1e-3, 1e6)
        if low is not None:
            choices.append(step.map(lambda s: (number_text(low - s), False)))
        if high is not None:
            choices.append(step.map(lambda s: (number_text(high + s), False)))
        bad = st.sampled_from(JUNK + ["nan", "inf", "-inf", "NaN", "1e999"])
        choices.append(bad.map(lambda v: (v, False)))
        return draw(st.one_of(choices))
    if kind[0] == "pair":  # two values after the flag, as separate arguments
        first, second = draw(flag_values(kind[1])), draw(flag_values(kind[1]))
        return (first[0], second[0]), first[1] and second[1]
    if kind[0] == "factors":
        good = st.lists(st.floats(0.01, 4.0), min_size=1, max_size=3)
        bad = st.lists(st.sampled_from(["0", "-1", "4.5", "nan", "x", ""]), min_size=1, max_size=2)
        return draw(
            st.one_of(
                good.map(lambda fs: (",".join(number_text(f) for f in fs), True)),
                bad.map(lambda vs: (",".join(vs), False)),
            )
        )
    name = draw(st.sampled_from(["plot.png", "plot.PNG", "plot.jpg", "plot", "plot.png.txt"]))
    return "{d}/" + name, name.lower().endswith(".png")


def scenes_relations_hold(chosen: dict) -> bool:
    """The scenes command's checks between flags, with its defaults for those not given."""

    def get(flag, default):
        text, _ = chosen.get(flag, (str(default), True))
        return int(text)

    min_size, max_size = get("--min-size", 96), get("--max-size", 192)
    min_digits, max_digits = get("--min-digits", 1), get("--max-digits", 5)
    return min_size <= max_size and min_digits <= max_digits and min_size >= 20


@st.composite
def command_lines(draw):
    """``(command, argv template, {flag: (text, in range)})``."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    fixed, flags, required = COMMANDS[command]
    chosen = {}
    for flag, kind in flags.items():
        if flag in required or draw(st.booleans()):
            chosen[flag] = draw(flag_values(kind))
    return command, fixed, chosen


def stub_the_work(monkeypatch):
    """Every command's work replaced by a stub that records it was reached."""
    reached = []
    for name in dir(cli):
        if name.startswith("cmd_"):
            monkeypatch.setattr(cli, name, lambda args, name=name: reached.append(name) or 0)
    return reached


@fuzz(60)
@given(line=command_lines())
def test_every_flag_is_checked_before_the_work(monkeypatch, capsys, line):
    command, fixed, chosen = line
    reached = stub_the_work(monkeypatch)
    with tempfile.TemporaryDirectory() as folder:
        argv = [command] + [arg.format(d=folder) for arg in fixed]
        for flag, (text, _) in chosen.items():
            if isinstance(text, tuple):
                argv += [flag, *text]
            else:
                argv.append(f"{flag}={text.format(d=folder)}")
        code = main(argv)
    out, err = capsys.readouterr()
    bad = [flag for flag, (_, ok) in chosen.items() if not ok]
    valid = not bad and (command != "scenes" or scenes_relations_hold(chosen))
    if valid:
        assert code == 0 and len(reached) == 1, err
    else:
        assert code == 2 and not reached
        assert len(err.splitlines()) == 1 and err.startswith(f"overfeat-scratch {command}: error:")
        if len(bad) == 1:
            assert bad[0] in err


# --------------------------------------------------------------------------------------
# Real runs on tiny inputs

NON_FINITE = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small scene folder and untrained localizers: one sound, one whose weights are
    finite but overflow float32 on any scene."""
    from overfeat_scratch.detect.detection import detector_from_classifier
    from overfeat_scratch.detect.localize import build_regressor, input_record
    from overfeat_scratch.nn.networks import build_network
    from overfeat_scratch.nn.train import save_checkpoint

    def localizer_checkpoint(path, classifier):
        meta = {"objective": "box-regression", "epoch": 0, **input_record(True, (1.0,))}
        save_checkpoint(path, build_regressor(seed=1), None, meta, {"classifier": classifier})

    root = tmp_path_factory.mktemp("fuzz")
    config = SceneConfig(min_size=40, max_size=48, max_digit_height=36, max_digits=2)
    write_coco(root / "scenes", generate_scenes(1, 3, "test", config))
    detector = detector_from_classifier(build_network("mini", seed=0))
    localizer_checkpoint(root / "sound.npz", detector)
    for layer in detector:
        for key in layer.params:
            layer.params[key][...] = 3e38
    localizer_checkpoint(root / "overflow.npz", detector)
    return root


def check_outcome(code: int, out: str) -> None:
    assert code in (0, 2)
    if code == 0:
        assert not NON_FINITE.search(out), out


@fuzz(12)
@given(data=st.data())
def test_localize_and_detect_never_report_non_finite_numbers(tiny, capsys, data):
    command = data.draw(st.sampled_from(["localize", "detect"]))
    weights = data.draw(st.sampled_from(["sound", "overflow"]))
    _, flags, _ = COMMANDS[command]
    argv = [command, "--checkpoint", str(tiny / f"{weights}.npz"), str(tiny / "scenes")]
    valid = True
    for flag in data.draw(st.lists(st.sampled_from(sorted(flags)), max_size=4, unique=True)):
        if flag == "--factors":  # small scales keep the dense evaluations short
            factors = data.draw(st.lists(st.floats(0.05, 1.5), min_size=1, max_size=2))
            text = ",".join(number_text(f) for f in factors)
        elif flag == "--max-memory":  # a limit that refuses is tested elsewhere
            continue
        else:
            text, ok = data.draw(flag_values(flags[flag]))
            valid = valid and ok
        argv.append(f"{flag}={text}")
    with tempfile.TemporaryDirectory() as folder:
        if data.draw(st.booleans()):
            argv += ["--out", str(Path(folder) / "preds.json")]
        with np.errstate(all="ignore"):
            code = main(argv)
    out, err = capsys.readouterr()
    check_outcome(code, out)
    if valid:
        assert code == (2 if weights == "overflow" else 0), err
    if weights == "overflow" and valid:
        assert "NaN or infinite" in err, err


# --------------------------------------------------------------------------------------
# Random COCO documents, built from the schema

NUMBERS = st.one_of(
    st.integers(-5, 60),
    st.floats(-5, 60, allow_nan=False),
    st.sampled_from([0, float("nan"), float("inf"), -0.0]),
)
# Names that cannot spell a non-finite number, so that a printed table never does.
NAMES = st.sampled_from(["0", "1", "3", "7", "9", "10", "cat", "x y", ""])


ODD_VALUES = st.sampled_from([None, "1", True, [], {}])


def maybe(draw, entry: dict) -> dict:
    """``entry`` with perhaps one field dropped or given a value of the wrong type."""
    what = draw(st.sampled_from(["keep"] * 6 + ["drop", "retype"]))
    if what == "keep" or not entry:
        return entry
    key = draw(st.sampled_from(sorted(entry)))
    if what == "drop":
        return {k: v for k, v in entry.items() if k != key}
    return {**entry, key: draw(ODD_VALUES)}


@st.composite
def ground_truths(draw):
    ids = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    categories = [
        maybe(draw, {"id": cid, "name": draw(NAMES)})
        for cid in draw(st.lists(st.integers(1, 11), min_size=0, max_size=4))
    ]
    images = [
        maybe(draw, {"id": i, "file_name": f"images/{i:06d}.png", "width": 40, "height": 30})
        for i in ids
    ]
    annotations = []
    for k in range(draw(st.integers(0, 5))):
        entry = {
            "id": k + 1,
            "image_id": draw(st.integers(0, 4)),
            "category_id": draw(st.integers(0, 11)),
            "bbox": draw(st.lists(NUMBERS, min_size=3, max_size=5)),
            "iscrowd": draw(st.sampled_from([0, 0, 0, 1, 2, True])),
        }
        annotations.append(maybe(draw, entry))
    return {"images": images, "annotations": annotations, "categories": categories}


@st.composite
def results(draw):
    rows = [
        maybe(
            draw,
            {
                "image_id": draw(st.integers(0, 4)),
                "category_id": draw(st.integers(0, 11)),
                "bbox": draw(st.lists(NUMBERS, min_size=3, max_size=5)),
                "score": draw(NUMBERS),
            },
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    return rows if draw(st.booleans()) else {"annotations": rows}


@fuzz(60)
@given(gt=ground_truths(), preds=results(), as_json=st.booleans())
def test_evaluate_detections_on_random_documents(capsys, gt, preds, as_json):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "gt.json").write_text(json.dumps(gt))
        (Path(folder) / "preds.json").write_text(json.dumps(preds))
        argv = ["evaluate-detections", f"{folder}/gt.json", f"{folder}/preds.json"]
        code = main(argv + (["--json"] if as_json else []))
    out, err = capsys.readouterr()
    check_outcome(code, out)
    if code == 2:
        assert len(err.splitlines()) == 1 and ("gt.json" in err or "preds.json" in err), err


@fuzz(30)
@given(gt=ground_truths())
def test_the_scene_reader_refuses_random_documents_clearly(gt):
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "images").mkdir()
        for i in range(1, 5):
            Image.fromarray(np.zeros((30, 40), np.uint8)).save(f"{folder}/images/{i:06d}.png")
        (Path(folder) / "annotations.json").write_text(json.dumps(gt))
        try:
            items, classes, truths = cli.read_inputs(folder)
        except ValueError as error:
            assert "annotations.json" in str(error)
            return
    assert items and len(truths) == len(items)
    assert set(classes.values()) <= set(range(10))
    assert len(set(classes.values())) == len(classes)
