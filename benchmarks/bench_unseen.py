"""Scenes from another hand: the localizers on digit scenes the package's generator never makes.

    .venv/bin/python benchmarks/bench_unseen.py                 # 300 scenes a task
    .venv/bin/python benchmarks/bench_unseen.py --n 20          # a quick look

Every benchmark of the package draws its scenes with
:func:`~overfeat_scratch.datasets.scenes.make_scene`, and a localizer trained on
that generator's output can learn its habits along with the digits. This file
draws digit scenes a second way, written apart from the first and sharing none of
its code (only the MNIST test digits), as someone else would make them:

- each digit is resized by Pillow (Lanczos), its width stretched or squeezed by up
  to 15%, rotated by up to 12 degrees, and in some scenes its strokes thickened or
  thinned by a 3x3 maximum or minimum filter;
- digits are laid on the ground by their alpha (MNIST's grey as opacity), not by a
  maximum of two layers;
- the ground is a paper grey with a faint texture (a coarse random field, smoothly
  enlarged), light ink on dark ground or dark ink on light paper, half each;
- clutter is pen marks, short strokes and dots of at most 12 pixels across
  (Pillow's line and ellipse drawing), not pieces of other digits, and never touches
  a digit's box;
- Gaussian noise over the whole image, a Gaussian blur of Pillow's, and in half
  the scenes JPEG compression at quality 40 to 90.

Every scene draws each of these from ranges (``RANGES``), so the benchmark scores
the family, not one point of it. ``--n`` single-digit scenes are localized (top-1
error) and ``--n`` scenes of one to five digits detected (mAP@0.5) by the shipped
localizer and by the one shipped before the training scenes varied, and the scores
are broken down by polarity, JPEG and clutter; then all again on the same scenes
with every digit upright and as written (``UPRIGHT``), which tells what the digits'
shapes cost. Seeds: ``SEEDS`` (used for nothing else); anything tuned against
these scenes would use ``TUNING_SEEDS`` instead.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEEDS = {"localization": 7000, "detection": 7001}
TUNING_SEEDS = {"localization": 7100, "detection": 7101}

# Each property is drawn uniformly from its range, per scene (events: probabilities).
RANGES = {
    "canvas": (96, 192),  # height and width, each drawn
    "height": (20, 64),  # a digit's height before rotation, pixels
    "stretch": (0.85, 1.15),  # width / height, relative to the digit's own
    "angle": (-12.0, 12.0),  # degrees
    "thicker": 0.2,  # strokes widened by a 3x3 maximum filter
    "thinner": 0.15,  # narrowed by a 3x3 minimum filter (digits of 32 px and more)
    "ground": (0.0, 64.0),  # light ink: the ground's grey
    "ink": (150.0, 255.0),  # light ink: its grey
    "paper": (170.0, 245.0),  # dark ink: the paper's grey
    "dark_ink": (0.0, 90.0),  # dark ink: its grey
    "dark": 0.5,
    "texture": (0.0, 8.0),  # standard deviation of the paper's coarse field
    "noise": (0.0, 12.0),  # standard deviation over the whole image
    "strokes": (0.0, 6.0),  # pen strokes per 100x100 pixels
    "dots": (0.0, 3.0),  # dots per 100x100 pixels
    "blur": (0.0, 1.2),  # Pillow's GaussianBlur radius
    "jpeg": 0.5,
    "quality": (40, 90),
    "digits": (1, 5),  # multi-digit scenes
}
# A digit pixel belongs to its box where its opacity is at least this.
BOX_ALPHA = 0.25
PLACE_TRIES = 50
# Clutter marks are at most this many pixels across, as the clutter of the package's
# scenes (crops of 8 to 12 pixels): a mark as tall as the smallest digits would be a 1.
CLUTTER_SIZE = 12


# The same scenes with every digit upright, as written: each property still draws
# from the generator (a range of one value too), so only the digits' shapes change
# and everything else about a scene stays as drawn.
UPRIGHT = {**RANGES, "stretch": (1.0, 1.0), "angle": (0.0, 0.0), "thicker": 0.0, "thinner": 0.0}
VARIANTS = {"as drawn": RANGES, "upright": UPRIGHT}


def _uniform(rng, ranges, key):
    low, high = ranges[key]
    return float(rng.uniform(low, high))


def _event(rng, ranges, key) -> bool:
    return bool(rng.random() < ranges[key])


def digit_alpha(rng, digit: np.ndarray, ranges=RANGES) -> np.ndarray:
    """One MNIST digit as an opacity patch in [0, 1], cropped to its box (see
    :data:`BOX_ALPHA`): resized, stretched, rotated, and perhaps thickened or thinned."""
    from PIL import Image, ImageFilter

    rows = np.flatnonzero(digit.max(axis=1) > 0)
    cols = np.flatnonzero(digit.max(axis=0) > 0)
    ink = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height = int(rng.integers(ranges["height"][0], ranges["height"][1] + 1))
    stretch = _uniform(rng, ranges, "stretch")
    width = max(2, round(ink.shape[1] * height / ink.shape[0] * stretch))
    image = Image.fromarray(ink).resize((width, height), Image.Resampling.LANCZOS)
    if _event(rng, ranges, "thicker"):
        image = image.filter(ImageFilter.MaxFilter(3))
    elif height >= 32 and _event(rng, ranges, "thinner"):
        image = image.filter(ImageFilter.MinFilter(3))
    angle = _uniform(rng, ranges, "angle")
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    alpha = np.asarray(image, dtype=np.float32) / 255.0
    rows = np.flatnonzero(alpha.max(axis=1) >= BOX_ALPHA)
    cols = np.flatnonzero(alpha.max(axis=0) >= BOX_ALPHA)
    return np.clip(alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 0.0, 1.0)


def _disjoint(box, boxes, margin: int) -> bool:
    x0, y0, x1, y1 = box
    return all(
        x1 + margin <= a0 or a1 + margin <= x0 or y1 + margin <= b0 or b1 + margin <= y0
        for a0, b0, a1, b1 in boxes
    )


def _clutter(rng, shape, boxes, ranges=RANGES) -> np.ndarray:
    """Pen strokes and dots as opacity, each kept off every digit box (grown by 2 px)."""
    from PIL import Image, ImageDraw

    h, w = shape
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    area = h * w / 1e4
    for kind in ("strokes", "dots"):
        for _ in range(int(rng.poisson(_uniform(rng, ranges, kind) * area))):
            for _ in range(PLACE_TRIES):
                if kind == "strokes":
                    x, y = rng.uniform(0, w), rng.uniform(0, h)
                    heading = rng.uniform(0, 2 * math.pi)
                    points = [(x, y)]
                    for _ in range(int(rng.integers(1, 4))):
                        heading += rng.normal(0, 0.8)
                        step = rng.uniform(3, 6)
                        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
                        points.append((x, y))
                    xs, ys = [p[0] for p in points], [p[1] for p in points]
                    width = int(rng.integers(1, 4))
                    box = (min(xs) - width, min(ys) - width, max(xs) + width, max(ys) + width)
                    if max(box[2] - box[0], box[3] - box[1]) > CLUTTER_SIZE:
                        continue
                else:
                    x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, 3)
                    box = (x - r, y - r, x + r, y + r)
                if _disjoint(box, boxes, 2):
                    shade = int(rng.uniform(150, 256))
                    if kind == "strokes":
                        draw.line(points, fill=shade, width=width, joint="curve")
                    else:
                        draw.ellipse(box, fill=shade)
                    break
    return np.asarray(layer, dtype=np.float32) / 255.0


def _texture(rng, shape, std: float) -> np.ndarray:
    """A smooth random field of standard deviation about ``std``: coarse noise enlarged."""
    from PIL import Image

    h, w = shape
    coarse = rng.standard_normal((int(rng.integers(3, 7)), int(rng.integers(3, 7))))
    coarse = coarse.astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    return std * field


def draw_scene(rng, images, labels, digits: int, ranges=RANGES):
    """One scene of ``digits`` digits (fewer when they do not fit): ``(image (H, W)
    uint8, annotations, facts)``, each annotation ``{"box", "label", "mnist_index"}``;
    ``facts``: what the breakdown groups scenes by (polarity, JPEG, clutter count)."""
    from PIL import Image, ImageFilter

    # Digits, clutter and light each from their own generator, so that changing how
    # digits are drawn (UPRIGHT) leaves the light of the scene as it was.
    rng, marks, light = rng.spawn(3)
    h = int(rng.integers(ranges["canvas"][0], ranges["canvas"][1] + 1))
    w = int(rng.integers(ranges["canvas"][0], ranges["canvas"][1] + 1))
    alpha = np.zeros((h, w), np.float32)
    boxes, annotations = [], []
    for _ in range(digits):
        index = int(rng.integers(len(images)))
        patch = digit_alpha(rng, images[index], ranges)
        ph, pw = patch.shape
        if ph > h or pw > w:
            continue
        for _ in range(PLACE_TRIES):
            top, left = int(rng.integers(h - ph + 1)), int(rng.integers(w - pw + 1))
            box = (left, top, left + pw, top + ph)
            if _disjoint(box, boxes, 1):
                region = alpha[top : top + ph, left : left + pw]
                np.maximum(region, patch, out=region)
                boxes.append(box)
                annotations.append({"box": box, "label": int(labels[index]), "mnist_index": index})
                break
    clutter = _clutter(marks, (h, w), boxes, ranges)
    alpha = np.maximum(alpha, clutter)

    rng = light
    dark = _event(rng, ranges, "dark")
    if dark:
        ground, ink = _uniform(rng, ranges, "paper"), _uniform(rng, ranges, "dark_ink")
    else:
        ground, ink = _uniform(rng, ranges, "ground"), _uniform(rng, ranges, "ink")
    paper = ground + _texture(rng, (h, w), _uniform(rng, ranges, "texture"))
    image = paper + alpha * (ink - paper)
    image = image + _uniform(rng, ranges, "noise") * rng.standard_normal((h, w)).astype(np.float32)
    picture = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    picture = picture.filter(ImageFilter.GaussianBlur(_uniform(rng, ranges, "blur")))
    jpeg = _event(rng, ranges, "jpeg")
    if jpeg:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(rng.integers(*ranges["quality"])))
        picture = Image.open(io.BytesIO(buffer.getvalue()))
        picture.load()
    facts = {"dark": dark, "jpeg": jpeg, "clutter": float(clutter.sum())}
    return np.asarray(picture, dtype=np.uint8).copy(), annotations, facts


def unseen_scenes(n: int, seed: int, single: bool, ranges=RANGES):
    """``n`` scenes from MNIST's test digits, scene ``i`` drawn from child ``i`` of
    ``SeedSequence(seed)``; ``single``: one digit each (localization), else one to
    five; ``ranges``: :data:`RANGES` or another dict of the same keys (such as
    :data:`UPRIGHT`). Returns ``(scenes, facts)``: :class:`~overfeat_scratch.datasets.scenes.Scene`
    tuples and each scene's facts (see :func:`draw_scene`)."""
    from overfeat_scratch.datasets.mnist import load_mnist
    from overfeat_scratch.datasets.scenes import Scene

    images, labels = load_mnist("test")
    out, facts = [], []
    for child in np.random.SeedSequence(seed).spawn(n):
        rng = np.random.default_rng(child)
        count = 1 if single else int(rng.integers(ranges["digits"][0], ranges["digits"][1] + 1))
        while True:
            image, annotations, fact = draw_scene(rng, images, labels, count, ranges)
            if annotations:  # a scene with no digit placed is drawn again
                break
        out.append(Scene(image, annotations))
        facts.append(fact)
    return out, facts


def localization_hits(localizer, scenes) -> list[bool]:
    """Whether each single-digit scene's best box is right (label and IoU >= 0.5)."""
    from overfeat_scratch.detect.localize import localization_error, localize

    return [
        localization_error([localize(localizer, s.image).top(1)], [s.annotations[0]], top=(1,))[
            "top1"
        ]
        == 0
        for s in scenes
    ]


def detection_map(scenes, found) -> float:
    """mAP@0.5 of the detections ``found`` (one list of predictions per scene)."""
    from overfeat_scratch.datasets.scenes import coco_dict
    from overfeat_scratch.detect.detection import coco_results
    from overfeat_scratch.detect.evaluation import evaluate_detections

    gt = coco_dict(scenes, [f"{k:06d}.png" for k in range(1, len(scenes) + 1)])
    rows = [(k, p) for k, preds in enumerate(found, start=1) for p in preds]
    return evaluate_detections(gt, coco_results(rows)).map50


# The breakdown: name -> which scenes (by their facts).
GROUPS = {
    "light ink": lambda f: not f["dark"],
    "dark ink": lambda f: f["dark"],
    "JPEG": lambda f: f["jpeg"],
    "no JPEG": lambda f: not f["jpeg"],
    "clutter above median": None,  # filled per run: the task's median clutter
    "clutter below median": None,
}


def groups_of(facts) -> dict:
    """Scene indices of each group of :data:`GROUPS`."""
    median = float(np.median([f["clutter"] for f in facts]))
    out = {}
    for name, test in GROUPS.items():
        if name == "clutter above median":
            test = lambda f: f["clutter"] > median  # noqa: E731
        elif name == "clutter below median":
            test = lambda f: f["clutter"] <= median  # noqa: E731
        out[name] = [i for i, f in enumerate(facts) if test(f)]
    return out


def run_task(model_path: str | None, task: str, n: int, seed: int, variant="as drawn") -> dict:
    """One model on one task and variant (:data:`VARIANTS`): the overall score and
    each group's."""
    from overfeat_scratch.detect.detection import detect
    from overfeat_scratch.detect.localize import Localizer

    localizer = Localizer.from_checkpoint(model_path)
    scenes, facts = unseen_scenes(n, seed, task == "localization", VARIANTS[variant])
    t0 = time.perf_counter()
    if task == "localization":
        hits = localization_hits(localizer, scenes)
        score = lambda idx: 1 - float(np.mean([hits[i] for i in idx]))  # noqa: E731
    else:
        found = [detect(localizer, s.image) for s in scenes]
        found = [f.top(len(f.boxes)) for f in found]
        score = lambda idx: detection_map([scenes[i] for i in idx], [found[i] for i in idx])  # noqa: E731
    out = {"score": score(range(n)), "n": n, "seed": seed, "variant": variant}
    out["groups"] = {
        name: {"score": score(idx), "n": len(idx)} for name, idx in groups_of(facts).items() if idx
    }
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="scenes per task")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--shipped", help="checkpoint to score as 'shipped' (default: shipped)")
    parser.add_argument(
        "--before", help="checkpoint to score as 'before' (default: the plain one shipped)"
    )
    parser.add_argument("--tuning", action="store_true", help="draw from TUNING_SEEDS")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.n < 1 or args.jobs < 1:
        parser.error("--n and --jobs must be positive")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from overfeat_scratch.detect.localize import PLAIN_REGRESSOR

    paths = {"shipped": args.shipped, "before": args.before or str(PLAIN_REGRESSOR)}
    seeds = TUNING_SEEDS if args.tuning else SEEDS
    jobs = [
        (m, v, t)
        for v in VARIANTS
        for t in ("localization", "detection")
        for m in ("shipped", "before")
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(run_task, paths[job[0]], job[2], args.n, seeds[job[2]], job[1])
            for job in jobs
        }
        results = {"|".join(job): futures[job].result() for job in jobs}
    print(f"{args.n} scenes a task from another generator (seeds {seeds})")
    for variant in VARIANTS:
        print(f"\ndigits {variant}:")
        print("| scenes | shipped top-1 error | before | shipped mAP@0.5 | before |")
        print("|---|---:|---:|---:|---:|")
        for name in ["all", *GROUPS]:
            cells = []
            for task, fmt in (("localization", "{:.1%}"), ("detection", "{:.3f}")):
                for model in ("shipped", "before"):
                    r = results[f"{model}|{variant}|{task}"]
                    g = r if name == "all" else r["groups"].get(name)
                    cells.append("-" if g is None else fmt.format(g["score"]))
            print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        path = Path(args.json)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
