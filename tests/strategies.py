"""Hypothesis strategies shared by the tests: awkward but valid layer shapes.

Sizes are drawn so that odd sizes, sizes that are not multiples of a tile, kernels
as large as the input, strides larger than one and partial last windows all occur.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


def arrays(draw, shape, dtype=np.float64, scale=1.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@st.composite
def conv_cases(draw, max_n=2, max_c=3, max_o=4, max_side=9, max_kernel=4):
    """``(x, w, b, stride, padding)`` for a valid convolution, float64."""
    kernel = draw(st.integers(1, max_kernel))
    padding = draw(st.integers(0, min(2, kernel - 1)))
    stride = draw(st.integers(1, 3))
    low = max(1, kernel - 2 * padding)
    h = draw(st.integers(low, max_side))
    w = draw(st.integers(low, max_side))
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    o = draw(st.integers(1, max_o))
    x = arrays(draw, (n, c, h, w))
    weight = arrays(draw, (o, c, kernel, kernel))
    bias = arrays(draw, (o,))
    return x, weight, bias, stride, padding


@st.composite
def pool_cases(draw, max_n=2, max_c=3, max_side=10):
    """``(x, kernel, stride)`` for max pooling, overlapping or not, float64."""
    kernel = draw(st.integers(1, 4))
    stride = draw(st.integers(1, kernel + 1))
    h = draw(st.integers(kernel, max_side))
    w = draw(st.integers(kernel, max_side))
    x = arrays(draw, (draw(st.integers(1, max_n)), draw(st.integers(1, max_c)), h, w))
    if draw(st.booleans()):
        # Ties: quantised values make equal maxima common, testing the tie rule.
        x = np.round(x * 2) / 2
    return x, kernel, stride


@st.composite
def matrices(draw, max_rows=5, max_cols=7):
    rows = draw(st.integers(1, max_rows))
    cols = draw(st.integers(1, max_cols))
    return arrays(draw, (rows, cols))


@st.composite
def classification_cases(draw, max_n=3, max_c=6, spatial=True):
    """``(logits, labels)`` with logits ``(N, C, *S)``, float64."""
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(2, max_c))
    extra = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))) if spatial else ()
    logits = arrays(draw, (n, c) + extra, scale=draw(st.sampled_from([1.0, 30.0])))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).integers(0, c, size=(n,) + extra)
    return logits, labels


@st.composite
def dense_networks(draw, padded=None, max_channels=3):
    """A small random OverFeat-shaped network and its layer list, float64 weights.

    Conv blocks (kernel 1-4, stride 1-2, optional 2x2 or 3x3 non-overlapping pool),
    then where the paper pads (3x3 stride-1 convolutions after the first pool)
    optionally padded ones, a last pool, and a classifier of fully connected
    layers as convolutions (a ``kc x kc`` one, then a 1x1 one).
    ``padded`` forces padding on (True) or off (False); None draws it.
    """
    from overfeat_scratch import Conv2d, FullyConnected, MaxPool2d, ReLU, Sequential

    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    channels = draw(st.integers(1, max_channels))
    layers, c = [], channels
    blocks = draw(st.integers(1, 2))
    for b in range(blocks):
        out = draw(st.integers(1, max_channels))
        kernel = draw(st.integers(1, 4))
        stride = draw(st.integers(1, 2))
        layers += [Conv2d(c, out, kernel, stride, 0, 0.5, rng, f"conv{b}"), ReLU(name=f"relu{b}")]
        if b < blocks - 1 and draw(st.booleans()):
            pool = draw(st.integers(2, 3))
            layers.append(MaxPool2d(pool, name=f"pool{b}"))
        c = out
    use_pad = draw(st.booleans()) if padded is None else padded
    if use_pad:
        out = draw(st.integers(1, max_channels))
        layers += [Conv2d(c, out, 3, 1, 1, 0.5, rng, "padded"), ReLU(name="relu_padded")]
        c = out
    last_pool = draw(st.integers(2, 3))
    layers.append(MaxPool2d(last_pool, name="last_pool"))
    kc = draw(st.integers(1, 3))
    hidden = draw(st.integers(1, 4))
    classes = draw(st.integers(1, 3))
    layers += [
        FullyConnected(c, hidden, kc, 0.5, rng, "full_a"),
        ReLU(name="relu_full"),
        FullyConnected(hidden, classes, 1, 0.5, rng, "full_b"),
    ]
    net = Sequential(layers, name="random")
    return channels, net.astype(np.float64)


@st.composite
def scene_configs(draw, clutter=None):
    """A ``SceneConfig`` for digit scenes: small canvases, up to three digits.

    Canvases of at least 96 pixels always take three digits without overlap (far
    smaller ones can be filled by one large digit, and ``make_scene`` then raises).
    ``clutter`` forces noise and fragments on (True) or off (False); None draws it.
    """
    from overfeat_scratch.datasets.scenes import SceneConfig

    min_size = draw(st.integers(96, 128))
    max_size = draw(st.integers(min_size, 144))
    min_height = draw(st.integers(20, 40))
    max_height = draw(st.integers(min_height, 64))
    min_digits = draw(st.integers(1, 3))
    max_digits = draw(st.integers(min_digits, 3))
    with_clutter = draw(st.booleans()) if clutter is None else clutter
    return SceneConfig(
        min_size=min_size,
        max_size=max_size,
        min_digits=min_digits,
        max_digits=max_digits,
        min_digit_height=min_height,
        max_digit_height=max_height,
        max_iou=draw(st.sampled_from([0.0, 0.1, 0.3])),
        background=draw(st.integers(0, 60)),
        noise=draw(st.sampled_from([4.0, 16.0])) if with_clutter else 0.0,
        fragments=draw(st.sampled_from([2.0, 8.0])) if with_clutter else 0.0,
    )


# --------------------------------------------------------------------------------------
# CUDA tests: the marker that skips them without a device or the simulator, and the
# hypothesis settings for the simulator (one Python thread per CUDA thread: few, small
# examples).


def cuda_available() -> bool:
    from numba import cuda

    return cuda.is_available()


def needs_cuda_marker():
    import pytest

    return pytest.mark.skipif(
        not cuda_available(),
        reason="numba.cuda is not available: no CUDA GPU, and NUMBA_ENABLE_CUDASIM=1 was not "
        "set before numba was imported (make test sets it)",
    )


def cuda_settings(max_examples: int):
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
