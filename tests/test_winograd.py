"""F(2x2, r x r) Winograd convolutions against the loop convolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_scratch.common.checks import InputError
from overfeat_scratch.nn import layers
from overfeat_scratch.ops import winograd
from overfeat_scratch.ops.conv import conv2d_naive
from overfeat_scratch.ops.winograd import (
    MAX_KERNEL,
    conv2d_winograd,
    conv2d_winograd_tiled,
    filter_transform,
    transformed_bytes,
    winograd_applies,
    winograd_matrices,
)


@pytest.mark.parametrize("r", range(2, MAX_KERNEL + 1))
def test_one_tile_is_a_block_of_the_correlation(r):
    """The three matrices compute a 2x2 block of an r x r correlation from one tile,
    with (r+1)^2 products instead of 4 r^2."""
    bt, g_mat, at = winograd_matrices(r)
    assert bt.shape == (r + 1, r + 1) and g_mat.shape == (r + 1, r) and at.shape == (2, r + 1)
    rng = np.random.default_rng(r)
    d, g = rng.standard_normal((r + 1, r + 1)), rng.standard_normal((r, r))
    y = at @ ((g_mat @ g @ g_mat.T) * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i : i + r, j : j + r] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=0, atol=1e-11)


def test_the_3x3_matrices_are_lavin_and_grays_up_to_one_sign():
    """Built from the points 0, 1, -1 and infinity, F(2x2, 3x3)'s matrices are the
    published ones, but for the sign of the last row of B^T and column of A^T."""
    bt, g, at = winograd_matrices(3)
    lavin_bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    lavin_g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    lavin_at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
    flip = np.diag([1, 1, 1, -1])
    np.testing.assert_array_equal(bt, flip @ lavin_bt)
    np.testing.assert_array_equal(g, lavin_g)
    np.testing.assert_array_equal(at, lavin_at @ flip)
    assert not bt.flags.writeable
    with pytest.raises(InputError, match="2 to 7"):
        winograd_matrices(8)


@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    r=st.integers(2, MAX_KERNEL),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    padding=st.integers(0, 3),
    band=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_both_versions_equal_the_loop_convolution_in_float64(n, c, o, r, h, w, padding, band, seed):
    """Every filter size, odd or even outputs (the last tile partial), every padding;
    the compiled version with bands of 1 to 5 tiles, so that small inputs cut into
    many bands and filter blocks, and with the ReLU."""
    if h + 2 * padding < r or w + 2 * padding < r:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, r, r))
    b = rng.standard_normal(o)
    want = conv2d_naive(x, wt, b, 1, padding)
    got = conv2d_winograd(x, wt, b, 1, padding)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1, np.abs(want).max()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "BAND_TILES", band)
        tiled = conv2d_winograd_tiled(x, wt, b, padding, relu=seed % 2 == 1)
    expect = np.maximum(want, 0) if seed % 2 else want
    assert tiled.shape == want.shape and tiled.dtype == np.float64
    np.testing.assert_allclose(tiled, expect, rtol=0, atol=1e-10 * max(1, np.abs(want).max()))


# Float32 against the float64 loops, relative to the output's largest magnitude: the
# direct product stays within 1e-6; the transforms with larger points round more.
FLOAT32_TOLERANCE = {3: 2e-6, 5: 2e-5, 7: 2e-5}


@pytest.mark.parametrize(
    "name, x_shape, r, padding",
    [
        ("fast.conv3", (1, 256, 12, 12), 3, 1),
        ("fast.conv2", (1, 96, 28, 28), 5, 0),
        ("accurate.conv2", (2, 96, 16, 18), 7, 0),
    ],
)
def test_float32_against_float64_on_layers_of_the_networks(name, x_shape, r, padding):
    """Layers of the networks' input sizes (fewer filters), weights scaled as the
    initialisation scales them: float32 stays within FLOAT32_TOLERANCE of the output's
    scale of the float64 loop reference, by both versions."""
    rng = np.random.default_rng(1)
    c = x_shape[1]
    x = rng.standard_normal(x_shape)
    wt = rng.standard_normal((24, c, r, r)) / np.sqrt(r * r * c)
    b = rng.standard_normal(24)
    want = conv2d_naive(x, wt, b, 1, padding)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, wt, b))
    u = filter_transform(w32)
    scale = np.abs(want).max()
    for got in (
        conv2d_winograd(x32, w32, b32, 1, padding, transformed=u),
        conv2d_winograd_tiled(x32, w32, b32, padding, transformed=u),
    ):
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= FLOAT32_TOLERANCE[r] * scale, name


def test_refuses_what_it_does_not_compute():
    x = np.zeros((1, 2, 8, 8), np.float32)
    b = np.zeros(4, np.float32)
    assert winograd_applies((4, 2, 3, 3), 1) and not winograd_applies((4, 2, 3, 3), 2)
    assert winograd_applies((4, 2, 7, 7), 1) and not winograd_applies((4, 2, 11, 11), 1)
    assert not winograd_applies((4, 2, 1, 1), 1) and not winograd_applies((4, 2, 3, 5), 1)
    for route in (conv2d_winograd, conv2d_winograd_tiled):
        name = route.__name__
        with pytest.raises(InputError, match=f"{name}: needs square filters of 2 to 7 taps"):
            route(np.zeros((1, 2, 12, 12), np.float32), np.zeros((4, 2, 9, 9), np.float32), b)
    with pytest.raises(InputError, match="stride 1"):
        conv2d_winograd(x, np.zeros((4, 2, 3, 3), np.float32), b, stride=2)
    with pytest.raises(InputError, match="square filters"):
        filter_transform(np.zeros((4, 2, 3, 5), np.float32))
    w = np.zeros((4, 2, 3, 3), np.float32)
    for route in (conv2d_winograd, conv2d_winograd_tiled):
        with pytest.raises(InputError, match="filter_transform"):
            route(x, w, b, transformed=filter_transform(w)[:, :3])
        with pytest.raises(InputError, match="filter_transform"):
            route(x, w, b, transformed=filter_transform(w.astype(np.float64)))
        with pytest.raises(InputError, match="filter_transform"):
            route(x, w, b, transformed=filter_transform(np.zeros((4, 2, 5, 5), np.float32)))
        with pytest.raises(InputError, match="channels"):
            route(np.zeros((1, 3, 8, 8), np.float32), w, b)


def _conv_layer(seed=0, channels=64, kernel=3):
    from overfeat_scratch.nn.layers import Conv2d

    rng = np.random.default_rng(seed)
    return Conv2d(channels, 8, kernel, padding=1, init_std=0.05, rng=rng)


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_a_layer_in_eval_mode_uses_the_transform_and_matches_training_mode(kernel):
    """The same layer, training (im2col) and eval (Winograd, filters transformed once;
    3x3 by the plain version, the others by the compiled one): one output within
    float32 rounding, and the transform kept while the weights stay."""
    layer = _conv_layer(kernel=kernel)
    x = np.random.default_rng(1).standard_normal((2, 64, 9, 11)).astype(np.float32)
    want = layer.train().forward(x)
    assert layer.winograd_filters() is None  # training: the direct route
    got = layer.eval().forward(x, relu=True)
    tolerance = FLOAT32_TOLERANCE[kernel] * np.abs(want).max()
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=0, atol=tolerance)
    kept = layer.winograd_filters()
    assert kept is not None and layer.winograd_filters() is kept
    np.testing.assert_array_equal(kept, filter_transform(layer.params["w"]))


def test_the_weights_cannot_change_under_a_kept_transform():
    """While the transform is kept the weights are read-only, so an in-place write fails
    instead of leaving the transform stale; train() makes them writable again, and new
    weights (another array) get a new transform."""
    from overfeat_scratch.ops.optim import sgd_step

    layer = _conv_layer().eval()
    x = np.random.default_rng(2).standard_normal((1, 64, 6, 6)).astype(np.float32)
    layer.forward(x)
    w = layer.params["w"]
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0, 0, 0] = 1.0
    with pytest.raises(InputError, match=r"net.train\(\)"):
        sgd_step(w, np.zeros_like(w), np.zeros_like(w), 0.1, 0.9, 0.0)
    layer.train()
    w[0, 0, 0, 0] = 1.0  # writable again
    layer.eval()
    y = layer.forward(x)
    layer.train()
    np.testing.assert_allclose(y, layer.forward(x), rtol=0, atol=1e-5 * np.abs(y).max())
    kept = layer.eval().params["w"]
    layer.forward(x)
    layer.astype(np.float64)  # new weights: the old ones are released, writable again
    assert kept.flags.writeable and layer.params["w"].dtype == np.float64
    layer.astype(np.float32)
    other = _conv_layer(seed=5).params["w"]
    layer.eval().forward(x)
    layer.params["w"] = other
    np.testing.assert_array_equal(layer.winograd_filters(), filter_transform(other))


def test_small_layers_and_other_shapes_keep_the_direct_route():
    from overfeat_scratch.nn.layers import Conv2d, FullyConnected

    assert _conv_layer(channels=8).eval().winograd_filters() is None
    assert (
        Conv2d(64, 4, 3, stride=2, rng=np.random.default_rng(0)).eval().winograd_filters() is None
    )
    assert Conv2d(64, 4, 9, rng=np.random.default_rng(0)).eval().winograd_filters() is None
    assert (
        Conv2d(64, 4, 7, stride=2, rng=np.random.default_rng(0)).eval().winograd_filters() is None
    )
    with pytest.MonkeyPatch.context() as patch:  # transformed filters too large to keep
        layer = _conv_layer(kernel=5)
        patch.setattr(layers, "WINOGRAD_MAX_BYTES", transformed_bytes((8, 64, 5, 5), 4) - 1)
        assert layer.eval().winograd_filters() is None
    full = FullyConnected(64, 4, 3, rng=np.random.default_rng(0)).eval()
    assert full.winograd_filters((64, 3, 3)) is None  # one window: one product
    assert full.winograd_filters((64, 8, 8)) is not None  # a map: dense evaluation


def test_a_fully_connected_layer_takes_the_transform_in_dense_evaluation_only():
    """mini's full3 (5x5 over 64 maps) in eval mode: on one window the plain product
    (the same bits as in training mode); sliding over a map, Winograd's F(2x2, 5x5),
    within float32 rounding of the direct route."""
    from overfeat_scratch.nn.layers import FullyConnected

    layer = FullyConnected(64, 16, 5, init_std=0.05, rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    window = rng.standard_normal((3, 64, 5, 5)).astype(np.float32)
    scene = rng.standard_normal((2, 64, 14, 17)).astype(np.float32)
    want_window, want_scene = layer.train().forward(window), layer.forward(scene)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(window), want_window)
    assert getattr(layer, "_winograd", None) is None  # nothing computed for one window
    got = layer.forward(scene)
    assert layer._winograd is not None
    tolerance = FLOAT32_TOLERANCE[5] * np.abs(want_scene).max()
    np.testing.assert_allclose(got, want_scene, rtol=0, atol=tolerance)


@pytest.mark.parametrize("r", [3, 5, 7])
def test_the_filter_transform_is_g_w_g_transposed_for_every_filter(r):
    """The Kronecker product computes G w G^T filter by filter, in float64."""
    rng = np.random.default_rng(r)
    w = rng.standard_normal((3, 2, r, r))
    _, g, _ = winograd_matrices(r)
    u = filter_transform(w).reshape(r + 1, r + 1, 3, 2)
    for o in range(3):
        for c in range(2):
            np.testing.assert_allclose(u[:, :, o, c], g @ w[o, c] @ g.T, rtol=0, atol=1e-13)
    assert filter_transform(w.astype(np.float32)).dtype == np.float32
