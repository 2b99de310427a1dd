"""Images: reading PNG/JPEG files, bilinear resizing, flipping, cropping.

Images here are ``(H, W, 3)`` RGB arrays (uint8 0..255 from files, float32 after
resizing). Pillow only decodes files; the resizing is written out below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.checks import InputError, InputTypeError


def load_image(path) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a PNG or JPEG file (grey becomes RGB).

    16-bit pixels are scaled to 8 bits (:func:`pixels_8bit`). A missing,
    unreadable, truncated or non-image file is a clear ``ValueError``
    (``FileNotFoundError`` when missing).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            if img.format not in ("PNG", "JPEG"):
                raise InputError(f"image {path}: expected a PNG or JPEG file, got {img.format}")
            pixels = pixels_8bit(img, "RGB", f"image {path}")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"image {path}: cannot be read as PNG or JPEG ({error})") from None
    return pixels


# Pillow's integer modes: 16-bit grey in either byte order, and 32-bit integers.
WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pixels_8bit(img, mode: str, name: str) -> np.ndarray:
    """The pixels of a Pillow image as uint8 in ``mode`` (``"L"`` or ``"RGB"``).

    Pillow's ``convert`` clips 16-bit grey to 0..255, so that all but the darkest
    pixels turn white; here 16-bit values ``v`` (0..65535) become ``round(v / 257)``,
    which maps 65535 to 255 and keeps the image's contrast. (Pillow itself already
    scales 16-bit colour and grey-with-alpha PNGs to 8 bits when it reads them.)
    Integer images with values outside 0..65535 and floating-point images are
    refused: there is no one right way to show them in 8 bits.
    """
    if img.mode in WIDE_INTEGER_MODES:
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(
                f"{name}: {img.mode} pixels range {values.min()}..{values.max()}; expected "
                "8-bit or 16-bit pixels (0..65535)"
            )
        grey = ((values * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), halves up
        return grey if mode == "L" else np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise InputError(
            f"{name}: floating-point pixels (mode F); expected 8-bit or 16-bit integer pixels"
        )
    converted = img if img.mode == mode else img.convert(mode)
    return np.asarray(converted, dtype=np.uint8).copy()


def check_image(image, name="image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name}: expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.dtype.kind not in "uif":
        raise InputTypeError(f"{name}: expected a numeric array, got dtype {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return image


def _source_coordinates(out_size: int, in_size: int):
    """Where each output pixel centre falls in the input, and its two neighbours.

    Pixel centres are at ``i + 0.5``: output pixel ``i`` maps to input coordinate
    ``(i + 0.5) * in / out - 0.5``, clamped to the image, so that the corners of
    the two images line up (not the centres of their corner pixels).
    """
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0, in_size - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear(image, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``(H, W, C)`` array to ``(height, width, C)`` float32.

    Each output pixel is a weighted mean of the 2x2 input pixels around its centre
    (half-pixel convention, edges clamped). Separable: rows first, then columns.
    No antialiasing: for strong downscaling blur first.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"resize_bilinear: expected an (H, W, C) array, got shape {image.shape}")
    if height < 1 or width < 1:
        raise InputError(f"resize_bilinear: expected a positive size, got {height}x{width}")
    img = image.astype(np.float32, copy=False)
    top, bottom, wy = _source_coordinates(height, img.shape[0])
    rows = img[top] * (1 - wy)[:, None, None] + img[bottom] * wy[:, None, None]
    left, right, wx = _source_coordinates(width, img.shape[1])
    return rows[:, left] * (1 - wx)[None, :, None] + rows[:, right] * wx[None, :, None]


def resize_short_side(image, size: int) -> np.ndarray:
    """Resize so that the shorter side is ``size``, keeping the aspect ratio."""
    h, w = np.asarray(image).shape[:2]
    if h <= w:
        return resize_bilinear(image, size, max(1, round(w * size / h)))
    return resize_bilinear(image, max(1, round(h * size / w)), size)


def center_crop(image, height: int, width: int) -> np.ndarray:
    h, w = np.asarray(image).shape[:2]
    if h < height or w < width:
        raise InputError(f"center_crop: image {h}x{w} is smaller than the crop {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def hflip(image) -> np.ndarray:
    """Mirror left-right (the last-but-one axis of ``(H, W, C)``)."""
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of standard deviation ``sigma``, radius ``ceil(3 sigma)``."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(image, sigma: float) -> np.ndarray:
    """Gaussian blur of an ``(H, W)`` array (float32), edges extended by reflection.

    Separable: one 1-D kernel along the rows, then along the columns, each a sum
    of shifted copies of the padded image. ``sigma <= 0`` returns a float32 copy.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"gaussian_blur: expected an (H, W) array, got shape {image.shape}")
    if not sigma > 0:
        return image.copy()
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        size = out.shape[axis]
        acc = np.zeros_like(out)
        for k, weight in enumerate(kernel):
            acc += weight * np.take(padded, np.arange(k, k + size), axis=axis)
        out = acc
    return out


# Tails compared to tell the ink's polarity: the mean of this fraction of the
# most extreme pixels on each side of the background (at least MIN_TAIL pixels).
INK_TAIL = 0.0005
MIN_TAIL = 4


# The contrast step: the ink's bright tail (the same INK_TAIL mean) is brought to
# this level, in the units of the image. INK_LEVEL (input units, [0, 1]) is the
# median tail of the default scenes, 228 grey levels of 255 (ink 255 on grey 24,
# a little less where strokes are thin), so a default scene passes almost
# unchanged. The gain stays within GAIN_RANGE: a scene with no digit has no ink
# to measure, and a larger gain would turn its noise into strokes.
INK_LEVEL = 228 / 255
GAIN_RANGE = (0.5, 2.5)


def normalize_scene(image, ink_level: float | None = None) -> np.ndarray:
    """A grey scene ``(H, W)`` with its background at 0 and its ink positive.

    The background level is the median pixel (most of a scene is background);
    it is subtracted. The ink is on whichever side of it the extreme pixels
    reach further: the mean of the :data:`INK_TAIL` brightest differences against
    the mean of the darkest. Noise is symmetric about the background and ink is
    not, so dark ink on light paper comes out turned round, like light ink on a
    dark ground.

    ``ink_level``: the contrast is normalised too. The whole scene is multiplied
    by one gain that brings the ink's tail (the larger of the two means) to
    ``ink_level``, the gain clipped to :data:`GAIN_RANGE`; faint ink and strong ink
    then look alike. ``None`` leaves the contrast alone.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"normalize_scene: expected an (H, W) image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise InputError("normalize_scene: the image contains NaN or infinite values")
    if ink_level is not None and not (np.isfinite(ink_level) and ink_level > 0):
        raise InputError(f"normalize_scene: ink_level must be a number > 0, got {ink_level!r}")
    centred = image - np.float32(np.median(image))
    flat = centred.reshape(-1)
    k = min(flat.size, max(MIN_TAIL, int(INK_TAIL * flat.size)))
    bright = np.partition(flat, flat.size - k)[flat.size - k :].mean()
    dark = -np.partition(flat, k - 1)[:k].mean()
    out = -centred if dark > bright else centred
    if ink_level is None:
        return out
    ink = float(max(bright, dark))
    low, high = GAIN_RANGE
    gain = high if ink <= 0 else min(max(ink_level / ink, low), high)
    return out * np.float32(gain)
