"""The ``overfeat-scratch`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import paper


def cmd_summary(args) -> int:
    from .networks import build_network
    from .summary import format_table

    net = build_network(args.model, seed=None)
    size = None if args.size is None else tuple(args.size)
    table = format_table(net, size)
    h, w = size or (net.window(), net.window())
    print(f"{args.model} model, input {net.in_channels} x {h} x {w}")
    print(table)
    return 0


def cmd_demo(args) -> int:
    from .demo import run

    run(out=args.out, backend=args.backend, seed=args.seed, repeats=args.repeats)
    return 0


def read_names(path, count: int) -> list[str]:
    """Class names, one per line, in the network's output order."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != count:
        raise ValueError(f"names file {path}: expected {count} class names, found {len(names)}")
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
            raise ValueError(f"--scales: expected sizes like 245 or 281x317, got {value!r}")
        scales.append(sizes[0] if len(sizes) == 1 else tuple(sizes))
    return scales


def cmd_classify(args) -> int:
    from .dense import classify_multiscale, softmax
    from .image import center_crop, load_image, resize_short_side
    from .weights import load_released_weights, preprocess

    net = load_released_weights(args.weights, args.model, backend=args.backend).eval()
    image = load_image(args.image)
    names = read_names(args.names, paper.NUM_CLASSES) if args.names else None
    if args.multiscale:
        scales = parse_scales(args.scales) if args.scales else paper.SCALES
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
    print(f"{args.image}: {args.model} model, {how}")
    for rank, index in enumerate(top, start=1):
        label = f"  {names[index]}" if names else ""
        print(f"{rank:>2}  class {int(index):>4}  p={probabilities[index]:.4f}{label}")
    return 0


def cmd_dense(args) -> int:
    from .dense import dense_evaluate
    from .fileio import atomic_write
    from .image import load_image
    from .weights import load_released_weights, preprocess

    net = load_released_weights(args.weights, args.model, backend=args.backend).eval()
    image = load_image(args.image)
    result = dense_evaluate(net, preprocess(image), fine=args.fine)
    scores = result.scores[0]
    atomic_write(args.out, lambda f: np.save(f, scores, allow_pickle=False))
    print(
        f"{args.out}: class scores {scores.shape} (C, H', W') for a {image.shape[0]}x"
        f"{image.shape[1]} image; output (i, j) is the window at x = {result.stride}*j, "
        f"y = {result.stride}*i, {result.window}x{result.window} pixels"
    )
    return 0


def cmd_scenes(args) -> int:
    import dataclasses

    from .mnist import data_checksum
    from .scenes import SceneConfig, generate_scenes, write_coco

    config = SceneConfig(
        min_size=args.min_size,
        max_size=args.max_size,
        min_digits=args.min_digits,
        max_digits=args.max_digits,
        max_digit_height=min(SceneConfig.max_digit_height, args.min_size),
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
        "config": dataclasses.asdict(config),
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


def cmd_train(args) -> int:
    from dataclasses import replace

    from .digits import mnist_windows
    from .mnist import data_checksum, load_mnist
    from .networks import build_network
    from .train import CONFIGS, config_from_meta, load_checkpoint, resume_state, train

    if args.model != "mini":
        raise ValueError(
            f"train: only the mini digit network trains here (got {args.model!r}); the paper's "
            "networks need ImageNet, which this package does not fetch"
        )
    images, labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    train_data = (mnist_windows(images), labels.astype(np.int64))
    test_data = (mnist_windows(test_images), test_labels.astype(np.int64))
    changes = {"epochs": args.epochs} if args.epochs else {}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.resume:
        net, meta, velocity = load_checkpoint(args.resume, "mini", backend=args.backend)
        config = config_from_meta(meta, **changes)
        resume = resume_state(meta, velocity)
    else:
        config = replace(CONFIGS["mini"], **changes)
        net = build_network("mini", seed=config.seed, backend=args.backend)
        resume = None
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


def cmd_evaluate(args) -> int:
    import json

    from .digits import mnist_windows, shipped_checkpoint
    from .mnist import load_mnist
    from .train import evaluate, load_checkpoint

    path = args.checkpoint or shipped_checkpoint()
    net, meta, _ = load_checkpoint(path, "mini", backend=args.backend)
    images, labels = load_mnist("test")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    labels = labels.astype(np.int64)
    error, predictions = evaluate(net, mnist_windows(images), labels)
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    if args.plot:
        from .plots import save_confusion

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overfeat-scratch",
        description="OverFeat from scratch in NumPy and Numba-CUDA.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print a network's per-layer table")
    p.add_argument("model", choices=["accurate", "fast", "mini"])
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size (default: the network's window)",
    )
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("classify", help="top-k classes of an image with released weights")
    p.add_argument("--weights", required=True, help="net_weight_0 (fast) or net_weight_1")
    p.add_argument("--model", required=True, choices=sorted(paper.ARCHITECTURES))
    p.add_argument("--multiscale", action="store_true", help="the paper's six scales, flips")
    p.add_argument("--scales", metavar="LIST", help="e.g. 245,281x317 (default: the paper's six)")
    p.add_argument("--no-flip", action="store_true", help="multiscale without mirror images")
    p.add_argument("--coarse", action="store_true", help="multiscale without offset pooling")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--names", help="text file of class names, one per line, in output order")
    p.add_argument("--backend", default="numpy")
    p.add_argument("image")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("dense", help="write the raw class-score map of an image (.npy)")
    p.add_argument("--weights", required=True)
    p.add_argument("--model", required=True, choices=sorted(paper.ARCHITECTURES))
    p.add_argument("--fine", action="store_true", help="offset pooling: 3x (or 2x) denser map")
    p.add_argument("--out", required=True, help="output .npy file, (C, H', W') float32")
    p.add_argument("--backend", default="numpy")
    p.add_argument("image")
    p.set_defaults(func=cmd_dense)

    p = sub.add_parser("scenes", help="write MNIST digit scenes with boxes (COCO folder)")
    p.add_argument("--n", type=int, required=True, help="number of scenes")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="output folder: annotations.json, images/")
    p.add_argument("--split", choices=("test", "train"), default="test", help="MNIST digits used")
    p.add_argument("--min-digits", type=int, default=1)
    p.add_argument("--max-digits", type=int, default=5)
    p.add_argument("--min-size", type=int, default=96, help="smallest canvas side")
    p.add_argument("--max-size", type=int, default=192, help="largest canvas side")
    p.add_argument("--no-clutter", action="store_true", help="flat background, no fragments")
    p.set_defaults(func=cmd_scenes)

    p = sub.add_parser("train", help="train the mini network on MNIST (momentum SGD)")
    p.add_argument("--model", default="mini", help="mini (the paper's networks need ImageNet)")
    p.add_argument("--epochs", type=int, help="default: the mini config's")
    p.add_argument("--out", default="runs/mini", help="checkpoint, logs and curves go here")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its checkpoint")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, help="default: the mini config's")
    p.add_argument("--limit", type=int, help="train on the first N digits only (quick runs)")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test error of mini on the MNIST test set")
    p.add_argument("--checkpoint", help="default: the shipped weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="PNG", help="save the confusion matrix here")
    p.add_argument("--limit", type=int, help="the first N test digits only")
    p.add_argument("--backend", default="numpy")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the main job: mini on digits and a scene, the paper networks")
    p.add_argument("--backend", default="numpy", help="numpy (default) or cuda")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/demo", help="figures go here")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        print(f"overfeat-scratch {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
