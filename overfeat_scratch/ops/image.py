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


def check_grey(image, name: str) -> np.ndarray:
    """An ``(H, W)`` grey image of finite values as float32, or a clear error."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"{name}: expected an (H, W) image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise InputError(f"{name}: the image contains NaN or infinite values")
    return image


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


def rotate_bilinear(image, degrees: float) -> np.ndarray:
    """An ``(H, W)`` image turned ``degrees`` anticlockwise about its centre: float32,
    on a canvas just large enough to hold all of it, zero where no input falls.

    Each output pixel centre is turned back by ``-degrees`` into the input, and the
    input is read there bilinearly (the 2x2 pixels around that point, weighted by
    nearness; pixels outside the input count as 0). Turning by 0 returns the
    image unchanged, as float32.
    """
    image = check_grey(image, "rotate_bilinear")
    if not np.isfinite(degrees):
        raise InputError(f"rotate_bilinear: expected a finite angle, got {degrees!r}")
    h, w = image.shape
    theta = np.deg2rad(degrees)
    cos, sin = np.cos(theta), np.sin(theta)
    # Rounded before the ceiling, so that 90 degrees does not grow the canvas by one.
    out_h = int(np.ceil(round(abs(h * cos) + abs(w * sin), 6)))
    out_w = int(np.ceil(round(abs(w * cos) + abs(h * sin), 6)))
    y, x = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    # Output pixel centres about the canvas centre, turned back into the input (the
    # y axis points down, so "anticlockwise" on screen is clockwise in (x, y)).
    dx, dy = x + 0.5 - out_w / 2, y + 0.5 - out_h / 2
    sx = cos * dx - sin * dy + w / 2 - 0.5
    sy = sin * dx + cos * dy + h / 2 - 0.5
    # One pixel of zeros around the input: reads just outside it fall there.
    padded = np.pad(image, 1)
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0).astype(np.float32), (sy - y0).astype(np.float32)
    x0 = np.clip(x0.astype(np.intp) + 1, 0, w + 1)
    y0 = np.clip(y0.astype(np.intp) + 1, 0, h + 1)
    x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
    inside = (sx > -1) & (sx < w) & (sy > -1) & (sy < h)
    top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
    bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
    return np.where(inside, top * (1 - fy) + bottom * fy, np.float32(0)).astype(np.float32)


def stroke_change(image, grow: bool) -> np.ndarray:
    """The strokes of an ``(H, W)`` image of light ink on 0 made a pixel wider
    (``grow``: each pixel the maximum of its 3x3 neighbourhood) or narrower (the
    minimum); beyond the edges is 0, as around a digit cropped to its ink."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"stroke_change: expected an (H, W) array, got shape {image.shape}")
    h, w = image.shape
    padded = np.pad(image, 1)
    pick = np.maximum if grow else np.minimum
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            pick(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


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


# Shading: a scene lit unevenly (a page scanned or photographed under one lamp) has a
# ground that slopes across it. shading_plane fits that slope as a plane to the
# ground of SHADING_BLOCK x SHADING_BLOCK blocks: each block's SHADING_QUANTILE
# (percent) on the side away from the ink, which ink moves only where it covers
# nearly the whole block. Ink can only lift a block's ground, so the blocks more than
# SHADING_CUT robust standard deviations above the plane are left out and the plane
# fitted again, up to SHADING_ROUNDS times. flatten_shading removes a plane that rises
# by at least SHADING_MIN_RISE (input units, [0, 1]: 48 grey levels of 255) across
# the scene and leaves any other scene exactly as it was. On 600 evenly lit scenes a
# configuration (default, blur 2, digits 80-96 pixels tall) the fitted rise was at
# most 6, 17 and 27 grey levels; a true rise of 48 did the networks no harm, one of 96
# did.
SHADING_BLOCK = 16
SHADING_QUANTILE = 5
SHADING_CUT = 2.0
SHADING_ROUNDS = 10
SHADING_MIN_RISE = 48 / 255


def shading_plane(image, block: int = SHADING_BLOCK) -> np.ndarray:
    """``(a, b, c)``: the plane ``a + b * x / W + c * y / H`` fitted to the ground of an
    ``(H, W)`` image, ``(x, y)`` the pixel's column and row (see :data:`SHADING_BLOCK`).
    ``(median, 0, 0)`` for an image too small to hold two blocks each way."""
    image = check_grey(image, "shading_plane")
    if not (isinstance(block, (int, np.integer)) and block >= 2):
        raise InputError(f"shading_plane: block must be an integer >= 2, got {block!r}")
    h, w = image.shape
    rows, cols = h // block, w // block
    if rows < 2 or cols < 2:
        return np.array([float(np.median(image)), 0.0, 0.0])
    sign = ink_sign(image)
    tiles = (sign * image)[: rows * block, : cols * block].reshape(rows, block, cols, block)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    grounds = np.percentile(tiles, SHADING_QUANTILE, axis=2)
    centre_y, centre_x = np.meshgrid(
        (np.arange(rows) + 0.5) * block / h, (np.arange(cols) + 0.5) * block / w, indexing="ij"
    )
    design = np.stack([np.ones(rows * cols), centre_x.ravel(), centre_y.ravel()], axis=1)
    ground = grounds.ravel().astype(np.float64)
    kept = np.ones(ground.size, dtype=bool)
    for _ in range(SHADING_ROUNDS):
        coef = np.linalg.lstsq(design[kept], ground[kept], rcond=None)[0]
        residual = ground - design @ coef
        spread = 1.4826 * np.median(np.abs(residual[kept]))  # a robust standard deviation
        within = residual <= SHADING_CUT * spread + 1e-6
        if within.sum() < 3 or np.array_equal(within, kept):
            break
        kept = within
    return sign * coef


def flatten_shading(
    image, min_rise: float = SHADING_MIN_RISE, block: int = SHADING_BLOCK
) -> np.ndarray:
    """An ``(H, W)`` float32 image with the slope of its ground removed: the plane of
    :func:`shading_plane` subtracted, less its value at the image's centre, so the
    ground keeps its mean level. Only a plane that rises by at least ``min_rise`` (in
    the image's units) from one corner to the opposite one is removed; a scene with
    less comes back unchanged, bit for bit. One plane for the whole scene, computed
    before any window is cut: the dense evaluation of the flattened scene still
    equals sliding the window over it."""
    image = check_grey(image, "flatten_shading")
    if not (np.isfinite(min_rise) and min_rise >= 0):
        raise InputError(f"flatten_shading: min_rise must be a number >= 0, got {min_rise!r}")
    a, b, c = shading_plane(image, block)
    if abs(b) + abs(c) < min_rise:
        return image.copy()
    h, w = image.shape
    x = (np.arange(w, dtype=np.float32) + np.float32(0.5)) / np.float32(w) - np.float32(0.5)
    y = (np.arange(h, dtype=np.float32) + np.float32(0.5)) / np.float32(h) - np.float32(0.5)
    return image - (np.float32(b) * x[None, :] + np.float32(c) * y[:, None])


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


def ink_tails(centred) -> tuple[float, float]:
    """``(bright, dark)``: how far the :data:`INK_TAIL` brightest pixels of an image
    centred on its ground reach above it, and the darkest below (both means)."""
    flat = np.asarray(centred).reshape(-1)
    k = min(flat.size, max(MIN_TAIL, int(INK_TAIL * flat.size)))
    bright = np.partition(flat, flat.size - k)[flat.size - k :].mean()
    dark = -np.partition(flat, k - 1)[:k].mean()
    return float(bright), float(dark)


def ink_sign(image) -> float:
    """+1 for light ink on a dark ground, -1 for dark ink on light paper: the side of
    the median grey whose extreme pixels reach further (see :func:`normalize_scene`)."""
    image = np.asarray(image, dtype=np.float32)
    bright, dark = ink_tails(image - np.float32(np.median(image)))
    return -1.0 if dark > bright else 1.0


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
    image = check_grey(image, "normalize_scene")
    if ink_level is not None and not (np.isfinite(ink_level) and ink_level > 0):
        raise InputError(f"normalize_scene: ink_level must be a number > 0, got {ink_level!r}")
    centred = image - np.float32(np.median(image))
    bright, dark = ink_tails(centred)
    out = -centred if dark > bright else centred
    if ink_level is None:
        return out
    ink = float(max(bright, dark))
    low, high = GAIN_RANGE
    gain = high if ink <= 0 else min(max(ink_level / ink, low), high)
    return out * np.float32(gain)
