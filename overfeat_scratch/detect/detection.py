"""Detection (paper Section 5): a background class, negatives mined on the fly.

``mini`` learnt digits from centred MNIST windows. Run densely over a scene it
must still answer a digit at every window, and it answers confidently on
windows that hold half a digit, a digit at the wrong size, or a fragment of
clutter: it has never been shown those. Detection fixes that the paper's way:

- one more output, *background*: ``mini-detector`` is ``mini`` with 11 outputs,
  initialised from the trained ``mini`` (the background row starts at zero);
- training *spatially*: the network runs densely over patches of training scenes
  and every output window gets a label from the true boxes
  (:func:`window_labels`): the digit, when the window frames it (centred, at the
  size mini knows); background, when it frames no digit; no label (ignored)
  in the grey zone between;
- *negatives mined on the fly*: an image has a few positive windows and hundreds
  of background ones. Per image the loss takes every positive, a few random
  negatives and the most offending negatives of the current forward pass (those
  with the highest non-background score), not all of them and not in separate
  bootstrapping passes (:class:`MinedDetection`).

The windows are labelled at the coarse output stride (4 pixels for mini); crops
start at any pixel, so the network sees every sub-stride shift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..common.checks import InputError
from ..datasets.coco import CocoResult, results_json
from ..datasets.digits import DIGITS
from ..nn.layers import Sequential
from ..nn.train import TrainConfig
from .pyramid import SCALE_FACTORS, resize_scene, scene_border, scene_input
from .settings import DetectSettings, MergeSettings

BACKGROUND = DIGITS  # the extra output of mini-detector, after the ten digits
PATCH = 64  # side of the training patches cut from resized scenes


@dataclass(frozen=True)
class LabelRule:
    """When a window is a digit, background, or neither (sizes in windows).

    Positive for a digit: its box height is ``pos_height`` of the window, its
    centre within ``pos_offset`` of the window's centre (both axes), and at least
    ``pos_coverage`` of the box inside the window. Ignored: a digit comes close
    (``near_*``) without being positive. Background: everything else.
    """

    pos_height: tuple[float, float] = (0.45, 0.85)
    pos_offset: float = 0.19
    pos_coverage: float = 0.7
    near_height: tuple[float, float] = (0.3, 1.15)
    near_offset: float = 0.4
    near_coverage: float = 0.35


RULE = LabelRule()

DETECTOR_CONFIG = TrainConfig(
    epochs=6,
    batch_size=16,
    learning_rate=0.02,
    lr_decay_epochs=(4, 5),
    lr_decay_factor=0.3,
    momentum=0.9,
    weight_decay=5e-4,
    init_std="he",
    pad=0,
    flips=False,
)


def window_labels(boxes, labels, out_h, out_w, stride, window, rule: LabelRule = RULE):
    """``(out_h, out_w)`` int labels of a dense map's windows from the true boxes.

    ``boxes (k, 4)`` corners in the pixels of the image the map was computed on;
    ``labels (k,)`` digits. Returns the digit, :data:`BACKGROUND`, or ``-1``
    (ignored); with two positive digits the closer centre wins.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    out = np.full((out_h, out_w), BACKGROUND, np.int64)
    if len(boxes) == 0:
        return out
    wy = stride * np.arange(out_h, dtype=np.float64)[:, None, None]
    wx = stride * np.arange(out_w, dtype=np.float64)[None, :, None]
    x0, y0, x1, y1 = (boxes[:, k][None, None, :] for k in range(4))
    height = (y1 - y0) / window
    offset = (
        np.maximum(
            np.abs((x0 + x1) / 2 - (wx + window / 2)), np.abs((y0 + y1) / 2 - (wy + window / 2))
        )
        / window
    )
    inter_w = np.clip(np.minimum(x1, wx + window) - np.maximum(x0, wx), 0, None)
    inter_h = np.clip(np.minimum(y1, wy + window) - np.maximum(y0, wy), 0, None)
    coverage = inter_w * inter_h / np.maximum((x1 - x0) * (y1 - y0), 1e-12)
    positive = (
        (height >= rule.pos_height[0])
        & (height <= rule.pos_height[1])
        & (offset <= rule.pos_offset)
        & (coverage >= rule.pos_coverage)
    )
    near = (
        (height >= rule.near_height[0])
        & (height <= rule.near_height[1])
        & (offset <= rule.near_offset)
        & (coverage >= rule.near_coverage)
    )
    out[near.any(axis=2)] = -1
    closest = np.where(positive, offset, np.inf).argmin(axis=2)
    is_pos = positive.any(axis=2)
    out[is_pos] = labels[closest[is_pos]]
    return out


def detection_patches(
    scenes,
    seed: int,
    per_scene: int = 2,
    patch: int = PATCH,
    stride: int = 4,
    window: int = 32,
    factors=SCALE_FACTORS,
    rule: LabelRule = RULE,
    progress: bool = False,
    normalize: bool = True,
):
    """``(patches (N, 1, patch, patch) float32, labels (N, h, w) int64)`` for training.

    Each patch is cut from a scene resized by one of ``factors``: half of them
    centred (with jitter) on a random digit at a factor that brings it to the size
    the positives need, the others anywhere at a random factor. Resized scenes get
    the border that dense evaluation adds (:data:`~.pyramid.BORDER`); those still
    smaller than the patch are padded with the scene's median grey. Labels are
    :func:`window_labels` of the ``h = w = (patch - window) // stride + 1`` windows.
    ``normalize``: scenes as :func:`~.pyramid.scene_input` makes them.
    """
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    border = scene_border(window)
    out = (patch - window) // stride + 1
    factors = np.asarray(factors, np.float64)
    patches, label_maps = [], []
    for scene in tqdm(scenes, desc="detection patches", disable=not progress, unit="scene"):
        image = scene_input(scene.image, normalize)
        grey = np.median(image)
        boxes = np.array([a["box"] for a in scene.annotations], np.float64).reshape(-1, 4)
        digits = np.array([a["label"] for a in scene.annotations], np.int64)
        for _ in range(per_scene):
            focus = len(boxes) > 0 and rng.random() < 0.5
            if focus:
                k = rng.integers(len(boxes))
                target = rng.uniform(*rule.pos_height) * window
                factor = float(
                    factors[
                        np.argmin(np.abs(np.log(factors * (boxes[k, 3] - boxes[k, 1]) / target)))
                    ]
                )
            else:
                factor = float(rng.choice(factors))
            resized, (fx, fy) = resize_scene(image, factor, border, grey)
            h, w = resized.shape
            scaled = boxes * np.array([fx, fy, fx, fy]) + border
            canvas_h, canvas_w = max(h, patch), max(w, patch)
            canvas = np.full((canvas_h, canvas_w), grey, np.float32)
            canvas[:h, :w] = resized
            if focus:
                cx = (scaled[k, 0] + scaled[k, 2]) / 2 + rng.uniform(-1, 1) * window / 4
                cy = (scaled[k, 1] + scaled[k, 3]) / 2 + rng.uniform(-1, 1) * window / 4
                left = int(np.clip(round(cx - patch / 2), 0, canvas_w - patch))
                top = int(np.clip(round(cy - patch / 2), 0, canvas_h - patch))
            else:
                left = int(rng.integers(canvas_w - patch + 1))
                top = int(rng.integers(canvas_h - patch + 1))
            patches.append(canvas[top : top + patch, left : left + patch])
            shifted = scaled - np.array([left, top, left, top])
            label_maps.append(window_labels(shifted, digits, out, out, stride, window, rule))
    return np.stack(patches)[:, None].astype(np.float32), np.stack(label_maps)


class MinedDetection:
    """Softmax cross-entropy on mined windows of dense maps (the detection objective).

    Labels are ``(N, h, w)`` maps from :func:`window_labels`. Per image the loss
    averages over every positive window, ``random_negatives`` background windows
    drawn at random and the ``hard_negatives`` background windows with the highest
    non-background probability in this very forward pass (``mining=False``: all
    negatives drawn at random, for the ablation). Ignored windows never count.
    The error is balanced: the mean of the error on positive windows and on
    background windows, over all labelled windows.
    """

    name = "detection"

    def __init__(self, random_negatives=8, hard_negatives=8, mining=True, seed=0):
        self.random_negatives = random_negatives
        self.hard_negatives = hard_negatives
        self.mining = mining
        self.rng = np.random.default_rng(seed)

    def start_epoch(self, seed: int, epoch: int) -> None:
        """The random negatives of an epoch come from ``(seed, epoch)``, so that a
        resumed run draws the same ones."""
        self.rng = np.random.default_rng([seed, epoch, 1])

    def example_size(self, net, examples) -> int:
        window = net.window()
        if examples.ndim != 4 or examples.shape[1] != net.in_channels:
            raise InputError(
                f"train: expected patches (N, {net.in_channels}, S, S), got {examples.shape}"
            )
        if examples.shape[2] != examples.shape[3] or examples.shape[2] < window:
            raise InputError(
                f"train: expected square patches of at least the {window}-pixel window, "
                f"got {examples.shape[2]}x{examples.shape[3]}"
            )
        return examples.shape[2]

    def select(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N, h, w)`` 0/1 weights of the windows the loss uses."""
        n = len(labels)
        weights = (labels >= 0) & (labels != BACKGROUND)
        offending = 1 - probs[:, BACKGROUND]
        for i in range(n):
            negatives = np.flatnonzero(labels[i].reshape(-1) == BACKGROUND)
            if negatives.size == 0:
                continue
            chosen = []
            if self.mining and self.hard_negatives:
                order = np.argsort(-offending[i].reshape(-1)[negatives], kind="stable")
                chosen.extend(negatives[order[: self.hard_negatives]])
            rest = np.setdiff1d(negatives, chosen)
            count = self.random_negatives + (0 if self.mining else self.hard_negatives)
            if rest.size and count:
                chosen.extend(self.rng.choice(rest, size=min(count, rest.size), replace=False))
            weights[i].reshape(-1)[np.asarray(chosen, np.int64)] = True
        return weights

    def loss(self, backend, scores, labels):
        from ..nn.dense import softmax

        logits = backend.to_numpy(scores).astype(np.float64)
        probs = softmax(logits)
        weights = self.select(probs, labels)
        count = max(int(weights.sum()), 1)
        safe = np.where(labels >= 0, labels, 0)
        picked = np.take_along_axis(probs, safe[:, None], axis=1)[:, 0]
        loss = float(-np.sum(np.log(np.maximum(picked, 1e-30)) * weights) / count)
        onehot = np.zeros_like(probs)
        np.put_along_axis(onehot, safe[:, None], 1, axis=1)
        grad = (probs - onehot) * weights[:, None] / count
        right = int(np.sum((probs.argmax(axis=1) == labels) & weights))
        dtype = backend.to_numpy(scores).dtype
        return loss, backend.asarray(grad.astype(dtype), dtype=dtype), right, count

    def error(self, net, examples, labels, batch_size=256) -> float:
        return detection_window_errors(net, examples, labels, batch_size)["balanced"]


def detection_window_errors(net: Sequential, patches, labels, batch_size=256) -> dict:
    """Error on the positive and on the background windows of labelled patches."""
    was_training = net.training
    net.eval()
    predicted = []
    for start in range(0, len(patches), batch_size):
        out = net.backend.to_numpy(net.forward(patches[start : start + batch_size]))
        predicted.append(out.argmax(axis=1))
    net.train(was_training)
    predicted = np.concatenate(predicted)
    pos = (labels >= 0) & (labels != BACKGROUND)
    neg = labels == BACKGROUND
    pos_error = float(np.mean(predicted[pos] != labels[pos])) if pos.any() else 0.0
    neg_error = float(np.mean(predicted[neg] != BACKGROUND)) if neg.any() else 0.0
    return {"positive": pos_error, "background": neg_error, "balanced": (pos_error + neg_error) / 2}


def detector_from_classifier(classifier: Sequential, seed: int = 0) -> Sequential:
    """``mini-detector`` initialised from a trained ``mini``: every layer copied, the
    last one extended by a background row of zeros."""
    from ..nn.networks import build_network

    if classifier.name != "mini":
        raise InputError(
            f"detector_from_classifier: expected the mini network, got {classifier.name}"
        )
    detector = build_network("mini-detector", seed=seed)
    state = {k: np.array(v) for k, v in classifier.state_dict().items()}
    target = detector.state_dict()
    for key, value in target.items():
        source = state[key]
        if source.shape != value.shape:  # the last layer: one more output
            grown = np.zeros(value.shape, value.dtype)
            grown[: source.shape[0]] = source
            state[key] = grown
    detector.load_state_dict(state)
    if classifier.backend.name != "numpy":
        detector.to(classifier.backend)
    return detector


# --------------------------------------------------------------------------------------
# Inference: the localization pipeline on every object, then merge or suppress


def check_detector(localizer, source="the localizer") -> None:
    """Refuse a localizer whose classifier has no background class.

    Without one, every window of a scene must vote for some digit, and empty
    ground becomes confident detections. ``source`` names the checkpoint in the
    message.
    """
    classifier = localizer.classifier
    window = classifier.window()
    outputs = classifier.output_shape((classifier.in_channels, window, window))[0]
    if outputs != DIGITS + 1:
        raise InputError(
            f"detect: {source} reads the features of {classifier.name!r}, which has {outputs} "
            f"outputs and no background class; detection needs a regressor trained on a "
            "mini-detector (train-detector, then train-regressor --checkpoint on its "
            "checkpoint); for one object per image, use localize"
        )


def detect(localizer, image, factors=None, merge=None, settings=None, fine=True):
    """Detections of an ``(H, W)`` uint8 grey image: ``Localization`` with the boxes
    that survive, best first (paper Section 5). The localizer's classifier must have
    a background class (:func:`check_detector`)."""
    from .localize import Localization, localize, window_candidates

    check_detector(localizer)
    settings = DetectSettings() if settings is None else settings
    if settings.final not in ("merge", "nms"):
        raise InputError(f"detect: final step {settings.final!r}; expected 'merge' or 'nms'")
    merge = MergeSettings() if merge is None else merge
    if settings.final == "merge":
        result = localize(localizer, image, factors, merge, fine)
        if settings.after_merge_iou is not None and len(result.boxes):
            classes = result.classes if settings.after_merge_classes else None
            result.keep(
                localizer.backend.non_max_suppression(
                    result.boxes, result.confidences, classes, settings.after_merge_iou
                )
            )
    else:
        cand, dense_seconds = window_candidates(localizer, image, factors, merge, fine)
        t0 = time.perf_counter()
        keep = localizer.backend.non_max_suppression(
            cand.boxes, cand.confidences, cand.classes, settings.nms_iou
        )
        members = np.full(len(cand.boxes), -1, np.int64)
        members[keep] = np.arange(len(keep))
        result = Localization(
            cand.boxes[keep],
            cand.classes[keep],
            cand.confidences[keep],
            np.ones(len(keep), np.int64),
            cand,
            members,
            {"dense": dense_seconds, "merge": time.perf_counter() - t0},
        )
    keep = np.flatnonzero(result.confidences >= settings.min_score)[: settings.max_detections]
    return result.keep(keep)


def coco_detections(rows, label_to_id=None, digits=None) -> list[CocoResult]:
    """COCO results from ``(image_id, prediction)`` pairs, where a prediction is
    ``{"box": (x0, y0, x1, y1), "label": digit, "score": s}`` (as ``Localization.top``
    gives). ``label_to_id``: digit -> category id (default: the package's, digit + 1);
    ``digits``: round the box to that many decimals (and the score to 5), for files."""
    out = []
    for image_id, pred in rows:
        x0, y0, x1, y1 = (float(v) for v in pred["box"])
        bbox = [x0, y0, x1 - x0, y1 - y0]
        score = float(pred["score"])
        if digits is not None:
            bbox, score = [round(v, digits) for v in bbox], round(score, 5)
        label = int(pred["label"])
        category = label + 1 if label_to_id is None else label_to_id[label]
        out.append(CocoResult(int(image_id), int(category), tuple(bbox), score))
    return out


def coco_results(rows, label_to_id=None, digits=None) -> list[dict]:
    """The entries of a COCO results file (:func:`coco_detections` as JSON-ready dicts),
    what :func:`~overfeat_scratch.detect.evaluation.evaluate_detections` reads."""
    return results_json(coco_detections(rows, label_to_id, digits))
