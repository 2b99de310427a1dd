"""The ``overfeat-scratch`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from .arguments import (
    MAX_SEED,
    Parser,
    check_output,
    count,
    integer,
    number,
    positive,
    probability,
    score,
    seed,
)
from .common.checks import InputError, check_finite
from .nn import paper

# The largest canvas side of generated scenes (a canvas is held whole in memory).
MAX_CANVAS = 4096
# The memory a command lets one dense evaluation take, in GiB, unless told otherwise
# (--max-memory): above it the command refuses before it starts, with the estimate
# (nn.dense.dense_memory) and how to bring it down.
MEMORY_LIMIT_GIB = 4.0


def cmd_summary(args) -> int:
    from .nn.networks import build_network
    from .nn.summary import format_table

    net = build_network(args.model, seed=None)
    size = None if args.size is None else tuple(args.size)
    table = format_table(net, size)
    h, w = size or (net.window(), net.window())
    print(f"{args.model} model, input {net.in_channels} x {h} x {w}")
    print(table)
    return 0


def check_demo(args) -> None:
    check_output(args.out, "--out", folder=True, overwrite=args.overwrite)


def cmd_demo(args) -> int:
    from .demo import run

    run(out=args.out, backend=args.backend, seed=args.seed, repeats=args.repeats)
    return 0


def read_names(path, count: int) -> list[str]:
    """Class names, one per line, in the network's output order."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != count:
        raise InputError(f"names file {path}: expected {count} class names, found {len(names)}")
    return names


def parse_scales(text: str) -> list:
    """``"245,281x317"``: a short side or an exact ``HxW`` size per comma-separated entry."""
    scales = []
    for value in text.split(","):
        try:
            sizes = [int(part) for part in value.split("x")]
        except ValueError:
            sizes = []
        if len(sizes) not in (1, 2) or min(sizes) < 1:
            raise InputError(f"--scales: expected sizes like 245 or 281x317, got {value!r}")
        scales.append(sizes[0] if len(sizes) == 1 else tuple(sizes))
    return scales


def check_classify(args) -> None:
    if args.scales:
        parse_scales(args.scales)


def multiscale_memory(net, image_shape, scales, fine: bool) -> int:
    """The largest :func:`~.dense.dense_memory` over the sizes ``scales`` resize to."""
    from .nn.dense import dense_memory

    h, w = image_shape[:2]
    peak = 0
    for scale in scales:
        if isinstance(scale, tuple):
            size = scale
        else:
            short = min(h, w)
            size = (max(1, round(h * scale / short)), max(1, round(w * scale / short)))
        if min(size) >= net.window():
            peak = max(peak, dense_memory(net, *size, fine=fine))
    return peak


def cmd_classify(args) -> int:
    from .nn.dense import check_memory, classify_multiscale, softmax
    from .nn.weights import load_released_weights, preprocess
    from .ops.image import center_crop, load_image, resize_short_side

    net = load_released_weights(args.weights, args.model, backend=args.backend).eval()
    image = load_image(args.image)
    names = read_names(args.names, paper.NUM_CLASSES) if args.names else None
    if args.multiscale:
        scales = parse_scales(args.scales) if args.scales else paper.SCALES
        which = args.scales or "of the paper"
        check_memory(
            multiscale_memory(net, image.shape, scales, not args.coarse),
            args.max_memory,
            f"classify: the {args.model} model on a {image.shape[0]}x{image.shape[1]} image "
            f"at the scales {which}",
            "give fewer or smaller --scales",
        )
        result = classify_multiscale(
            net, image, scales, flips=not args.no_flip, fine=not args.coarse, top=args.top
        )
        probabilities, top = result.probabilities, result.top
        how = f"{len(scales)} scale(s), {'with' if not args.no_flip else 'without'} flips"
    else:
        window = net.window()
        crop = center_crop(resize_short_side(image, window), window, window)
        probabilities = softmax(net.backend.to_numpy(net.forward(preprocess(crop))))[0, :, 0, 0]
        top = np.argsort(-probabilities, kind="stable")[: args.top]
        how = f"one centre {window}x{window} window"
    check_finite(probabilities, f"classify: {args.image}: the class probabilities")
    print(f"{args.image}: {args.model} model, {how}")
    for rank, index in enumerate(top, start=1):
        label = f"  {names[index]}" if names else ""
        print(f"{rank:>2}  class {int(index):>4}  p={probabilities[index]:.4f}{label}")
    return 0


def check_dense(args) -> None:
    check_output(
        args.out,
        "--out",
        folder=False,
        overwrite=args.overwrite,
        inputs=[args.weights, args.image],
        suffix=".npy",
    )


def downscale_factor(height: int, width: int, max_size: int | None) -> float:
    """The factor that brings the longer side down to ``max_size`` (1: no change)."""
    if max_size is None or max(height, width) <= max_size:
        return 1.0
    return max_size / max(height, width)


def cmd_dense(args) -> int:
    from .common.fileio import atomic_write
    from .nn.dense import check_memory, dense_evaluate, dense_memory
    from .nn.weights import load_released_weights, preprocess
    from .ops.image import load_image, resize_bilinear

    net = load_released_weights(args.weights, args.model, backend=args.backend).eval()
    image = load_image(args.image)
    original = image.shape[:2]
    factor = downscale_factor(*original, args.max_size)
    if factor < 1:
        size = (max(1, round(original[0] * factor)), max(1, round(original[1] * factor)))
        image = resize_bilinear(image, *size)
    net.check_size(*image.shape[:2])
    check_memory(
        dense_memory(net, *image.shape[:2], fine=args.fine),
        args.max_memory,
        f"dense: the {args.model} model on a {image.shape[0]}x{image.shape[1]} image",
        "downscale it with --max-size",
    )
    result = dense_evaluate(net, preprocess(image), fine=args.fine)
    scores = result.scores[0]
    check_finite(scores, f"dense: {args.image}: the class scores")
    atomic_write(args.out, lambda f: np.save(f, scores, allow_pickle=False))
    resized = f" (downscaled from {original[0]}x{original[1]})" if factor < 1 else ""
    print(
        f"{args.out}: class scores {scores.shape} (C, H', W') for a {image.shape[0]}x"
        f"{image.shape[1]} image{resized}; output (i, j) is the window at x = "
        f"{result.stride}*j, y = {result.stride}*i, {result.window}x{result.window} pixels"
    )
    return 0


def check_scenes(args) -> None:
    from .datasets.scenes import TRAINING_RANGES, SceneConfig

    for low, high in (("min_size", "max_size"), ("min_digits", "max_digits")):
        if getattr(args, low) > getattr(args, high):
            flags = [f"--{name.replace('_', '-')}" for name in (low, high)]
            raise InputError(
                f"{flags[0]} {getattr(args, low)} is larger than {flags[1]} "
                f"{getattr(args, high)}; expected {flags[0]} <= {flags[1]}"
            )
    smallest = (TRAINING_RANGES if args.varied else SceneConfig()).min_digit_height
    if args.min_size < smallest:
        raise InputError(
            f"--min-size {args.min_size}: every canvas must hold the smallest digit, "
            f"{smallest} pixels tall; expected --min-size >= {smallest}"
        )
    check_output(args.out, "--out", folder=True, overwrite=args.overwrite)


def cmd_scenes(args) -> int:
    import dataclasses

    from .datasets.mnist import data_checksum
    from .datasets.scenes import (
        TRAINING_RANGES,
        SceneConfig,
        generate_scenes,
        scene_config_record,
        write_coco,
    )

    base = TRAINING_RANGES if args.varied else SceneConfig()
    config = dataclasses.replace(
        base,
        min_size=args.min_size,
        max_size=args.max_size,
        min_digits=args.min_digits,
        max_digits=args.max_digits,
        max_digit_height=min(base.max_digit_height, args.min_size),
    )
    if args.no_clutter:
        config = config.without_clutter()
    t0 = time.perf_counter()
    scenes = generate_scenes(args.n, args.seed, args.split, config)
    info = {
        "description": "MNIST digit scenes made by overfeat-scratch",
        "split": args.split,
        "seed": args.seed,
        "mnist": data_checksum(args.split),
        "config": scene_config_record(config),
    }
    path = write_coco(args.out, scenes, info)
    seconds = time.perf_counter() - t0
    labels = [a["label"] for _, anns in scenes for a in anns]
    heights = [a["box"][3] - a["box"][1] for _, anns in scenes for a in anns]
    sides = [side for image, _ in scenes for side in image.shape]
    print(f"{path}: {len(scenes)} scenes of MNIST {args.split} digits in {seconds:.1f} s")
    if labels:
        print(
            f"{len(labels)} digits, {min(heights)}-{max(heights)} px tall, "
            f"on canvases with sides {min(sides)}-{max(sides)} px"
        )
        print("digits per class: " + " ".join(f"{d}:{labels.count(d)}" for d in range(10)))
    return 0


def config_changes(args) -> dict:
    """The config fields a training command's flags override."""
    changes = {"epochs": args.epochs} if args.epochs is not None else {}
    if getattr(args, "batch_size", None) is not None:
        changes["batch_size"] = args.batch_size
    if args.seed is not None:
        changes["seed"] = args.seed
    return changes


def check_run(args, inputs=()) -> None:
    """A training command's ``--out`` folder, before anything is read or trained.

    With ``--resume``, the folder of the checkpoint resumed may be written again
    (that is how a run continues); any other folder must be empty or new, unless
    ``--overwrite``. No run writes into, over or around an input.
    """
    from pathlib import Path

    resumed = False
    if args.resume:
        if not Path(args.resume).is_file():
            raise InputError(f"--resume {args.resume}: no such checkpoint file")
        resumed = Path(args.resume).resolve().parent == Path(args.out).resolve()
    check_output(
        args.out,
        "--out",
        folder=True,
        overwrite=args.overwrite or resumed,
        inputs=[path for path in (*inputs, None if resumed else args.resume) if path],
    )


def resume_run(path, changes: dict, backend, expected=None, objective="classification"):
    """``(net, meta, config, resume)`` to continue a run from its checkpoint.

    Refuses a run that has nothing left to do: the checkpoint already at (or past)
    the epochs asked for.
    """
    from .nn.train import config_from_meta, load_checkpoint, resume_state

    net, meta, velocity = load_checkpoint(path, expected, backend=backend)
    if meta.get("objective", "classification") != objective:
        raise InputError(
            f"--resume {path}: a {meta.get('objective', 'classification')} checkpoint, "
            f"expected {objective}"
        )
    config = config_from_meta(meta, path, **changes)
    if config.epochs <= meta["epoch"]:
        asked = (
            f"--epochs {config.epochs}"
            if "epochs" in changes
            else f"its config's {config.epochs} epochs"
        )
        raise InputError(
            f"--resume {path}: the checkpoint is already at epoch {meta['epoch']}, so "
            f"{asked} leaves nothing to train; expected --epochs above {meta['epoch']}"
        )
    return net, meta, config, resume_state(meta, velocity, path)


def check_train(args) -> None:
    if args.model != "mini":
        raise InputError(
            f"--model {args.model}: only the mini digit network trains here; the paper's "
            "networks need ImageNet, which this package does not fetch"
        )
    check_run(args)


def cmd_train(args) -> int:
    from dataclasses import replace

    from .datasets.digits import mnist_windows
    from .datasets.mnist import data_checksum, load_mnist
    from .nn.networks import build_network
    from .nn.train import CONFIGS, train

    changes = config_changes(args)
    if args.resume:
        net, _, config, resume = resume_run(args.resume, changes, args.backend, "mini")
    else:
        config = replace(CONFIGS["mini"], **changes)
        net = build_network("mini", seed=config.seed, backend=args.backend)
        resume = None
    images, labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    train_data = (mnist_windows(images), labels.astype(np.int64))
    test_data = (mnist_windows(test_images), test_labels.astype(np.int64))
    print(
        f"training mini on {len(images)} MNIST digits, {config.epochs} epochs, "
        f"backend {args.backend}, writing {args.out}"
    )
    result = train(
        net,
        config,
        train_data,
        test_data,
        out_dir=args.out,
        resume=resume,
        data_checksum=data_checksum("train"),
        progress=not args.quiet,
    )
    last = result.history[-1]
    print(
        f"done: test error {100 * last['test_error']:.2f}% after epoch {last['epoch']}; "
        f"checkpoint {result.checkpoint}, log {args.out}/log.csv, curves {args.out}/curves.png"
    )
    return 0


def check_plot(args, inputs) -> None:
    """``--plot``, if given, names a new PNG file that overwrites none of ``inputs``."""
    if args.plot:
        check_output(
            args.plot,
            "--plot",
            folder=False,
            overwrite=args.overwrite,
            inputs=inputs,
            suffix=".png",
        )


def check_evaluate(args) -> None:
    check_plot(args, [args.checkpoint])


def cmd_evaluate(args) -> int:
    import json

    from .datasets.digits import mnist_windows, shipped_checkpoint
    from .datasets.mnist import load_mnist
    from .nn.train import evaluate, load_checkpoint

    path = args.checkpoint or shipped_checkpoint()
    net, meta, _ = load_checkpoint(path, "mini", backend=args.backend)
    images, labels = load_mnist("test")
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    labels = labels.astype(np.int64)
    error, predictions = evaluate(net, mnist_windows(images), labels)
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    if args.plot:
        from .common.plots import save_confusion

        save_confusion(confusion, args.plot, f"mini on MNIST test: {100 * error:.2f}% error")
    if args.json:
        print(
            json.dumps(
                {
                    "test_error": error,
                    "n": int(len(labels)),
                    "errors": int(np.sum(predictions != labels)),
                    "checkpoint": str(path),
                    "epoch": meta.get("epoch"),
                    "confusion": confusion.tolist(),
                }
            )
        )
    else:
        print(
            f"{path}: test error {100 * error:.2f}% ({int(np.sum(predictions != labels))} "
            f"of {len(labels)} MNIST test digits)"
        )
        print("confusion (rows: true digit, columns: predicted):")
        for digit, row in enumerate(confusion):
            print(f"  {digit}: " + " ".join(f"{v:5d}" for v in row))
        if args.plot:
            print(f"confusion matrix plot: {args.plot}")
    return 0


def load_classifier(path, backend, default="mini"):
    """A classifier (mini or mini-detector) from a checkpoint, or the one inside a
    regressor checkpoint. Default: the shipped mini (``default="mini"``) or the
    detector inside the shipped localizer (``default="detector"``)."""
    from .datasets.digits import shipped_checkpoint
    from .detect.localize import shipped_regressor
    from .nn.train import load_checkpoint, load_extra_network, read_checkpoint

    if path is None:
        path = shipped_checkpoint() if default == "mini" else shipped_regressor()
    meta = read_checkpoint(path)[0]
    if meta.get("objective") == "box-regression":
        net, _ = load_extra_network(path, "classifier", backend=backend)
    else:
        net, meta, _ = load_checkpoint(path, backend=backend)
    if net.name not in ("mini", "mini-detector"):
        raise InputError(f"checkpoint {path}: holds {net.name!r}, expected mini or mini-detector")
    return net.eval(), path


def classifier_input(path) -> tuple[bool, tuple]:
    """``(normalize, factors)`` that the classifier of checkpoint ``path`` was trained
    with (a regressor checkpoint records its classifier's)."""
    from .detect.localize import input_settings
    from .nn.train import read_checkpoint

    return input_settings(read_checkpoint(path)[0], path)


def training_scenes(args):
    """The scene config of a training command: the varied ranges, or ``--plain-scenes``."""
    from .datasets.scenes import TRAINING_RANGES, SceneConfig

    return SceneConfig() if args.plain_scenes else TRAINING_RANGES


def scene_datasets(args, make, what: str, scene_config=None):
    """``(train, test)`` data made by ``make(scenes, seed)`` from ``args.scenes`` training
    scenes (MNIST train digits, seed ``args.scene_seed``) and ``args.test_scenes`` test
    scenes (MNIST test digits, the next seed)."""
    from .datasets.scenes import generate_scenes

    t0 = time.perf_counter()
    seed = args.scene_seed
    train = make(generate_scenes(args.scenes, seed, "train", scene_config), seed)
    test = make(generate_scenes(args.test_scenes, seed + 1, "test", scene_config), seed + 1)
    print(
        f"{len(train[0])} training and {len(test[0])} test {what} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return train, test


def check_scene_training(args) -> None:
    if args.resume and args.checkpoint:
        raise InputError(
            f"--checkpoint {args.checkpoint} with --resume {args.resume}: a resumed run "
            "reads its networks from the checkpoint it resumes; expected one of the two"
        )
    check_run(args, [args.checkpoint])


# Where a scene-trained run records each scene flag (under "scenes" in its metadata).
SCENE_RECORD = {
    "scenes": "train",
    "test_scenes": "test",
    "scene_seed": "seed",
    "per_scale": "per_scale",
}


def settle_scene_flags(args, meta: dict | None = None) -> None:
    """Fill in the scene flags left out: a new run's defaults, or, resuming the run of
    ``meta``, the values it recorded. A resumed run goes on with the scenes it started
    with, so a flag given that says otherwise is refused."""
    recorded = (meta or {}).get("scenes", {})
    for flag, default in args.scene_defaults.items():
        given = getattr(args, flag)
        value = default if given is None else given
        if meta is not None:
            value = recorded.get(SCENE_RECORD[flag], default)
            check_resumed_flag(args, "--" + flag.replace("_", "-"), given, value)
        setattr(args, flag, value)


def check_resumed_flag(args, option: str, given, recorded) -> None:
    """Refuse, on ``--resume``, an ``option`` whose ``given`` value (None: left out; True:
    a switch given) differs from the run's ``recorded`` one."""
    if given is None or given == recorded:
        return
    if isinstance(recorded, bool):
        started = f"{'with' if recorded else 'without'} {option}"
    else:
        started = f"with {option} {recorded}"
    raise InputError(
        f"--resume {args.resume}: the run started {started}, and a resumed run goes on as "
        f"it started; got {option}{'' if given is True else f' {given}'}; expected "
        f"{option} left out"
    )


@dataclass
class SceneRun:
    """What a run trained on scenes (train-regressor, train-detector) starts from: the
    network, its config, the state to resume (or None), the classifier checkpoint it
    builds on, its input (normalised or raw, at which scales) and its scenes."""

    net: object
    config: object
    resume: dict | None
    source: str
    normalize: bool
    factors: tuple
    scene_config: object


def resume_scene_run(args, expected, objective: str) -> tuple[SceneRun, dict]:
    """``(run, the checkpoint's record)`` to continue ``--resume``: everything as the
    run started it."""
    from .datasets.scenes import SceneConfig, scene_config_from_record
    from .detect.localize import input_settings, single_digit_config

    net, meta, config, resume = resume_run(
        args.resume, config_changes(args), args.backend, expected, objective
    )
    settle_scene_flags(args, meta)
    normalize, factors = input_settings(meta, args.resume)
    scene_config = scene_config_from_record(meta.get("scene_config"))
    plain = scene_config in (SceneConfig(), single_digit_config(SceneConfig()))
    check_resumed_flag(args, "--plain-scenes", args.plain_scenes or None, plain)
    source = meta.get("classifier_checkpoint", "?")
    return SceneRun(net, config, resume, source, normalize, factors, scene_config), meta


def train_on_scenes(
    args,
    run: SceneRun,
    objective,
    make,
    what: str,
    error: str,
    extra=None,
    scenes=None,
    networks=None,
) -> int:
    """Make the training and test data with ``make(scenes, seed)`` from the run's scenes,
    then train ``run.net`` with ``objective``; every checkpoint records the run's input,
    scenes (and ``scenes``, more about them) and classifier (and ``extra``), and stores
    ``networks`` beside the net. Prints the last test error, described by ``error``
    (``{}`` is the percentage); returns the exit status."""
    from .datasets.mnist import data_checksum
    from .datasets.scenes import scene_config_record
    from .detect.localize import input_record
    from .nn.train import train

    train_data, test_data = scene_datasets(args, make, what, run.scene_config)
    meta = {
        **input_record(run.normalize, run.factors),
        "scene_config": scene_config_record(run.scene_config),
        "classifier_checkpoint": str(run.source),
        "scenes": {
            "train": args.scenes,
            "test": args.test_scenes,
            "seed": args.scene_seed,
            **(scenes or {}),
        },
        **(extra or {}),
    }
    result = train(
        run.net,
        run.config,
        train_data,
        test_data,
        out_dir=args.out,
        resume=run.resume,
        data_checksum=data_checksum("train"),
        progress=not args.quiet,
        objective=objective,
        extra_networks=networks,
        meta=meta,
    )
    last = result.history[-1]
    percent = f"{100 * last['test_error']:.2f}%"
    print(
        f"done: {error.format(percent)} after epoch "
        f"{last['epoch']}; checkpoint {result.checkpoint}, log {args.out}/log.csv"
    )
    return 0


# How train-regressor's first line names the loss's units (localize.EDGE_ERRORS).
ERRORS_IN = {"box": "against the true box", "window": "in windows"}


def cmd_train_regressor(args) -> int:
    from .detect.localize import (
        REGRESSOR_CONFIG,
        BoxRegression,
        build_regressor,
        regression_examples,
        single_digit_config,
    )
    from .nn.train import load_extra_network

    if args.resume:
        run, meta = resume_scene_run(args, None, BoxRegression.name)
        classifier, _ = load_extra_network(args.resume, "classifier", backend=args.backend)
        classifier.eval()
        shared = run.net.name == "mini-regressor-shared"
        # Checkpoints from before the choice measured edges in windows.
        edge_errors = meta.get("edge_errors", "window")
        check_resumed_flag(args, "--shared", args.shared or None, shared)
        check_resumed_flag(args, "--edge-errors", args.edge_errors, edge_errors)
    else:
        settle_scene_flags(args)
        edge_errors = "box" if args.edge_errors is None else args.edge_errors
        classifier, source = load_classifier(args.checkpoint, args.backend, "detector")
        config = replace(REGRESSOR_CONFIG, **config_changes(args))
        shared = args.shared
        regressor = build_regressor(not shared, seed=config.seed, backend=args.backend)
        scene_config = single_digit_config(training_scenes(args))
        run = SceneRun(regressor, config, None, source, *classifier_input(source), scene_config)
    kind = "shared" if shared else "class-specific"
    print(
        f"regressor ({kind}, edge errors {ERRORS_IN[edge_errors]}) on the pooled features of "
        f"{run.source}: windows from "
        f"{args.scenes} single-digit training scenes (seed {args.scene_seed}), "
        f"{run.config.epochs} epochs, writing {args.out}"
    )
    return train_on_scenes(
        args,
        run,
        BoxRegression(class_specific=not shared, edge_errors=edge_errors),
        lambda scenes, seed: regression_examples(
            classifier,
            scenes,
            factors=run.factors,
            per_scale=args.per_scale,
            seed=seed,
            progress=not args.quiet,
            normalize=run.normalize,
        ),
        "windows",
        "{} of test windows have IoU < 0.5",
        scenes={"per_scale": args.per_scale},
        extra={"edge_errors": edge_errors},
        networks={"classifier": classifier},
    )


def localize_settings(args):
    from .detect.localize import MergeSettings
    from .detect.pyramid import SCALE_FACTORS, SCALE_SETS

    if args.factors:
        try:
            factors = tuple(float(v) for v in args.factors.split(","))
        except ValueError:
            raise InputError(
                f"--factors: expected numbers like 1,0.5, got {args.factors!r}"
            ) from None
        if not all(0 < f <= 4 for f in factors):
            raise InputError(f"--factors: expected factors in (0, 4], got {args.factors!r}")
    elif args.scales is not None:
        factors = tuple(SCALE_FACTORS[i] for i in SCALE_SETS[args.scales])
    else:
        factors = None  # the localizer's own (Localizer.factors)
    settings = MergeSettings(
        top_k=args.top_classes,
        threshold=args.threshold,
        score=args.score,
        average=args.average,
        min_confidence=args.min_confidence,
    )
    return factors, settings


def read_inputs(path):
    """``(items, classes, truths)``: ``[(image_id, name, pixels)]`` from a COCO scene
    folder (its categories and annotations too) or one image file."""
    from pathlib import Path

    from .datasets.coco import ANNOTATIONS_FILE
    from .datasets.scenes import read_coco
    from .ops.image import load_image

    path = Path(path)
    if path.is_dir():
        if not (path / ANNOTATIONS_FILE).is_file():
            raise InputError(
                f"{path}: a folder must be a COCO scene folder with {ANNOTATIONS_FILE}"
            )
        images, annotations, classes = read_coco(path)
        if not images:
            raise InputError(
                f"{path / ANNOTATIONS_FILE}: lists no images; expected at least one under 'images'"
            )
        return images, classes, annotations
    rgb = load_image(path)
    grey = np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    pixels = np.clip(grey, 0, 255).astype(np.uint8)
    return [(1, path.name, pixels)], {digit + 1: digit for digit in range(10)}, None


def write_results(path, rows, label_to_id) -> int:
    """Write ``rows`` as COCO results; returns how many were written.

    Only digits that ``label_to_id`` gives a category id are written: a folder
    that lists some of the digits has no id for the others, and a result of a
    category that is not in the ground truth would only be refused by the evaluator.
    """
    from .datasets.coco import write_results as write_coco_results
    from .detect.detection import coco_detections

    kept = [(image_id, pred) for image_id, pred in rows if pred["label"] in label_to_id]
    write_coco_results(path, coco_detections(kept, label_to_id, digits=2))
    return len(kept)


def draw_predictions(folder, name, pixels, predictions, truth=None) -> None:
    """``FOLDER/<image stem>.png``: the image, its predicted boxes and the true ones."""
    from pathlib import Path

    from .common.plots import draw_boxes

    draw_boxes(
        pixels,
        [p["box"] for p in predictions],
        [f"{p['label']} ({p['score']:.1f})" for p in predictions],
        Path(folder) / f"{Path(name).stem}.png",
        truths=None if truth is None else [a["box"] for a in truth],
    )


def finish_outputs(args, rows, label_to_id, what: str) -> None:
    """Write ``--out`` (COCO results) and say where ``--draw`` put the drawings."""
    if args.out:
        written = write_results(args.out, rows, label_to_id)
        print(f"{args.out}: {written} {what} in the COCO format")
        if written < len(rows):
            missing = sorted({pred["label"] for _, pred in rows} - set(label_to_id))
            print(
                f"  {len(rows) - written} {what} of digits {', '.join(map(str, missing))} left "
                "out: the folder lists no category for them"
            )
    if args.draw:
        print(f"drawings in {args.draw}/")


def check_image_outputs(args) -> None:
    """``--out`` and ``--draw`` of localize and detect, and their merge flags."""
    inputs = [args.input, args.checkpoint]
    if args.out:
        check_output(args.out, "--out", folder=False, overwrite=args.overwrite, inputs=inputs)
    if args.draw:
        check_output(args.draw, "--draw", folder=True, overwrite=args.overwrite, inputs=inputs)
    localize_settings(args)


def check_drawings(args, items) -> None:
    """Refuse two images that would be drawn to the same ``--draw`` file."""
    from pathlib import Path

    if not args.draw:
        return
    seen = {}
    for _, name, _ in items:
        stem = Path(name).stem
        if stem in seen:
            raise InputError(
                f"--draw {args.draw}: images {seen[stem]!r} and {name!r} would both be drawn "
                f"to {stem}.png; draw them from folders whose file names differ"
            )
        seen[stem] = name


def localize_memory(localizer, height, width, factors, fine: bool, top_k: int) -> int:
    """An estimate, in bytes, of the peak memory of localizing one ``height x width`` image.

    The largest scale's dense evaluation (:func:`~.dense.dense_memory`, the classifier
    and the regressor on the same features), plus what is kept from every scale:
    its class probabilities, boxes and windows (float64), and the candidate boxes
    of its ``top_k`` classes.
    """
    from .detect.localize import head_layers
    from .detect.pyramid import scaled_size, scene_border
    from .nn.dense import dense_memory, offset_plan

    classifier = localizer.classifier
    window = classifier.window()
    pad = scene_border(window)
    heads = [head_layers(classifier), localizer.regressor.layers]
    classes = classifier.output_shape((classifier.in_channels, window, window))[0]
    boxes = next(
        layer.out_channels
        for layer in reversed(localizer.regressor.layers)
        if hasattr(layer, "out_channels")
    )
    # Per window: probabilities (float32), boxes as outputs and in pixels and the window
    # (float64), and per top class a candidate of 11 float64 values, concatenated once.
    per_window = 4 * classes + 16 * boxes + 32 + 2 * 11 * 8 * top_k
    peak, kept = 0, 0
    for factor in factors:
        h, w = (side + 2 * pad for side in scaled_size(height, width, factor))
        if min(h, w) < window:
            continue
        peak = max(peak, dense_memory(classifier, h, w, fine, heads))
        if fine:
            windows = int(np.prod(offset_plan(classifier, h, w)["fine"]))
        else:
            windows = int(np.prod(classifier.output_shape((classifier.in_channels, h, w))[1:]))
        kept += windows * per_window
    return peak + kept


def check_localize_memory(args, localizer, items, factors, top_k: int) -> list:
    """Per image, the scale factors to run it at (``--max-size`` applied), after refusing
    (before any work) an image whose estimated memory is above ``--max-memory``."""
    from .nn.dense import check_memory

    factors = localizer.factors if factors is None else factors
    per_image = []
    for _, name, pixels in items:
        shrink = downscale_factor(*pixels.shape, args.max_size)
        scaled = tuple(f * shrink for f in factors)
        check_memory(
            localize_memory(localizer, *pixels.shape, scaled, not args.coarse, top_k),
            args.max_memory,
            f"{args.command}: {name} ({pixels.shape[0]}x{pixels.shape[1]}) at "
            f"{len(scaled)} scale(s)",
            "downscale it with --max-size, or use fewer --scales",
        )
        per_image.append(scaled)
    return per_image


def check_result(result, name: str) -> None:
    """Refuse to report a localization whose boxes or scores are not finite."""
    check_finite(result.confidences, f"{name}: the box scores")
    check_finite(result.boxes, f"{name}: the boxes")


def cmd_localize(args) -> int:
    from .detect.localize import Localizer, localization_error, localize

    localizer = Localizer.from_checkpoint(
        args.checkpoint, backend=args.backend, flatten=not args.keep_shading
    )
    factors, settings = localize_settings(args)
    items, scales, truths, label_to_id = open_inputs(args, localizer, factors, settings.top_k)
    rows, predictions = [], []
    for k, (image_id, name, pixels) in enumerate(items):
        result = localize(localizer, pixels, scales[k], settings, fine=not args.coarse)
        check_result(result, name)
        top = result.top(args.top)
        predictions.append(top)
        print(
            f"{name} (id {image_id}): {len(result.candidates.boxes)} boxes merged into "
            f"{len(result.boxes)}"
        )
        for rank, pred in enumerate(top, start=1):
            print(
                f"  {rank}. digit {pred['label']}  confidence {pred['score']:.2f} "
                f"({pred['windows']} windows)  {box_text(pred)}"
            )
        rows.extend((image_id, pred) for pred in top)
        if args.draw:
            draw_predictions(args.draw, name, pixels, top, truths[k] if truths else None)
    finish_outputs(args, rows, label_to_id, "results")
    if truths is not None and truths and all(len(t) == 1 for t in truths):
        ks = sorted({1, args.top})
        error = localization_error(predictions, [t[0] for t in truths], top=tuple(ks))
        scores = ", ".join(f"top-{k} {100 * error[f'top{k}']:.1f}%" for k in ks)
        print(f"localization error on {error['n']} single-digit scenes: {scores}")
    return 0


def cmd_train_detector(args) -> int:
    from .detect.detection import (
        DETECTOR_CONFIG,
        MinedDetection,
        detection_patches,
        detector_from_classifier,
    )
    from .detect.pyramid import SCALE_FACTORS, WIDE_SCALE_FACTORS

    if args.resume:
        run, meta = resume_scene_run(args, "mini-detector", MinedDetection.name)
        mining = meta.get("mining", True)
        check_resumed_flag(args, "--no-mining", args.no_mining or None, not mining)
    else:
        settle_scene_flags(args)
        classifier, source = load_classifier(args.checkpoint, args.backend)
        if classifier.name != "mini":
            raise InputError(
                f"train-detector: starts from a mini checkpoint, got {classifier.name}"
            )
        config = replace(DETECTOR_CONFIG, **config_changes(args))
        detector = detector_from_classifier(classifier, seed=config.seed)
        mining = not args.no_mining
        normalize = not args.plain_scenes
        # Varied scenes hold digits up to 96 pixels tall: they need the eight scales.
        factors = WIDE_SCALE_FACTORS if normalize else SCALE_FACTORS
        run = SceneRun(detector, config, None, source, normalize, factors, training_scenes(args))
    print(
        f"mini-detector from {run.source}: patches of {args.scenes} training scenes "
        f"(seed {args.scene_seed}), {run.config.epochs} epochs, "
        f"{'mined' if mining else 'random'} negatives, writing {args.out}"
    )
    return train_on_scenes(
        args,
        run,
        MinedDetection(mining=mining, seed=run.config.seed),
        lambda scenes, seed: detection_patches(
            scenes,
            seed=seed,
            factors=run.factors,
            progress=not args.quiet,
            normalize=run.normalize,
        ),
        "patches",
        "balanced window error {}",
        extra={"mining": mining},
    )


def detect_settings(args):
    from .detect.detection import DetectSettings

    return DetectSettings(final=args.final, nms_iou=args.nms_iou, min_score=args.min_score)


def open_inputs(args, localizer, factors, top_k):
    """``(items, scales, truths, label_to_id)`` of ``args.input``: its images, checked
    against the drawing folder and the memory limit, the scales each is evaluated at,
    its true boxes (if a scene folder) and its category ids by digit."""
    items, classes, truths = read_inputs(args.input)
    check_drawings(args, items)
    scales = check_localize_memory(args, localizer, items, factors, top_k)
    return items, scales, truths, {digit: cid for cid, digit in classes.items()}


def box_text(prediction) -> str:
    x0, y0, x1, y1 = prediction["box"]
    return f"box x {x0:.1f}-{x1:.1f}, y {y0:.1f}-{y1:.1f}"


def cmd_detect(args) -> int:
    from .detect.detection import check_detector, detect
    from .detect.localize import Localizer

    localizer = Localizer.from_checkpoint(
        args.checkpoint, backend=args.backend, flatten=not args.keep_shading
    )
    check_detector(localizer, args.checkpoint or "the shipped localizer")
    factors, merge = localize_settings(args)
    settings = detect_settings(args)
    items, scales, truths, label_to_id = open_inputs(args, localizer, factors, merge.top_k)
    rows = []
    for k, (image_id, name, pixels) in enumerate(items):
        result = detect(localizer, pixels, scales[k], merge, settings, fine=not args.coarse)
        check_result(result, name)
        found = result.top(len(result.boxes))
        if not args.quiet:
            print(f"{name} (id {image_id}): {len(found)} detections")
            for pred in found[: args.show]:
                print(f"  digit {pred['label']}  score {pred['score']:.2f}  {box_text(pred)}")
        rows.extend((image_id, pred) for pred in found)
        if args.draw:
            shown = [p for p in found if p["score"] >= args.draw_min_score]
            draw_predictions(args.draw, name, pixels, shown, truths[k] if truths else None)
    finish_outputs(args, rows, label_to_id, "detections")
    return 0


def check_evaluate_detections(args) -> None:
    check_plot(args, [args.ground_truth, args.predictions])


def cmd_evaluate_detections(args) -> int:
    """Print the evaluation's table (or, with ``--json``, one JSON object); ``--plot``:
    also save the precision-recall curves. Malformed input raises ``ValueError``."""
    import json

    from .detect.evaluation import evaluate_detections, plot_pr_curves

    result = evaluate_detections(args.ground_truth, args.predictions)
    if args.plot:
        plot_pr_curves(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"ground truth {args.ground_truth}, results {args.predictions}")
        print(result.summary())
        if args.plot:
            print(f"precision-recall curves: {args.plot}")
    return 0


def add_merge_arguments(p, default) -> None:
    """The merge's flags; ``default``: the :class:`~.localize.MergeSettings` they start from."""
    from .detect.pyramid import SCALE_SETS

    p.add_argument(
        "--scales",
        type=int,
        choices=sorted(SCALE_SETS),
        help="how many of the six scales (default: the checkpoint's own scales)",
    )
    p.add_argument("--factors", metavar="LIST", help="explicit resize factors, e.g. 1,0.63,0.4")
    p.add_argument(
        "--top-classes",
        type=positive,
        default=default.top_k,
        help="k: classes per scale whose boxes are merged",
    )
    p.add_argument(
        "--threshold",
        type=number(),
        default=default.threshold,
        help="merge threshold t (boxes merge while their match score is <= t)",
    )
    p.add_argument("--score", default=default.score, choices=("center_iou", "iou", "center"))
    p.add_argument("--average", default=default.average, choices=("pair", "count", "confidence"))
    p.add_argument(
        "--min-confidence",
        type=probability,
        default=default.min_confidence,
        help="windows below this class probability (0 to 1) do not vote",
    )
    p.add_argument("--coarse", action="store_true", help="without offset pooling")
    add_size_arguments(p)
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file and --draw folder"
    )


def add_image_command_arguments(p, merge, checkpoint: str, found: str) -> None:
    """The flags shared by ``localize`` and ``detect``: the networks, the outputs, the
    merge (starting from ``merge``, a :class:`~.detect.settings.MergeSettings`), the
    backend and the input."""
    p.add_argument("--checkpoint", help=f"{checkpoint} (default: shipped)")
    p.add_argument("--out", metavar="JSON", help=f"write the {found} in the COCO results format")
    p.add_argument("--draw", metavar="DIR", help=f"draw the {found} on each image into DIR")
    add_merge_arguments(p, merge)
    p.add_argument(
        "--keep-shading",
        action="store_true",
        help="leave a sloping ground (uneven light) as it is; by default a slope of 48 "
        "grey levels or more across the image is removed first",
    )
    add_backend(p)
    p.add_argument("input", metavar="IMAGE_OR_DIR", help="an image, or a COCO scene folder")


def add_size_arguments(p) -> None:
    """``--max-size`` and ``--max-memory``: what keeps a huge image from exhausting memory."""
    p.add_argument(
        "--max-size",
        type=positive,
        metavar="PIXELS",
        help="downscale images whose longer side is above this before evaluating them",
    )
    add_memory_argument(p, "an evaluation")


def add_memory_argument(p, what: str) -> None:
    p.add_argument(
        "--max-memory",
        type=number(0, low_open=True),
        default=MEMORY_LIMIT_GIB,
        metavar="GIB",
        help=f"refuse {what} estimated to need more memory than this "
        f"(default {MEMORY_LIMIT_GIB:g} GiB)",
    )


OVERWRITE_RUN_HELP = "write into a non-empty --out folder (the checkpoint and logs are replaced)"


def add_backend(p) -> None:
    p.add_argument(
        "--backend",
        default="numpy",
        help="numpy (default) or cuda: where the networks, the merge and NMS run",
    )


def add_run_arguments(p, out: str, config: str, seed_help: str | None = None) -> None:
    """The flags of a training command: epochs, where it writes, resuming, the seed."""
    p.add_argument("--epochs", type=positive, help=f"default: the {config} config's")
    p.add_argument("--out", default=out, help="checkpoint, logs and curves go here")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_RUN_HELP)
    p.add_argument("--seed", type=seed, help=seed_help)


def add_scene_arguments(
    p, scenes: int, test_scenes: int, first_seed: int, kind: str, per_scale: int | None = None
) -> None:
    """How many scenes a scene-trained run makes, and from which seed (and, with
    ``per_scale``, how many windows it takes per scene and scale). The flags default to
    None, so that a resumed run can tell a flag given from one left out
    (:func:`settle_scene_flags`); ``scene_defaults`` holds a new run's values."""
    defaults = {"scenes": scenes, "test_scenes": test_scenes, "scene_seed": first_seed}
    p.add_argument("--scenes", type=positive, help=f"{kind} training scenes (default {scenes})")
    p.add_argument(
        "--test-scenes",
        type=positive,
        help=f"held-out scenes for test error (default {test_scenes})",
    )
    p.add_argument(
        "--scene-seed", type=scene_seed, help=f"seed of the generated scenes (default {first_seed})"
    )
    if per_scale is not None:
        defaults["per_scale"] = per_scale
        p.add_argument(
            "--per-scale", type=positive, help=f"windows per scene and scale (default {per_scale})"
        )
    p.set_defaults(scene_defaults=defaults)


def add_quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# The test scenes of a scene-trained run use the next seed.
scene_seed = integer(0, MAX_SEED - 1)

PLAIN_SCENES_HELP = (
    "train on the default scenes (grey 24, noise 16, light ink) instead of the varied "
    "training ranges"
)


def build_parser() -> argparse.ArgumentParser:
    from .detect.settings import MergeSettings

    parser = Parser(
        prog="overfeat-scratch",
        description="OverFeat from scratch in NumPy and Numba-CUDA.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print a network's per-layer table")
    p.add_argument("model", choices=["accurate", "fast", "mini"])
    p.add_argument(
        "--size",
        type=positive,
        nargs=2,
        metavar=("H", "W"),
        help="input size (default: the network's window)",
    )
    p.set_defaults(func=cmd_summary, check=lambda args: None)

    p = sub.add_parser("classify", help="top-k classes of an image with released weights")
    p.add_argument("--weights", required=True, help="net_weight_0 (fast) or net_weight_1")
    p.add_argument("--model", required=True, choices=sorted(paper.ARCHITECTURES))
    p.add_argument("--multiscale", action="store_true", help="the paper's six scales, flips")
    p.add_argument("--scales", metavar="LIST", help="e.g. 245,281x317 (default: the paper's six)")
    p.add_argument("--no-flip", action="store_true", help="multiscale without mirror images")
    p.add_argument("--coarse", action="store_true", help="multiscale without offset pooling")
    p.add_argument("--top", type=positive, default=5, help="classes listed")
    p.add_argument("--names", help="text file of class names, one per line, in output order")
    add_memory_argument(p, "scales")
    add_backend(p)
    p.add_argument("image")
    p.set_defaults(func=cmd_classify, check=check_classify)

    p = sub.add_parser("dense", help="write the raw class-score map of an image (.npy)")
    p.add_argument("--weights", required=True)
    p.add_argument("--model", required=True, choices=sorted(paper.ARCHITECTURES))
    p.add_argument("--fine", action="store_true", help="offset pooling: 3x (or 2x) denser map")
    p.add_argument("--out", required=True, help="output .npy file, (C, H', W') float32")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_size_arguments(p)
    add_backend(p)
    p.add_argument("image")
    p.set_defaults(func=cmd_dense, check=check_dense)

    p = sub.add_parser("scenes", help="write MNIST digit scenes with boxes (COCO folder)")
    p.add_argument("--n", type=positive, required=True, help="number of scenes")
    p.add_argument("--seed", type=seed, required=True)
    p.add_argument("--out", required=True, help="output folder: annotations.json, images/")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--split", choices=("test", "train"), default="test", help="MNIST digits used")
    p.add_argument("--min-digits", type=positive, default=1)
    p.add_argument("--max-digits", type=positive, default=5)
    p.add_argument(
        "--min-size", type=integer(1, MAX_CANVAS), default=96, help="smallest canvas side"
    )
    p.add_argument(
        "--max-size",
        type=integer(1, MAX_CANVAS),
        default=192,
        help=f"largest canvas side (at most {MAX_CANVAS})",
    )
    p.add_argument("--no-clutter", action="store_true", help="flat background, no fragments")
    p.add_argument(
        "--varied",
        action="store_true",
        help="grey, ink, noise, polarity, blur, clutter and heights drawn per scene from the "
        "training ranges (scenes.TRAINING_RANGES)",
    )
    p.set_defaults(func=cmd_scenes, check=check_scenes)

    p = sub.add_parser("train", help="train the mini network on MNIST (momentum SGD)")
    p.add_argument("--model", default="mini", help="mini (the paper's networks need ImageNet)")
    add_run_arguments(p, "runs/mini", "mini")
    p.add_argument("--batch-size", type=positive, help="default: the mini config's")
    p.add_argument("--limit", type=positive, help="train on the first N digits only (quick runs)")
    add_backend(p)
    add_quiet(p)
    p.set_defaults(func=cmd_train, check=check_train)

    p = sub.add_parser("evaluate", help="test error of mini on the MNIST test set")
    p.add_argument("--checkpoint", help="default: the shipped weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="PNG", help="save the confusion matrix here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--limit", type=positive, help="the first N test digits only")
    add_backend(p)
    p.set_defaults(func=cmd_evaluate, check=check_evaluate)

    p = sub.add_parser("train-regressor", help="train mini's box regressor on digit scenes")
    p.add_argument(
        "--checkpoint",
        help="the network whose features it reads: mini, mini-detector, or a regressor "
        "checkpoint's (default: the shipped detector)",
    )
    p.add_argument("--shared", action="store_true", help="one box for all classes")
    p.add_argument(
        "--edge-errors",
        choices=tuple(ERRORS_IN),  # localize.EDGE_ERRORS (a test keeps them equal)
        help="the loss measures each edge's error against the true box's width or height "
        "(box, the default) or in windows (window, the paper's)",
    )
    add_run_arguments(p, "runs/regressor", "regressor", "initialisation and batch order")
    add_scene_arguments(p, 4000, 500, 1, "single-digit", per_scale=8)
    p.add_argument("--plain-scenes", action="store_true", help=PLAIN_SCENES_HELP)
    add_backend(p)
    add_quiet(p)
    p.set_defaults(func=cmd_train_regressor, check=check_scene_training)

    p = sub.add_parser("localize", help="classify and box the digits of images (the merge)")
    p.add_argument("--top", type=positive, default=5, help="boxes printed and written per image")
    add_image_command_arguments(p, MergeSettings(), "a train-regressor checkpoint", "boxes")
    p.set_defaults(func=cmd_localize, check=check_image_outputs)

    p = sub.add_parser("train-detector", help="fine-tune mini with a background class on scenes")
    p.add_argument("--checkpoint", help="the classifier to start from (default: shipped mini)")
    add_run_arguments(p, "runs/detector", "detector", "initialisation, batch order and negatives")
    add_scene_arguments(p, 24000, 300, 11, "multi-digit")
    p.add_argument("--no-mining", action="store_true", help="random negatives only (ablation)")
    p.add_argument(
        "--plain-scenes",
        action="store_true",
        help=PLAIN_SCENES_HELP + "; and raw input, not normalised",
    )
    add_backend(p)
    add_quiet(p)
    p.set_defaults(func=cmd_train_detector, check=check_scene_training)

    p = sub.add_parser("detect", help="find every digit in images (merge or NMS)")
    p.add_argument(
        "--draw-min-score", type=score, default=1.0, help="draw only boxes above this (>= 0)"
    )
    p.add_argument("--final", default="merge", choices=("merge", "nms"))
    p.add_argument(
        "--nms-iou", type=probability, default=0.3, help="IoU (0 to 1) above which NMS suppresses"
    )
    p.add_argument("--min-score", type=score, default=0.0, help="drop detections below this (>= 0)")
    p.add_argument("--show", type=count, default=10, help="detections printed per image")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    add_image_command_arguments(
        p, MergeSettings(), "a train-regressor checkpoint on the detector", "detections"
    )
    p.set_defaults(func=cmd_detect, check=check_image_outputs)

    p = sub.add_parser("evaluate-detections", help="AP@0.5, mAP and COCO AP of COCO results")
    p.add_argument("ground_truth", metavar="GT.json", help="COCO annotations (or a scene folder)")
    p.add_argument("predictions", metavar="PREDS.json", help="COCO results list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="PNG", help="save the precision-recall curves here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.set_defaults(func=cmd_evaluate_detections, check=check_evaluate_detections)

    p = sub.add_parser("demo", help="the main job: mini on digits and a scene, the paper networks")
    add_backend(p)
    p.add_argument("--repeats", type=positive, default=3, help="timed forward passes")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", default="out/demo", help="figures go here")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.set_defaults(func=cmd_demo, check=check_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns its exit status.

    Bad input of any kind (an argument out of range, an output that exists, a
    malformed file, an image too large for the memory limit) is status 2 and one
    line on stderr naming what was wrong and what was expected; nothing has been
    written by then, unless the problem is found in the middle of the work (a loss
    that turns NaN). Bad input is what the package's checks raise
    (:class:`~overfeat_scratch.common.checks.InputError`), a file that cannot be
    read or written (``OSError``) and running out of memory. Any other exception is
    a bug, and shows its traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse: 2 for bad arguments (said already), 0 for --help
        return exit.code if isinstance(exit.code, int) else 2
    try:
        args.check(args)
        return args.func(args)
    except MemoryError as error:
        print(f"overfeat-scratch {args.command}: error: out of memory: {error}", file=sys.stderr)
        return 2
    except (InputError, OSError) as error:
        print(f"overfeat-scratch {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
