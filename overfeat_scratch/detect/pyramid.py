"""The scale pyramid: the scales a scene is evaluated at, the border each scaled
scene gets, and the conversion of a grey scene into the networks' input.

Localization and detection (paper Sections 4 and 5) evaluate the networks densely at
several scales of the scene; everything that decides what those scaled scenes look
like, for training and for inference alike, lives here, so that the two cannot
drift apart.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError
from ..datasets.digits import to_input
from ..ops.image import INK_LEVEL, flatten_shading, normalize_scene, resize_bilinear

# Six scales a third of an octave apart: a digit 20 to 64 pixels tall in the scene
# is about 20 pixels tall (as MNIST digits are in mini's 32-pixel window) at one
# of them. Networks trained on varied scenes, whose digits are 16 to 96 pixels
# tall, use eight (down to 0.198): WIDE_SCALE_FACTORS, recorded in their checkpoints
# (see localize.Localizer.factors).
SCALE_FACTORS = tuple(round(2 ** (-k / 3), 4) for k in range(6))
WIDE_SCALE_FACTORS = tuple(round(2 ** (-k / 3), 4) for k in range(8))
# The scale sets of the ablation (paper Fig. 9 compares 1, 2, 4 and 6 scales),
# as indices into SCALE_FACTORS (the first six of WIDE_SCALE_FACTORS).
SCALE_SETS = {1: (2,), 2: (1, 4), 4: (0, 2, 3, 5), 6: (0, 1, 2, 3, 4, 5)}
# The scales of a checkpoint that does not record its own.
LEGACY_SCALE_FACTORS = SCALE_FACTORS


def scaled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    return max(1, round(height * factor)), max(1, round(width * factor))


def window_centers(fine_h: int, fine_w: int, stride: int, window: int):
    """``(cx, cy)`` grids ``(fine_h, fine_w)`` of the windows of a dense map."""
    cy = stride * np.arange(fine_h, dtype=np.float64) + window / 2
    cx = stride * np.arange(fine_w, dtype=np.float64) + window / 2
    return np.broadcast_to(cx[None, :], (fine_h, fine_w)), np.broadcast_to(
        cy[:, None], (fine_h, fine_w)
    )


# Every resized scene gets a border of its median grey, half a window wide, before
# dense evaluation (and so do the training windows of the detector and the
# regressor). Without it no window is centred on a digit that touches the
# image's edge, and a large digit on a small canvas has no scale at which a whole
# window frames it: the class comes from partial views.
BORDER = 0.5


def scene_border(window: int, border: float = BORDER) -> int:
    """The border in pixels of the resized scene: ``border`` windows, rounded."""
    return int(round(border * window))


def scene_input(image, normalize: bool = False, flatten: bool = False) -> np.ndarray:
    """An ``(H, W)`` uint8 grey scene as the networks' float32 input.

    Pixels are scaled to ``[0, 1]`` (mini's input scale); with ``normalize`` (what
    networks trained on varied scenes read: see
    :class:`~overfeat_scratch.detect.localize.Localizer`) the scene's
    background is then moved to 0, its ink made positive and its brightest ink
    brought to :data:`~overfeat_scratch.ops.image.INK_LEVEL`
    (:func:`~overfeat_scratch.ops.image.normalize_scene`), so that neither the grey of
    the paper, nor the polarity of the ink, nor its contrast reaches the network.
    The normalisation is one shift, one sign and one gain for the whole scene,
    computed before any window is cut: dense evaluation of the normalised scene
    still equals sliding a window over it, and the border's fill, the median,
    becomes exactly 0.

    ``flatten``: first remove a slope of the ground, uneven light across the scene
    (:func:`~overfeat_scratch.ops.image.flatten_shading`), one plane for the whole
    scene, so the equality holds as well.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected an (H, W) grey image, got shape {image.shape}")
    x = to_input(image[None])[0, 0]
    if flatten:
        x = flatten_shading(x)
    return normalize_scene(x, INK_LEVEL) if normalize else x


def resize_scene(image: np.ndarray, factor: float, border: int = 0, fill=None):
    """``(resized (h, w) float32, (fx, fy))`` of a float scene; exact per-axis factors.

    ``border``: pixels of grey added on every side after resizing (``(h + 2 border,
    w + 2 border)``; the factors are those of the scene itself, without the border).
    The grey is ``fill``, by default the scene's median (callers that resize one
    scene at several factors pass it, computed once).
    """
    h, w = scaled_size(*image.shape, factor)
    resized = resize_bilinear(image[:, :, None], h, w)[:, :, 0]
    if border:
        fill = np.median(image) if fill is None else fill
        resized = np.pad(resized, border, constant_values=fill)
    return resized, (w / image.shape[1], h / image.shape[0])
