"""F(2x2, 3x3) Winograd convolution against the loop convolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overfeat_scratch.common.checks import InputError
from overfeat_scratch.ops.conv import conv2d_naive
from overfeat_scratch.ops.winograd import (
    AT,
    BT,
    G,
    conv2d_winograd,
    filter_transform,
    winograd_applies,
)


def test_one_tile_is_sixteen_products_for_thirty_six():
    """The three matrices compute a 2x2 block of a 3x3 correlation from a 4x4 tile."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    direct = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=0, atol=1e-12)


@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    padding=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_equals_the_loop_convolution_in_float64(n, c, o, h, w, padding, seed):
    """Every size, odd or even outputs (the last tile partial), every padding."""
    if h + 2 * padding < 3 or w + 2 * padding < 3:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))
    b = rng.standard_normal(o)
    want = conv2d_naive(x, wt, b, 1, padding)
    got = conv2d_winograd(x, wt, b, 1, padding)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_float32_against_float64_on_a_layer_of_fast():
    """A layer the size of fast.conv3's input (256 channels, 12x12, padding 1): float32
    stays within 1e-5 of the output's scale of the float64 loop reference."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 256, 12, 12))
    wt = rng.standard_normal((32, 256, 3, 3)) / np.sqrt(9 * 256)
    b = rng.standard_normal(32)
    want = conv2d_naive(x, wt, b, 1, 1)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, wt, b))
    got = conv2d_winograd(x32, w32, b32, 1, 1, transformed=filter_transform(w32))
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_refuses_what_it_does_not_compute():
    x = np.zeros((1, 2, 8, 8), np.float32)
    b = np.zeros(4, np.float32)
    assert winograd_applies((4, 2, 3, 3), 1) and not winograd_applies((4, 2, 3, 3), 2)
    assert not winograd_applies((4, 2, 5, 5), 1)
    with pytest.raises(InputError, match="3x3 filters of stride 1"):
        conv2d_winograd(x, np.zeros((4, 2, 5, 5), np.float32), b)
    with pytest.raises(InputError, match="3x3 filters of stride 1"):
        conv2d_winograd(x, np.zeros((4, 2, 3, 3), np.float32), b, stride=2)
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(InputError, match="filter_transform"):
        conv2d_winograd(x, w, b, transformed=filter_transform(w)[:, :3])
    with pytest.raises(InputError, match="filter_transform"):
        conv2d_winograd(x, w, b, transformed=filter_transform(w.astype(np.float64)))
    with pytest.raises(InputError, match="channels"):
        conv2d_winograd(np.zeros((1, 3, 8, 8), np.float32), w, b)


def _conv_layer(seed=0, channels=64):
    from overfeat_scratch.nn.layers import Conv2d

    rng = np.random.default_rng(seed)
    return Conv2d(channels, 8, 3, padding=1, init_std=0.05, rng=rng)


def test_a_layer_in_eval_mode_uses_the_transform_and_matches_training_mode():
    """The same layer, training (im2col) and eval (Winograd, filters transformed once):
    one output within float32 rounding, and the transform kept while the weights stay."""
    layer = _conv_layer()
    x = np.random.default_rng(1).standard_normal((2, 64, 7, 9)).astype(np.float32)
    want = layer.train().forward(x)
    assert layer.winograd_filters() is None  # training: the direct route
    got = layer.eval().forward(x, relu=True)
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=0, atol=1e-5 * np.abs(want).max())
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
    assert Conv2d(64, 4, 5, rng=np.random.default_rng(0)).eval().winograd_filters() is None
    assert FullyConnected(64, 4, 3, rng=np.random.default_rng(0)).eval().winograd_filters() is None
