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
    from .networks import build_network
    from .summary import format_table

    for model in ("fast", "accurate"):
        window = paper.WINDOW[model]
        print(
            f"\n== {model} model: window {window}x{window}, "
            f"total stride {paper.TOTAL_STRIDE[model]} =="
        )
        t0 = time.perf_counter()
        net = build_network(model, seed=args.seed, backend=args.backend).eval()
        build = time.perf_counter() - t0
        print(format_table(net))
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((1, 3, window, window), dtype=np.float32)
        net.backend.to_numpy(net.forward(x))  # warm-up (first call compiles kernels)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scores = net.backend.to_numpy(net.forward(x))
            times.append(time.perf_counter() - t0)
        best = min(times)
        gmacs = net.multiply_adds((3, window, window)) / 1e9
        print(
            f"built in {build:.1f} s; forward of one {window}x{window} image on "
            f"{net.backend.name}: {best * 1e3:.1f} ms (best of {args.repeats}), "
            f"{2 * gmacs / best:.1f} GFLOP/s; output {scores.shape}, "
            f"top class {int(scores.reshape(-1).argmax())} (random weights)"
        )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overfeat-scratch",
        description="OverFeat from scratch in NumPy and Numba-CUDA.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print a network's per-layer table")
    p.add_argument("model", choices=sorted(paper.ARCHITECTURES))
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

    p = sub.add_parser("demo", help="the main job: both networks' tables and a timed forward pass")
    p.add_argument("--backend", default="numpy", help="numpy (default) or cuda")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
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
