"""Dense evaluation against naive sliding windows, and the cost of offset pooling.

Run:  .venv/bin/python benchmarks/bench_dense.py [--quick] [--json PATH]

1. ``fast`` on a 461x569 image: one dense pass against cropping every window and
   running the network on each crop (in batches). Reports the speed-up next to
   the ratio of multiply-adds; the target is a speed-up of at least 0.8 of it.
   Outputs are checked: the dense map equals the network on each output's
   receptive-field crop (exact), and differs from the plain window crop only
   through layers 3-5's zero padding (reported).
2. Fine (offset pooling) against coarse dense evaluation at the six scales, for
   both models: time and multiply-adds.
3. The regressor's training windows (``regression_examples``, as
   ``train-regressor`` makes them with the shipped localizer's detector): the
   windows of each scale computed together against each window cut out and run
   alone, on training scenes of the training ranges; time, multiply-adds, and the
   largest difference between the two ways' features.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import overfeat_scratch  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads it)

# isort: split
import numpy as np

from overfeat_scratch import build_network
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import dense_evaluate, fine_multiply_adds
from overfeat_scratch.nn.geometry import Geometry


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def sliding_windows(args, results):
    net = build_network("fast", seed=0).eval()
    g = Geometry.of(net)
    h, w = 461, 569
    x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
    oh, ow = g.output_size(h, w)
    boxes = [(i, j) for i in range(oh) for j in range(ow)]
    crops = np.stack([x[0, :, 32 * i : 32 * i + 231, 32 * j : 32 * j + 231] for i, j in boxes])

    def naive():
        out = []
        for start in range(0, len(crops), args.batch):
            out.append(net.forward(crops[start : start + args.batch])[:, :, 0, 0])
        return np.concatenate(out)

    dense_map = dense_evaluate(net, x).scores
    window_scores = naive()
    t_dense, _ = best_time(lambda: dense_evaluate(net, x), args.repeats)
    t_naive, _ = best_time(naive, max(1, args.repeats // 2))

    # Exactness: receptive-field crops reproduce the dense outputs.
    worst = 0.0
    for i, j in boxes[:: max(1, len(boxes) // 6)]:
        (a, b, li), (c, d, lj) = g.crop(i, h), g.crop(j, w)
        ref = net.forward(x[:, :, a:b, c:d])[0, :, li, lj]
        worst = max(worst, float(np.abs(ref - dense_map[0, :, i, j]).max() / np.abs(ref).max()))
    window_diff = np.abs(window_scores.T.reshape(dense_map.shape[1:]) - dense_map[0])
    macs_dense = net.multiply_adds((3, h, w))
    macs_naive = len(boxes) * net.multiply_adds((3, 231, 231))
    row = {
        "image": f"{h}x{w}",
        "windows": len(boxes),
        "dense_s": t_dense,
        "naive_s": t_naive,
        "speedup": t_naive / t_dense,
        "mac_ratio": macs_naive / macs_dense,
        "speedup_over_mac_ratio": (t_naive / t_dense) / (macs_naive / macs_dense),
        "receptive_crop_max_rel_diff": worst,
        "window_crop_max_rel_diff": float(window_diff.max() / np.abs(dense_map).max()),
    }
    results["sliding"] = row
    print(f"\nfast at {h}x{w}: {len(boxes)} windows ({oh}x{ow})")
    print(f"  dense {t_dense:.3f} s, naive {t_naive:.3f} s (batches of {args.batch})")
    print(
        f"  speed-up {row['speedup']:.2f}x, multiply-add ratio {row['mac_ratio']:.2f}x, "
        f"speed-up / ratio = {row['speedup_over_mac_ratio']:.2f} (target >= 0.8)"
    )
    print(f"  dense vs receptive-field crops: max rel. diff {worst:.1e} (exact up to float32)")
    print(
        f"  dense vs plain window crops: max rel. diff {row['window_crop_max_rel_diff']:.3f} "
        "(layers 3-5 pad with zeros inside a lone window)"
    )


def offset_cost(args, results):
    rows = []
    print("\nfine (offset pooling) vs coarse dense evaluation, the six scales")
    print(
        f"{'model':<9}{'input':>10}{'coarse map':>12}{'fine map':>10}{'coarse s':>10}"
        f"{'fine s':>9}{'time x':>8}{'MACs x':>8}"
    )
    for model in ("fast", "accurate"):
        net = build_network(model, seed=0).eval()
        for h, w in paper.SCALES[: args.scales]:
            x = np.random.default_rng(1).standard_normal((1, 3, h, w), dtype=np.float32)
            coarse = dense_evaluate(net, x).scores.shape[2:]
            fine = dense_evaluate(net, x, fine=True).scores.shape[2:]
            tc, _ = best_time(lambda x=x, net=net: dense_evaluate(net, x), args.repeats)
            tf, _ = best_time(lambda x=x, net=net: dense_evaluate(net, x, fine=True), args.repeats)
            mc = net.multiply_adds((3, h, w))
            mf = sum(fine_multiply_adds(net, h, w))
            rows.append(
                {
                    "model": model,
                    "input": f"{h}x{w}",
                    "coarse": coarse,
                    "fine": fine,
                    "coarse_s": tc,
                    "fine_s": tf,
                    "time_ratio": tf / tc,
                    "mac_ratio": mf / mc,
                }
            )
            print(
                f"{model:<9}{h:>5}x{w:<4}{'x'.join(map(str, coarse)):>12}"
                f"{'x'.join(map(str, fine)):>10}{tc:>10.3f}{tf:>9.3f}{tf / tc:>8.2f}"
                f"{mf / mc:>8.2f}"
            )
    results["offset"] = rows


def regression_windows(args, results):
    from overfeat_scratch.datasets.scenes import TRAINING_RANGES, generate_scenes
    from overfeat_scratch.detect.localize import (
        Localizer,
        regression_examples,
        single_digit_config,
    )

    localizer = Localizer.from_checkpoint()
    detector = localizer.classifier
    scenes = generate_scenes(args.scenes, 1, "train", single_digit_config(TRAINING_RANGES))

    def run(shared, stats=None):
        return regression_examples(
            detector,
            scenes,
            localizer.factors,
            normalize=localizer.normalize,
            shared=shared,
            stats=stats,
        )

    stats = {True: {}, False: {}}
    out = {shared: run(shared, stats[shared]) for shared in (True, False)}
    times = {True: [], False: []}
    for _ in range(max(1, args.repeats - 1)):
        for shared in (False, True):  # alternating: the machine's load hits both
            t0 = time.perf_counter()
            run(shared)
            times[shared].append(time.perf_counter() - t0)
    scale = float(np.abs(out[False][0]).max())
    row = {
        "scenes": args.scenes,
        "windows": stats[True]["windows"],
        "shared_s": min(times[True]),
        "cropped_s": min(times[False]),
        "speedup": min(times[False]) / min(times[True]),
        "mac_ratio": stats[False]["multiply_adds"] / stats[True]["multiply_adds"],
        "labels_equal": bool(np.array_equal(out[True][1], out[False][1])),
        "max_rel_diff": float(np.abs(out[True][0] - out[False][0]).max() / scale),
    }
    results["regression_windows"] = row
    print(f"\nthe regressor's windows: {row['windows']} from {args.scenes} training scenes")
    print(
        f"  together {row['shared_s']:.2f} s, each cut out {row['cropped_s']:.2f} s: "
        f"speed-up {row['speedup']:.2f}x, multiply-add ratio {row['mac_ratio']:.2f}x"
    )
    print(
        f"  same windows and labels: {row['labels_equal']}; features' max rel. diff "
        f"{row['max_rel_diff']:.1e}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, two scales")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scenes", type=int, help="training scenes for part 3 (300; quick 60)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    args.repeats = 1 if args.quick else 3
    args.scales = 2 if args.quick else 6
    args.scenes = args.scenes or (60 if args.quick else 300)
    results = {"machine": platform.processor() or platform.machine(), "numpy": np.__version__}
    sliding_windows(args, results)
    offset_cost(args, results)
    regression_windows(args, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=list)


if __name__ == "__main__":
    main()
