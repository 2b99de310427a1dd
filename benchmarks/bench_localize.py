"""Localization error on held-out single-digit scenes: the scale and regressor ablation.

    .venv/bin/python benchmarks/bench_localize.py                  # 1,000 scenes
    .venv/bin/python benchmarks/bench_localize.py --n 200 --quick  # its own scales only

Scores the shipped localizer (or ``--checkpoint``) with the ILSVRC criterion
(right class and IoU >= 0.5; top-1 and top-5) for 1, 2, 4, 6 and 8 scales, and,
given ``--shared`` (a checkpoint of ``train-regressor --shared``), the shared
regressor next to the class-specific one, as the paper's Fig. 9 does. The
scenes are MNIST test digits, one per scene, clutter on, generated from
``--seed`` (never used in training: training scenes use MNIST train digits).
Prints a table and writes it as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overfeat_scratch.datasets.scenes import generate_scenes  # noqa: E402
from overfeat_scratch.detect.localize import (  # noqa: E402
    Localizer,
    MergeSettings,
    evaluate_localization,
    single_digit_config,
)
from overfeat_scratch.detect.pyramid import SCALE_FACTORS, SCALE_SETS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="held-out single-digit scenes")
    parser.add_argument("--seed", type=int, default=2014)
    parser.add_argument("--checkpoint", help="class-specific localizer (default: shipped)")
    parser.add_argument("--shared", help="a shared-regressor checkpoint to compare")
    parser.add_argument("--quick", action="store_true", help="the localizer's own scales only")
    parser.add_argument("--top-classes", type=int, default=MergeSettings().top_k)
    parser.add_argument("--threshold", type=float, default=MergeSettings().threshold)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    scenes = generate_scenes(args.n, args.seed, "test", single_digit_config())
    settings = MergeSettings(top_k=args.top_classes, threshold=args.threshold)
    localizers = {"class-specific": Localizer.from_checkpoint(args.checkpoint)}
    if args.shared:
        localizers["shared"] = Localizer.from_checkpoint(args.shared)
    own = len(localizers["class-specific"].factors)  # the checkpoint's own scales
    counts = (own,) if args.quick else tuple(dict.fromkeys((*SCALE_SETS, own)))
    rows = []
    for name, localizer in localizers.items():
        for count in counts:
            own_scales = localizer.factors if count == own else None
            factors = own_scales or tuple(SCALE_FACTORS[i] for i in SCALE_SETS[count])
            t0 = time.perf_counter()
            result = evaluate_localization(localizer, scenes, factors, settings)
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "regressor": name,
                    "scales": count,
                    "factors": list(factors),
                    "top1_error": result["top1"],
                    "top5_error": result["top5"],
                    "n": result["n"],
                    "seconds_per_scene": seconds / len(scenes),
                    "dense_seconds": result["seconds"]["dense"],
                    "merge_seconds": result["seconds"]["merge"],
                }
            )
            r = rows[-1]
            print(
                f"{name:>15}  {count} scale(s)  top-1 {100 * r['top1_error']:5.1f}%  "
                f"top-5 {100 * r['top5_error']:5.1f}%  "
                f"{1000 * r['seconds_per_scene']:.0f} ms/scene",
                flush=True,
            )
    print()
    print(
        f"ILSVRC-style localization error on {args.n} single-digit test scenes (seed {args.seed})"
    )
    print("| regressor | scales | top-1 error | top-5 error | ms per scene |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['regressor']} | {r['scales']} | {100 * r['top1_error']:.1f}% | "
            f"{100 * r['top5_error']:.1f}% | {1000 * r['seconds_per_scene']:.0f} |"
        )
    best = [r for r in rows if r["regressor"] == "class-specific" and r["scales"] == own]
    if best:
        met = best[0]["top1_error"] <= 0.03
        print(f"target: top-1 error <= 3% with {own} scales: {'met' if met else 'missed'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
