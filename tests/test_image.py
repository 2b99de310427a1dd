"""Image reading and the bilinear resize, against values worked out by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from overfeat_scratch.ops.image import (
    center_crop,
    hflip,
    load_image,
    resize_bilinear,
    resize_short_side,
)


def test_upsampling_two_pixels_by_two():
    # Output centres 0.5, 1.5, 2.5, 3.5 map to input coordinates -0.25 (clamped to 0),
    # 0.25, 0.75, 1.25 (clamped to 1): weights 0, 0.25, 0.75, 1 on the second pixel.
    row = np.array([[[0.0], [4.0]]])
    out = resize_bilinear(row, 1, 4)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0, 3.0, 4.0])


def test_downsampling_by_two_averages_pairs():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    out = resize_bilinear(image, 2, 2)
    # Output centre (0.5 + i) * 2 - 0.5 = 0.5 + 2i: the mean of a 2x2 block.
    expected = image.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out[:, :, 0], expected)


@given(st.integers(2, 12), st.integers(2, 12), st.integers(1, 20), st.integers(1, 20))
def test_linear_ramps_stay_linear_inside(h, w, out_h, out_w):
    # Bilinear interpolation reproduces any function a + b*x + c*y exactly, away from
    # the clamped border.
    y, x = np.indices((h, w), dtype=np.float64)
    image = (3 + 2 * x - 5 * y)[:, :, None]
    out = resize_bilinear(image, out_h, out_w)[:, :, 0]
    sy = (np.arange(out_h) + 0.5) * h / out_h - 0.5
    sx = (np.arange(out_w) + 0.5) * w / out_w - 0.5
    expected = 3 + 2 * np.clip(sx, 0, w - 1)[None, :] - 5 * np.clip(sy, 0, h - 1)[:, None]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_same_size_is_the_identity():
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    np.testing.assert_array_equal(resize_bilinear(image, 7, 9), image.astype(np.float32))


def test_upsampling_matches_pillow():
    # For enlargement Pillow's bilinear filter is the same half-pixel rule.
    image = np.random.default_rng(1).integers(0, 256, (5, 6)).astype(np.float32)
    ours = resize_bilinear(image[:, :, None], 13, 17)[:, :, 0]
    pil = np.asarray(Image.fromarray(image, mode="F").resize((17, 13), Image.BILINEAR))
    np.testing.assert_allclose(ours, pil, atol=1e-3)


def test_short_side_crop_and_flip():
    image = np.zeros((100, 150, 3), np.uint8)
    assert resize_short_side(image, 50).shape == (50, 75, 3)
    assert resize_short_side(image.transpose(1, 0, 2), 50).shape == (75, 50, 3)
    assert center_crop(image, 20, 30).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="image 100x150 is smaller than the crop 120x30"):
        center_crop(image, 120, 30)
    ramp = np.arange(4)[None, :, None].repeat(2, 0)
    np.testing.assert_array_equal(hflip(ramp)[0, :, 0], [3, 2, 1, 0])


def test_load_png_jpeg_and_grey(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (8, 10, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert load_image(tmp_path / "a.jpg").shape == (8, 10, 3)
    grey = rgb[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(loaded, np.repeat(grey[:, :, None], 3, axis=2))


def test_bad_image_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot be read as PNG or JPEG"):
        load_image(tmp_path / "text.png")
    rgb = np.zeros((64, 64, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read as PNG or JPEG"):
        load_image(tmp_path / "cut.png")
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    with pytest.raises(ValueError, match="expected a PNG or JPEG file, got BMP"):
        load_image(tmp_path / "a.bmp")


def png_16bit(values, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes only grey ones): ``values`` ``(H, W)``
    or ``(H, W, channels)`` uint16; color type 0 grey, 2 RGB, 4 grey + alpha, 6 RGBA."""
    import struct
    import zlib

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    h, w = values.shape[:2]
    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# 16-bit levels and their 8-bit values round(v / 257): 65535 is white, 128 * 257 is
# 128, 1000 / 257 = 3.89 rounds to 4, 385.5 / 257 = 1.5 rounds up to 2 (386 > 385.5).
LEVELS_16 = np.array([[0, 65535, 32896, 1000, 386, 128]], np.uint16)
LEVELS_8 = np.array([[0, 255, 128, 4, 2, 0]], np.uint8)


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    from overfeat_scratch.datasets.scenes import read_image_file

    Image.fromarray(LEVELS_16).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as img:
        assert img.mode == "I;16"  # what Pillow gives for 16-bit grey
    rgb = load_image(tmp_path / "grey16.png")
    np.testing.assert_array_equal(rgb, np.repeat(LEVELS_8[:, :, None], 3, axis=2))
    grey = read_image_file("ann.json", "images[0]", tmp_path / "grey16.png", 6, 1)
    np.testing.assert_array_equal(grey, LEVELS_8)
    # The same bytes written by hand decode the same way.
    (tmp_path / "hand.png").write_bytes(png_16bit(LEVELS_16, 0))
    np.testing.assert_array_equal(load_image(tmp_path / "hand.png")[:, :, 0], LEVELS_8)


@pytest.mark.parametrize("color_type, channels", [(2, 3), (4, 2), (6, 4)])
def test_16bit_colour_and_alpha_pngs_keep_their_levels(tmp_path, color_type, channels):
    """Pillow reads these modes as 8-bit by keeping the high byte, which is within one
    level of round(v / 257): every level stays where it was, none is clipped."""
    from overfeat_scratch.datasets.scenes import read_image_file

    values = np.repeat(LEVELS_16[:, :, None], channels, axis=2)
    (tmp_path / "a.png").write_bytes(png_16bit(values, color_type))
    rgb = load_image(tmp_path / "a.png").astype(int)
    assert np.abs(rgb - LEVELS_8[:, :, None]).max() <= 1
    grey = read_image_file("ann.json", "images[0]", tmp_path / "a.png", 6, 1).astype(int)
    assert np.abs(grey - LEVELS_8).max() <= 1


def test_integer_and_float_pixels_outside_16_bits_are_refused():
    from overfeat_scratch.ops.image import pixels_8bit

    wide = Image.fromarray(np.array([[0, 70000]], np.int32))
    assert wide.mode == "I"
    with pytest.raises(ValueError, match=r"x\.png: I pixels range 0\.\.70000; expected 8-bit"):
        pixels_8bit(wide, "RGB", "x.png")
    narrow = Image.fromarray(np.array([[0, 65535]], np.int32))
    np.testing.assert_array_equal(pixels_8bit(narrow, "L", "x.png"), [[0, 255]])
    floats = Image.fromarray(np.array([[0.5]], np.float32))
    with pytest.raises(ValueError, match=r"x\.png: floating-point pixels \(mode F\)"):
        pixels_8bit(floats, "L", "x.png")


# --------------------------------------------------------------------------------------
# Gaussian blur and scene normalisation


def blur_reference(image, sigma):
    """The blur as one 2-D sum in float64: every output pixel a weighted sum of the
    input reflected at the edges (the 2-D kernel is the outer product of the 1-D)."""
    from overfeat_scratch.ops.image import gaussian_kernel

    k = gaussian_kernel(sigma).astype(np.float64)
    r = len(k) // 2
    padded = np.pad(np.asarray(image, np.float64), r, mode="symmetric")
    h, w = image.shape
    out = np.zeros((h, w))
    for i in range(2 * r + 1):
        for j in range(2 * r + 1):
            out += k[i] * k[j] * padded[i : i + h, j : j + w]
    return out


@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    sigma=st.floats(0.3, 2.0),
    seed=st.integers(0, 2**31),
)
def test_gaussian_blur_matches_the_2d_sum(h, w, sigma, seed):
    from overfeat_scratch.ops.image import gaussian_blur

    image = np.random.default_rng(seed).uniform(0, 255, (h, w)).astype(np.float32)
    if max(h, w) <= int(np.ceil(3 * sigma)):  # reflection needs the kernel within the image
        return
    np.testing.assert_allclose(gaussian_blur(image, sigma), blur_reference(image, sigma), atol=1e-3)


def test_gaussian_blur_keeps_constants_and_refuses_bad_input():
    from overfeat_scratch.ops.image import gaussian_blur, gaussian_kernel

    assert abs(gaussian_kernel(1.3).sum() - 1) < 1e-6
    np.testing.assert_allclose(gaussian_blur(np.full((9, 7), 42.0), 1.0), 42.0, rtol=1e-6)
    image = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(gaussian_blur(image, 0.0), image)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        gaussian_blur(np.zeros((2, 2, 2)), 1.0)


def noisy_scene(seed, ground, ink, noise=10.0, size=(60, 70)):
    rng = np.random.default_rng(seed)
    image = ground + noise * rng.standard_normal(size)
    image[20:40, 30:34] = ink  # a stroke
    image[25:28, 20:45] = ink
    return np.clip(image, 0, 255) / 255


@given(seed=st.integers(0, 2**31), ground=st.floats(40, 200), contrast=st.floats(40, 55))
def test_normalised_scenes_have_ground_zero_and_positive_ink(seed, ground, contrast):
    from overfeat_scratch.ops.image import normalize_scene

    light = noisy_scene(seed, ground, ground + contrast)
    dark = noisy_scene(seed, ground, ground - contrast)
    for image in (light, dark):
        out = normalize_scene(image)
        assert abs(np.median(out)) < 1e-6
        # The ink, measured from the median ground, comes out positive.
        expected = abs(image[26, 31] - np.median(image))
        assert expected > 0.1
        np.testing.assert_allclose(out[26, 31], expected, atol=1e-5)


@given(seed=st.integers(0, 2**31), shift=st.floats(-0.2, 0.2))
def test_normalisation_ignores_the_grey_and_the_polarity(seed, shift):
    """Shifting every pixel, or turning the image round, leaves the result alone."""
    from overfeat_scratch.ops.image import normalize_scene

    image = noisy_scene(seed, 120, 170).astype(np.float32)
    base = normalize_scene(image)
    np.testing.assert_allclose(normalize_scene(image + np.float32(shift)), base, atol=1e-5)
    np.testing.assert_allclose(normalize_scene(1 - image), base, atol=1e-5)


def test_normalisation_refuses_bad_input():
    from overfeat_scratch.ops.image import normalize_scene

    with pytest.raises(ValueError, match="NaN"):
        normalize_scene(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        normalize_scene(np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="ink_level"):
        normalize_scene(np.zeros((4, 4)), ink_level=0.0)
    with pytest.raises(ValueError, match="ink_level"):
        normalize_scene(np.zeros((4, 4)), ink_level=float("nan"))


def ink_tail(image):
    """The mean of the INK_TAIL brightest pixels, computed here by sorting."""
    from overfeat_scratch.ops.image import INK_TAIL, MIN_TAIL

    flat = np.sort(np.asarray(image, np.float64).reshape(-1))
    k = min(flat.size, max(MIN_TAIL, int(INK_TAIL * flat.size)))
    return flat[-k:].mean()


@given(
    seed=st.integers(0, 2**31),
    ground=st.floats(20, 50),
    contrast=st.floats(110, 200),
    level=st.floats(0.5, 1.0),
    dark=st.booleans(),
)
def test_contrast_step_brings_the_ink_to_the_level(seed, ground, contrast, level, dark):
    """With ``ink_level`` the ink's tail lands on the level; without, the shift and sign
    alone, and the two differ by one gain inside GAIN_RANGE."""
    from overfeat_scratch.ops.image import GAIN_RANGE, normalize_scene

    if dark:  # dark ink on light paper
        image = noisy_scene(seed, 255 - ground, 255 - ground - contrast, noise=4.0)
    else:
        image = noisy_scene(seed, ground, ground + contrast, noise=4.0)
    plain = normalize_scene(image)
    out = normalize_scene(image, ink_level=level)
    gain = level / ink_tail(plain)
    assert GAIN_RANGE[0] < gain < GAIN_RANGE[1]
    assert abs(ink_tail(out) - level) < 1e-4
    np.testing.assert_allclose(out, plain * gain, rtol=1e-4, atol=1e-6)


@given(seed=st.integers(0, 2**31), scale=st.floats(0.8, 1.8))
def test_contrast_step_ignores_the_contrast(seed, scale):
    """Faint ink and strong ink come out alike: scaling the scene about its ground
    changes nothing once the gain is inside its range."""
    from overfeat_scratch.ops.image import INK_LEVEL, normalize_scene

    image = noisy_scene(seed, 80, 200, noise=3.0).astype(np.float64)
    ground = 80 / 255
    scaled = ground + scale * (image - ground)
    np.testing.assert_allclose(
        normalize_scene(scaled, INK_LEVEL), normalize_scene(image, INK_LEVEL), atol=2e-5
    )


def test_contrast_gain_is_clipped():
    """A scene with (almost) no ink is not blown up past GAIN_RANGE, a flat one stays 0,
    and ink far above the level is not cut by more than the range allows."""
    from overfeat_scratch.ops.image import GAIN_RANGE, normalize_scene

    faint = noisy_scene(1, 128, 133, noise=0.5)
    np.testing.assert_allclose(
        normalize_scene(faint, 0.9), normalize_scene(faint) * GAIN_RANGE[1], rtol=1e-5
    )
    np.testing.assert_array_equal(normalize_scene(np.full((5, 6), 0.4), 0.9), 0.0)
    strong = noisy_scene(2, 25, 230, noise=2.0)
    np.testing.assert_allclose(
        normalize_scene(strong, 0.1), normalize_scene(strong) * GAIN_RANGE[0], rtol=1e-5
    )


def test_default_scenes_pass_the_contrast_step_almost_unchanged():
    """INK_LEVEL is the default scenes' own ink tail: their median gain is within 2% of 1."""
    from overfeat_scratch.datasets.digits import to_input
    from overfeat_scratch.datasets.scenes import SceneConfig, generate_scenes
    from overfeat_scratch.ops.image import INK_LEVEL, normalize_scene

    gains = []
    for scene in generate_scenes(30, 77, "test", SceneConfig()):
        x = to_input(scene.image[None])[0, 0]
        gains.append(INK_LEVEL / ink_tail(normalize_scene(x)))
    assert abs(np.median(gains) - 1) < 0.02


def ramp_reference(height, width, b, c):
    """The slope b * x / W + c * y / H at pixel centres, less its value at the image's
    centre, in float64."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return b * ((x + 0.5) / width - 0.5) + c * ((y + 0.5) / height - 0.5)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    height=st.integers(48, 130),
    width=st.integers(48, 130),
    b=st.floats(-0.4, 0.4),
    c=st.floats(-0.4, 0.4),
    dark=st.booleans(),
)
def test_a_sloping_ground_is_fitted_and_removed(seed, height, width, b, c, dark):
    """A noisy ground on a slope with ink strokes over part of it, light ink on dark or
    dark ink on light: the fitted slope is the true one (float64 reference), the ink
    left out, and the flattened image is the evenly lit one."""
    from overfeat_scratch.ops.image import flatten_shading, shading_plane

    rng = np.random.default_rng(seed)
    ink = np.zeros((height, width))
    ink[10:40, 12:16] = 0.7  # strokes well off the ground at any slope
    ink[20:24, 12:40] = 0.7
    even = (0.9 - ink if dark else 0.1 + ink) + 0.02 * rng.standard_normal((height, width))
    image = (even + ramp_reference(height, width, b, c)).astype(np.float32)
    np.testing.assert_allclose(shading_plane(image)[1:], [b, c], atol=0.02)
    flat = flatten_shading(image, min_rise=0.0)
    assert flat.dtype == np.float32
    np.testing.assert_allclose(flat, even, atol=0.02)
    # A slope below min_rise is left alone, bit for bit.
    rise = abs(b) + abs(c)
    kept = flatten_shading(image, min_rise=rise + 0.05)
    np.testing.assert_array_equal(kept, image)


def test_evenly_lit_scenes_are_left_exactly_as_they_were():
    """Scenes like those the networks were trained on (in input units, as the
    localizer flattens them) come back unchanged: their fitted slopes stay below
    SHADING_MIN_RISE."""
    from overfeat_scratch.datasets.scenes import SceneConfig, generate_scenes
    from overfeat_scratch.ops.image import SHADING_MIN_RISE, flatten_shading, shading_plane

    configs = (
        SceneConfig(),
        SceneConfig(dark=1.0, fragments=12.0, clutter_on_digits=1.0),
        SceneConfig(min_digit_height=80, max_digit_height=96, max_digits=2, blur=2.0),
    )
    for config in configs:
        for scene in generate_scenes(8, 3, "test", config):
            x = scene.image.astype(np.float32) / 255
            assert sum(abs(v) for v in shading_plane(x)[1:]) < SHADING_MIN_RISE / 2
            np.testing.assert_array_equal(flatten_shading(x), x)


def test_flattening_refuses_bad_input_and_leaves_small_images():
    from overfeat_scratch.ops.image import flatten_shading, shading_plane

    with pytest.raises(ValueError, match="NaN"):
        shading_plane(np.full((40, 40), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        flatten_shading(np.zeros((40, 40, 1)))
    with pytest.raises(ValueError, match="block"):
        shading_plane(np.zeros((40, 40)), block=1)
    with pytest.raises(ValueError, match="min_rise"):
        flatten_shading(np.zeros((40, 40)), min_rise=float("nan"))
    # Fewer than two blocks each way: no slope can be fitted, and none is removed.
    small = np.arange(20 * 40, dtype=np.float32).reshape(20, 40)
    np.testing.assert_array_equal(flatten_shading(small, min_rise=0.0), small)


# --------------------------------------------------------------------------------------
# Turning and stroke width (the scenes' handwriting)


@pytest.mark.parametrize("shape", [(5, 5), (4, 7), (9, 2)])
def test_quarter_turns_are_np_rot90(shape):
    from overfeat_scratch.ops.image import rotate_bilinear

    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.float32)
    np.testing.assert_array_equal(rotate_bilinear(image, 0.0), image)
    for quarter in (1, 2, 3):
        # Anticlockwise on screen, as np.rot90; to the rounding of cos(90 degrees).
        turned = rotate_bilinear(image, 90.0 * quarter)
        assert turned.shape == np.rot90(image, quarter).shape
        np.testing.assert_allclose(turned, np.rot90(image, quarter), rtol=0, atol=1e-9)


@settings(max_examples=25)
@given(
    st.integers(3, 12),
    st.integers(3, 12),
    st.floats(-45, 45),
    st.floats(-3, 3),
    st.floats(-3, 3),
)
def test_turning_a_linear_ramp_inside_the_image(h, w, degrees, b, c):
    # Bilinear reading reproduces a + b*x + c*y exactly between pixel centres, so
    # wherever an output pixel reads from inside the input, it is the ramp at the
    # turned-back point (float64 reference, float32 result).
    from overfeat_scratch.ops.image import rotate_bilinear

    y, x = np.indices((h, w), dtype=np.float64)
    image = 5 + b * x + c * y
    out = rotate_bilinear(image, degrees)
    oh, ow = out.shape
    theta = np.deg2rad(degrees)
    assert oh == int(np.ceil(round(abs(h * np.cos(theta)) + abs(w * np.sin(theta)), 6)))
    yo, xo = np.indices(out.shape, dtype=np.float64)
    dx, dy = xo + 0.5 - ow / 2, yo + 0.5 - oh / 2
    sx = np.cos(theta) * dx - np.sin(theta) * dy + w / 2 - 0.5
    sy = np.sin(theta) * dx + np.cos(theta) * dy + h / 2 - 0.5
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    np.testing.assert_allclose(out[inside], (5 + b * sx + c * sy)[inside], atol=1e-4)
    # Reads from well outside the input are 0.
    outside = (sx <= -1) | (sx >= w) | (sy <= -1) | (sy >= h)
    assert np.all(out[outside] == 0)


@settings(max_examples=25)
@given(st.integers(1, 9), st.integers(1, 9), st.booleans(), st.integers(0, 2**32 - 1))
def test_stroke_change_is_the_3x3_maximum_or_minimum(h, w, grow, seed):
    from overfeat_scratch.ops.image import stroke_change

    image = np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)
    out = stroke_change(image, grow)
    pick = max if grow else min
    for i in range(h):
        for j in range(w):
            # The neighbourhood, with 0 beyond the edges.
            around = [
                int(image[a, b]) if 0 <= a < h and 0 <= b < w else 0
                for a in (i - 1, i, i + 1)
                for b in (j - 1, j, j + 1)
            ]
            assert out[i, j] == pick(around)


def test_turning_and_stroke_change_refuse_bad_input():
    from overfeat_scratch.ops.image import rotate_bilinear, stroke_change

    with pytest.raises(ValueError, match=r"rotate_bilinear: expected an \(H, W\) image"):
        rotate_bilinear(np.zeros((2, 3, 1)), 10.0)
    with pytest.raises(ValueError, match="rotate_bilinear: the image contains NaN"):
        rotate_bilinear(np.full((2, 3), np.nan), 10.0)
    with pytest.raises(ValueError, match="finite angle"):
        rotate_bilinear(np.zeros((2, 3)), float("nan"))
    with pytest.raises(ValueError, match=r"stroke_change: expected an \(H, W\) array"):
        stroke_change(np.zeros(4), True)
