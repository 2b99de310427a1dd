"""Detection on held-out multi-digit scenes: mAP and the ablations, and the time per stage.

    .venv/bin/python benchmarks/bench_detect.py                 # 500 scenes, all ablations
    .venv/bin/python benchmarks/bench_detect.py --n 100 --quick # the default pipeline only

The scenes are MNIST test digits, 1 to 5 per scene, clutter on, generated from
``--seed`` (training scenes use MNIST train digits). For each setting the
detections of every scene are scored by the package's evaluator: AP at IoU 0.5
per class, its mean (mAP@0.5), and COCO's AP averaged over IoU 0.5:0.95.

Ablations: the final step (the paper's merge vs NMS), offset pooling (fine vs
coarse), the number of scales (1, 2, 4, 6, 8) and, given ``--no-mining`` (a
localizer trained from a detector trained with ``train-detector --no-mining``),
negatives mined on the fly vs drawn at random. Last, the time of each stage for
one 160x160 scene on the NumPy backend (features and classifier, regression,
merge), medians of repeats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import overfeat_scratch  # noqa: E402, F401  (first: it sets OpenBLAS up before NumPy loads it)

# isort: split
import numpy as np  # noqa: E402

from overfeat_scratch.datasets.scenes import SceneConfig, coco_dict, generate_scenes  # noqa: E402
from overfeat_scratch.detect.detection import DetectSettings, coco_results, detect  # noqa: E402
from overfeat_scratch.detect.evaluation import evaluate_detections  # noqa: E402
from overfeat_scratch.detect.localize import (  # noqa: E402
    Localizer,
    MergeSettings,
    candidates,
    head_layers,
    scale_outputs,
)
from overfeat_scratch.detect.pyramid import SCALE_FACTORS, SCALE_SETS, resize_scene, scene_border  # noqa: E402
from overfeat_scratch.nn.dense import dense_evaluate_heads  # noqa: E402
from overfeat_scratch.ops.merge import merge_fast  # noqa: E402

DEFAULT_MERGE = MergeSettings()


def run_setting(localizer, scenes, gt, factors, merge, settings, fine=True):
    rows, seconds = [], 0.0
    for k, scene in enumerate(scenes, start=1):
        t0 = time.perf_counter()
        found = detect(localizer, scene.image, factors, merge, settings, fine)
        seconds += time.perf_counter() - t0
        rows.extend((k, pred) for pred in found.top(len(found.boxes)))
    results = coco_results(rows)
    evaluation = evaluate_detections(gt, results)
    return evaluation, seconds / len(scenes), len(results) / len(scenes)


def stage_times(localizer, repeats=7, size=160, seed=3):
    """Median seconds of each stage on one ``size`` x ``size`` scene, every scale of
    the localizer's scales (each with the border that dense evaluation adds)."""
    config = SceneConfig(min_size=size, max_size=size)
    scene = generate_scenes(1, seed, "test", config)[0]
    image = localizer.prepare(scene.image)
    classifier = localizer.classifier
    times = {"features + classifier": [], "regression": [], "candidates + merge": []}
    for _ in range(repeats):
        t_cls = t_reg = 0.0
        for factor in localizer.factors:
            resized, _ = resize_scene(image, factor, scene_border(classifier.window()))
            if min(resized.shape) < classifier.window():
                continue
            x = resized[None, None]
            t0 = time.perf_counter()
            dense_evaluate_heads(classifier, [head_layers(classifier)], x, True)
            t1 = time.perf_counter()
            dense_evaluate_heads(
                classifier, [head_layers(classifier), localizer.regressor.layers], x, True
            )
            t2 = time.perf_counter()
            t_cls += t1 - t0
            t_reg += (t2 - t1) - (t1 - t0)  # what the regression head adds
        outputs = [scale_outputs(localizer, image, f) for f in localizer.factors]
        t0 = time.perf_counter()
        cand = candidates(
            outputs,
            DEFAULT_MERGE.top_k,
            localizer.class_specific,
            image.shape,
            DEFAULT_MERGE.min_confidence,
        )
        merge_fast(
            cand.boxes,
            cand.classes,
            cand.confidences,
            DEFAULT_MERGE.threshold,
            DEFAULT_MERGE.score,
            DEFAULT_MERGE.average,
        )
        times["candidates + merge"].append(time.perf_counter() - t0)
        times["features + classifier"].append(t_cls)
        times["regression"].append(max(t_reg, 0.0))
    return {name: float(np.median(values)) for name, values in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="held-out multi-digit scenes")
    parser.add_argument("--seed", type=int, default=2013)
    parser.add_argument("--checkpoint", help="the localizer (default: shipped)")
    parser.add_argument("--no-mining", help="a localizer on a detector trained without mining")
    parser.add_argument("--quick", action="store_true", help="the default setting only")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--stages-only", action="store_true", help="only the time per stage")
    args = parser.parse_args(argv)
    if args.stages_only:
        stages = stage_times(Localizer.from_checkpoint(args.checkpoint))
        for name, seconds in stages.items():
            print(f"| {name} | {1000 * seconds:.1f} |")
        return 0

    scenes = generate_scenes(args.n, args.seed, "test", SceneConfig())
    names = [f"{k:06d}.png" for k in range(1, len(scenes) + 1)]
    gt = coco_dict(scenes, names)
    localizer = Localizer.from_checkpoint(args.checkpoint)
    every = localizer.factors
    n = len(every)
    settings = [(f"merge, fine, {n} scales", localizer, every, DetectSettings(), True)]
    if not args.quick:
        settings += [
            (f"NMS, fine, {n} scales", localizer, every, DetectSettings(final="nms"), True),
            (
                "merge only (no suppression after)",
                localizer,
                every,
                DetectSettings(after_merge_iou=None),
                True,
            ),
            (f"merge, coarse, {n} scales", localizer, every, DetectSettings(), False),
        ]
        for count in (1, 2, 4, 6):
            factors = tuple(SCALE_FACTORS[i] for i in SCALE_SETS[count])
            settings.append(
                (f"merge, fine, {count} scales", localizer, factors, DetectSettings(), True)
            )
        if args.no_mining:
            plain = Localizer.from_checkpoint(args.no_mining)
            settings.append((f"no mining: merge, fine, {n}", plain, every, DetectSettings(), True))
    rows = []
    for name, loc, factors, final, fine in settings:
        evaluation, seconds, per_scene = run_setting(
            loc, scenes, gt, factors, DEFAULT_MERGE, final, fine
        )
        rows.append(
            {
                "setting": name,
                "map50": evaluation.map50,
                "map": evaluation.map,
                "seconds_per_scene": seconds,
                "detections_per_scene": per_scene,
            }
        )
        print(
            f"{name:<28} mAP@0.5 {evaluation.map50:.3f}  AP@[.5:.95] {evaluation.map:.3f}  "
            f"{1000 * seconds:.0f} ms/scene  {per_scene:.1f} detections/scene",
            flush=True,
        )
    stages = stage_times(localizer)
    print()
    print(f"Detection on {args.n} held-out multi-digit scenes (seed {args.seed})")
    print("| setting | mAP@0.5 | AP@[.5:.95] | ms per scene |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['setting']} | {r['map50']:.3f} | {r['map']:.3f} | "
            f"{1000 * r['seconds_per_scene']:.0f} |"
        )
    print()
    scales = len(localizer.factors)
    print(f"One 160x160 scene, {scales} scales, offset pooling, NumPy backend (median):")
    print("| stage | ms |")
    print("|---|---:|")
    for name, seconds in stages.items():
        print(f"| {name} | {1000 * seconds:.1f} |")
    met = rows[0]["map50"] >= 0.90
    print(f"target: mAP@0.5 >= 0.90 with the default pipeline: {'met' if met else 'missed'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": rows, "stages": stages}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
