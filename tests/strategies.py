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
