"""Localization (paper Section 4): regress a box at every window, then accumulate.

The classifier says *what* is in each window; a second head on the same pooled
features says *where*: four numbers per window (per class, or shared by all
classes), the edges of the object's box. Both heads are convolutional, so one
dense pass gives a class distribution and a box for every window of every scale,
at every pooling offset. The greedy merge (:mod:`~overfeat_scratch.ops.merge`) then fuses the boxes
that agree and adds up their confidences: many windows at several scales voting
for the same box beat one confident window.

The box parameterisation (documented choice; the paper only says "the coordinates
of the box edges"): for a window of side ``W`` centred at ``(cx, cy)`` in the
resized image, the four outputs are

    ``t = ((x0 - cx) / W, (y0 - cy) / W, (x1 - cx) / W, (y1 - cy) / W)``,

the box's edges relative to the window's centre in units of the window. They
are translation invariant (a window sees only itself), of order 1, and turn back
into pixels of the original image exactly: ``x = (cx + W t) / fx`` with ``fx`` the
resize factor of that axis.

Training (:func:`regression_examples`, :func:`train_regressor`): windows from
single-digit scenes at every scale of :data:`SCALE_FACTORS`, the classifier's
feature layers frozen. A window is used only if it holds at least
:data:`MIN_COVERAGE` (half) of the digit's box: the others are left to the windows
that do contain the object.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..common.checks import InputError, check_finite
from ..common.fileio import SHIPPED_DIR, shipped_file
from ..datasets.digits import DIGITS
from ..nn.dense import dense_evaluate_heads, last_pool_index, run_layers, softmax
from ..nn.geometry import Geometry, stages_of
from ..nn.layers import Sequential, multiply_adds_of
from ..nn.train import CLASSIFICATION, TrainConfig, load_checkpoint, load_extra_network, train
from ..ops.boxes import iou_pairs
from .pyramid import (
    BORDER,
    LEGACY_SCALE_FACTORS,
    SCALE_FACTORS,
    resize_scene,
    scene_border,
    scene_input,
    window_centers,
)
from .settings import MergeSettings

# A window trains the regressor only if it covers at least this much of the box.
MIN_COVERAGE = 0.5

REGRESSOR_CONFIG = TrainConfig(
    epochs=12,
    batch_size=128,
    learning_rate=0.02,
    lr_decay_epochs=(6, 9, 11),
    lr_decay_factor=0.3,
    momentum=0.9,
    weight_decay=5e-4,
    init_std="he",
    pad=0,
    flips=False,
)

# The shipped localizer: the regressor trained by `overfeat-scratch train-regressor`,
# with the detector whose features it reads stored inside (see localizer.json).
SHIPPED_REGRESSOR = SHIPPED_DIR / "localizer.npz"
# The localizer trained on plain scenes only (fixed grey, light ink, raw input, six
# scales): the shipped networks without their training state, kept as the baseline
# that the robustness benchmark scores as "before".
PLAIN_REGRESSOR = SHIPPED_DIR / "localizer_plain.npz"


# --------------------------------------------------------------------------------------
# Boxes relative to windows


def encode_boxes(boxes, centers, window: int) -> np.ndarray:
    """``(N, 4)`` corner boxes to window-relative targets, ``centers (N, 2)`` as (cx, cy)."""
    boxes = np.asarray(boxes, np.float64)
    c = np.asarray(centers, np.float64)
    return (boxes - np.concatenate([c, c], axis=1)) / window


def decode_boxes(t, centers, window: int) -> np.ndarray:
    """Inverse of :func:`encode_boxes`."""
    c = np.asarray(centers, np.float64)
    return np.asarray(t, np.float64) * window + np.concatenate([c, c], axis=1)


# --------------------------------------------------------------------------------------
# The objective


# How the regressor's L2 loss measures an edge's error (:class:`BoxRegression`):
# "window", the paper's, in units of the window; "box", in units of the true box's
# width (left and right edges) or height (top and bottom), so that a thin "1" counts
# its pixels as the IoU does. Checkpoints record theirs; older ones were "window".
EDGE_ERRORS = ("box", "window")
# "box" measures against at least this extent (in windows), so that no box is
# thinner than a stroke: 0.1 of mini's 32-pixel window is 3.2 pixels.
MIN_BOX_EXTENT = 0.1


def check_edge_errors(edge_errors: str) -> str:
    if edge_errors not in EDGE_ERRORS:
        raise InputError(f"edge errors {edge_errors!r}; expected one of {EDGE_ERRORS}")
    return edge_errors


def edge_weights(target, edge_errors: str) -> np.ndarray:
    """``(N, 4)`` factors that turn the window-unit errors of the edges ``target
    (N, 4)`` into the units ``edge_errors`` names (:data:`EDGE_ERRORS`)."""
    check_edge_errors(edge_errors)
    target = np.asarray(target)
    if edge_errors == "window":
        return np.ones_like(target)
    width = np.maximum(target[:, 2] - target[:, 0], MIN_BOX_EXTENT)
    height = np.maximum(target[:, 3] - target[:, 1], MIN_BOX_EXTENT)
    return (1 / np.stack([width, height, width, height], axis=1)).astype(target.dtype)


class BoxRegression:
    """What the regressor learns: L2 on the window-relative box edges.

    Labels are ``(N, 5)`` float rows ``(class, t0, t1, t2, t3)``. Class-specific
    regressors output ``4 * classes`` numbers and only the true class's four are
    trained; a shared regressor outputs four. ``edge_errors`` (:data:`EDGE_ERRORS`):
    each edge's error in window units (``"window"``, the paper's) or as a fraction of
    the true box's width or height (``"box"``, the default): the loss is
    ``0.5 * sum((w * (pred - t))**2) / N`` with ``w`` from :func:`edge_weights`.
    A window counts as *right* when its predicted box has IoU >= 0.5 with the true
    one (the localization criterion), so ``train_error``/``test_error`` are the
    fraction of windows that miss.
    """

    name = "box-regression"

    def __init__(self, class_specific: bool, edge_errors: str = "box"):
        self.class_specific = class_specific
        self.edge_errors = check_edge_errors(edge_errors)

    def example_size(self, net, examples) -> int:
        return CLASSIFICATION.example_size(net, examples)

    def start_epoch(self, seed: int, epoch: int) -> None:
        pass

    def select(self, pred: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, columns)`` picking each example's four outputs from ``(N, K)``."""
        n = len(classes)
        offset = 4 * classes if self.class_specific else np.zeros(n, np.int64)
        rows = np.repeat(np.arange(n), 4).reshape(n, 4)
        cols = offset[:, None] + np.arange(4)[None, :]
        if cols.max(initial=0) >= pred.shape[1]:
            raise InputError(
                f"box regression: class {int(classes.max())} needs output {int(cols.max())}, "
                f"the regressor has {pred.shape[1]}"
            )
        return rows, cols

    def loss(self, backend, scores, labels):
        from ..ops.losses import l2_loss

        pred = backend.to_numpy(scores).reshape(len(labels), -1)
        classes = labels[:, 0].astype(np.int64)
        target = labels[:, 1:5].astype(pred.dtype)
        rows, cols = self.select(pred, classes)
        chosen = pred[rows, cols]
        w = edge_weights(target, self.edge_errors)
        loss, grad = l2_loss(w * chosen, w * target)
        full = np.zeros_like(pred)
        full[rows, cols] = w * grad
        right = int(np.sum(iou_pairs(chosen, target) >= 0.5))
        grad = backend.asarray(full.reshape(scores.shape), dtype=pred.dtype)
        return loss, grad, right, len(labels)

    def error(self, net, examples, labels, batch_size=500) -> float:
        return float(np.mean(self.ious(net, examples, labels, batch_size) < 0.5))

    def ious(self, net, examples, labels, batch_size=500) -> np.ndarray:
        was_training = net.training
        net.eval()
        out = np.empty(len(examples))
        for start in range(0, len(examples), batch_size):
            batch = labels[start : start + batch_size]
            pred = net.backend.to_numpy(net.forward(examples[start : start + batch_size]))
            pred = pred.reshape(len(batch), -1)
            rows, cols = self.select(pred, batch[:, 0].astype(np.int64))
            out[start : start + len(batch)] = iou_pairs(pred[rows, cols], batch[:, 1:5])
        net.train(was_training)
        return out


# --------------------------------------------------------------------------------------
# Training data: windows of single-digit scenes, through the frozen features


def feature_layers(classifier: Sequential) -> list:
    """The classifier's layers up to and including its last max pool."""
    return classifier.layers[: last_pool_index(classifier) + 1]


def head_layers(classifier: Sequential) -> list:
    """The classifier's layers after its last max pool (its classification head)."""
    return classifier.layers[last_pool_index(classifier) + 1 :]


def regression_examples(
    classifier: Sequential,
    scenes,
    factors=SCALE_FACTORS,
    per_scale: int = 8,
    seed: int = 0,
    fine_stride: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
    normalize: bool = True,
    shared: bool = True,
    stats: dict | None = None,
):
    """``(features (N, C, k, k) float32, labels (N, 5) float32)`` for the regressor.

    For each single-digit scene and each scale factor (the resized scene with its
    :data:`BORDER`): every window position of the
    fine (offset-pooled) grid whose window covers at least :data:`MIN_COVERAGE` of
    the digit's box, ``per_scale`` of them drawn at random; the window's features are
    what the frozen feature layers give for it (for a network without padding, exactly
    what dense evaluation computes for that window). Labels are
    ``(class, t)`` with ``t`` from :func:`encode_boxes`. ``normalize``: as in
    :func:`scene_input` (it must match the classifier's training).

    ``shared=True`` (the default) computes the windows of a scale together, as dense
    evaluation does (:class:`SharedWindows`); ``shared=False`` cuts each window out and
    runs it alone (:class:`CroppedWindows`, the reference). Both give the same features
    (to float rounding) for the same windows. ``stats``, if given, receives the way
    used (``"shared"`` or ``"cropped"``) and the multiply-adds it took.
    """
    from tqdm import tqdm

    classifier.eval()
    window = classifier.window()
    border = scene_border(window)
    if fine_stride is None:
        fine_stride = classifier.layers[last_pool_index(classifier)].stride
        fine_stride = max(1, _total_stride(classifier) // fine_stride)
    rng = np.random.default_rng(seed)
    layers = feature_layers(classifier)
    windows = None
    if shared:
        windows = SharedWindows.for_layers(classifier, layers, window, fine_stride, batch_size)
    if windows is None:
        windows = CroppedWindows(classifier, layers, window, batch_size)
    labels = []

    for scene in tqdm(scenes, desc="regression windows", disable=not progress, unit="scene"):
        if len(scene.annotations) != 1:
            raise InputError(
                f"regression_examples: expected single-digit scenes, got one with "
                f"{len(scene.annotations)} digits"
            )
        ann = scene.annotations[0]
        image = scene_input(scene.image, normalize)
        grey = np.median(image)
        for factor in factors:
            resized, (fx, fy) = resize_scene(image, factor, border, grey)
            h, w = resized.shape
            if min(h, w) < window:
                continue
            x0, y0, x1, y1 = ann["box"]
            box = np.array([x0 * fx, y0 * fy, x1 * fx, y1 * fy]) + border
            ys = fine_stride * np.arange((h - window) // fine_stride + 1)
            xs = fine_stride * np.arange((w - window) // fine_stride + 1)
            # Fraction of the box inside each window, separable in x and y.
            cover_y = np.clip(np.minimum(ys + window, box[3]) - np.maximum(ys, box[1]), 0, None)
            cover_x = np.clip(np.minimum(xs + window, box[2]) - np.maximum(xs, box[0]), 0, None)
            area = (box[2] - box[0]) * (box[3] - box[1])
            cover = cover_y[:, None] * cover_x[None, :] / area
            ii, jj = np.nonzero(cover >= MIN_COVERAGE)
            if ii.size == 0:
                continue
            pick = rng.choice(ii.size, size=min(per_scale, ii.size), replace=False)
            tops, lefts = ys[ii[pick]], xs[jj[pick]]
            windows.add(resized, tops, lefts)
            centers = np.stack([lefts + window / 2, tops + window / 2], axis=1)
            t = encode_boxes(np.broadcast_to(box, (len(tops), 4)), centers, window)
            labels.extend([ann["label"], *row] for row in t)
    if not labels:
        raise InputError("regression_examples: no window covers half of any box")
    features = windows.features()
    if stats is not None:
        stats.update(way=windows.way, windows=len(labels), multiply_adds=windows.multiply_adds)
    return features.astype(np.float32, copy=False), np.asarray(labels, np.float32)


def _window_corners(image, tops, lefts, window: int, stride: int = 1):
    """``(tops, lefts)`` as integer arrays, checked against ``image`` (2-D)."""
    if np.ndim(image) != 2:
        raise InputError(f"windows: expected a 2-D image, got shape {np.shape(image)}")
    tops, lefts = np.asarray(tops).astype(np.int64), np.asarray(lefts).astype(np.int64)
    if tops.shape != lefts.shape or tops.ndim != 1:
        raise InputError(
            f"windows: expected tops and lefts of one length, got {tops.shape} and {lefts.shape}"
        )
    h, w = image.shape
    if tops.size and (
        tops.min() < 0 or lefts.min() < 0 or tops.max() + window > h or lefts.max() + window > w
    ):
        raise InputError(f"windows: a {window}x{window} window lies outside the {h}x{w} image")
    if np.any(tops % stride) or np.any(lefts % stride):
        raise InputError(f"windows: corners must be multiples of {stride}")
    return tops, lefts


class CroppedWindows:
    """Window features the plain way: cut each window out, run the feature layers on it.

    The reference for :class:`SharedWindows`. Windows are collected with :meth:`add`
    and run in batches of ``batch_size``; :meth:`features` returns them in the order
    they were added.
    """

    way = "cropped"

    def __init__(self, net: Sequential, layers, window: int, batch_size: int = 512):
        self.net, self.layers, self.window, self.batch_size = net, layers, window, batch_size
        self._crops, self._features = [], []
        self.multiply_adds = 0

    def add(self, image: np.ndarray, tops, lefts) -> None:
        """The windows of ``image`` (2-D) whose top-left corners are ``(tops, lefts)``."""
        w = self.window
        tops, lefts = _window_corners(image, tops, lefts, w)
        self._crops.extend(image[t : t + w, x : x + w] for t, x in zip(tops, lefts, strict=True))
        if len(self._crops) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._crops:
            backend = self.net.backend
            x = backend.asarray(np.stack(self._crops)[:, None], dtype=self.net.dtype)
            self.multiply_adds += len(x) * multiply_adds_of(self.layers, x.shape[1:])
            self._features.append(backend.to_numpy(run_layers(self.layers, x)).copy())
            self._crops.clear()

    def features(self) -> np.ndarray:
        """The features of every window added, in order: ``(N, C, k, k)``."""
        self._flush()
        if not self._features:
            raise InputError("windows: no window was added")
        return np.concatenate(self._features)


class SharedWindows:
    """Window features computed together, as dense evaluation computes them.

    The windows of one scene at one scale overlap: eight windows 2 pixels apart cover
    about a third of the pixels that eight separate crops would. So the layers before
    the last pool (the *trunk*) run once on the smallest region that holds all of
    them; the trunk's output for a window is the ``k x k`` block of the region's map at
    ``(top / s, left / s)`` (``s``: the trunk's stride, ``k``: its output size for one
    window), and the last pool turns that block into the window's features. For a
    trunk without padding, and windows on the grid of its stride, this is exactly what
    the window alone gives (:mod:`~overfeat_scratch.nn.geometry`): the same
    multiply-adds, done once instead of once per window. Regions of similar size are
    batched, padded at the bottom and right to a multiple of :attr:`QUANTUM` pixels
    (the padding lies outside every window, so it changes no feature).
    """

    QUANTUM = 4
    way = "shared"

    def __init__(self, net: Sequential, layers, window: int, stride: int, batch_size: int = 512):
        self.net, self.window, self.batch_size = net, window, batch_size
        self.trunk, self.tail = layers[:-1], layers[-1:]
        self.stride = stride
        self.size = Geometry(tuple(stages_of(self.trunk))).output_size(window, window)
        self._buckets: dict[tuple[int, int], list] = {}
        self._pending: dict[tuple[int, int], int] = {}
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._count = 0
        self.multiply_adds = 0

    @classmethod
    def for_layers(cls, net, layers, window: int, fine_stride: int, batch_size: int = 512):
        """A :class:`SharedWindows` where it is exact for ``layers`` (which end with a
        pool) and windows ``fine_stride`` apart; ``None`` where it is not (a padded
        trunk, or windows off the trunk's grid)."""
        geometry = Geometry(tuple(stages_of(layers[:-1])))
        if geometry.padding or fine_stride % geometry.stride:
            return None
        return cls(net, layers, window, geometry.stride, batch_size)

    def add(self, image: np.ndarray, tops, lefts) -> None:
        """The windows of ``image`` (2-D) whose top-left corners are ``(tops, lefts)``,
        multiples of the trunk's stride."""
        tops, lefts = _window_corners(image, tops, lefts, self.window, self.stride)
        if tops.size == 0:
            return
        top, left = int(tops.min()), int(lefts.min())
        h = int(tops.max()) - top + self.window
        w = int(lefts.max()) - left + self.window
        q = self.QUANTUM
        key = (-(-h // q) * q, -(-w // q) * q)
        rows, cols = (tops - top) // self.stride, (lefts - left) // self.stride
        region = image[top : top + h, left : left + w]
        self._buckets.setdefault(key, []).append((region, rows, cols, self._count))
        self._count += len(tops)
        self._pending[key] = self._pending.get(key, 0) + len(tops)
        if self._pending[key] >= self.batch_size:
            self._flush(key)

    def _flush(self, key) -> None:
        from numpy.lib.stride_tricks import sliding_window_view

        items, backend = self._buckets.pop(key), self.net.backend
        del self._pending[key]
        x = np.zeros((len(items), 1, *key), self.net.dtype)
        for n, (region, *_) in enumerate(items):
            x[n, 0, : region.shape[0], : region.shape[1]] = region
        maps = backend.to_numpy(run_layers(self.trunk, backend.asarray(x, dtype=self.net.dtype)))
        self.multiply_adds += len(x) * multiply_adds_of(self.trunk, x.shape[1:])
        blocks = sliding_window_view(maps, self.size, axis=(2, 3))
        which = np.concatenate([np.full(len(rows), n) for n, (_, rows, _, _) in enumerate(items)])
        rows = np.concatenate([item[1] for item in items])
        cols = np.concatenate([item[2] for item in items])
        x = backend.asarray(
            np.ascontiguousarray(blocks[which, :, rows, cols]), dtype=self.net.dtype
        )
        order = np.concatenate([start + np.arange(len(r)) for _, r, _, start in items])
        self.multiply_adds += len(x) * multiply_adds_of(self.tail, x.shape[1:])
        self._parts.append((order, backend.to_numpy(run_layers(self.tail, x)).copy()))

    def features(self) -> np.ndarray:
        """The features of every window added, in order: ``(N, C, k, k)``."""
        for key in list(self._buckets):
            self._flush(key)
        if not self._parts:
            raise InputError("windows: no window was added")
        first = self._parts[0][1]
        out = np.empty((self._count, *first.shape[1:]), first.dtype)
        for order, values in self._parts:
            out[order] = values
        return out


def _total_stride(net: Sequential) -> int:
    return Geometry.of(net).stride


def build_regressor(class_specific: bool = True, seed: int = 0, backend="numpy") -> Sequential:
    from ..nn.networks import build_network

    name = "mini-regressor" if class_specific else "mini-regressor-shared"
    return build_network(name, seed=seed, backend=backend)


def train_regressor(
    classifier: Sequential,
    train_data,
    test_data=None,
    class_specific: bool = True,
    config: TrainConfig = REGRESSOR_CONFIG,
    out_dir=None,
    progress: bool = True,
    log=print,
    meta: dict | None = None,
    resume: dict | None = None,
    regressor: Sequential | None = None,
    edge_errors: str = "box",
):
    """Train a box regressor on ``train_data`` from :func:`regression_examples`.

    Uses the classifier's training loop (:func:`.train.train`) with the
    :class:`BoxRegression` objective (``edge_errors`` as there, recorded in the
    checkpoint); every checkpoint also stores the classifier (frozen, under the key
    ``"classifier"``), so that one file localizes.
    """
    if regressor is None:
        regressor = build_regressor(class_specific, seed=config.seed, backend=classifier.backend)
    return train(
        regressor,
        config,
        train_data,
        test_data,
        out_dir=out_dir,
        progress=progress,
        log=log,
        objective=BoxRegression(class_specific, edge_errors),
        extra_networks={"classifier": classifier},
        meta={**(meta or {}), "edge_errors": edge_errors},
        resume=resume,
    )


# --------------------------------------------------------------------------------------
# Inference


@dataclass
class Localizer:
    """A classifier and the box regressor that reads its pooled features.

    ``normalize``: whether scenes are normalised (:func:`scene_input`) before the
    networks see them; ``factors``: the scales it evaluates by default. Both are
    properties of how the networks were trained, so checkpoints record them
    (those that do not are read as raw input at :data:`LEGACY_SCALE_FACTORS`).

    ``flatten``: remove a slope of the ground (uneven light) before anything else
    (:func:`~overfeat_scratch.ops.image.flatten_shading`). It touches only scenes
    whose ground rises by at least ``SHADING_MIN_RISE`` across them, and leaves the
    evenly lit ones the networks were trained on exactly as they are; it is not a
    property of the training, so checkpoints do not record it.
    """

    classifier: Sequential
    regressor: Sequential
    normalize: bool = True
    factors: tuple = SCALE_FACTORS
    flatten: bool = True

    @property
    def class_specific(self) -> bool:
        return self.regressor.name == "mini-regressor"

    @property
    def backend(self):
        """Where the networks run; the merge and NMS of their boxes run there too."""
        return self.classifier.backend

    @classmethod
    def from_checkpoint(cls, path=None, backend="numpy", flatten: bool = True) -> Localizer:
        """From a ``train-regressor`` checkpoint (default: the shipped one)."""
        path = shipped_regressor() if path is None else Path(path)
        regressor, meta, _ = load_checkpoint(path, backend=backend)
        if meta.get("objective") != BoxRegression.name:
            raise InputError(
                f"checkpoint {path}: holds a {meta.get('objective', 'classification')!r} "
                f"network ({regressor.name}), expected a box regressor from train-regressor"
            )
        classifier, _ = load_extra_network(path, "classifier", backend=backend)
        normalize, factors = input_settings(meta, path)
        return cls(classifier.eval(), regressor.eval(), normalize, factors, flatten)

    def prepare(self, image) -> np.ndarray:
        """An ``(H, W)`` uint8 grey image as this localizer's networks' input."""
        return scene_input(image, self.normalize, self.flatten)


# How a checkpoint's networks read scenes: recorded under "input" in its metadata.
# "normalized" named an earlier normalisation without the contrast step; networks
# trained on it read scenes differently, so such checkpoints are refused.
INPUT_NORMALIZED = "normalized-contrast"
INPUT_RAW = "raw"
INPUT_RETIRED = {"normalized": "ground and polarity only, without the contrast step"}


def input_record(normalize: bool = True, factors=SCALE_FACTORS) -> dict:
    """The metadata that tells :meth:`Localizer.from_checkpoint` how to read scenes."""
    return {
        "input": INPUT_NORMALIZED if normalize else INPUT_RAW,
        "scale_factors": [float(f) for f in factors],
    }


def input_settings(meta: dict, path="checkpoint") -> tuple[bool, tuple]:
    """``(normalize, factors)`` from a checkpoint's metadata (see :func:`input_record`)."""
    mode = meta.get("input", INPUT_RAW)
    if mode in INPUT_RETIRED:
        raise InputError(
            f"checkpoint {path}: input {mode!r} ({INPUT_RETIRED[mode]}) is no longer read; "
            f"expected {INPUT_RAW!r} or {INPUT_NORMALIZED!r} (train the networks again)"
        )
    if mode not in (INPUT_RAW, INPUT_NORMALIZED):
        raise InputError(
            f"checkpoint {path}: input {mode!r}; expected {INPUT_RAW!r} or {INPUT_NORMALIZED!r}"
        )
    factors = meta.get("scale_factors", LEGACY_SCALE_FACTORS)
    if (
        not isinstance(factors, list | tuple)
        or not factors
        or not all(isinstance(f, float | int) and 0 < f <= 4 for f in factors)
    ):
        raise InputError(
            f"checkpoint {path}: scale_factors {factors!r}; expected a list of factors in (0, 4]"
        )
    return mode == INPUT_NORMALIZED, tuple(float(f) for f in factors)


def shipped_regressor() -> Path:
    return shipped_file(
        SHIPPED_REGRESSOR, "regressor weights", "overfeat-scratch train-regressor --out DIR"
    )


@dataclass
class ScaleOutput:
    """One scale's dense outputs, in the original image's pixels.

    ``probabilities (C, h, w)``: the classifier's softmax at each window;
    ``boxes (K, 4, h, w)``: the regressor's box per class (``K = C``) or shared
    (``K = 1``) at each window, corners ``x0, y0, x1, y1``; ``windows (4, h, w)``:
    the windows themselves; ``size``: the resized scene's ``(h, w)``, without the
    border.
    """

    factor: float
    size: tuple[int, int]
    probabilities: np.ndarray
    boxes: np.ndarray
    windows: np.ndarray


def scale_outputs(
    localizer: Localizer,
    image: np.ndarray,
    factor: float,
    fine=True,
    border: float = BORDER,
    fill=None,
):
    """Dense class probabilities and boxes of a float ``(H, W)`` scene at one scale.

    The resized scene gets a border of ``border`` windows (:data:`BORDER`) on every
    side, of grey ``fill`` (default: the scene's median); boxes and windows are given
    in the original image's pixels (windows over the border start at negative
    coordinates). Returns ``None`` when the resized image, border included, is
    smaller than the window. Probabilities or boxes that are not finite (weights
    that overflow) are a :class:`~overfeat_scratch.common.checks.NonFiniteError`.
    """
    classifier = localizer.classifier
    pad = scene_border(classifier.window(), border)
    resized, (fx, fy) = resize_scene(image, factor, pad, fill)
    if min(resized.shape) < classifier.window():
        return None
    x = resized[None, None]
    cls_map, reg_map = dense_evaluate_heads(
        classifier, [head_layers(classifier), localizer.regressor.layers], x, fine
    )
    probs = softmax(cls_map.scores)[0]
    c, fh, fw = probs.shape
    t = reg_map.scores[0].reshape(-1, 4, fh, fw).astype(np.float64)
    window, stride = cls_map.window, cls_map.stride
    cx, cy = window_centers(fh, fw, stride, window)
    cx, cy = cx - pad, cy - pad
    scale = np.array([fx, fy, fx, fy])[None, :, None, None]
    centers = np.stack([cx, cy, cx, cy])[None]
    boxes = (centers + window * t) / scale
    half = window / 2
    windows = (centers[0] + np.array([-half, -half, half, half])[:, None, None]) / scale[0]
    size = (resized.shape[0] - 2 * pad, resized.shape[1] - 2 * pad)
    # Weights that overflow float32 give NaN probabilities, which no window's
    # confidence passes: refused here, or they would read as "nothing found".
    check_finite(probs, f"localize: the class probabilities at scale {factor}")
    check_finite(boxes, f"localize: the boxes at scale {factor}")
    return ScaleOutput(factor, size, probs, boxes, windows)


@dataclass
class Candidates:
    """Boxes going into the merge: one per (scale, top class, window)."""

    boxes: np.ndarray  # (n, 4) corners in image pixels
    classes: np.ndarray  # (n,)
    confidences: np.ndarray  # (n,) the class probability at that window
    scales: np.ndarray  # (n,) the scale factor each came from
    windows: np.ndarray  # (n, 4) the window that predicted it


def candidates(
    outputs, top_k: int, class_specific: bool, image_size, min_confidence=0.0, classes=DIGITS
):
    """The paper's ``B``: for each scale its top-k classes (by their maximum over
    the map) and the regressed box for each at every window.

    Only the first ``classes`` outputs are object classes (a detector's
    background output, the last, never is). Boxes are made well-formed (edges
    sorted) and clipped to the image; windows whose probability for the class is
    below ``min_confidence`` are left out.
    """
    height, width = image_size
    parts = []
    for out in outputs:
        if out is None:
            continue
        probs = out.probabilities[:classes]
        ranking = np.argsort(-probs.reshape(len(probs), -1).max(axis=1), kind="stable")
        for c in ranking[:top_k]:
            box = out.boxes[c if class_specific else 0].reshape(4, -1).T
            conf = probs[c].reshape(-1)
            keep = conf >= min_confidence
            n = int(keep.sum())
            parts.append(
                (
                    box[keep],
                    np.full(n, c, np.int64),
                    conf[keep].astype(np.float64),
                    np.full(n, out.factor),
                    out.windows.reshape(4, -1).T[keep],
                )
            )
    if not parts:
        empty = np.zeros((0, 4))
        return Candidates(empty, np.zeros(0, np.int64), np.zeros(0), np.zeros(0), empty)
    boxes, classes, confs, scales, windows = (np.concatenate(p) for p in zip(*parts, strict=True))
    x0 = np.clip(np.minimum(boxes[:, 0], boxes[:, 2]), 0, width)
    x1 = np.clip(np.maximum(boxes[:, 0], boxes[:, 2]), 0, width)
    y0 = np.clip(np.minimum(boxes[:, 1], boxes[:, 3]), 0, height)
    y1 = np.clip(np.maximum(boxes[:, 1], boxes[:, 3]), 0, height)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    return Candidates(boxes, classes, confs, scales, windows)


@dataclass
class Localization:
    """The merged boxes of one image, best first, and what went into them."""

    boxes: np.ndarray
    classes: np.ndarray
    confidences: np.ndarray
    counts: np.ndarray
    candidates: Candidates
    members: np.ndarray
    seconds: dict = field(default_factory=dict)

    def keep(self, indices) -> Localization:
        """Only the merged boxes at ``indices``, in that order (in place; returns self).
        ``members`` follows: candidates of a dropped box become -1."""
        indices = np.asarray(indices, np.int64)
        remap = np.full(len(self.boxes), -1, np.int64)
        remap[indices] = np.arange(len(indices))
        self.members = np.where(self.members >= 0, remap[self.members], -1)
        self.boxes, self.classes = self.boxes[indices], self.classes[indices]
        self.confidences, self.counts = self.confidences[indices], self.counts[indices]
        return self

    def top(self, k: int) -> list[dict]:
        return [
            {
                "box": tuple(float(v) for v in self.boxes[r]),
                "label": int(self.classes[r]),
                "score": float(self.confidences[r]),
                "windows": int(self.counts[r]),
            }
            for r in range(min(k, len(self.boxes)))
        ]


def window_candidates(
    localizer: Localizer,
    image,
    factors=None,
    settings: MergeSettings | None = None,
    fine: bool = True,
) -> tuple[Candidates, float]:
    """``(candidates, seconds of dense evaluation)`` of an ``(H, W)`` uint8 grey image.

    Dense classification and regression at every scale in ``factors`` (with offset
    pooling when ``fine``), then the top classes' boxes at every window
    (:func:`candidates`): what the merge (or NMS) starts from. ``factors``: by
    default the localizer's own (:attr:`Localizer.factors`).
    """
    settings = MergeSettings() if settings is None else settings
    factors = localizer.factors if factors is None else factors
    image = localizer.prepare(image)
    window = localizer.classifier.window()
    if min(image.shape) < window:
        raise InputError(
            f"localize: the image is {image.shape[0]}x{image.shape[1]}, smaller than the "
            f"network's {window}x{window} window"
        )
    t0 = time.perf_counter()
    grey = np.median(image)
    # With the border, every scale of an image at least one window large holds a window.
    outputs = [scale_outputs(localizer, image, f, fine, fill=grey) for f in factors]
    seconds = time.perf_counter() - t0
    cand = candidates(
        outputs, settings.top_k, localizer.class_specific, image.shape, settings.min_confidence
    )
    return cand, seconds


def localize(
    localizer: Localizer,
    image,
    factors=None,
    settings: MergeSettings | None = None,
    fine: bool = True,
) -> Localization:
    """Localize the objects of an ``(H, W)`` uint8 grey image (paper Section 4).

    The boxes of every window (:func:`window_candidates`), then the greedy merge;
    the merged boxes come out ranked by their summed confidence.
    """
    settings = MergeSettings() if settings is None else settings
    cand, dense_seconds = window_candidates(localizer, image, factors, settings, fine)
    t0 = time.perf_counter()
    merged = localizer.backend.greedy_merge(
        cand.boxes,
        cand.classes,
        cand.confidences,
        threshold=settings.threshold,
        score=settings.score,
        average=settings.average,
    )
    return Localization(
        merged.boxes,
        merged.classes,
        merged.confidences,
        merged.counts,
        cand,
        merged.members,
        {"dense": dense_seconds, "merge": time.perf_counter() - t0},
    )


# --------------------------------------------------------------------------------------
# The metric


def localization_error(predictions, truths, top=(1, 5), iou=0.5) -> dict:
    """ILSVRC-style localization error over images with one object each.

    ``predictions``: per image a list of ``{"box", "label"}`` ranked best first;
    ``truths``: per image the true ``{"box", "label"}``. A guess is right when its
    label is right and its box has IoU >= ``iou`` with the true box. Returns
    ``{"top1": error, "top5": error, "n": images}`` for each ``k`` in ``top``
    (each ``k >= 1``; a ``k`` given twice is counted once).
    """
    top = tuple(sorted(set(top)))
    if not top or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in top):
        raise InputError(f"localization_error: expected top-k values k >= 1, got {top}")
    if len(predictions) != len(truths):
        raise InputError(
            f"localization_error: {len(predictions)} predictions for {len(truths)} images"
        )
    if not truths:
        raise InputError("localization_error: no images")
    right = {k: 0 for k in top}
    for guesses, truth in zip(predictions, truths, strict=True):
        hits = [
            g["label"] == truth["label"]
            and iou_pairs(np.array([g["box"]]), np.array([truth["box"]]))[0] >= iou
            for g in guesses
        ]
        for k in top:
            right[k] += any(hits[:k])
    result = {f"top{k}": 1 - right[k] / len(truths) for k in top}
    result["n"] = len(truths)
    return result


def single_digit_config(config=None):
    """The scene config with one digit per scene (what localization is scored on)."""
    from ..datasets.scenes import SceneConfig

    config = SceneConfig() if config is None else config
    return replace(config, min_digits=1, max_digits=1)


def evaluate_localization(
    localizer: Localizer,
    scenes,
    factors=None,
    settings: MergeSettings | None = None,
    fine: bool = True,
    top: int = 5,
    progress: bool = False,
) -> dict:
    """Top-1 and top-5 localization error of ``localizer`` on single-digit scenes."""
    from tqdm import tqdm

    predictions, truths, seconds = [], [], {"dense": 0.0, "merge": 0.0}
    for scene in tqdm(scenes, desc="localizing", disable=not progress, unit="scene"):
        if len(scene.annotations) != 1:
            raise InputError("evaluate_localization: expected single-digit scenes")
        result = localize(localizer, scene.image, factors, settings, fine)
        predictions.append(result.top(top))
        truths.append(scene.annotations[0])
        for key in seconds:
            seconds[key] += result.seconds[key]
    out = localization_error(predictions, truths, top=(1, top))
    out["seconds"] = seconds
    return out


def dumps(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True)
