"""The main job (``make demo``): the whole paper on the shipped weights, training nothing.

1. **classification**: ``mini``, trained on MNIST by the package's own ``train``
   command, classifies MNIST test digits; run densely, with offset pooling, over a
   generated scene it gives one class map per digit (a figure);
2. **localization**: the shipped localizer (the detector's features, its classifier
   and the box regressor) on freshly generated single-digit test scenes: the
   ILSVRC-style error, and a figure of one scene's boxes before and after the
   greedy merge;
3. **detection**: the same on multi-digit test scenes: mAP at IoU 0.5 by the
   package's evaluator, and a figure of the final detections;
4. the paper's two networks: their layer tables and the time of one forward pass
   on a random window-sized image.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .nn import paper


def classify_digits(net, count: int) -> float:
    from .datasets.digits import mnist_windows
    from .datasets.mnist import load_mnist
    from .nn.train import evaluate

    images, labels = load_mnist("test")
    error, _ = evaluate(net, mnist_windows(images[:count]), labels[:count].astype(np.int64))
    return error


def scene_figure(net, out: Path, seed: int) -> tuple[Path, list]:
    """Dense class maps of ``net`` over one generated test scene, saved as a PNG."""
    from matplotlib.patches import Rectangle

    from .common.plots import new_figure, save_figure
    from .datasets.digits import DIGITS, to_input
    from .datasets.scenes import SceneConfig, generate_scenes
    from .nn.dense import dense_evaluate, softmax

    # Digits at MNIST's scale (20-26 pixels tall) on a clean background: ``mini`` is a
    # classifier of 32x32 windows with no background class (the detector adds one).
    config = SceneConfig(
        min_digits=3,
        min_digit_height=20,
        max_digit_height=26,
        noise=0.0,
        fragments=0.0,
        max_size=128,
    )
    scene = generate_scenes(1, seed=seed, split="test", config=config)[0]
    image = scene.image
    dense = dense_evaluate(net, to_input(image[None]), fine=True)
    probabilities = softmax(dense.scores)[0]  # (10, H', W')
    confidence = probabilities.max(0)
    # Output (i, j) is the window at (stride*j, stride*i); draw each at its centre.
    half, s = dense.window / 2, dense.stride
    extent = (
        half - s / 2,
        half + s * (probabilities.shape[2] - 0.5),
        half + s * (probabilities.shape[1] - 0.5),
        half - s / 2,
    )
    fig = new_figure(figsize=(14, 5.4))
    axes = fig.subplots(2, 6)
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
    for ann in scene.annotations:
        x0, y0, x1, y1 = ann["box"]
        axes[0, 0].add_patch(
            Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.2
            )
        )
        axes[0, 0].text(x0, y0 - 2, str(ann["label"]), color="lime", fontsize=9)
    axes[0, 0].set_title(f"test scene {image.shape[0]}x{image.shape[1]}")
    for digit in range(DIGITS):
        ax = axes[(digit + 1) // 6, (digit + 1) % 6]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.imshow(probabilities[digit], cmap="magma", vmin=0, vmax=1, alpha=0.7, extent=extent)
        ax.set_title(f"p(digit {digit})")
    sure = np.where(confidence > 0.95, probabilities.argmax(0), np.nan)
    axes[1, 5].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[1, 5].imshow(sure, cmap="tab10", vmin=-0.5, vmax=9.5, extent=extent, alpha=0.8)
    axes[1, 5].set_title("digit where p > 0.95")
    for ax in axes.flat:
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"mini, dense with offset pooling: a 32x32 window every {dense.stride} pixels "
        f"({probabilities.shape[1]}x{probabilities.shape[2]} windows), each map drawn at the "
        "windows' centres"
    )
    fig.tight_layout()
    path = out / "scene_class_maps.png"
    save_figure(fig, path)
    return path, scene.annotations


def localization_demo(localizer, out: Path, seed: int, count: int) -> tuple[dict, Path]:
    """Localization error on ``count`` single-digit test scenes; the merge figure."""
    from .common.plots import new_figure, save_figure, show_boxes
    from .datasets.scenes import generate_scenes
    from .detect.localize import evaluate_localization, localize, single_digit_config

    scenes = generate_scenes(count, seed + 100, "test", single_digit_config())
    error = evaluate_localization(localizer, scenes)
    scene = scenes[0]
    result = localize(localizer, scene.image)
    cand = result.candidates
    truth = [scene.annotations[0]["box"]]
    fig = new_figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3)
    strongest = np.argsort(-cand.confidences, kind="stable")[:300]
    show_boxes(axes[0], scene.image, cand.boxes[strongest], linewidth=0.5, color="tab:cyan")
    axes[0].set_title(f"{len(cand.boxes)} regressed boxes (the 300 most confident)")
    top = result.top(5)
    show_boxes(
        axes[1],
        scene.image,
        [p["box"] for p in top],
        [f"{p['label']}: {p['score']:.1f} ({p['windows']} windows)" for p in top],
    )
    axes[1].set_title(f"merged into {len(result.boxes)}: the 5 best")
    show_boxes(axes[2], scene.image, [top[0]["box"]], [f"digit {top[0]['label']}"], truths=truth)
    axes[2].set_title("top-1 (orange) and the true box (green)")
    fig.suptitle("localization: regress a box at every window, then accumulate")
    fig.tight_layout()
    path = out / "localization_merge.png"
    save_figure(fig, path)
    return error, path


def detection_demo(localizer, out: Path, seed: int, count: int, min_score: float):
    """mAP of the detector on ``count`` multi-digit test scenes; a figure of four."""
    from .common.plots import new_figure, save_figure, show_boxes
    from .datasets.scenes import coco_dict, generate_scenes
    from .detect.detection import coco_results, detect
    from .detect.evaluation import evaluate_detections

    scenes = generate_scenes(count, seed + 200, "test")
    gt = coco_dict(scenes, [f"{k:06d}.png" for k in range(1, count + 1)])
    found = [detect(localizer, scene.image).top(100) for scene in scenes]
    rows = [(k, pred) for k, detections in enumerate(found, start=1) for pred in detections]
    evaluation = evaluate_detections(gt, coco_results(rows))
    fig = new_figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 4)
    for ax, scene, detections in zip(axes, scenes, found, strict=False):
        shown = [p for p in detections if p["score"] >= min_score]
        show_boxes(
            ax,
            scene.image,
            [p["box"] for p in shown],
            [f"{p['label']} ({p['score']:.0f})" for p in shown],
            truths=[a["box"] for a in scene.annotations],
        )
    fig.suptitle(
        f"detections with a merged score of at least {min_score:g} (orange); true boxes "
        "dashed green"
    )
    fig.tight_layout()
    path = out / "detections.png"
    save_figure(fig, path)
    return evaluation, path


def paper_networks(backend: str, seed: int, repeats: int) -> None:
    from .nn.networks import build_network
    from .nn.summary import format_table

    for model in ("fast", "accurate"):
        window = paper.WINDOW[model]
        print(
            f"\n== {model} model: window {window}x{window}, "
            f"total stride {paper.TOTAL_STRIDE[model]} =="
        )
        t0 = time.perf_counter()
        net = build_network(model, seed=seed, backend=backend).eval()
        build = time.perf_counter() - t0
        print(format_table(net))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((1, 3, window, window), dtype=np.float32)
        net.backend.to_numpy(net.forward(x))  # warm-up (the first call compiles kernels)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            scores = net.backend.to_numpy(net.forward(x))
            times.append(time.perf_counter() - t0)
        best = min(times)
        gmacs = net.multiply_adds((3, window, window)) / 1e9
        print(
            f"built in {build:.1f} s; forward of one {window}x{window} image on "
            f"{net.backend.name}: {best * 1e3:.1f} ms (best of {repeats}), "
            f"{2 * gmacs / best:.1f} GFLOP/s; output {scores.shape}, "
            f"top class {int(scores.reshape(-1).argmax())} (random weights)"
        )


def run(
    out="out/demo", backend="numpy", seed=0, repeats=3, digits=2000, scenes=20, min_score=5.0
) -> None:
    from .common.checks import check_positive_int
    from .datasets.digits import shipped_checkpoint
    from .detect.localize import Localizer, shipped_regressor
    from .nn.train import load_checkpoint

    check_positive_int(repeats, "demo: repeats")
    out = Path(out)
    path = shipped_checkpoint()
    net, meta, _ = load_checkpoint(path, "mini", backend=backend)
    net.eval()
    print(
        f"== mini: {path.name}, trained {meta['epoch']} epochs on MNIST "
        f"(stated test error {100 * meta['history'][-1]['test_error']:.2f}%) =="
    )
    error = classify_digits(net, digits)
    print(f"classified the first {digits} MNIST test digits: {100 * error:.2f}% error")
    figure, annotations = scene_figure(net, out, seed)
    digits_in_scene = ", ".join(str(a["label"]) for a in annotations)
    print(f"dense class maps over a generated test scene (digits {digits_in_scene}): {figure}")

    localizer = Localizer.from_checkpoint(shipped_regressor(), backend=backend)
    kind = "class-specific" if localizer.class_specific else "shared"
    print(
        f"\n== localization: {shipped_regressor().name}, a {kind} box regressor on the "
        f"pooled features of {localizer.classifier.name} =="
    )
    error, figure = localization_demo(localizer, out, seed, scenes)
    print(
        f"{scenes} single-digit test scenes: localization error top-1 "
        f"{100 * error['top1']:.1f}%, top-5 {100 * error['top5']:.1f}% (right class and "
        f"IoU >= 0.5)"
    )
    print(f"boxes before and after the greedy merge: {figure}")

    print("\n== detection: the same networks, every digit of multi-digit scenes ==")
    evaluation, figure = detection_demo(localizer, out, seed, scenes, min_score)
    print(
        f"{scenes} test scenes with 1 to 5 digits: mAP@0.5 {evaluation.map50:.3f}, "
        f"AP@[.5:.95] {evaluation.map:.3f}"
    )
    print(f"final detections: {figure}")
    paper_networks(backend, seed, repeats)
