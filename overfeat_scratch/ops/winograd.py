"""Winograd's minimal filtering for convolutions of stride 1: F(2x2, r x r).

An r x r convolution computes each output from an r x r window: r^2 multiply-adds per
output and input channel. Winograd's algorithm (as applied to convolutional networks
by Lavin and Gray, 2016) computes a 2x2 block of outputs from the (r+1) x (r+1) block
of inputs that covers it with (r+1)^2 multiplications instead of 4 r^2, at the price
of adding and subtracting inputs before the products and outputs after them::

    Y = A^T [ (G g G^T) * (B^T d B) ] A

for one channel, with ``g`` the r x r filter, ``d`` the input tile, ``*`` the
elementwise product, and three small constant matrices. For 3x3 filters (Lavin and
Gray's F(2x2, 3x3)) they are::

    B^T = [[1, 0,-1, 0],    G = [[  1,    0,   0],    A^T = [[1, 1,  1, 0],
           [0, 1, 1, 0],         [1/2, 1/2, 1/2],           [0, 1, -1, 1]]
           [0,-1, 1, 0],         [1/2,-1/2, 1/2],
           [0,-1, 0, 1]]         [  0,   0,   1]]

(Lavin and Gray's last row of ``B^T`` and last column of ``A^T`` have the other sign;
the two signs cancel.)

Where the matrices come from (:func:`winograd_matrices`): a 2-output correlation with
an r-tap filter is, read backwards, the product of two polynomials (degree 1 and r-1),
and a product of polynomials is found by evaluating both at r+1 points, multiplying
the values, and interpolating. ``G`` evaluates the filter's polynomial at the points,
``A^T`` the data's, and ``B^T`` is the interpolation (the inverse Vandermonde
matrix), transposed. The points are 0, 1, -1, 2, -2, 1/2, -1/2 and "infinity" (the
leading coefficient), as many as the filter needs: F(2x2, 3x3) uses 0, 1, -1, F(2x2,
5x5) adds 2, -2, and F(2x2, 7x7) 1/2 and -1/2. The larger the points, the larger the
matrices' entries and the rounding: float32 results of F(2x2, 7x7) differ from exact
ones about 15 times more than the direct product's (the convolution chapter has the
measurements), still within 1e-5 of the output's scale.

Summed over input channels, the elementwise product at each of the (r+1)^2 positions
``(u, v)`` of the tile is a matrix product: filters x channels times channels x
tiles. So a layer becomes

1. the filter transform ``U[u, v] = G g G^T``, once per set of weights (float64, then
   stored in the weights' dtype);
2. the input transform ``V[u, v] = B^T d B`` for every tile of the padded input, tiles
   overlapping by r - 1;
3. (r+1)^2 matrix products ``M[u, v] = U[u, v] @ V[u, v]``: (r+1)^2 / 4r^2 of the
   multiply-adds of the direct convolution (4/9 for 3x3, 9/25 for 5x5, 16/49 for 7x7),
   and where the time goes;
4. the output transform ``A^T M A``, each tile's 2x2 block of outputs.

Two versions of the same steps:

- :func:`conv2d_winograd`, the plain composition: the transforms are additions of
  whole strided slices (:func:`combine`), the products one batched ``matmul``.
  Checked against :func:`overfeat_scratch.ops.conv.conv2d_naive`; the reference.
- :func:`conv2d_winograd_tiled`, what the networks run: compiled loops over
  channels-last tiles, and bands of tiles that each worker transforms, multiplies and
  transforms back while they are in its cache, the bias and a following ReLU applied
  in the output transform. Checked against the plain version and the loops. (The 3x3
  layers once ran the plain version, whose whole-array passes looked cheap for
  transforms of few terms; with the compiled output transform placing its tiles
  without divisions, the compiled route is 1.05 to 1.9 times faster on every layer.)
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numba
import numpy as np

from ..common.checks import InputError
from .conv import check_conv_args
from .parallel import blocks, run_tiles, workers

# The interpolation points, in the order filters of growing size take them; a filter of
# r taps takes the first r (and infinity).
POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
MAX_KERNEL = len(POINTS)
OUT = 2  # output block side
# Layers with fewer input channels keep the direct route: their products are thin, and
# the transforms' passes over memory cost about what the multiplications save.
WINOGRAD_MIN_CHANNELS = 64
# A layer keeps its transformed filters, (r+1)^2 / r^2 times the weights' memory: the
# paper's fully connected layers as convolutions (fast's full6, 6x6 over 256 maps into
# 3072, would keep 154 MB) keep the direct route instead.
WINOGRAD_MAX_BYTES = 128 << 20


def tile_side(r: int) -> int:
    """Side of the input tile of F(2x2, r x r): r + 1."""
    return OUT + r - 1


def winograd_applies(w_shape, stride) -> bool:
    """Whether F(2x2, r x r) computes this convolution: square filters of 2 to 7 taps,
    stride 1."""
    kh, kw = w_shape[2:]
    return kh == kw and 2 <= kh <= MAX_KERNEL and stride == 1


def transformed_bytes(w_shape, itemsize) -> int:
    """Bytes of :func:`filter_transform` of filters of shape ``w_shape`` (O, C, r, r)."""
    o, c, r, _ = w_shape
    return tile_side(r) ** 2 * o * c * itemsize


@functools.cache
def winograd_matrices(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B^T, G, A^T)`` of F(2x2, r x r) in float64: shapes ``(r+1, r+1)``,
    ``(r+1, r)``, ``(2, r+1)``; read-only.

    Built exactly (in fractions) from the points ``POINTS[:r]`` and infinity. With
    ``V`` the Vandermonde matrix of the r+1 points (the row of infinity picks the
    leading coefficient), the polynomial product ``s = g * h`` is
    ``V^-1 [(G g) * (A h)]`` with ``G`` and ``A`` the first r and 2 columns of ``V``.
    Correlation is the transpose of that product (``sum_t d_t s_t = sum_i h_i y_i``),
    so ``y = A^T [(G g) * (V^-T d)]``: ``B^T = V^-T``. Each finite point's row of
    ``B^T`` is then multiplied, and the same row of ``G`` divided, by the absolute
    product of its distances to the other points, which leaves ``B^T``'s entries small
    integers (up to the points 1/2 and -1/2) and puts the fractions into ``G``, whose
    transform is computed once per set of weights."""
    if not isinstance(r, int) or not 2 <= r <= MAX_KERNEL:
        raise InputError(f"winograd_matrices: filter size must be 2 to {MAX_KERNEL}, got {r!r}")
    points = [Fraction(p) for p in POINTS[:r]]
    n = r + 1

    def powers(p, count):  # one row of the Vandermonde matrix; p None is infinity
        if p is None:
            return [Fraction(int(k == count - 1)) for k in range(count)]
        return [p**k for k in range(count)]

    rows = [powers(p, n) for p in points] + [powers(None, n)]
    inverse = _inverse(rows)
    bt = [[inverse[j][i] for j in range(n)] for i in range(n)]
    g = [powers(p, r) for p in points] + [powers(None, r)]
    at = [[powers(p, OUT)[i] for p in points] + [Fraction(int(i == OUT - 1))] for i in range(OUT)]
    for j, p in enumerate(points):
        scale = Fraction(1)
        for q in points:
            if q != p:
                scale *= p - q
        bt[j] = [x * abs(scale) for x in bt[j]]
        g[j] = [x / abs(scale) for x in g[j]]
    out = tuple(np.array([[float(x) for x in row] for row in m]) for m in (bt, g, at))
    for m in out:
        m.flags.writeable = False
    return out


def _inverse(rows):
    """The inverse of a square matrix of fractions, by Gauss-Jordan elimination."""
    n = len(rows)
    a = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(rows)]
    for col in range(n):
        pivot = next(i for i in range(col, n) if a[i][col] != 0)
        a[col], a[pivot] = a[pivot], a[col]
        a[col] = [x / a[col][col] for x in a[col]]
        for i in range(n):
            if i != col and a[i][col] != 0:
                f = a[i][col]
                a[i] = [x - f * y for x, y in zip(a[i], a[col], strict=True)]
    return [row[n:] for row in a]


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``(O, C, r, r)`` -> ``((r+1)^2, O, C)``: ``G w G^T`` at each position of the
    tile, computed in float64 and returned in ``w``'s dtype, C-contiguous."""
    if w.ndim != 4 or w.shape[2] != w.shape[3] or not 2 <= w.shape[2] <= MAX_KERNEL:
        raise InputError(
            f"filter_transform: expected square filters (O, C, r, r) with r from 2 to "
            f"{MAX_KERNEL}, got {w.shape}"
        )
    r = w.shape[2]
    _, g, _ = winograd_matrices(r)
    # (G w G^T)[i, j] = sum over k, l of G[i, k] G[j, l] w[k, l]: for every filter at
    # once, one product with the Kronecker matrix G (x) G ((r+1)^2 x r^2), whose row
    # i*(r+1) + j and column k*r + l hold G[i, k] G[j, l] (5 to 6 times faster than the
    # same sum written as an einsum).
    flat = w.reshape(-1, r * r).astype(np.float64).T  # (r^2, O*C)
    u = np.kron(g, g) @ flat
    return np.ascontiguousarray(u.reshape(tile_side(r) ** 2, *w.shape[:2]), dtype=w.dtype)


def combine(matrix: np.ndarray, parts, out: np.ndarray) -> np.ndarray:
    """``out[i] = sum_k matrix[i, k] * parts[k]``, skipping the zero entries and the
    multiplications by 1 and -1: one row of a transform applied to whole arrays (the
    rows or columns of every tile at once)."""
    for i, row in enumerate(matrix):
        # Python floats, so that float32 parts stay float32.
        terms = [(float(c), part) for c, part in zip(row, parts, strict=True) if c != 0]
        (c, part), rest = terms[0], terms[1:]
        if c == 1:
            np.copyto(out[i], part)
        elif c == -1:
            np.negative(part, out=out[i])
        else:
            np.multiply(part, c, out=out[i])
        for c, part in rest:
            if c == 1:
                out[i] += part
            elif c == -1:
                out[i] -= part
            else:
                out[i] += c * part
    return out


def tile_counts(ho: int, wo: int) -> tuple[int, int]:
    """Tiles down and across: one per 2x2 block of outputs, the last maybe partial."""
    return -(-ho // OUT), -(-wo // OUT)


def input_transform(x: np.ndarray, r: int, padding: int, ho: int, wo: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``((r+1)^2, C, N * th * tw)``: ``B^T d B`` for every tile.

    The input is zero-padded by ``padding`` and then on the bottom and right to a
    whole number of tiles (those extra rows and columns only feed outputs that
    :func:`output_transform` crops)."""
    bt, _, _ = winograd_matrices(r)
    a = tile_side(r)
    n, c, h, w = x.shape
    th, tw = tile_counts(ho, wo)
    hp, wp = OUT * th + r - 1, OUT * tw + r - 1
    # Channels first, so that each V[u, v] is a (C, tiles) matrix; hp >= h + 2 * padding.
    xp = np.zeros((c, n, hp, wp), x.dtype)
    xp[:, :, padding : padding + h, padding : padding + w] = x.transpose(1, 0, 2, 3)
    rows = combine(
        bt,
        [xp[:, :, k : k + OUT * th : OUT, :] for k in range(a)],
        np.empty((a, c, n, th, wp), x.dtype),
    )
    v = np.empty((a, a, c, n, th, tw), x.dtype)
    for i in range(a):
        combine(bt, [rows[i][..., k : k + OUT * tw : OUT] for k in range(a)], v[i])
    return v.reshape(a * a, c, n * th * tw)


def output_transform(m: np.ndarray, r: int, n: int, ho: int, wo: int) -> np.ndarray:
    """``((r+1)^2, O, N * th * tw)`` -> ``(N, O, ho, wo)``: ``A^T m A`` for every tile,
    the 2x2 blocks placed side by side and the padding tiles' extra outputs cropped."""
    _, _, at = winograd_matrices(r)
    a = tile_side(r)
    o = m.shape[1]
    th, tw = tile_counts(ho, wo)
    m = m.reshape(a, a, o, n, th, tw)
    rows = combine(at, list(m), np.empty((OUT, a, o, n, th, tw), m.dtype))
    y = np.empty((n, o, th, OUT, tw, OUT), m.dtype)
    block = np.empty((OUT, o, n, th, tw), m.dtype)
    for i in range(OUT):
        combine(at, list(rows[i]), block)
        for j in range(OUT):
            y[:, :, :, i, :, j] = block[j].transpose(1, 0, 2, 3)
    return y.reshape(n, o, OUT * th, OUT * tw)[:, :, :ho, :wo]


def _check(name, x, w, b, stride, padding, transformed):
    """The shapes, and ``transformed`` (computed if ``None``)."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    if not winograd_applies(w.shape, stride):
        raise InputError(
            f"{name}: needs square filters of 2 to {MAX_KERNEL} taps and stride 1, got "
            f"{w.shape[2:]} at stride {stride}"
        )
    u = filter_transform(w) if transformed is None else transformed
    want = (tile_side(w.shape[2]) ** 2, *w.shape[:2])
    if u.shape != want or u.dtype != w.dtype:
        raise InputError(
            f"{name}: transformed filters {u.shape} {u.dtype}; expected {want} {w.dtype} "
            f"(filter_transform(w))"
        )
    return ho, wo, u


def conv2d_winograd(x, w, b, stride=1, padding=0, transformed=None):
    """The convolution of :func:`overfeat_scratch.ops.conv.conv2d_naive` for square
    filters of stride 1, by F(2x2, r x r). ``transformed``: ``filter_transform(w)``, if
    already computed (it depends on the weights only)."""
    ho, wo, u = _check("conv2d_winograd", x, w, b, stride, padding, transformed)
    r = w.shape[2]
    v = input_transform(x, r, padding, ho, wo)
    y = output_transform(np.matmul(u, v), r, x.shape[0], ho, wo)
    return y + b.reshape(1, -1, 1, 1)


# --------------------------------------------------------------------------------------
# The compiled route


# A band: tiles one worker transforms, multiplies and transforms back in one go, and
# the filters it takes at once, so that its products stay under BAND_BYTES.
BAND_TILES = 128
BAND_BYTES = 4 << 20


@numba.njit(cache=False, nogil=True)
def _add_scaled(coef, src, dst):
    """``dst += coef * src`` (one term of a transform), nothing when ``coef`` is 0."""
    if coef != 0:
        for k in range(dst.size):
            dst[k] += coef * src[k]


@numba.njit(cache=False, nogil=True)
def _input_tiles(xt, padding, bt, th, tw, t0, t1, v):
    """``v[i*a + j, t, :] = (B^T d_t B)[i, j]`` for tiles ``t0 <= t < t1``: ``xt`` is
    the input channels-last ``(N, H, W, C)``, so each step adds whole runs of channels.
    Tile ``t`` is image ``t // (th*tw)``, tile row ``(t // tw) % th``, column
    ``t % tw``; its top-left input pixel is ``(2 * row - padding, 2 * col - padding)``
    and pixels outside the image are zero."""
    _, h, wd, c = xt.shape
    a = bt.shape[0]
    rows = np.empty((a, a, c), xt.dtype)  # B^T d of one tile: rows i, columns l
    for t in range(t0, t1):
        ni, p, q = t // (th * tw), (t // tw) % th, t % tw
        rows[:] = 0
        for k in range(a):
            yy = 2 * p + k - padding
            if yy < 0 or yy >= h:
                continue
            for col in range(a):
                xx = 2 * q + col - padding
                if xx < 0 or xx >= wd:
                    continue
                for i in range(a):
                    _add_scaled(bt[i, k], xt[ni, yy, xx], rows[i, col])
        for i in range(a):
            for j in range(a):
                out = v[i * a + j, t]
                out[:] = 0
                for col in range(a):
                    _add_scaled(bt[j, col], rows[i, col], out)


@numba.njit(cache=False, nogil=True)
def _output_tiles(m, at, b, o0, t0, th, tw, relu, y):
    """``y[n, o0 + f, 2p + r, 2q + s] = (A^T m_f A)[r, s] + b[o0 + f]`` (rectified if
    ``relu``) for the tiles ``t0, t0 + 1, ...`` of ``m`` (``(a*a, filters, tiles)``);
    outputs past the image's edge (a partial last tile) are dropped.

    The transform runs on whole rows of tiles (vector code); the placing walks the
    tiles in order with three counters, image, tile row and tile column, as a clock
    carries its digits (a division and two remainders per output instead cost 4 to 5
    times as long as all the rest)."""
    _, filters, count = m.shape
    a = at.shape[1]
    _, _, ho, wo = y.shape
    part = np.empty((OUT, a, count), m.dtype)  # A^T m: rows r, columns j, every tile
    out = np.empty((OUT, OUT, count), m.dtype)  # A^T m A + b: every tile's 2x2 block
    image0, row0, col0 = t0 // (th * tw), (t0 // tw) % th, t0 % tw
    for f in range(filters):
        part[:] = 0
        for r in range(OUT):
            for i in range(a):
                for j in range(a):
                    _add_scaled(at[r, i], m[i * a + j, f], part[r, j])
        for r in range(OUT):
            for s in range(OUT):
                out[r, s, :] = b[o0 + f]
                for j in range(a):
                    _add_scaled(at[s, j], part[r, j], out[r, s])
        ni, p, q = image0, row0, col0
        for t in range(count):
            for r in range(OUT):
                yy = OUT * p + r
                if yy < ho:
                    for s in range(OUT):
                        xx = OUT * q + s
                        if xx < wo:
                            value = out[r, s, t]
                            if relu and value < 0:  # NaN stays NaN, as with np.maximum
                                value = 0
                            y[ni, o0 + f, yy, xx] = value
            q += 1
            if q == tw:  # next row of tiles, and after the last row the next image
                q, p = 0, p + 1
                if p == th:
                    p, ni = 0, ni + 1


def _units(n, o, ho, wo, r, itemsize):
    """The work of :func:`conv2d_winograd_tiled`: the bands of tiles, and the blocks of
    filters each band is multiplied by (one unit of work is a band and a block)."""
    a = tile_side(r)
    th, tw = tile_counts(ho, wo)
    bands = blocks(n * th * tw, BAND_TILES)
    per_band = bands[0][1] - bands[0][0]
    filters = max(16, BAND_BYTES // (a * a * per_band * itemsize))
    # Few bands (a small input): cut the filters finer, so that every worker has work,
    # one block each (at batch 1 two blocks a worker made the 3x3 layers 1.1 to 1.3x
    # slower: each product packs the band's tiles again, and thin products run slower).
    filters = min(filters, max(16, -(-o * len(bands) // workers())))
    return bands, blocks(o, filters)


def forward_temporaries(x_shape, w_shape, padding, itemsize, workers_count) -> int:
    """How many numbers :func:`conv2d_winograd_tiled` allocates besides its output, at
    most, with ``workers_count`` units in flight: the input laid out channels-last, its
    transform, and per unit its products and the output transform's rows, plus one
    more input's worth for the checks' and NumPy's small arrays (an estimate from
    above). The transformed filters are not counted: a layer keeps them, as it keeps
    its weights."""
    n, c, h, wd = x_shape
    o, _, r, _ = w_shape
    ho, wo = h + 2 * padding - r + 1, wd + 2 * padding - r + 1
    a = tile_side(r)
    th, tw = tile_counts(ho, wo)
    bands, filter_blocks = _units(n, o, ho, wo, r, itemsize)
    per_band = bands[0][1] - bands[0][0]
    largest = max(o1 - o0 for o0, o1 in filter_blocks)
    unit = a * a * largest * per_band + (OUT * a + OUT * OUT) * per_band
    in_flight = min(workers_count, len(bands) * len(filter_blocks))
    return 2 * n * h * wd * c + a * a * n * th * tw * c + in_flight * unit


def conv2d_winograd_tiled(x, w, b, padding=0, transformed=None, relu=False):
    """:func:`conv2d_winograd` (stride 1), compiled and cut into tiles for the workers;
    ``relu=True`` also rectifies the output. Same numbers as the plain version up to
    the order of float32 additions."""
    ho, wo, u = _check("conv2d_winograd_tiled", x, w, b, 1, padding, transformed)
    r = w.shape[2]
    bt, _, at = (m.astype(x.dtype) for m in winograd_matrices(r))
    a = tile_side(r)
    n, c, _, _ = x.shape
    o = w.shape[0]
    th, tw = tile_counts(ho, wo)
    xt = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    v = np.empty((a * a, n * th * tw, c), x.dtype)  # V[u, v] transposed: tiles x channels
    bands, filter_blocks = _units(n, o, ho, wo, r, x.itemsize)
    run_tiles(lambda band: _input_tiles(xt, padding, bt, th, tw, band[0], band[1], v), bands)
    y = np.empty((n, o, ho, wo), x.dtype)

    def job(unit):
        (t0, t1), (o0, o1) = unit
        m = np.matmul(u[:, o0:o1], v[:, t0:t1].transpose(0, 2, 1))
        _output_tiles(m, at, b, o0, t0, th, tw, relu, y)

    run_tiles(job, [(band, f) for band in bands for f in filter_blocks])
    return y
