"""2-D convolution, forward and backward: the loops, then im2col.

OverFeat's "convolution" is a cross-correlation: the kernel is not flipped,

    y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, c, s*i + u - p, s*j + v - p]

with stride ``s``, zero padding ``p`` and ``x`` read as zero outside the image.
Flipping would only relabel the learned weights, so networks never bother.

Shapes: ``x: (N, C, H, W)``, ``w: (O, C, kh, kw)``, ``b: (O,)``,
``y: (N, O, Ho, Wo)`` with ``Ho = (H + 2p - kh) // s + 1``.

This module holds

1. :func:`conv2d_naive` and :func:`conv2d_backward_naive`, plain loops: the spec;
2. :func:`conv2d_forward` and :func:`conv2d_backward`, one matrix product over an
   ``as_strided`` im2col view (and, for the input gradient, :func:`col2im`, a
   compiled Numba loop): the NumPy backend.

The CUDA kernels are in :mod:`overfeat_scratch.cuda.conv` (imported only when the
CUDA backend is used, so that the NumPy path never pays for Numba-CUDA).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..common.checks import (
    InputError,
    check_float_array,
    check_positive_int,
    check_same_dtype,
    conv_output_size,
)
from .parallel import blocks, run_tiles, split, tile_count


def check_conv_args(x, w, b, stride, padding):
    """Validate a convolution's arguments; return ``(Ho, Wo)``."""
    check_float_array(x, "conv2d input x", ndim=4)
    check_float_array(w, "conv2d weight w", ndim=4)
    check_float_array(b, "conv2d bias b", ndim=1)
    check_same_dtype("conv2d", x, w, b)
    stride = check_positive_int(stride, "conv2d stride")
    padding = check_positive_int(padding, "conv2d padding", minimum=0)
    n, c, h, wd = x.shape
    o, cw, kh, kw = w.shape
    if cw != c:
        raise InputError(
            f"conv2d: input has {c} channels but the weight expects {cw} "
            f"(weight shape {tuple(w.shape)}, input shape {tuple(x.shape)})"
        )
    if b.shape[0] != o:
        raise InputError(f"conv2d: bias has {b.shape[0]} entries, expected {o} (one per filter)")
    ho = conv_output_size(h, kh, stride, padding, "conv2d height")
    wo = conv_output_size(wd, kw, stride, padding, "conv2d width")
    return ho, wo


def check_conv_backward_args(dy, x, w, stride, padding):
    """Validate a convolution's backward arguments; return ``(Ho, Wo)``."""
    o = w.shape[0]
    ho, wo = check_conv_args(x, w, np.zeros(o, w.dtype), stride, padding)
    check_float_array(dy, "conv2d output gradient dy", ndim=4)
    expected = (x.shape[0], o, ho, wo)
    if tuple(dy.shape) != expected:
        raise InputError(f"conv2d backward: dy has shape {tuple(dy.shape)}, expected {expected}")
    return ho, wo


# --------------------------------------------------------------------------------------
# 1. The reference: loops


def conv2d_naive(x, w, b, stride=1, padding=0):
    """Convolution with loops over every output element. The spec for the rest."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    n, _, _, _ = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, o, ho, wo), dtype=x.dtype)
    for i_n in range(n):
        for i_o in range(o):
            for i in range(ho):
                for j in range(wo):
                    window = xp[i_n, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[i_n, i_o, i, j] = np.sum(window * w[i_o]) + b[i_o]
    return y


def conv2d_backward_naive(dy, x, w, stride=1, padding=0):
    """Gradients of :func:`conv2d_naive` by the chain rule, one output at a time.

    Each output ``y[n, o, i, j]`` touched one window of ``x`` through ``w[o]``;
    its gradient flows back along the same window.
    Returns ``(dx, dw, db)``.
    """
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    _, _, ho, wo = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(o, dtype=dy.dtype)
    for i_n in range(n):
        for i_o in range(o):
            for i in range(ho):
                for j in range(wo):
                    g = dy[i_n, i_o, i, j]
                    rows = slice(i * stride, i * stride + kh)
                    cols = slice(j * stride, j * stride + kw)
                    dw[i_o] += g * xp[i_n, :, rows, cols]
                    dxp[i_n, :, rows, cols] += g * w[i_o]
                    db[i_o] += g
    dx = dxp[:, :, padding : padding + h, padding : padding + wd]
    return np.ascontiguousarray(dx), dw, db


# --------------------------------------------------------------------------------------
# 2. The NumPy backend: im2col + one matrix product


def pad_input(x, padding):
    """Zero-pad the two spatial axes (no copy when ``padding == 0``)."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def window_view(xp, kh, kw, stride, ho, wo):
    """A read-only view ``(N, C, kh, kw, Ho, Wo)`` of every window of ``xp``, no copy.

    ``view[n, c, u, v, i, j] == xp[n, c, stride*i + u, stride*j + v]``.
    """
    sn, sc, sh, sw = xp.strides
    return as_strided(
        xp,
        shape=(xp.shape[0], xp.shape[1], kh, kw, ho, wo),
        strides=(sn, sc, sh, sw, stride * sh, stride * sw),
        writeable=False,
    )


def im2col(x, kh, kw, stride=1, padding=0):
    """Columns ``(C*kh*kw, N*Ho*Wo)``: one column per output position.

    Row order is ``(c, u, v)``, matching ``w.reshape(O, C*kh*kw)``; column order
    is ``(n, i, j)``. This is the only copy the forward pass makes.
    """
    n, c, h, wd = x.shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    view = window_view(pad_input(x, padding), kh, kw, stride, ho, wo)
    if n == 1:
        return view[0].reshape(c * kh * kw, ho * wo)
    return view.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * ho * wo)


# col2im is a compiled loop (Numba): one pass over the columns, adding each tap's row
# onto its window of the gradient. Two versions, both written so that every array
# index is a loop counter or a sum of loop counters: Numba then knows no index is
# negative and drops its wrap-around check, and the compiler turns the inner loop
# into vector code (an index such as ``j + v - padding`` that might be negative
# keeps the check, and runs 3 to 5 times slower).
#
# - unit stride (every convolution but the paper's first): add into a zero-padded
#   gradient, where every tap lands inside, then cut the padding off;
# - any stride: the taps that fall into the padding are skipped by computing each
#   row's range of columns first, and the row is added through strided views.
#
# ``cache=False``: nothing is written to disk.


@numba.njit(cache=False, nogil=True)
def _span(offset, stride, size, count):
    """``(lo, hi)``: the ``j < count`` with ``0 <= j*stride + offset < size``."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    top = size - 1 - offset
    hi = min(count, top // stride + 1) if top >= 0 else 0
    return lo, max(lo, hi)


@numba.njit(cache=False, nogil=True)
def _col2im_unit_stride(cols, kh, kw, ho, wo, dxp):
    """``dxp[n, c, i + u, j + v] += cols[(c*kh + u)*kw + v, (n*Ho + i)*Wo + j]``
    (``dxp``: the padded gradient, ``(N, C, Ho + kh - 1, Wo + kw - 1)``).

    Row by row of ``cols``, as :func:`_im2col_unit_stride` writes them: the columns
    are read once, in order, while the few images' gradient stays in cache (1.5x
    faster than image by image on ``mini``'s conv2 tiles). Every pixel still adds
    its taps in the order ``(u, v)``, so the sums are the same bits."""
    n, c, _, _ = dxp.shape
    for ci in range(c):
        for u in range(kh):
            for v in range(kw):
                row = (ci * kh + u) * kw + v
                for a in range(n):
                    for i in range(ho):
                        first = (a * ho + i) * wo
                        for j in range(wo):
                            dxp[a, ci, i + u, j + v] += cols[row, first + j]


@numba.njit(cache=False, nogil=True)
def _col2im_strided(cols, kh, kw, stride, padding, ho, wo, dx):
    """``dx[n, c, s*i + u - p, s*j + v - p] += cols[(c*kh + u)*kw + v, (n*Ho + i)*Wo + j]``,
    for the ``(i, j)`` that land inside ``dx`` (``(N, C, H, W)``, unpadded)."""
    n, c, h, w = dx.shape
    for a in range(n):
        for ci in range(c):
            for u in range(kh):
                i_lo, i_hi = _span(u - padding, stride, h, ho)
                for v in range(kw):
                    j_lo, j_hi = _span(v - padding, stride, w, wo)
                    if j_hi == j_lo:
                        continue
                    row = (ci * kh + u) * kw + v
                    first = j_lo * stride + v - padding
                    for i in range(i_lo, i_hi):
                        start = (a * ho + i) * wo
                        source = cols[row, start + j_lo : start + j_hi]
                        # every stride-th pixel from the first tap; the loop below
                        # stops after the row's j_hi - j_lo taps
                        target = dx[a, ci, i * stride + u - padding, first::stride]
                        for j in range(source.shape[0]):
                            target[j] += source[j]


def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
    """The adjoint of :func:`im2col`: add every column back onto its window.

    Overlapping windows add up; taps that fall into the padding are dropped.
    Instead of ``np.add.at`` over every element (or one strided slice add per
    kernel tap) this is one compiled pass over the columns.
    """
    n, c, h, wd = x_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    if stride == 1:
        dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=cols.dtype)
        _col2im_unit_stride(cols, kh, kw, ho, wo, dxp)
        if padding == 0:
            return dxp
        return np.ascontiguousarray(dxp[:, :, padding : padding + h, padding : padding + wd])
    dx = np.zeros((n, c, h, wd), dtype=cols.dtype)
    _col2im_strided(cols, kh, kw, stride, padding, ho, wo, dx)
    return dx


@numba.njit(cache=False, nogil=True)
def _im2col_unit_stride(xp, kh, kw, ho, wo, cols):
    """``cols[(c*kh + u)*kw + v, (n*Ho + i)*Wo + j] = xp[n, c, i + u, j + v]``: the
    columns of a unit-stride convolution of the (already padded) ``xp``, compiled.
    NumPy's copy of the strided view does the same work 1.4 to 2.7 times slower."""
    n, c, _, _ = xp.shape
    for ci in range(c):
        for u in range(kh):
            for v in range(kw):
                row = (ci * kh + u) * kw + v
                for a in range(n):
                    for i in range(ho):
                        first = (a * ho + i) * wo
                        for j in range(wo):
                            cols[row, first + j] = xp[a, ci, i + u, j + v]


def columns(xp, kh, kw, stride):
    """:func:`im2col` of an already padded input, compiled for unit stride."""
    n, c, h, wd = xp.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    if stride != 1:
        return im2col(xp, kh, kw, stride)
    cols = np.empty((c * kh * kw, n * ho * wo), dtype=xp.dtype)
    _im2col_unit_stride(xp, kh, kw, ho, wo, cols)
    return cols


def to_nchw(y_mat, n, o, ho, wo):
    """``(O, N*Ho*Wo)`` matrix to a contiguous ``(N, O, Ho, Wo)`` array."""
    if n == 1:
        return y_mat.reshape(1, o, ho, wo)
    return np.ascontiguousarray(y_mat.reshape(o, n, ho, wo).transpose(1, 0, 2, 3))


def from_nchw(dy):
    """Contiguous ``(N, O, Ho, Wo)`` to the ``(O, N*Ho*Wo)`` matrix of :func:`to_nchw`."""
    n, o, ho, wo = dy.shape
    if n == 1:
        return dy.reshape(o, ho * wo)
    return dy.transpose(1, 0, 2, 3).reshape(o, n * ho * wo)


def conv2d_forward(x, w, b, stride=1, padding=0):
    """Convolution as one GEMM: ``y = w.reshape(O, -1) @ im2col(x) + b``."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    o, _, kh, kw = w.shape
    cols = im2col(x, kh, kw, stride, padding)
    return to_nchw(w.reshape(o, -1) @ cols + b[:, None], n, o, ho, wo)


def conv2d_backward(dy, x, w, stride=1, padding=0, input_grad=True):
    """Gradients of :func:`conv2d_forward`; returns ``(dx, dw, db)``.

    With ``Y = W @ X_cols``: ``dW = dY @ X_cols.T`` and ``dX_cols = W.T @ dY``,
    then :func:`col2im` folds the columns back into an image. ``input_grad=False``
    skips ``dx`` (returned as ``None``): a network's first layer needs no gradient
    for the image.
    """
    o, _, kh, kw = w.shape
    check_conv_backward_args(dy, x, w, stride, padding)
    dy_mat = from_nchw(dy)
    cols = im2col(x, kh, kw, stride, padding)
    dw = (dy_mat @ cols.T).reshape(w.shape)
    db = dy_mat.sum(axis=1)
    if not input_grad:
        return None, dw, db
    dcols = w.reshape(o, -1).T @ dy_mat
    dx = col2im(dcols, x.shape, kh, kw, stride, padding)
    return dx, dw, db


# --------------------------------------------------------------------------------------
# 3. The NumPy backend: the same products, tile by tile, on every core
#
# :func:`conv2d_forward` builds the whole column matrix, then multiplies. For a batch
# of 128 digit windows at ``mini``'s second convolution that matrix is 41 MB: written
# to main memory by the copy, read back by the product. Cut into tiles of about
# ``TILE_COLUMNS`` output positions, one tile's columns (a few hundred kB) are still
# in the core's cache when its product reads them, and the tiles run on all the
# cores at once (:mod:`.parallel`). The arithmetic is the same products, on slices.
#
# Tiles depend on the shapes only, never on the number of workers, so a result does
# not change with the machine's core count.

# Output positions per tile: at least ``TILE_COLUMNS`` (enough columns for an
# efficient product), more while the tile's columns stay under ``TILE_BYTES`` (a
# layer with few input channels has short columns: wider tiles cost nothing and save
# the per-tile overhead).
TILE_COLUMNS = 1024
TILE_BYTES = 1 << 20
# The narrowest band of output rows worth a tile of its own (in positions).
MIN_BAND = 256
# Rows of the weight matrix (filters) per tile at most, when the output has one tile
# of columns; fewer than 2 * MIN_FILTERS filters stay in one tile.
FILTER_BLOCK = 256
MIN_FILTERS = 32
# Blocks of input channels in which the workers build one shared column matrix.
CHANNEL_TILES = 8
# Tiles only pay where a tile's columns fit in cache: with longer columns than this
# (the paper's layers after the first) one product over all columns, shared among
# BLAS's own threads, is faster (measured: 1.15 to 1.3 times on the 3x3 layers).
TILE_ROWS_MAX = 1024
# The backward pass runs its products on the live output positions only (those where
# some filter's gradient is nonzero) when at most this fraction of them is live.
LIVE_FRACTION_MAX = 0.5


def tile_width(rows, itemsize):
    """Output positions per tile, for columns of ``rows`` numbers of ``itemsize`` bytes."""
    return max(TILE_COLUMNS, TILE_BYTES // (rows * itemsize))


def image_groups(n, positions, width):
    """``n`` images in ranges ``(n0, n1)`` of at most ``width`` output positions (at
    least one image each), as equal in size as the count of ranges allows
    (:func:`~.parallel.blocks`: an even count where there are several)."""
    return blocks(n, width // positions)


def column_tiles(n, ho, wo, width=TILE_COLUMNS, filters=0):
    """The forward pass's tiles of output positions: ``(n0, n1, i0, i1)``, images
    ``n0:n1`` and output rows ``i0:i1``.

    Small maps: groups of whole images, up to ``width`` positions. A large map with
    few filters (at most a quarter as many as positions: small weights, cheap to
    read again for every band) is cut into bands of rows, at most ``width``
    positions each and, where the map allows, 4 per image. Otherwise one tile per
    image: with many filters and few positions the filters are what is split (see
    :func:`filter_blocks`).
    """
    positions = ho * wo
    if n > 1 and positions < width:
        return [(a, z, 0, ho) for a, z in image_groups(n, positions, width)]
    if 4 * filters > positions:
        return [(a, a + 1, 0, ho) for a in range(n)]
    bands = tile_count(max(-(-positions // width), min(4, positions // MIN_BAND), 1), n)
    rows = split(ho, bands)
    return [(a, a + 1, i0, i1) for a in range(n) for i0, i1 in rows]


def filter_blocks(filters):
    """Blocks of filters (rows of the weight matrix) as tiles: at least 2 when there
    are enough filters to share, at most ``FILTER_BLOCK`` each. Few large blocks:
    each block's product packs the same columns again."""
    if filters < 2 * MIN_FILTERS:
        return [(0, filters)]
    return split(filters, max(2, -(-filters // FILTER_BLOCK)))


def is_fully_connected(x_shape, w_shape, padding):
    """Whether the kernel covers the whole unpadded input: one output per image, and
    the im2col columns are just the images themselves."""
    return padding == 0 and tuple(x_shape[2:]) == tuple(w_shape[2:])


def _fully_connected_forward(x_flat, w_mat, b, relu=False):
    """``y = x_flat @ w_mat.T + b`` (``(N, O)``; rectified with ``relu``): one product
    on BLAS's own threads. ``W @ x.T``, the weights as the left operand: for one image
    a matrix-vector product that streams the weights once (``x @ W.T`` repacks them
    first). Blocks of filters on the package's workers, each product single-threaded,
    were 1.2 to 1.5x slower for `mini`'s layers at batch 64 to 512 and no faster for
    the paper's (measured on an AVX-512 machine, with OpenBLAS's idle threads no
    longer spinning: :data:`~overfeat_scratch.BLAS_THREAD_TIMEOUT`)."""
    y = (w_mat @ x_flat.T).T + b
    return np.maximum(y, 0, out=y) if relu else y


def _fully_connected_backward(dy_flat, x_flat, w_mat, input_grad):
    """``dx = dy @ W``, ``dW = dy.T @ x``, ``db = sum(dy)``: two products on BLAS's own
    threads (as in :func:`_fully_connected_forward`, 1.3 to 1.6x faster than tiles of
    them on the workers for `mini`'s layers)."""
    dx = dy_flat @ w_mat if input_grad else None
    return dx, dy_flat.T @ x_flat, dy_flat.sum(axis=0)


@numba.njit(cache=False, nogil=True)
def _write_images(product, bias, relu, out):
    """The epilogue of a tile's product, in one pass: ``out[a, f, p] = product[f,
    a * P + p] + bias[f]``, rectified where ``relu`` (NaN stays NaN, as with
    ``np.maximum``). ``product`` holds filters by (image, position), as the product
    of the weights with the tile's columns comes out; ``out`` is the tile's block
    of the NCHW output, ``(images, filters, P)``, which the loop fills image by image.
    """
    images, filters, positions = out.shape
    for a in range(images):
        for f in range(filters):
            shift = bias[f]
            for p in range(positions):
                value = product[f, a * positions + p] + shift
                if relu and value < 0:
                    value = 0
                out[a, f, p] = value


def conv2d_forward_tiled(x, w, b, stride=1, padding=0, relu=False):
    """:func:`conv2d_forward`, tile by tile on the worker threads (same result).

    Each tile copies its windows into columns, multiplies them by the weights and
    adds the bias straight into its block of the output. When the whole output is
    one tile of columns (a fully connected layer, or one small map), the columns are
    built once (by the workers, in blocks of channels) and the tiles are blocks of
    filters instead (:func:`filter_blocks`). ``relu``: each tile also rectifies its
    block while it is in cache (a ReLU fused into the product's epilogue).
    """
    ho, wo = check_conv_args(x, w, b, stride, padding)
    n = x.shape[0]
    o, _, kh, kw = w.shape
    w_mat = w.reshape(o, -1)
    if is_fully_connected(x.shape, w.shape, padding):
        return _fully_connected_forward(x.reshape(n, -1), w_mat, b, relu).reshape(n, o, 1, 1)
    xp = pad_input(x, padding)
    if w_mat.shape[1] > TILE_ROWS_MAX:
        y = to_nchw(w_mat @ columns(xp, kh, kw, stride), n, o, ho, wo)
        y += b[:, None, None]
        return np.maximum(y, 0, out=y) if relu else y
    y = np.empty((n, o, ho * wo), dtype=np.result_type(w, x))
    tiles = column_tiles(n, ho, wo, tile_width(w_mat.shape[1], x.itemsize), o)

    def tile_columns(n0, n1, i0, i1):
        return columns(xp[n0:n1, :, i0 * stride : (i1 - 1) * stride + kh], kh, kw, stride)

    def write(product, n0, n1, i0, i1, o0=0, o1=o):
        """Add the bias to ``product`` (filters o0:o1, tile's positions) into ``y``."""
        block = y[n0:n1, o0:o1, i0 * wo : i1 * wo]
        _write_images(product, b[o0:o1], relu, block)

    blocks = filter_blocks(o)
    if len(tiles) > 1 or len(blocks) == 1:

        def job(tile):
            write(w_mat @ tile_columns(*tile), *tile)

        run_tiles(job, tiles)
    else:
        cols = shared_columns(xp, kh, kw, stride)

        def job(block):
            o0, o1 = block
            write(w_mat[o0:o1] @ cols, *tiles[0], o0, o1)

        run_tiles(job, blocks)
    return y.reshape(n, o, ho, wo)


def shared_columns(xp, kh, kw, stride):
    """:func:`columns` of ``xp`` built by the workers, in blocks of input channels
    (each owns its rows of the matrix); unit stride only, else :func:`columns`."""
    n, c, h, wd = xp.shape
    if stride != 1:
        return columns(xp, kh, kw, stride)
    ho, wo, taps = h - kh + 1, wd - kw + 1, kh * kw
    cols = np.empty((c * taps, n * ho * wo), dtype=xp.dtype)

    def job(block):
        c0, c1 = block
        _im2col_unit_stride(xp[:, c0:c1], kh, kw, ho, wo, cols[c0 * taps : c1 * taps])

    run_tiles(job, split(c, CHANNEL_TILES))
    return cols


def forward_temporaries(x_shape, w_shape, stride, padding, itemsize, workers):
    """How many numbers :func:`conv2d_forward_tiled` allocates besides its output, at
    most, with ``workers`` tiles in flight: the padded input, and per tile its
    columns and its product (or, when the filters are the tiles, the columns once
    and one product per block), plus one more product's worth for NumPy's own
    buffers and small arrays (an estimate from above, not an exact account)."""
    n, c, h, wd = x_shape
    o, _, kh, kw = w_shape
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    rows = c * kh * kw
    blocks = filter_blocks(o)
    largest = max(o1 - o0 for o0, o1 in blocks)
    if is_fully_connected(x_shape, w_shape, padding):
        return 2 * n * o  # the product and its transposed sum with the bias
    padded = n * c * (h + 2 * padding) * (wd + 2 * padding) if padding else 0
    if rows > TILE_ROWS_MAX:  # one product: all the columns, and the product
        return padded + n * ho * wo * (rows + o)
    tiles = column_tiles(n, ho, wo, tile_width(rows, itemsize), o)
    widest = max((n1 - n0) * (i1 - i0) * wo for n0, n1, i0, i1 in tiles)
    if len(tiles) > 1 or len(blocks) == 1:
        return padded + min(workers, len(tiles)) * widest * (rows + o) + widest * o
    return padded + widest * rows + (min(workers, len(blocks)) + 1) * largest * widest


@numba.njit(cache=False, nogil=True)
def _live_mask(dy, most):
    """``(live, count)``: ``live[a, p]`` whether position ``p`` of image ``a`` has a
    nonzero gradient (NaN counts) in some channel, and how many do; built channel
    plane by channel plane in memory order (vector code), and given up once more
    than ``most`` are live (then ``count > most`` and the mask is partial). A dense
    gradient (plain training) stops after a few channels: on ``mini``'s conv1
    gradient at batch 128 (83% zeros, a pool's winners) 7 of 32, in 0.1 ms, where a
    scan position by position took 0.8 ms."""
    n, c, ho, wo = dy.shape
    positions = ho * wo
    flat = dy.reshape(n, c, positions)
    live = np.zeros((n, positions), np.bool_)
    count = 0
    for k in range(c):
        for a in range(n):
            plane = flat[a, k]
            row = live[a]
            for p in range(positions):
                row[p] |= plane[p] != 0
        count = 0
        for a in range(n):
            row = live[a]
            for p in range(positions):
                count += row[p]
        if count > most:
            break
    return live, count


def live_positions(dy, fraction=LIVE_FRACTION_MAX):
    """The columns of ``from_nchw(dy)`` that hold a nonzero gradient, in order, or
    ``None`` when more than ``fraction`` of them do (then the dense products are the
    faster way)."""
    n, _, ho, wo = dy.shape
    most = int(fraction * n * ho * wo)
    live, count = _live_mask(np.ascontiguousarray(dy), most)
    return None if count > most else np.flatnonzero(live)


@numba.njit(cache=False, nogil=True)
def _windows_at(xp, kh, kw, stride, ho, wo, live, patches):
    """``patches[r] = xp[n, :, i*s : i*s + kh, j*s : j*s + kw].ravel()`` for the
    ``r``-th live position ``(n * Ho + i) * Wo + j``: the live columns of
    :func:`im2col`, as rows."""
    c = xp.shape[1]
    for r in range(live.size):
        a, rest = divmod(live[r], ho * wo)
        i, j = divmod(rest, wo)
        t = 0
        for ci in range(c):
            for u in range(kh):
                for v in range(kw):
                    patches[r, t] = xp[a, ci, i * stride + u, j * stride + v]
                    t += 1


@numba.njit(cache=False, nogil=True)
def _add_windows_at(patches, kh, kw, stride, ho, wo, live, dxp):
    """The adjoint of :func:`_windows_at`: add each row back onto its window."""
    c = dxp.shape[1]
    for r in range(live.size):
        a, rest = divmod(live[r], ho * wo)
        i, j = divmod(rest, wo)
        t = 0
        for ci in range(c):
            for u in range(kh):
                for v in range(kw):
                    dxp[a, ci, i * stride + u, j * stride + v] += patches[r, t]
                    t += 1


def conv2d_backward_live(dy, x, w, live, stride=1, padding=0, input_grad=True):
    """:func:`conv2d_backward` when only the output positions ``live`` (columns of
    ``from_nchw(dy)``, from :func:`live_positions`) have a nonzero gradient.

    A column of ``dY`` that is all zero adds nothing to ``dW = dY @ X_cols.T``, to
    ``db`` or to ``dX_cols = W.T @ dY``, so the products skip it: they run on the live
    columns of ``dY`` and of ``X_cols`` (built as rows, one window each), and only the
    live windows are folded back into ``dx``. A detector's loss reads a few windows of
    each map (its positives and mined negatives, about a quarter), and so does every
    layer between the loss and the first layer whose windows overlap.
    """
    check_conv_backward_args(dy, x, w, stride, padding)
    n, o, ho, wo = dy.shape
    _, _, kh, kw = w.shape
    xp = pad_input(x, padding)
    dy_live = from_nchw(dy)[:, live]
    patches = np.empty((live.size, w[0].size), dtype=x.dtype)
    _windows_at(xp, kh, kw, stride, ho, wo, live, patches)
    dw = (dy_live @ patches).reshape(w.shape)
    db = dy_live.sum(axis=1)
    if not input_grad:
        return None, dw, db
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    _add_windows_at(dy_live.T @ w.reshape(o, -1), kh, kw, stride, ho, wo, live, dxp)
    if padding == 0:
        return dxp, dw, db
    h, wd = x.shape[2:]
    return np.ascontiguousarray(dxp[:, :, padding : padding + h, padding : padding + wd]), dw, db


def conv2d_backward_tiled(dy, x, w, stride=1, padding=0, input_grad=True):
    """:func:`conv2d_backward`, tile by tile on the worker threads.

    A batch is cut into groups of whole images (their input gradients do not
    overlap): each tile rebuilds its columns in cache, adds its part of ``dW`` and
    ``db`` and folds its own images' ``dx``; the parts of ``dW`` are added in tile
    order. One image (or a batch that fits one tile, or columns too long for a tile)
    runs the two products of :func:`conv2d_backward` at once, one per worker.
    Where at most half the output positions have a gradient (a detector's mined
    windows), :func:`conv2d_backward_live` runs the products on those only.
    """
    ho, wo = check_conv_backward_args(dy, x, w, stride, padding)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    w_mat = w.reshape(o, -1)
    live = None if ho * wo == 1 else live_positions(dy)
    if live is not None:
        return conv2d_backward_live(dy, x, w, live, stride, padding, input_grad)
    if is_fully_connected(x.shape, w.shape, padding):
        dx, dw, db = _fully_connected_backward(
            dy.reshape(n, o), x.reshape(n, -1), w_mat, input_grad
        )
        return (None if dx is None else dx.reshape(x.shape)), dw.reshape(w.shape), db
    groups = image_groups(n, ho * wo, tile_width(w_mat.shape[1], x.itemsize))
    dx = np.empty_like(x) if input_grad else None

    if len(groups) > 1 and w_mat.shape[1] <= TILE_ROWS_MAX:
        rows, positions = w_mat.shape[1], ho * wo

        def job(bounds):
            n0, n1 = bounds
            cols = columns(pad_input(x[n0:n1], padding), kh, kw, stride)
            db = dy[n0:n1].sum(axis=(0, 2, 3))
            dy_mat = from_nchw(dy[n0:n1]) if input_grad or rows >= positions else None
            if input_grad:
                dx[n0:n1] = col2im(w_mat.T @ dy_mat, (n1 - n0, c, h, wd), kh, kw, stride, padding)
            # dW transposed, (C*kh*kw, O): BLAS reads both operands along their rows
            # (dy_mat @ cols.T, the same numbers, is about 25% slower). Short columns
            # and many positions (a first layer): one product per image, read from dy
            # as it is, beats transposing dy (2x on mini's first layer).
            if dy_mat is not None:
                return cols @ dy_mat.T, db
            per_image = cols.reshape(rows, n1 - n0, positions).transpose(1, 0, 2)
            dy_images = dy[n0:n1].reshape(n1 - n0, o, positions).transpose(0, 2, 1)
            return np.matmul(per_image, dy_images).sum(axis=0), db

        parts = run_tiles(job, groups)
        dw_t, db = parts[0]
        for part_w, part_b in parts[1:]:
            dw_t += part_w
            db += part_b
        return dx, np.ascontiguousarray(dw_t.T).reshape(w.shape), db

    # One image, a batch that fits one tile, or columns too long for a tile to stay
    # in cache: conv2d_backward's two products, as large as they get, at once, one per
    # worker (3 to 10% faster than one after the other on BLAS's two threads for the
    # paper's 5x5 and 7x7 layers, the same for the 3x3 ones; cutting them by input
    # channels instead ran 1.5 times slower). Alone, dW takes BLAS's threads.
    if not input_grad:
        return conv2d_backward(dy, x, w, stride, padding, input_grad=False)

    def half(which):
        if which == "dw":  # the columns and dW, db: the reference without dx
            return conv2d_backward(dy, x, w, stride, padding, input_grad=False)[1:]
        return col2im(w_mat.T @ from_nchw(dy), x.shape, kh, kw, stride, padding)

    (dw, db), dx = run_tiles(half, ("dw", "dx"))
    return dx, dw, db
