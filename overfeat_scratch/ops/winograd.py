"""Winograd's minimal filtering for 3x3 convolutions of stride 1: F(2x2, 3x3).

A 3x3 convolution computes each output from a 3x3 window: 9 multiply-adds per output
and input channel. Winograd's algorithm (as applied to convolutional networks by Lavin
and Gray, 2016) computes a 2x2 block of outputs from the 4x4 block of inputs that
covers it with 16 multiplications instead of 36, at the price of adding and
subtracting inputs before the products and outputs after them::

    Y = A^T [ (G g G^T) * (B^T d B) ] A

for one channel, with ``g`` the 3x3 filter, ``d`` the 4x4 input tile, ``*`` the
elementwise product, and the three small constant matrices below (whose entries are
0, 1, -1 and 1/2). Summed over input channels, the elementwise product at each of the
16 positions ``(u, v)`` of the tile is a matrix product: filters x channels times
channels x tiles. So a layer becomes

1. the filter transform ``U[u, v] = G g G^T``, once per set of weights (float64, then
   stored in the weights' dtype);
2. the input transform ``V[u, v] = B^T d B`` for every 4x4 tile of the padded input,
   tiles overlapping by 2;
3. 16 matrix products ``M[u, v] = U[u, v] @ V[u, v]``: 16/36 = 4/9 of the
   multiply-adds of the direct convolution, and where the time goes;
4. the output transform ``A^T M A``, each tile's 2x2 block of outputs.

Steps 2 and 4 are additions and subtractions of whole strided slices, written out
below; :func:`conv2d_winograd` is the plain composition, checked against
:func:`overfeat_scratch.ops.conv.conv2d_naive`. The transforms are exact in exact
arithmetic (the matrices' entries are exact in binary); in float32 the rounding is
of the same order as the direct product's.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import InputError
from .conv import check_conv_args

# The three matrices of F(2x2, 3x3).
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
# Layers with fewer input channels keep the direct route: their products are thin, and
# the transforms' passes over memory cost about what the multiplications save.
WINOGRAD_MIN_CHANNELS = 64
TILE = 4  # input tile side
OUT = 2  # output block side


def winograd_applies(w_shape, stride) -> bool:
    """Whether F(2x2, 3x3) computes this convolution: 3x3 filters, stride 1."""
    return tuple(w_shape[2:]) == (3, 3) and stride == 1


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``(O, C, 3, 3)`` -> ``(16, O, C)``: ``G w G^T`` at each of the 16 positions,
    computed in float64 and returned in ``w``'s dtype, C-contiguous per position."""
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise InputError(f"filter_transform: expected filters (O, C, 3, 3), got {w.shape}")
    g = np.ascontiguousarray(w.transpose(2, 3, 0, 1), dtype=np.float64)  # (3, 3, O, C)
    u = np.empty((TILE, TILE, *w.shape[:2]), w.dtype)
    for i, row in enumerate(_g_combine(*g)):
        for j, part in enumerate(_g_combine(*row)):
            u[i, j] = part
    return u.reshape(TILE * TILE, *w.shape[:2])


def _g_combine(g0, g1, g2):
    """The rows of ``G g`` from the three rows (or columns) of a filter."""
    return g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2


def _bt_combine(d0, d1, d2, d3):
    """The rows of ``B^T d`` from the four rows (or columns) of a tile."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _at_combine(m0, m1, m2, m3):
    """The rows of ``A^T m`` from the four rows (or columns) of a transformed tile."""
    return m0 + m1 + m2, m1 - m2 - m3


def tile_counts(ho: int, wo: int) -> tuple[int, int]:
    """Tiles down and across: one per 2x2 block of outputs, the last maybe partial."""
    return -(-ho // OUT), -(-wo // OUT)


def input_transform(x: np.ndarray, padding: int, ho: int, wo: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(16, C, N * th * tw)``: ``B^T d B`` for every tile.

    The input is zero-padded by ``padding`` and then on the bottom and right to a
    whole number of tiles (those extra rows and columns only feed outputs that
    :func:`output_transform` crops)."""
    n, c, h, w = x.shape
    th, tw = tile_counts(ho, wo)
    hp, wp = OUT * th + 2, OUT * tw + 2
    # Channels first, so that each V[u, v] is a (C, tiles) matrix; hp >= h + 2 * padding.
    xp = np.zeros((c, n, hp, wp), x.dtype)
    xp[:, :, padding : padding + h, padding : padding + w] = x.transpose(1, 0, 2, 3)
    v = np.empty((TILE, TILE, c, n, th, tw), x.dtype)
    tile_rows = [xp[:, :, a : a + OUT * th : OUT, :] for a in range(TILE)]
    for i, row in enumerate(_bt_combine(*tile_rows)):
        tile_cols = [row[..., b : b + OUT * tw : OUT] for b in range(TILE)]
        for j, part in enumerate(_bt_combine(*tile_cols)):
            v[i, j] = part
    return v.reshape(TILE * TILE, c, n * th * tw)


def output_transform(m: np.ndarray, n: int, ho: int, wo: int) -> np.ndarray:
    """``(16, O, N * th * tw)`` -> ``(N, O, ho, wo)``: ``A^T m A`` for every tile, the
    2x2 blocks placed side by side and the padding tiles' extra outputs cropped."""
    o = m.shape[1]
    th, tw = tile_counts(ho, wo)
    m = m.reshape(TILE, TILE, o, n, th, tw)
    y = np.empty((n, o, th, OUT, tw, OUT), m.dtype)
    for r, row in enumerate(_at_combine(*m)):
        for s, part in enumerate(_at_combine(*row)):
            y[:, :, :, r, :, s] = part.transpose(1, 0, 2, 3)
    return y.reshape(n, o, OUT * th, OUT * tw)[:, :, :ho, :wo]


def conv2d_winograd(x, w, b, stride=1, padding=0, transformed=None):
    """The convolution of :func:`overfeat_scratch.ops.conv.conv2d_naive` for 3x3
    filters of stride 1, by F(2x2, 3x3). ``transformed``: ``filter_transform(w)``, if
    already computed (it depends on the weights only)."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    if not winograd_applies(w.shape, stride):
        raise InputError(
            f"conv2d_winograd: needs 3x3 filters of stride 1, got {w.shape[2:]} at stride {stride}"
        )
    u = filter_transform(w) if transformed is None else transformed
    if u.shape != (TILE * TILE, *w.shape[:2]) or u.dtype != w.dtype:
        raise InputError(
            f"conv2d_winograd: transformed filters {u.shape} {u.dtype}; expected "
            f"{(TILE * TILE, *w.shape[:2])} {w.dtype} (filter_transform(w))"
        )
    v = input_transform(x, padding, ho, wo)
    y = output_transform(np.matmul(u, v), x.shape[0], ho, wo)
    return y + b.reshape(1, -1, 1, 1)
