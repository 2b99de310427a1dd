"""2-D convolution on the GPU: forward, and the three gradients, as tiled implicit GEMMs.

The convolution of :mod:`overfeat_scratch.ops.conv` is one matrix product

    Y[o, (n, i, j)] = sum_{(c, u, v)} W[o, (c, u, v)] * X_cols[(c, u, v), (n, i, j)]

with ``X_cols[(c, u, v), (n, i, j)] = x[n, c, s*i + u - p, s*j + v - p]`` (zero in the
padding). The NumPy backend builds ``X_cols`` in memory; here it is *implicit*: a
kernel computes each entry from ``x`` at the moment it loads it, so the
``C*kh*kw``-times larger column matrix never exists.

Shapes: ``x: (N, C, H, W)``, ``w: (O, C, kh, kw)``, ``b: (O,)``, ``y: (N, O, Ho, Wo)``.

The ladder of forward kernels, each a rung the docs chapter climbs:

1. :func:`conv2d_forward_naive`: one thread per output ``y[n, o, i, j]``, looping
   over its window with every operand read from global memory.
2. :func:`conv2d_forward` with ``rb=1``: the tiled GEMM. A block of TILE x TILE
   threads owns a TILE x TILE tile of ``Y`` (rows ``o``, columns ``(n, i, j)``); it
   walks the reduction ``(c, u, v)`` TILE at a time, each thread loading one entry of
   the W tile and one of the X_cols tile into shared memory, so every value read from
   global memory is used TILE times.
3. The same kernel with ``rb > 1`` (the default on a GPU, ``rb=4``): each thread
   keeps an RB x RB register block of outputs, so a block owns (TILE*RB)^2 outputs
   and each value read from shared memory feeds RB multiply-adds.

Thread (tx, ty) of block (bx, by) owns outputs ``Y[by*TILE*RB + ty + r*TILE,
bx*TILE*RB + tx + q*TILE]`` for ``r, q < RB``: neighbouring ``tx`` own neighbouring
columns, so loads from ``x`` and stores to ``y`` are coalesced, and the threads of a
warp read one row of the shared X tile without bank conflicts.

The gradients are the same kind of kernel, each a GEMM over implicit operands:

- ``dW[o, (c, u, v)] = sum_{(n, i, j)} dY[o, (n, i, j)] * X_cols[(c, u, v), (n, i, j)]``;
- ``dX``, by one of two routes, neither with atomics (each ``dx`` element is summed
  by one thread and written once):

  * *gather*, one implicit GEMM: ``dX[c, (n, h, w)] = sum_{(o, u, v)} W[o, c, u, v] *
    dy[n, o, i, j]`` over the outputs ``(i, j)`` whose window put tap ``(u, v)`` on
    pixel ``(h, w)`` (``s*i + u = h + p``), zero for the others. No buffer, but
    those zeros are multiplied too: few for a 3x3 stride-1 layer, most of them with
    a stride (conv1) or a kernel as large as the map (the fully connected layers);
  * *col2im*: the GEMM ``dX_cols = W^T @ dY`` into a buffer ``(C*kh*kw, N*Ho*Wo)``,
    then :func:`col2im_kernel` sums, for each pixel, only the taps that reach it.

  :func:`choose_dx_route` takes the route that multiplies fewer numbers;
- ``db[o] = sum dY[o, :]``: a reduction kernel, one block per filter.

When a GEMM has too few output tiles to fill the GPU but a long reduction (the
weight gradient of the first layer; a fully connected layer at batch 1) the
reduction is *split*: ``blockIdx.z`` picks a chunk of it, each chunk writes its
partial sums to a workspace, and a second kernel adds the chunks in a fixed order
(deterministic, unlike atomics) and stores the result.

The four GEMMs share one body, :func:`make_implicit_gemm`: prologue, k-loop (load
the tiles, multiply them) and stores are written once, and each GEMM adds a few
small device functions that say where its A and B entries are in memory and where
its result goes (the compiler inlines them). Every tiled kernel is made by a factory
``make_..._kernel(tile, rb)``, cached (``functools.cache``): shared and local array
shapes must be compile-time constants, so each (tile, rb) is a kernel of its own,
with launch bounds that hold it to 128 (rb > 1) or 64 (rb = 1) registers per thread
(:data:`GEMM_REGISTERS`; :mod:`.ptx` checks that the default tiles do not spill). The
host wrappers at the end take NumPy or device arrays and return device arrays;
:func:`pick_rb` drops the register block to 1 for outputs thinner than a tile (a fully
connected layer at batch 1).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32, int64

from ..common.checks import InputError, check_positive_int
from ..ops.conv import check_conv_args, check_conv_backward_args
from . import (
    DEFAULT_RB,
    DEFAULT_TILE,
    SIMULATOR,
    THREADS,
    as_device,
    block_sum,
    blocks_for,
    check_out,
    kernel_jit,
    unravel4,
)

# Registers per thread of the GEMM kernels, for rb == 1 and rb > 1 (their launch
# bounds, see kernel_jit): with 16 x 16 threads, 4 and 2 blocks per SM, 50% and 25%
# occupancy. The 4 x 4 accumulators of rb = 4 take 107-124 registers; at 80 (3 blocks)
# the forward, weight-gradient and gather kernels spill.
GEMM_REGISTERS = (64, 128)

# --------------------------------------------------------------------------------------
# Index helpers (device functions)


@cuda.jit(device=True)
def split3(index, mid, low):
    """``(a, b, c)`` with ``index = (a*mid + b)*low + c``, ``b < mid``, ``c < low``.

    Turns a flat GEMM index into ``(n, i, j)`` or ``(c, u, v)``. It divides, and
    integer division is slow on a GPU, so kernels call it once per thread and then
    move with :func:`advance3`.
    """
    a = index // (mid * low)
    rest = index - a * mid * low
    b = rest // low
    return a, b, rest - b * low


@cuda.jit(device=True)
def advance3(digits, step, mid, low):
    """``digits = (a, b, c)`` plus ``step = (da, db, dc)`` in the same mixed radix, without
    dividing.

    Both inputs have digits ``b < mid``, ``c < low``, so each digit carries at most once.
    """
    a, b, c = digits
    da, db, dc = step
    c += dc
    if c >= low:
        c -= low
        b += 1
    b += db
    if b >= mid:
        b -= mid
        a += 1
    return a + da, b, c


# --------------------------------------------------------------------------------------
# 1. The naive kernel: one thread per output, global memory only


@cuda.jit
def conv_forward_naive_kernel(x, w, b, y, stride, padding):
    """``y[n, o, i, j]``, one thread each (1-D grid over ``y`` in C order).

    Each thread reads its ``C*kh*kw`` window and weights straight from global memory:
    neighbouring threads read overlapping windows, and nothing is shared.
    """
    index = cuda.grid(1)
    batch, filters, ho, wo = y.shape
    _, chans, height, width = x.shape
    _, _, kh, kw = w.shape
    if index < y.size:
        n, o, i, j = unravel4(index, filters, ho, wo)
        total = float32(0)
        for c in range(chans):
            for u in range(kh):
                h = i * stride + u - padding
                if 0 <= h < height:
                    for v in range(kw):
                        col = j * stride + v - padding
                        if 0 <= col < width:
                            total += w[o, c, u, v] * x[n, c, h, col]
        y[n, o, i, j] = total + b[o]


# --------------------------------------------------------------------------------------
# Stores: where GEMM entry (row, col) goes. Shared by the GEMM kernels and by the
# kernel that adds up the chunks of a split reduction.


@cuda.jit(device=True)
def store_y(y, b, g, o, col, value):
    """Forward: ``Y[o, (n, i, j)]`` plus the bias into ``y[n, o, i, j]``."""
    _, _, _, _, _, _, _, _, _, ho, wo = g
    n, i, j = split3(col, ho, wo)
    y[n, o, i, j] = value + b[o]


@cuda.jit(device=True)
def store_matrix(matrix, unused, g, row, col, value):
    """A GEMM that fills a matrix: ``dw.reshape(O, C*kh*kw)``, or the columns of col2im."""
    matrix[row, col] = value


@cuda.jit(device=True)
def store_dx(dx, unused, g, c, col, value):
    """Input gradient: ``dX[c, (n, h, w)]`` into ``dx[n, c, h, w]``."""
    _, _, height, width, _, _, _, _, _, _, _ = g
    n, h, w = split3(col, height, width)
    dx[n, c, h, w] = value


@functools.cache
def make_split_sum_kernel(store):
    """Kernel: add the chunks of a split reduction, then ``store`` each entry.

    One thread per GEMM entry ``(row, col)``, 1-D grid; ``ws: (splits, rows, cols)``.
    The chunks are added in order, so the result does not depend on scheduling.
    """

    @cuda.jit
    def split_sum(ws, out, bias, g):
        index = cuda.grid(1)
        splits, rows, cols = ws.shape
        if index < rows * cols:
            row = index // cols
            col = index - row * cols
            total = float32(0)
            for z in range(splits):
                total += ws[z, row, col]
            store(out, bias, g, row, col, total)

    return split_sum


# --------------------------------------------------------------------------------------
# 2-3. The tiled implicit GEMM, written once: the product of two tiles, and the kernel
# body that every GEMM kernel runs


@functools.cache
def make_tile_product(tile: int, rb: int):
    """A device function: ``acc += A_tile @ B_tile`` for this thread's RB x RB outputs.

    ``a_tile: (TILE*RB, TILE)`` and ``b_tile: (TILE, TILE*RB)`` are in shared memory;
    ``acc: (RB, RB)`` is in registers. Thread (tx, ty) owns rows ``ty + r*TILE`` and
    columns ``tx + q*TILE`` of the block's output tile.
    """

    @cuda.jit(device=True, inline="always")
    def tile_product(a_tile, b_tile, acc, tx, ty):
        a_reg = cuda.local.array(rb, float32)
        b_reg = cuda.local.array(rb, float32)
        for kk in range(tile):
            # Each shared value is read once into a register and used RB times.
            for r in range(rb):
                a_reg[r] = a_tile[ty + r * tile, kk]
                b_reg[r] = b_tile[kk, tx + r * tile]
            for r in range(rb):
                for q in range(rb):
                    acc[r, q] += a_reg[r] * b_reg[q]

    return tile_product


@functools.cache
def make_implicit_gemm(
    tile: int, rb: int, sizes, column, load_a, b_index, store, padded: bool = True
):
    """A device function: one block's share of the GEMM ``OUT = A @ B``, where A and B
    are read from arrays ``a`` and ``b`` and never built.

    The four convolution GEMMs differ only in where their entries are, so each is
    described by device functions (written next to its kernel, below):

    - ``sizes(g) -> (rows, cols, depth, mid, low)``: the GEMM's sizes, and the radix in
      which each reduction index ``k`` is written as three digits ``split3(k, mid,
      low)``: ``(c, u, v)``, ``(n, i, j)`` or ``(o, u, v)``;
    - ``column(g, col)``: three numbers a thread needs about one of its output columns,
      found once, before the loop (dividing is slow);
    - ``load_a(a, g, row, k, k_digits)``: the entry ``A[row, k]``;
    - ``b_index(g, k, k_digits, column) -> (n, c, h, w)``: ``B[k, col]`` is
      ``b[n, c, h, w]``, or zero where ``(h, w)`` lies outside ``b`` (when ``padded``:
      the padding around ``x``, or no output for a pixel); the implicit im2col;
    - ``store(out, bias, g, row, col, value)``: where ``OUT[row, col]`` goes.

    A block of TILE x TILE threads, launched on ``grid = (ceil(cols / (TILE*RB)),
    ceil(rows / (TILE*RB)), splits)``, owns a (TILE*RB)^2 tile of ``OUT`` and the chunk
    ``k_begin <= k < k_end`` of the reduction (``blockIdx.z``). Each step, thread (tx,
    ty) loads ``A[row, k0 + tx]`` for its RB rows into ``a_tile`` and ``B[k0 + ty,
    col]`` for its RB columns into ``b_tile`` (zero past the edges of the matrices),
    then adds the product of the tiles to its RB x RB accumulators ``acc``. The digits
    of ``k0 + tx`` and ``k0 + ty`` move TILE entries a step with :func:`advance3`, so
    the loop never divides. Each output ``(row, col)`` is written once: by ``store``,
    or to ``ws[z, row, col]`` when the reduction is split.

    The kernel declares ``a_tile``, ``b_tile`` (shared memory) and ``acc``
    (registers): their shapes are compile-time constants of this (tile, rb).
    """
    span = tile * rb
    tile_product = make_tile_product(tile, rb)

    @cuda.jit(device=True, inline="always")
    def gemm(a, b, out, bias, ws, g, k_chunk, a_tile, b_tile, acc):
        rows, cols, depth, mid, low = sizes(g)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row0, col0 = cuda.blockIdx.y * span, cuda.blockIdx.x * span
        k_begin = cuda.blockIdx.z * k_chunk
        k_end = min(depth, k_begin + k_chunk)

        col_info = cuda.local.array((rb, 3), int64)
        for q in range(rb):
            col_info[q, 0], col_info[q, 1], col_info[q, 2] = column(g, col0 + tx + q * tile)
            for r in range(rb):
                acc[r, q] = 0
        # The digits of the reduction entries this thread loads: k0 + tx into the A
        # tile, k0 + ty into the B tile.
        a_digits = split3(k_begin + tx, mid, low)
        b_digits = split3(k_begin + ty, mid, low)
        step = split3(tile, mid, low)

        for k0 in range(k_begin, k_end, tile):
            for r in range(rb):
                row = row0 + ty + r * tile
                value = float32(0)
                if row < rows and k0 + tx < k_end:
                    value = load_a(a, g, row, k0 + tx, a_digits)
                a_tile[ty + r * tile, tx] = value
            for q in range(rb):
                info = (col_info[q, 0], col_info[q, 1], col_info[q, 2])
                n, c, h, w = b_index(g, k0 + ty, b_digits, info)
                value = float32(0)
                if k0 + ty < k_end and col0 + tx + q * tile < cols:
                    # Index first, then the two tests nested: the compiler then knows
                    # h, w >= 0 and drops Numba's negative-index wrap-around. (A helper
                    # that returns early, or one test folded into a flag, keeps it.)
                    if not padded or (0 <= h < b.shape[2] and 0 <= w < b.shape[3]):
                        value = b[n, c, h, w]
                b_tile[ty, tx + q * tile] = value
            cuda.syncthreads()
            tile_product(a_tile, b_tile, acc, tx, ty)
            cuda.syncthreads()  # before the next step overwrites the tiles
            a_digits = advance3(a_digits, step, mid, low)
            b_digits = advance3(b_digits, step, mid, low)

        for r in range(rb):
            row = row0 + ty + r * tile
            for q in range(rb):
                col = col0 + tx + q * tile
                if row < rows and col < cols:
                    if cuda.gridDim.z > 1:
                        ws[cuda.blockIdx.z, row, col] = acc[r, q]
                    else:
                        store(out, bias, g, row, col, acc[r, q])

    return gemm


# --------------------------------------------------------------------------------------
# The four GEMM kernels. Each is its addressing functions, and a kernel that declares
# the block's memory and runs the GEMM.


@cuda.jit(device=True)
def forward_sizes(g):
    """Rows ``o``, columns ``(n, i, j)``, reduction ``(c, u, v)``."""
    batch, chans, _, _, filters, kh, kw, _, _, ho, wo = g
    return filters, batch * ho * wo, chans * kh * kw, kh, kw


@cuda.jit(device=True)
def forward_column(g, col):
    """Column ``(n, i, j)``: the image, and where the window of output ``(i, j)`` starts."""
    _, _, _, _, _, _, _, stride, pad, ho, wo = g
    n, i, j = split3(col, ho, wo)
    return n, i * stride - pad, j * stride - pad


@cuda.jit(device=True)
def forward_load_a(w2, g, o, k, k_digits):
    """``W[o, k]``, from ``w2 = w.reshape(O, C*kh*kw)``."""
    return w2[o, k]


@cuda.jit(device=True)
def forward_b_index(g, k, k_digits, column):
    """``X_cols[(c, u, v), (n, i, j)]`` is ``x[n, c, h, w]``, tap ``(u, v)`` of the window."""
    c, u, v = k_digits
    n, h, w = column
    return n, c, h + u, w + v


@functools.cache
def make_conv_forward_kernel(tile: int, rb: int = 1):
    """``Y = W @ X_cols``: rows ``o``, columns ``(n, i, j)``, reduction ``(c, u, v)``.

    The A tile holds ``W``; the B tile ``X_cols``, read from ``x`` (zero in the
    padding); ``Y`` plus the bias goes to ``y``.
    """
    span = tile * rb
    gemm = make_implicit_gemm(
        tile, rb, forward_sizes, forward_column, forward_load_a, forward_b_index, store_y
    )

    @kernel_jit(tile * tile, GEMM_REGISTERS[rb > 1])
    def conv_forward_tiled(x, w2, b, y, ws, g, k_chunk):
        a_tile = cuda.shared.array((span, tile), float32)
        b_tile = cuda.shared.array((tile, span), float32)
        acc = cuda.local.array((rb, rb), float32)
        gemm(w2, x, y, b, ws, g, k_chunk, a_tile, b_tile, acc)

    return conv_forward_tiled


@cuda.jit(device=True)
def weight_grad_sizes(g):
    """Rows ``o``, columns ``(c, u, v)``, reduction ``(n, i, j)``."""
    batch, chans, _, _, filters, kh, kw, _, _, ho, wo = g
    return filters, chans * kh * kw, batch * ho * wo, ho, wo


@cuda.jit(device=True)
def weight_grad_column(g, col):
    """Column ``(c, u, v)``: a tap of the kernel."""
    _, _, _, _, _, kh, kw, _, _, _, _ = g
    return split3(col, kh, kw)


@cuda.jit(device=True)
def weight_grad_load_a(dy, g, o, k, k_digits):
    """``dY[o, (n, i, j)]``, from ``dy``."""
    n, i, j = k_digits
    return dy[n, o, i, j]


@cuda.jit(device=True)
def weight_grad_b_index(g, k, k_digits, column):
    """``X_cols^T[(n, i, j), (c, u, v)]`` is ``x[n, c, h, w]``, tap ``(u, v)`` of the
    window of output ``(i, j)``."""
    _, _, _, _, _, _, _, stride, pad, _, _ = g
    n, i, j = k_digits
    c, u, v = column
    return n, c, i * stride - pad + u, j * stride - pad + v


@functools.cache
def make_conv_weight_grad_kernel(tile: int, rb: int = 1):
    """``dW = dY @ X_cols^T``: rows ``o``, columns ``(c, u, v)``, reduction ``(n, i, j)``.

    The A tile holds ``dY``, read from ``dy``; the B tile ``X_cols^T``, read from ``x``;
    ``dW`` goes to ``dw2 = dw.reshape(O, C*kh*kw)``.
    """
    span = tile * rb
    gemm = make_implicit_gemm(
        tile,
        rb,
        weight_grad_sizes,
        weight_grad_column,
        weight_grad_load_a,
        weight_grad_b_index,
        store_matrix,
    )

    @kernel_jit(tile * tile, GEMM_REGISTERS[rb > 1])
    def conv_weight_grad_tiled(dy, x, dw2, ws, g, k_chunk):
        a_tile = cuda.shared.array((span, tile), float32)
        b_tile = cuda.shared.array((tile, span), float32)
        acc = cuda.local.array((rb, rb), float32)
        gemm(dy, x, dw2, dw2, ws, g, k_chunk, a_tile, b_tile, acc)

    return conv_weight_grad_tiled


@cuda.jit(device=True)
def input_grad_sizes(g):
    """Rows ``c``, columns ``(n, h, w)``, reduction ``(o, u, v)``."""
    batch, chans, height, width, filters, kh, kw, _, _, _, _ = g
    return chans, batch * height * width, filters * kh * kw, kh, kw


@cuda.jit(device=True)
def input_grad_column(g, col):
    """Column ``(n, h, w)``: a pixel of ``dx``, in padded coordinates ``(h + p, w + p)``."""
    _, _, height, width, _, _, _, _, pad, _, _ = g
    n, h, w = split3(col, height, width)
    return n, h + pad, w + pad


@cuda.jit(device=True)
def input_grad_load_a(w, g, c, k, k_digits):
    """``W[o, c, u, v]`` for the reduction entry ``(o, u, v)``, from ``w``."""
    o, u, v = k_digits
    return w[o, c, u, v]


@cuda.jit(device=True)
def input_grad_b_index(g, k, k_digits, column):
    """``dy[n, o, i, j]`` for the output ``(i, j)`` whose window put tap ``(u, v)`` on
    pixel ``(h, w)``: ``s*i + u == h + p``. Where there is none, an ``(i, j)`` outside
    ``dy``: negative, or ``i = Ho`` off the stride grid (the GEMM loads a zero)."""
    _, _, _, _, _, _, _, stride, _, ho, _ = g
    o, u, v = k_digits
    n, h, w = column
    i, j = h - u, w - v
    if stride > 1:  # the same for every thread: no divergence
        h_off, w_off = i, j
        # A float32 quotient: exact when the integer one is exact (both below 2**24,
        # see GATHER_MAX_SIDE), and rejected by the test below when it is not. Int64
        # division spills this kernel.
        i = int64(float32(h_off) / float32(stride))
        j = int64(float32(w_off) / float32(stride))
        if i * stride != h_off or j * stride != w_off:
            i = ho  # not on the stride grid: no output
    return n, o, i, j


@functools.cache
def make_conv_input_grad_kernel(tile: int, rb: int = 1):
    """``dX`` by gathering: rows ``c``, columns ``(n, h, w)``, reduction ``(o, u, v)``.

    The A tile holds ``W[o, c, u, v]``, read from ``w``; the B tile, for each pixel and
    tap, the entry of ``dy`` whose window put that tap on that pixel, or zero; ``dX``
    goes to ``dx``.
    """
    span = tile * rb
    gemm = make_implicit_gemm(
        tile,
        rb,
        input_grad_sizes,
        input_grad_column,
        input_grad_load_a,
        input_grad_b_index,
        store_dx,
    )

    @kernel_jit(tile * tile, GEMM_REGISTERS[rb > 1])
    def conv_input_grad_tiled(dy, w, dx, ws, g, k_chunk):
        a_tile = cuda.shared.array((span, tile), float32)
        b_tile = cuda.shared.array((tile, span), float32)
        acc = cuda.local.array((rb, rb), float32)
        gemm(w, dy, dx, dx, ws, g, k_chunk, a_tile, b_tile, acc)

    return conv_input_grad_tiled


@cuda.jit(device=True)
def cols_grad_sizes(g):
    """Rows ``(c, u, v)``, columns ``(n, i, j)``, reduction ``o`` (digits ``(o, 0, 0)``)."""
    batch, chans, _, _, filters, kh, kw, _, _, ho, wo = g
    return chans * kh * kw, batch * ho * wo, filters, 1, 1


@cuda.jit(device=True)
def cols_grad_column(g, col):
    """Column ``(n, i, j)``: an output position."""
    _, _, _, _, _, _, _, _, _, ho, wo = g
    return split3(col, ho, wo)


@cuda.jit(device=True)
def cols_grad_load_a(w2, g, row, o, k_digits):
    """``W^T[(c, u, v), o]``, from ``w2 = w.reshape(O, C*kh*kw)`` (small: it stays in
    cache)."""
    return w2[o, row]


@cuda.jit(device=True)
def cols_grad_b_index(g, o, k_digits, column):
    """``dY[o, (n, i, j)]`` is ``dy[n, o, i, j]``: always inside ``dy``."""
    n, i, j = column
    return n, o, i, j


@functools.cache
def make_conv_cols_grad_kernel(tile: int, rb: int = 1):
    """``dX_cols = W^T @ dY``: rows ``(c, u, v)``, columns ``(n, i, j)``, reduction ``o``.

    The first half of the col2im route to ``dx`` (the second is :func:`col2im_kernel`).
    The A tile holds ``W^T``, read from ``w``; the B tile ``dY``, read from ``dy``
    (never padded); ``dX_cols`` goes to the buffer ``dcols``.
    """
    span = tile * rb
    gemm = make_implicit_gemm(
        tile,
        rb,
        cols_grad_sizes,
        cols_grad_column,
        cols_grad_load_a,
        cols_grad_b_index,
        store_matrix,
        padded=False,
    )

    @kernel_jit(tile * tile, GEMM_REGISTERS[rb > 1])
    def conv_cols_grad_tiled(dy, w2, dcols, ws, g, k_chunk):
        a_tile = cuda.shared.array((span, tile), float32)
        b_tile = cuda.shared.array((tile, span), float32)
        acc = cuda.local.array((rb, rb), float32)
        gemm(w2, dy, dcols, dcols, ws, g, k_chunk, a_tile, b_tile, acc)

    return conv_cols_grad_tiled


@cuda.jit
def col2im_kernel(dcols, dx, g):
    """``dx[n, c, h, w]``: the sum of the ``dX_cols`` entries of the taps on that pixel.

    One thread per ``dx`` element (1-D grid in C order), written once: a gather, no
    atomics. Tap ``(u, v)`` of output ``(i, j)`` lands on pixel ``(h, w)`` when
    ``s*i + u == h + p``, so ``u`` only runs over ``(h + p) mod s``, plus ``s``, ...:
    a pixel visits the at most ``ceil(kh/s) * ceil(kw/s)`` taps that reach it.
    """
    index = cuda.grid(1)
    _, chans, height, width, _, kh, kw, stride, pad, ho, wo = g
    if index < dx.size:
        n, c, h, w = unravel4(index, chans, height, width)
        total = float32(0)
        for u in range((h + pad) % stride, kh, stride):
            i = (h + pad - u) // stride
            if 0 <= i < ho:
                for v in range((w + pad) % stride, kw, stride):
                    j = (w + pad - v) // stride
                    if 0 <= j < wo:
                        total += dcols[(c * kh + u) * kw + v, (n * ho + i) * wo + j]
        dx[n, c, h, w] = total


@cuda.jit
def conv_bias_grad_kernel(dy3, db):
    """``db[o] = sum_{n, s} dy3[n, o, s]`` with ``dy3 = dy.reshape(N, O, Ho*Wo)``.

    One block of THREADS threads per filter ``o``: each thread adds a strided slice
    (neighbouring threads read neighbouring values), then :func:`block_sum` adds
    the THREADS partial sums in shared memory; thread 0 writes ``db[o]`` once.
    """
    o = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    partial = cuda.shared.array(THREADS, float32)
    total = float32(0)
    for n in range(dy3.shape[0]):
        for s in range(tid, dy3.shape[2], THREADS):
            total += dy3[n, o, s]
    total = block_sum(partial, total)
    if tid == 0:
        db[o] = total


# --------------------------------------------------------------------------------------
# Host wrappers: device arrays in, device arrays out (host arrays are uploaded)

# A split reduction wants enough blocks to fill the GPU, but each chunk at least
# this many TILE-steps long (shorter chunks spend more time storing than adding).
MIN_STEPS_PER_SPLIT = 2 if SIMULATOR else 8
# The gather route divides padded pixel coordinates by the stride in float32, which
# is exact below 2**24; a strided layer with a larger side takes the col2im route.
GATHER_MAX_SIDE = 1 << 24
# Workspace of a split reduction, at most this many floats (256 MiB).
WORKSPACE_FLOATS = 1 << 26
# The col2im route's column buffer, at most this many floats (1 GiB); allocated per call.
COLS_FLOATS = 1 << 28
_workspace = {}


@functools.cache
def target_blocks() -> int:
    """Blocks that keep every multiprocessor busy: two per SM (a few on the simulator)."""
    if SIMULATOR:
        return 4
    return 2 * cuda.get_current_device().MULTIPROCESSOR_COUNT


def check_tile(tile, rb):
    """Validate a (tile, register block) pair; ``None`` means the default."""
    tile = DEFAULT_TILE if tile is None else check_positive_int(tile, "tile")
    if rb is not None:
        rb = check_positive_int(rb, "rb (register block)")
    if tile * tile > 1024:
        raise InputError(f"tile {tile}: a block of {tile}x{tile} threads exceeds 1024 threads")
    return tile, rb


def pick_rb(rb, tile, rows, cols):
    """The register block for a ``rows x cols`` GEMM: ``rb`` if given, else the default,
    or 1 when the output is thinner than a block's tile (a fully connected layer at
    batch 1 has one column: a (16*4)-wide tile would compute 63 columns of padding).
    """
    if rb is not None:
        return rb
    return DEFAULT_RB if min(rows, cols) >= tile * DEFAULT_RB else 1


def workspace(shape):
    """A reusable device buffer of ``shape`` (float32) for split reductions.

    Kernels run in launch order on one stream, so one buffer serves every call;
    it only grows.
    """
    size = math.prod(shape)
    buf = _workspace.get("buf")
    if buf is None or buf.size < size:
        buf = _workspace["buf"] = cuda.device_array(max(size, 1), dtype=np.float32)
    return buf[:size].reshape(shape)


def choose_splits(rows, cols, depth, tile, rb, splits=None):
    """``(splits, k_chunk)``: how many chunks the reduction of ``depth`` is cut into."""
    span = tile * rb
    blocks = -(-rows // span) * -(-cols // span)
    steps = -(-depth // tile)
    if splits is None:
        splits = 1
        if blocks < target_blocks():
            splits = min(-(-target_blocks() // blocks), steps // MIN_STEPS_PER_SPLIT)
        splits = max(1, min(splits, WORKSPACE_FLOATS // (rows * cols)))
    splits = min(check_positive_int(splits, "splits"), steps)
    steps_per_split = -(-steps // splits)
    splits = -(-steps // steps_per_split)  # no empty chunk
    return splits, steps_per_split * tile


def gather_exact(g) -> bool:
    """Whether the gather kernel's float32 division by the stride is exact for ``g``."""
    _, _, height, width, _, _, _, stride, pad, _, _ = g
    return stride == 1 or max(height, width) + pad < GATHER_MAX_SIDE


def choose_dx_route(g, tile, rb):
    """``"gather"`` or ``"col2im"`` for the input gradient: the one that multiplies fewer
    numbers (zeros and rows of padding included), col2im only if clearly fewer (it
    writes and reads a buffer) and if that buffer fits in ``COLS_FLOATS``; always
    col2im where the gather kernel's division would not be exact (:func:`gather_exact`).
    """
    batch, chans, height, width, filters, kh, kw, _, _, ho, wo = g
    span = tile * rb
    if not gather_exact(g):
        return "col2im"

    def padded(rows):
        return -(-rows // span) * span

    gather = padded(chans) * batch * height * width * filters * kh * kw
    col2im = padded(chans * kh * kw) * batch * ho * wo * filters
    fits = chans * kh * kw * batch * ho * wo <= COLS_FLOATS
    return "col2im" if fits and 1.25 * col2im < gather else "gather"


def launch_gemm(kernel, args, dims, finish, g, tile, rb, splits):
    """Run one tiled GEMM kernel on ``args``, plus the split-sum kernel if it splits.

    ``dims = (rows, cols, depth)`` of the GEMM; ``finish = (store, out, bias)``: how the
    split-sum kernel stores the sums (the GEMM kernel itself stores them when the
    reduction is not split).
    """
    rows, cols, depth = dims
    span = tile * rb
    splits, k_chunk = choose_splits(rows, cols, depth, tile, rb, splits)
    grid = (-(-cols // span), -(-rows // span), splits)
    ws = workspace((splits, rows, cols)) if splits > 1 else workspace((1, 1, 1))
    kernel[grid, (tile, tile)](*args, ws, g, k_chunk)
    if splits > 1:
        store, out, bias = finish
        make_split_sum_kernel(store)[blocks_for(rows * cols), THREADS](ws, out, bias, g)


def geometry(x_shape, w_shape, stride, padding):
    """The sizes every conv kernel unpacks, as one tuple of ints."""
    n, c, h, w = (int(s) for s in x_shape)
    o, _, kh, kw = (int(s) for s in w_shape)
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    return (n, c, h, w, o, kh, kw, int(stride), int(padding), ho, wo)


def conv2d_forward_naive(x, w, b, stride=1, padding=0, out=None):
    """Rung 1: :func:`conv_forward_naive_kernel`. Returns ``y: (N, O, Ho, Wo)``."""
    ho, wo = check_conv_args(x, w, b, stride, padding)
    x, w, b = as_device(x, "conv2d x"), as_device(w, "conv2d w"), as_device(b, "conv2d b")
    y = check_out(out, (x.shape[0], w.shape[0], ho, wo), np.float32, "conv2d_forward_naive")
    if y.size:
        conv_forward_naive_kernel[blocks_for(y.size), THREADS](x, w, b, y, stride, padding)
    return y


def conv2d_forward(x, w, b, stride=1, padding=0, tile=None, rb=None, splits=None, out=None):
    """Rungs 2-3: the tiled implicit GEMM. Returns ``y: (N, O, Ho, Wo)`` on the device.

    ``tile``: block side (default 16 on a GPU, 4 on the simulator); ``rb``: register
    block (default 4, 2 on the simulator, 1 for an output thinner than a tile, see
    :func:`pick_rb`); ``splits``: chunks of the reduction (default: enough blocks to
    fill the GPU); ``out``: a device array to write into.
    """
    ho, wo = check_conv_args(x, w, b, stride, padding)
    tile, rb = check_tile(tile, rb)
    x, w, b = as_device(x, "conv2d x"), as_device(w, "conv2d w"), as_device(b, "conv2d b")
    n, c, _, _ = x.shape
    o, _, kh, kw = w.shape
    y = check_out(out, (n, o, ho, wo), np.float32, "conv2d_forward")
    if y.size:
        g = geometry(x.shape, w.shape, stride, padding)
        rb = pick_rb(rb, tile, o, n * ho * wo)
        kernel = make_conv_forward_kernel(tile, rb)
        dims = (o, n * ho * wo, c * kh * kw)
        w2 = w.reshape(o, c * kh * kw)
        launch_gemm(kernel, (x, w2, b, y), dims, (store_y, y, b), g, tile, rb, splits)
    return y


def conv2d_backward(
    dy,
    x,
    w,
    stride=1,
    padding=0,
    tile=None,
    rb=None,
    splits=None,
    dx_route=None,
    out=None,
    input_grad=True,
):
    """Gradients of :func:`conv2d_forward`; returns device arrays ``(dx, dw, db)``.

    ``dx_route``: ``"gather"`` or ``"col2im"`` (default: :func:`choose_dx_route`).
    ``out``, if given, is a tuple of three device arrays to write into.
    ``input_grad=False`` skips ``dx`` (returned as ``None``), as for a first layer.
    """
    o, c, kh, kw = w.shape
    ho, wo = check_conv_backward_args(dy, x, w, stride, padding)
    n = x.shape[0]
    if dx_route not in (None, "gather", "col2im"):
        raise InputError(
            f"conv2d backward: dx_route must be 'gather' or 'col2im', got {dx_route!r}"
        )
    if dx_route == "gather" and not gather_exact(geometry(x.shape, w.shape, stride, padding)):
        raise InputError(
            f"conv2d backward: with a stride, the gather route needs sides below "
            f"{GATHER_MAX_SIDE}, got {x.shape[2]}x{x.shape[3]}; use dx_route='col2im'"
        )
    tile, rb = check_tile(tile, rb)
    dy = as_device(dy, "conv2d dy")
    x, w = as_device(x, "conv2d x"), as_device(w, "conv2d w")
    out = (None, None, None) if out is None else out
    dx = check_out(out[0], x.shape, np.float32, "conv2d_backward dx")
    dw = check_out(out[1], w.shape, np.float32, "conv2d_backward dw")
    db = check_out(out[2], (o,), np.float32, "conv2d_backward db")
    if dy.size == 0:  # an empty batch: no gradient flows
        for array in (dx, dw, db):
            if array.size:
                array.copy_to_device(np.zeros(array.shape, np.float32))
        return dx, dw, db
    g = geometry(x.shape, w.shape, stride, padding)
    taps, positions = c * kh * kw, n * ho * wo
    w2, dw2 = w.reshape(o, taps), dw.reshape(o, taps)

    rb_dw = pick_rb(rb, tile, o, taps)
    kernel = make_conv_weight_grad_kernel(tile, rb_dw)
    finish = (store_matrix, dw2, dw2)
    launch_gemm(kernel, (dy, x, dw2), (o, taps, positions), finish, g, tile, rb_dw, splits)

    conv_bias_grad_kernel[o, THREADS](dy.reshape(n, o, ho * wo), db)
    if not input_grad:
        return None, dw, db

    pixels = n * x.shape[2] * x.shape[3]
    rb_dx = pick_rb(rb, tile, c, pixels)
    if (dx_route or choose_dx_route(g, tile, rb_dx)) == "gather":
        kernel = make_conv_input_grad_kernel(tile, rb_dx)
        dims = (c, pixels, o * kh * kw)
        launch_gemm(kernel, (dy, w, dx), dims, (store_dx, dx, dx), g, tile, rb_dx, splits)
    else:
        rb_cols = pick_rb(rb, tile, taps, positions)
        kernel = make_conv_cols_grad_kernel(tile, rb_cols)
        dcols = cuda.device_array((taps, positions), dtype=np.float32)
        finish = (store_matrix, dcols, dcols)
        launch_gemm(kernel, (dy, w2, dcols), (taps, positions, o), finish, g, tile, rb_cols, splits)
        col2im_kernel[blocks_for(dx.size), THREADS](dcols, dx, g)
    return dx, dw, db
