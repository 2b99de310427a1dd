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
