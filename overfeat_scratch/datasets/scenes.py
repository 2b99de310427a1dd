"""Digit scenes: real MNIST digits on larger canvases, with boxes, for detection.

OverFeat localizes and detects objects in images much larger than its window.
These scenes are a small stand-in for ImageNet's detection data that the package
can train and score on: each is a grey canvas holding one to a few MNIST digits
of varied sizes at random places, among clutter, with a box and a class per digit.

How a scene is made (:func:`make_scene`), all from one seeded NumPy generator:

1. Canvas: height and width drawn independently in ``[min_size, max_size]``
   (so scenes are usually not square, which exercises both axes of the dense
   evaluation), filled with a grey ``background`` level plus Gaussian ``noise``.
2. Digits: each one a random MNIST image of the split, cropped to its ink,
   resized with :func:`~overfeat_scratch.ops.image.resize_bilinear` so that its ink
   is the drawn height (aspect kept; blurred first when shrinking, so that it
   does not alias); where configured, made wider or narrower (``aspect``), its
   strokes a pixel wider or narrower (``stroke``) and turned (``rotation``), as
   another hand would write it; then put at a position drawn
   uniformly among those where its box overlaps no placed box by more than
   ``max_iou`` (and covers at most ``max_covered`` of the smaller box, so a small
   digit never hides inside a large one's box). When no position is free, other
   digits are drawn with smaller heights; when even those do not fit,
   :func:`make_scene` raises rather than return fewer digits than it drew.
3. Clutter: ``fragments`` small crops (8 to 12 pixels) of other MNIST digits at
   their original scale, as in cluttered MNIST: strokes and curves that look
   like pieces of digits, smaller than any whole one. By default they go
   anywhere but onto a digit's box (a fragment that finds no free place in 20
   tries is left out); ``clutter_on_digits`` lets them touch and cross digits.
4. Compositing: the pixel-wise maximum of background, fragments and digits
   (light ink on a darker ground), the ink scaled so that its brightest pixel is
   ``ink`` and optionally blurred (``blur``); then, where configured, noise over
   the whole image (``noise_over_digits``) and the polarity turned round (dark ink
   on light paper, ``dark``); uint8.

Every photometric and layout property is a range, drawn per scene
(:class:`SceneConfig`); a property given as one value is fixed and draws nothing
from the generator, so the defaults make exactly the scenes they always made.

A digit's box is the tight box of its own ink on the canvas, ``(x0, y0, x1, y1)``
half-open in pixels, whatever clutter, blur or noise lies around it.

Scenes for evaluation use only MNIST test digits and scenes for training only
training digits; every annotation records the MNIST index of its digit.

Folders are written in the COCO detection layout (``annotations.json`` and PNG
files, through :mod:`.coco`), and read back by category *name* ("0" to "9"), so a
folder made by another tool with other category ids reads the same.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import NamedTuple

import numpy as np

from ..common.checks import InputError, InputTypeError, check_positive_int
from ..common.fileio import atomic_write
from ..ops.boxes import intersection_broadcast, iou, iou_broadcast
from ..ops.image import pixels_8bit, resize_bilinear, rotate_bilinear, stroke_change
from .coco import (
    ANNOTATIONS_FILE,
    CocoAnnotation,
    CocoImage,
    annotations_json,
    check_inside_images,
    read_annotations,
    write_json,
)

CLASS_NAMES = tuple(str(d) for d in range(10))
# Every MNIST digit's ink fits in a 20 x 20 box (the dataset's own normalisation).
MNIST_INK = 20
# Places tried for a clutter fragment before it is left out.
FRAGMENT_TRIES = 20
# Layouts of a scene's digits tried before it is given up (see make_scene).
LAYOUT_TRIES = 10


# The smallest digit height: MNIST ink is 20 pixels tall, and below about 12
# pixels a digit, shrunk, is a blur that no reader could name.
MIN_DIGIT_HEIGHT = 12
# A digit's strokes are narrowed (``SceneConfig.stroke``) only from this height up:
# the strokes of smaller ones are two pixels wide or less and would break.
MIN_THINNED_HEIGHT = 32


def value_range(value, name: str, low_limit: float, high_limit: float | None = None):
    """``(low, high)`` of a property given as one number or a ``(low, high)`` pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"SceneConfig.{name}: expected a number or (low, high), got {value!r}")
        low, high = value
    else:
        low = high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise InputTypeError(f"SceneConfig.{name}: expected numbers, got {value!r}")
        if not math.isfinite(v):
            raise InputError(f"SceneConfig.{name}: expected finite numbers, got {value!r}")
    if low < low_limit or low > high or (high_limit is not None and high > high_limit):
        upper = "" if high_limit is None else f" <= {high_limit}"
        raise InputError(
            f"SceneConfig.{name}: expected {low_limit} <= low <= high{upper}, got {value!r}"
        )
    return float(low), float(high)


def draw_uniform(rng, value) -> float:
    """A value drawn uniformly from ``(low, high)``; a fixed value draws nothing."""
    low, high = value if isinstance(value, tuple) else (value, value)
    if low == high:
        return float(low)
    return float(rng.uniform(low, high))


def shading_ramp(height: int, width: int, rise: float, angle: float) -> np.ndarray:
    """``(height, width)`` float32: 0 at the darkest corner, ``rise`` at the brightest,
    rising linearly along the direction ``angle`` (radians, 0 = to the right)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    along = np.float32(np.cos(angle)) * x / max(width - 1, 1) + np.float32(np.sin(angle)) * y / max(
        height - 1, 1
    )
    span = float(along.max() - along.min())
    if span == 0:
        return np.zeros((height, width), np.float32)
    return ((along - along.min()) * np.float32(rise / span)).astype(np.float32)


def grey8(values) -> np.ndarray:
    """Values rounded to the nearest grey level and clipped to 0-255, as uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def draw_event(rng, probability: float) -> bool:
    """True with ``probability``; 0 and 1 draw nothing from the generator."""
    if probability <= 0 or probability >= 1:
        return probability >= 1
    return bool(rng.random() < probability)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Sizes are in canvas pixels, grey levels in 0-255.

    Layout:

    - ``min_size``, ``max_size``: canvas height and width, each drawn uniformly in
      this range (inclusive), independently: canvases are usually not square.
    - ``min_digits``, ``max_digits``: digits per scene, uniform, inclusive.
    - ``min_digit_height``, ``max_digit_height``: height of a digit's ink, uniform,
      inclusive; the width follows from the digit's own aspect ratio. At least
      :data:`MIN_DIGIT_HEIGHT` and at most ``min_size``.
    - ``max_iou``: largest intersection over union between two digits' boxes.
    - ``max_covered``: largest fraction of the smaller of two boxes that the other
      may cover (IoU alone would let a small digit sit inside a large one's box).
    - ``max_tries``: digits drawn per place in the scene when none of the free
      positions takes them, heights shrinking towards ``min_digit_height``,
      before the scene is given up.
    - ``fragments``: mean number of clutter fragments per 100 x 100 pixels
      (Poisson-distributed).
    - ``min_fragment``, ``max_fragment``: fragment height and width, each drawn in
      this range, cut from a 28 x 28 MNIST image and pasted at scale 1.
    - ``clutter_on_digits``: probability that a scene's fragments may go anywhere,
      touching and crossing its digits (otherwise they stay off the digits' boxes).

    Handwriting (drawn per digit):

    - ``aspect``: the digit's width over the width its own proportions give
      (1: as written; 1.2: a fifth wider).
    - ``rotation``: degrees the digit is turned, anticlockwise (a page scanned
      askew, a hand that leans); its box is the box of the turned ink, so
      ``min_digit_height`` and ``max_digit_height`` are heights before turning.
    - ``stroke``: probability that the digit's strokes are a pixel wider or, for
      digits at least :data:`MIN_THINNED_HEIGHT` tall, narrower (half each; smaller
      digits are only widened): another pen.

    Photometry:

    - ``background``: grey level of the empty canvas.
    - ``ink``: the brightest ink pixel (digits and fragments are scaled to it);
      must exceed every background level, so that ink is always visible.
    - ``noise``: standard deviation of Gaussian grey noise.
    - ``noise_over_digits``: probability that the noise covers the whole image,
      digits and clutter included (otherwise only the background is noisy, and
      ink is drawn over it).
    - ``blur``: standard deviation, in pixels, of a Gaussian blur of the ink.
    - ``shading``: uneven light. The whole image (ground, ink, noise) is lifted by a
      ramp that rises by this many grey levels from one side of the canvas to the
      other, along a direction drawn per scene (clipped at 255; before ``dark``
      turns the image round).
    - ``dark``: probability that the scene is dark ink on light paper (the
      finished image turned round: ``255 - pixel``).

    Mixture:

    - ``plain``: probability that a scene is drawn as a default scene would be
      (:data:`PLAIN_FIELDS` at :class:`SceneConfig`'s defaults: grey 24, full ink,
      noise 16 off the digits, 6 fragments kept off the digits, no blur, heights
      20-64), with this config's canvas, digit count and overlap limits. Training
      on ranges alone spends the network on the hard corners of the ranges; a
      share of plain scenes keeps the common case in view.

    ``background``, ``ink``, ``noise``, ``blur``, ``fragments``, ``shading``, ``aspect`` and
    ``rotation`` take one value
    or a ``(low, high)`` range, drawn uniformly per scene. Only ranges and
    probabilities strictly between 0 and 1 draw from the scene's generator, so
    the defaults reproduce the scenes made before these properties varied.
    """

    min_size: int = 96
    max_size: int = 192
    min_digits: int = 1
    max_digits: int = 5
    min_digit_height: int = 20
    max_digit_height: int = 64
    max_iou: float = 0.1
    max_covered: float = 0.2
    max_tries: int = 50
    background: float | tuple[float, float] = 24
    noise: float | tuple[float, float] = 16.0
    fragments: float | tuple[float, float] = 6.0
    min_fragment: int = 8
    max_fragment: int = 12
    ink: float | tuple[float, float] = 255
    blur: float | tuple[float, float] = 0.0
    shading: float | tuple[float, float] = 0.0
    aspect: float | tuple[float, float] = 1.0
    rotation: float | tuple[float, float] = 0.0
    stroke: float = 0.0
    noise_over_digits: float = 0.0
    clutter_on_digits: float = 0.0
    dark: float = 0.0
    plain: float = 0.0

    def __post_init__(self):
        def check_range(low_name, high_name, low_limit, high_limit=None):
            low, high = getattr(self, low_name), getattr(self, high_name)
            for name, value in ((low_name, low), (high_name, high)):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise InputTypeError(f"SceneConfig.{name}: expected an integer, got {value!r}")
            if low < low_limit or low > high or (high_limit is not None and high > high_limit):
                upper = "" if high_limit is None else f" <= {high_limit}"
                raise InputError(
                    f"SceneConfig: expected {low_limit} <= {low_name} <= {high_name}{upper}, "
                    f"got {low_name}={low}, {high_name}={high}"
                )

        check_range("min_size", "max_size", 1)
        check_range("min_digits", "max_digits", 1)
        check_range("min_digit_height", "max_digit_height", MIN_DIGIT_HEIGHT, self.min_size)
        check_range("min_fragment", "max_fragment", 1, min(28, self.min_size))
        if self.max_tries < 1:
            raise InputError(f"SceneConfig.max_tries: expected >= 1, got {self.max_tries}")
        probabilities = ("noise_over_digits", "clutter_on_digits", "dark", "plain", "stroke")
        for name in ("max_iou", "max_covered", *probabilities):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0 <= value <= 1:
                raise InputError(f"SceneConfig.{name}: expected 0..1, got {value!r}")
        ranges = {
            "background": value_range(self.background, "background", 0, 255),
            "ink": value_range(self.ink, "ink", 1, 255),
            "noise": value_range(self.noise, "noise", 0),
            "blur": value_range(self.blur, "blur", 0, 8),
            "fragments": value_range(self.fragments, "fragments", 0),
            "shading": value_range(self.shading, "shading", 0, 255),
            "aspect": value_range(self.aspect, "aspect", 0.5, 2),
            "rotation": value_range(self.rotation, "rotation", -45, 45),
        }
        if ranges["ink"][0] <= ranges["background"][1]:
            raise InputError(
                f"SceneConfig: the ink ({self.ink}) must be brighter than every background "
                f"level ({self.background}), or digits would vanish"
            )
        for name, value in ranges.items():
            # Stored as a number when fixed, as a (low, high) tuple when a range.
            fixed = getattr(self, name)
            if isinstance(fixed, list) or (isinstance(fixed, tuple) and value[0] != value[1]):
                object.__setattr__(self, name, value)
            elif isinstance(fixed, tuple):
                object.__setattr__(self, name, value[0])

    def plain_scene(self) -> SceneConfig:
        """This config with :data:`PLAIN_FIELDS` at their defaults (see ``plain``)."""
        defaults = SceneConfig()
        changes = {name: getattr(defaults, name) for name in PLAIN_FIELDS}
        changes["max_digit_height"] = min(changes["max_digit_height"], self.min_size)
        changes["min_digit_height"] = min(changes["min_digit_height"], changes["max_digit_height"])
        return dataclasses.replace(self, **changes, plain=0.0)

    def without_clutter(self) -> SceneConfig:
        """The same scenes with a flat background: no noise, no fragments."""
        return dataclasses.replace(self, noise=0.0, fragments=0.0)


# What a plain scene (``SceneConfig.plain``) takes from the defaults.
PLAIN_FIELDS = (
    "min_digit_height",
    "max_digit_height",
    "background",
    "noise",
    "fragments",
    "ink",
    "blur",
    "shading",
    "aspect",
    "rotation",
    "stroke",
    "noise_over_digits",
    "clutter_on_digits",
    "dark",
)


class Scene(NamedTuple):
    """One scene: ``image`` ``(H, W)`` uint8 and its ``annotations``.

    Each annotation is ``{"box": (x0, y0, x1, y1), "label": digit, "mnist_index": i}``.
    """

    image: np.ndarray
    annotations: list


def ink_box(image) -> tuple[int, int, int, int] | None:
    """Tight half-open box ``(x0, y0, x1, y1)`` of the nonzero pixels of ``(H, W)``, or None."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def render_digit(digit, height: int, aspect: float = 1.0) -> np.ndarray:
    """An MNIST ``(28, 28)`` digit cropped to its ink and resized: ``(h, w)`` uint8.

    The ink is scaled to ``height`` rows, the width in proportion (times
    ``aspect``). When enlarging (``height`` at least the digit's ink height, as
    from 20 up) interpolated values are rounded up, so any pixel touched by ink
    stays ink, the result is its own tight box and ``h == height``. When
    shrinking, the ink is first blurred by the usual anti-aliasing Gaussian
    (``sigma = sqrt(s^2 - 1) / 2`` for a reduction by ``s``) and values are rounded
    to nearest, so faint edges do not grow the box; ``h`` is then ``height`` or a
    pixel less.
    """
    from ..ops.image import gaussian_blur

    digit = np.asarray(digit)
    box = ink_box(digit)
    if box is None:
        raise InputError("render_digit: the digit image has no ink")
    x0, y0, x1, y1 = box
    ink = digit[y0:y1, x0:x1]
    width = max(1, round(ink.shape[1] * height / ink.shape[0] * aspect))
    shrink = ink.shape[0] / height
    if shrink > 1:
        source = gaussian_blur(np.pad(ink, 2), math.sqrt(shrink**2 - 1) / 2)[2:-2, 2:-2]
        big = resize_bilinear(source[:, :, None], height, width)[:, :, 0]
        patch = grey8(big)
    else:
        big = resize_bilinear(ink[:, :, None], height, width)[:, :, 0]
        patch = np.minimum(np.ceil(big), 255).astype(np.uint8)
    x0, y0, x1, y1 = ink_box(patch)
    return patch[y0:y1, x0:x1]


def reshape_digit(patch, rotation: float = 0.0, stroke: int = 0) -> np.ndarray:
    """A rendered digit (:func:`render_digit`) in another hand: its strokes a pixel
    wider (``stroke`` 1) or narrower (-1), then turned ``rotation`` degrees
    anticlockwise; cropped to its ink again. With neither, the patch itself."""
    if stroke:
        # A margin of one pixel, so that widened strokes are not cut at the ink box.
        patch = stroke_change(np.pad(patch, 1), grow=stroke > 0)
    if rotation:
        patch = grey8(rotate_bilinear(patch, rotation))
    box = ink_box(patch)
    if box is None:
        raise InputError("reshape_digit: no ink left (strokes narrowed away)")
    x0, y0, x1, y1 = box
    return patch[y0:y1, x0:x1]


def box_overlap(a, b) -> tuple[float, float]:
    """``(IoU, fraction of the smaller box covered)`` of two ``(x0, y0, x1, y1)`` boxes,
    by the package's one IoU rule (:mod:`overfeat_scratch.ops.boxes`)."""
    inter = float(intersection_broadcast(*a, *b))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iou(*a, *b), (inter / smaller if inter > 0 else 0.0)


def check_digits(images, labels):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise InputError(
            f"scenes: expected MNIST images (N, 28, 28) uint8, got {images.shape} {images.dtype}"
        )
    if labels.shape != images.shape[:1]:
        raise InputError(f"scenes: expected labels ({images.shape[0]},), got {labels.shape}")
    return images, labels


def free_positions(canvas_shape, size, placed, max_iou, max_covered) -> np.ndarray:
    """``(H - h + 1, W - w + 1)`` bool: where a ``(h, w)`` box's top-left may go.

    A position is free when the box there overlaps every placed box within
    ``max_iou`` and ``max_covered`` (the same arithmetic as :func:`box_overlap`).
    """
    (h_canvas, w_canvas), (h, w) = canvas_shape, size
    tops = np.arange(h_canvas - h + 1)[:, None]
    lefts = np.arange(w_canvas - w + 1)[None, :]
    # The corners of the box at every position, broadcasting to (H - h + 1, W - w + 1).
    at = (lefts, tops, lefts + w, tops + h)
    free = np.ones((tops.size, lefts.size), dtype=bool)
    for box in placed:
        inter = intersection_broadcast(*at, *box)
        smaller = min(h * w, (box[2] - box[0]) * (box[3] - box[1]))
        covered = np.zeros(inter.shape)
        np.divide(inter, smaller, out=covered, where=inter > 0)
        free &= (iou_broadcast(*at, *box) <= max_iou) & (covered <= max_covered)
    return free


def place_digit(rng, config, images, canvas_shape, placed, exclude):
    """Draw a digit and its height, and a free place for it: ``(index, box, patch)``.

    The place is uniform among all free positions. When none is free, another
    digit is drawn, with heights shrinking towards ``min_digit_height`` over the
    ``max_tries`` draws; None when every draw fails.
    """
    h_canvas, w_canvas = canvas_shape
    low, high = config.min_digit_height, config.max_digit_height
    for attempt in range(config.max_tries):
        cap = high - round((high - low) * attempt / config.max_tries)
        index = int(rng.integers(images.shape[0]))
        if index in exclude:
            continue
        x0, y0, x1, y1 = ink_box(images[index])
        # Cap the height so that the width, in proportion, fits the canvas too.
        fit = min(cap, h_canvas, (w_canvas * (y1 - y0)) // (x1 - x0))
        if fit < low:
            continue
        height = int(rng.integers(low, fit + 1))
        # Handwriting (fixed values draw nothing, so default scenes are unchanged).
        patch = render_digit(images[index], height, draw_uniform(rng, config.aspect))
        stroke = 0
        if draw_event(rng, config.stroke):
            thin = height >= MIN_THINNED_HEIGHT and rng.random() < 0.5
            stroke = -1 if thin else 1
        patch = reshape_digit(patch, draw_uniform(rng, config.rotation), stroke)
        free = free_positions(canvas_shape, patch.shape, placed, config.max_iou, config.max_covered)
        free = np.flatnonzero(free)
        if free.size:
            top, left = divmod(int(free[rng.integers(free.size)]), w_canvas - patch.shape[1] + 1)
            return index, (left, top, left + patch.shape[1], top + patch.shape[0]), patch
    return None


def fragment(rng, config, digit) -> np.ndarray:
    """A small crop of a ``(28, 28)`` digit with some ink in it, at scale 1."""
    h = int(rng.integers(config.min_fragment, config.max_fragment + 1))
    w = int(rng.integers(config.min_fragment, config.max_fragment + 1))
    best = None
    for _ in range(10):
        top = int(rng.integers(28 - h + 1))
        left = int(rng.integers(28 - w + 1))
        crop = digit[top : top + h, left : left + w]
        if best is None or crop.sum() > best.sum():
            best = crop
        if np.count_nonzero(crop > 127) >= max(h, w):
            break
    return best


def make_scene(rng, config: SceneConfig, images, labels):
    """One scene drawn from ``rng``: ``(canvas (H, W) uint8, annotations)``.

    ``images``: ``(N, 28, 28)`` uint8 MNIST digits, ``labels``: ``(N,)``; digits and
    fragments are both taken from them. Each annotation is a dict
    ``{"box": (x0, y0, x1, y1), "label": digit, "mnist_index": index into images}``.
    Raises ``ValueError`` when the requested number of digits cannot be placed
    within the overlap limits (canvases too small for so many digits).
    """
    images, labels = check_digits(images, labels)
    if draw_event(rng, config.plain):  # draws nothing unless 0 < plain < 1
        config = config.plain_scene()
    h_canvas = int(rng.integers(config.min_size, config.max_size + 1))
    w_canvas = int(rng.integers(config.min_size, config.max_size + 1))
    count = int(rng.integers(config.min_digits, config.max_digits + 1))

    # A layout that leaves no room for the last digits (large ones drawn first) is
    # drawn again, digits only, on the same canvas: a scene that fits at the first
    # layout, as every default scene does, draws exactly what it always drew.
    for _ in range(LAYOUT_TRIES):
        boxes, patches, annotations = [], [], []
        used = set()
        for _ in range(count):
            found = place_digit(rng, config, images, (h_canvas, w_canvas), boxes, used)
            if found is None:
                break
            index, box, patch = found
            used.add(index)
            boxes.append(box)
            patches.append(patch)
            annotations.append({"box": box, "label": int(labels[index]), "mnist_index": index})
        else:
            break
    else:
        raise InputError(
            f"make_scene: could not place digit {len(boxes) + 1} of {count} on a "
            f"{h_canvas}x{w_canvas} canvas in {LAYOUT_TRIES} layouts of {config.max_tries} "
            f"tries each within max_iou={config.max_iou} and max_covered={config.max_covered}; "
            "use fewer digits, smaller digits or larger canvases"
        )

    # Photometry of this scene (fixed values draw nothing: see SceneConfig).
    background = draw_uniform(rng, config.background)
    ink = draw_uniform(rng, config.ink)
    noise = draw_uniform(rng, config.noise)
    blur = draw_uniform(rng, config.blur)
    noise_everywhere = draw_event(rng, config.noise_over_digits)
    touching = draw_event(rng, config.clutter_on_digits)
    dark = draw_event(rng, config.dark)

    canvas = np.full((h_canvas, w_canvas), background, dtype=np.float32)
    if noise > 0 and not noise_everywhere:
        canvas += noise * rng.standard_normal((h_canvas, w_canvas), dtype=np.float32)
    canvas = grey8(canvas)

    # The ink layer: fragments and digits by maximum, at full brightness.
    layer = np.zeros((h_canvas, w_canvas), dtype=np.uint8)
    density = draw_uniform(rng, config.fragments)
    n_fragments = int(rng.poisson(density * h_canvas * w_canvas / 1e4))
    for _ in range(n_fragments):
        index = int(rng.integers(images.shape[0]))
        while index in used and len(used) < images.shape[0]:
            index = int(rng.integers(images.shape[0]))
        piece = fragment(rng, config, images[index])
        h, w = piece.shape
        # Off the digits' boxes (unless touching is on), so that clutter never makes
        # a digit illegible. Rejection sampling: uniform over the free places.
        for _ in range(FRAGMENT_TRIES):
            top = int(rng.integers(h_canvas - h + 1))
            left = int(rng.integers(w_canvas - w + 1))
            if touching or all(
                box_overlap((left, top, left + w, top + h), box)[0] == 0 for box in boxes
            ):
                region = layer[top : top + h, left : left + w]
                np.maximum(region, piece, out=region)
                break

    for (x0, y0, x1, y1), patch in zip(boxes, patches, strict=True):
        region = layer[y0:y1, x0:x1]
        np.maximum(region, patch, out=region)
    if ink != 255 or blur > 0:
        from ..ops.image import gaussian_blur

        scaled = gaussian_blur(layer, blur) * np.float32(ink / 255)
        layer = grey8(scaled)
    image = np.maximum(canvas, layer)
    if noise > 0 and noise_everywhere:
        noisy = image + noise * rng.standard_normal((h_canvas, w_canvas), dtype=np.float32)
        image = grey8(noisy)
    # Drawn last, so that a scene with shading is the scene without it, lit unevenly.
    shading = draw_uniform(rng, config.shading)
    if shading > 0:
        lit = image + shading_ramp(h_canvas, w_canvas, shading, rng.uniform(0, 2 * np.pi))
        image = grey8(lit)
    if dark:
        image = 255 - image
    return image, annotations


def generate_scenes(
    n: int, seed: int, split: str = "test", config: SceneConfig | None = None
) -> list[Scene]:
    """``n`` scenes from MNIST ``split`` ("test" for evaluation, "train" for training).

    Scene ``i`` is drawn from its own generator, child ``i`` of
    ``SeedSequence(seed)``: the same ``seed`` gives the same scenes, and the first
    ``k`` scenes of a longer run equal a run of ``k``.
    """
    from .mnist import load_mnist

    config = SceneConfig() if config is None else config
    n = check_positive_int(n, "generate_scenes: n", minimum=0)
    images, labels = load_mnist(split)
    children = np.random.SeedSequence(seed).spawn(n)
    return [Scene(*make_scene(np.random.default_rng(c), config, images, labels)) for c in children]


# ---------------------------------------------------------------------------
# COCO folders


def coco_dict(scenes, file_names, info=None) -> dict:
    """The COCO ``annotations.json`` content for ``scenes`` stored as ``file_names``."""
    images, annotations = [], []
    for image_id, ((canvas, anns), name) in enumerate(zip(scenes, file_names, strict=True), 1):
        h, w = canvas.shape
        images.append(CocoImage(image_id, name, w, h))
        for ann in anns:
            x0, y0, x1, y1 = (int(v) for v in ann["box"])
            extra = {"mnist_index": int(ann["mnist_index"])} if "mnist_index" in ann else {}
            bbox = (x0, y0, x1 - x0, y1 - y0)
            category = int(ann["label"]) + 1
            annotations.append(
                CocoAnnotation(len(annotations) + 1, image_id, category, bbox, extra=extra)
            )
    categories = {d + 1: name for d, name in enumerate(CLASS_NAMES)}
    return annotations_json(images, annotations, categories, info)


def check_scene(canvas, annotations, where):
    canvas = np.asarray(canvas)
    if canvas.ndim != 2 or canvas.dtype != np.uint8:
        raise InputError(
            f"{where}: expected an (H, W) uint8 canvas, got {canvas.shape} {canvas.dtype}"
        )
    h, w = canvas.shape
    for k, ann in enumerate(annotations):
        x0, y0, x1, y1 = ann["box"]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise InputError(f"{where}, annotation {k}: box {ann['box']} is not inside {w}x{h}")
        if int(ann["label"]) not in range(10):
            raise InputError(f"{where}, annotation {k}: label {ann['label']} is not a digit 0-9")
    return canvas


def save_png(path, canvas):
    """Write an ``(H, W)`` uint8 array as a greyscale PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))


def write_coco(folder, scenes, info: dict | None = None) -> Path:
    """Write ``scenes`` as a COCO detection folder; returns the annotations file.

    ``scenes``: ``(canvas (H, W) uint8, annotations)`` pairs as from
    :func:`generate_scenes`. Writes ``images/000001.png``... (greyscale, mode "L")
    and then ``annotations.json``, each atomically; ``info`` (JSON-able) is stored
    under the file's ``info`` key. Image ids count from 1 in order; category ids
    are digit + 1, named "0" to "9". Files already in the folder are left alone.
    """
    folder, scenes = Path(folder), list(scenes)
    names = []
    for i, (canvas, anns) in enumerate(scenes, 1):
        name = f"images/{i:06d}.png"
        save_png(folder / name, check_scene(canvas, anns, f"write_coco: scene {i}"))
        names.append(name)
    return write_json(folder / ANNOTATIONS_FILE, coco_dict(scenes, names, info))


def image_path(path, where, folder: Path, name: str) -> Path:
    """The file of an image entry's ``file_name``, which must lie inside ``folder``.

    Names are relative to the folder; an absolute name, or one that climbs out of
    the folder with ``..``, is refused (a folder's annotations never make the
    reader open files elsewhere).
    """
    if not name or os.path.isabs(name) or PureWindowsPath(name).drive:
        raise InputError(
            f"{path}: {where}: file_name {name!r} is not a path relative to the folder"
        )
    inside = os.path.normpath(os.path.join(folder, name))
    if os.path.commonpath([os.path.normpath(folder), inside]) != os.path.normpath(folder):
        raise InputError(
            f"{path}: {where}: file_name {name!r} leads out of the folder {folder}; expected "
            "a path inside it"
        )
    return Path(inside)


def read_image_file(path, where, file_path, width, height) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not file_path.is_file():
        raise InputError(f"{path}: {where}: image file {file_path} does not exist")
    try:
        with Image.open(file_path) as img:
            img.load()
            array = pixels_8bit(img, "L", f"{path}: {where}: {file_path}")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"{path}: {where}: cannot read image {file_path} ({error})") from None
    if array.shape != (height, width):
        raise InputError(
            f"{path}: {where}: {file_path} is {array.shape[1]}x{array.shape[0]}, "
            f"the entry says {width}x{height}"
        )
    return array


def read_coco(folder):
    """Read a COCO detection folder of digit scenes.

    Returns ``(images, annotations, classes)``:

    - ``images``: ``[(id, file_name, pixels (H, W) uint8), ...]`` in file order
      (colour images are converted to grey);
    - ``annotations``: one list per image, aligned with ``images``, of dicts
      ``{"box": (x0, y0, x1, y1), "label": digit}`` (plus ``"mnist_index"`` where
      recorded), the same form :func:`make_scene` returns;
    - ``classes``: ``{category_id: digit}``, from the category names "0" to "9".

    The annotations file is checked by :func:`~.coco.read_annotations`, with the
    rules of a reader that opens the images: category names "0" to "9", a file
    name and size for every image, boxes inside their image, no crowd
    annotations. Anything malformed -- a missing file, invalid JSON, a broken
    entry, an image file that is missing, unreadable, outside the folder or of
    another size -- is a ``ValueError`` naming the file and the entry.
    """
    folder = Path(folder)
    coco = read_annotations(
        folder / ANNOTATIONS_FILE,
        name="scene annotations",
        names=CLASS_NAMES,
        image_files=True,
        crowds=False,
    )
    classes = {cid: CLASS_NAMES.index(name) for cid, name in coco.categories.items()}
    images, grouped = [], {}
    for k, image in enumerate(coco.images):
        file_path = image_path(coco.source, f"images[{k}]", folder, image.file_name)
        where = f"images[{k}] (id {image.id})"
        pixels = read_image_file(coco.source, where, file_path, image.width, image.height)
        images.append((image.id, image.file_name, pixels))
        grouped[image.id] = []
    check_inside_images(coco)
    for ann in coco.annotations:
        x, y, w, h = ann.bbox
        scene_ann = {"box": (x, y, x + w, y + h), "label": classes[ann.category_id]}
        if "mnist_index" in ann.extra:
            scene_ann["mnist_index"] = ann.extra["mnist_index"]
        grouped[ann.image_id].append(scene_ann)
    annotations = [grouped[image_id] for image_id, _, _ in images]
    return images, annotations, classes


def scene_config_record(config: SceneConfig) -> dict:
    """A :class:`SceneConfig` as JSON-able values (ranges as lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def scene_config_from_record(record) -> SceneConfig:
    """The inverse of :func:`scene_config_record`; ``None`` (a run recorded before
    scene configs were) gives the defaults."""
    if record is None:
        return SceneConfig()
    if not isinstance(record, dict):
        raise InputError(f"scene config: expected a JSON object, got {record!r}")
    fields = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = sorted(set(record) - fields)
    if unknown:
        raise InputError(f"scene config: unknown fields {unknown}")
    return SceneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})


# ---------------------------------------------------------------------------
# The ranges train-detector and train-regressor draw their scenes from by default
# (the shipped localizer was trained on them; the one before, on default scenes only)

# Every point of the robustness benchmark's grid lies inside what training sees:
# grey grounds from black to mid-grey, both polarities, noise over the digits or
# not, blur, clutter that touches digits, digits from 16 to 96 pixels tall. Digits
# are written as MNIST's writers wrote them (``aspect``, ``rotation`` and ``stroke``
# stay at their defaults: trained on those too, this small network read blurred
# digits worse; see the localization chapter, "Scenes from another hand"). The one
# exception is shading: the localizer flattens a sloping ground before its networks
# read the scene (:func:`~.image.flatten_shading`), so they are trained on even light. The
# ink is at least 80 grey levels off the ground (the benchmark's faintest ink,
# 128 on 24, is 104 off): after normalisation (:func:`~.image.normalize_scene`)
# only that difference matters, and fainter ink under noise of 28 is barely
# legible, a corner that would cost the small network more than it teaches. A
# quarter of the scenes are plain (``plain``): the common case stays in view.
TRAINING_RANGES = SceneConfig(
    min_digit_height=16,
    max_digit_height=96,
    background=(0, 96),
    ink=(176, 255),
    noise=(0, 28),
    noise_over_digits=0.5,
    blur=(0, 2.5),
    fragments=(0, 14),
    clutter_on_digits=0.5,
    dark=0.5,
    plain=0.25,
)
