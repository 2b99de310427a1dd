"""The worker pool and the tiled kernels of the NumPy backend.

The tiled convolution, pooling and ReLU must give what the loop references give,
whatever the tiles (shrunk here so that small shapes cut into many tiles of every
kind) and whatever the number of workers.
"""

import contextlib
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conv_cases, pool_cases

from overfeat_scratch.common import memory
from overfeat_scratch.common.checks import InputError
from overfeat_scratch.ops import activations, conv, parallel, pool
from overfeat_scratch.ops.gradcheck import relative_error

EXACT = 1e-10  # float64 against float64: only the order of the sums differs
F32 = 2e-5  # float32 against the float64 reference (see test_ops)


@contextlib.contextmanager
def workers(count):
    saved = parallel.workers()
    parallel.set_workers(count)
    try:
        yield
    finally:
        parallel.set_workers(saved)


@contextlib.contextmanager
def tiles(module, **sizes):
    """Temporarily set the tile-size constants of ``module``."""
    saved = {name: getattr(module, name) for name in sizes}
    for name, value in sizes.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


tile_sizes = st.fixed_dictionaries(
    {
        "TILE_COLUMNS": st.sampled_from([1, 3, 8, 1024]),
        "TILE_BYTES": st.just(0),
        "MIN_BAND": st.sampled_from([1, 4]),
        "FILTER_BLOCK": st.sampled_from([1, 2, 64]),
        "MIN_FILTERS": st.sampled_from([1, 2, 32]),
        "TILE_ROWS_MAX": st.sampled_from([1, 1024]),
        "CHANNEL_TILES": st.sampled_from([1, 2, 3]),
    }
)


@settings(max_examples=40)
@given(conv_cases(max_n=3, max_o=5), tile_sizes, st.sampled_from([1, 2]), st.booleans())
def test_tiled_convolution_matches_loops(case, sizes, count, input_grad):
    x, w, b, stride, padding = case
    expected = conv.conv2d_naive(x, w, b, stride, padding)
    dy = np.random.default_rng(5).standard_normal(expected.shape)
    dx_ref, dw_ref, db_ref = conv.conv2d_backward_naive(dy, x, w, stride, padding)
    with workers(count), tiles(conv, **sizes):
        y = conv.conv2d_forward_tiled(x, w, b, stride, padding)
        dx, dw, db = conv.conv2d_backward_tiled(dy, x, w, stride, padding, input_grad)
        y32 = conv.conv2d_forward_tiled(*(a.astype(np.float32) for a in (x, w, b)), stride, padding)
    assert y.shape == expected.shape and relative_error(y, expected) < EXACT
    assert y32.dtype == np.float32 and relative_error(y32, expected) < F32
    assert relative_error(dw, dw_ref) < EXACT and dw.shape == w.shape
    assert relative_error(db, db_ref) < EXACT
    if input_grad:
        assert dx.shape == x.shape and relative_error(dx, dx_ref) < EXACT
    else:
        assert dx is None


def test_every_kind_of_tile_occurs():
    # The shapes of the paper's and mini's layers pick each route.
    # image groups: 128 images of 100 positions, at most 10 a tile, 14 tiles (not 13)
    assert len(conv.column_tiles(128, 10, 10, conv.tile_width(800, 4))) == 14
    assert conv.column_tiles(1, 56, 56) == [
        (0, 1, 0, 14),
        (0, 1, 14, 28),
        (0, 1, 28, 42),
        (0, 1, 42, 56),
    ]
    assert conv.column_tiles(1, 12, 12) == [(0, 1, 0, 12)]  # one tile: filter blocks instead
    # bands of rows in an even count: accurate.conv1 (108 rows of 108) in 8, not 7
    assert len(conv.column_tiles(1, 108, 108, conv.tile_width(147, 4), 96)) == 8
    # Many filters for the positions (the paper's conv2 at batch 1): filters are split.
    assert conv.column_tiles(1, 30, 30, filters=256) == [(0, 1, 0, 30)]
    assert conv.filter_blocks(1024) == [(0, 256), (256, 512), (512, 768), (768, 1024)]
    assert conv.filter_blocks(256) == [(0, 128), (128, 256)]
    assert conv.filter_blocks(10) == [(0, 10)]
    assert conv.tile_width(25, 4) > conv.TILE_COLUMNS  # short columns: wider tiles


@settings(max_examples=40)
@given(conv_cases(max_n=3, max_o=5), st.sampled_from([0.0, 0.2, 0.6, 1.0]), st.booleans())
def test_backward_on_live_positions_matches_loops(case, share, input_grad):
    # Output positions whose gradient is zero in every filter are skipped.
    x, w, b, stride, padding = case
    y = conv.conv2d_naive(x, w, b, stride, padding)
    n, _, ho, wo = y.shape
    rng = np.random.default_rng(7)
    dy = rng.standard_normal(y.shape) * (rng.random((n, 1, ho, wo)) < share)
    dy[:, 0] = 0.0  # a live position may have zeros in some filters
    live = conv.live_positions(dy, fraction=1.0)
    flags = [dy[a, :, i, j].any() for a in range(n) for i in range(ho) for j in range(wo)]
    np.testing.assert_array_equal(live, np.flatnonzero(flags))
    dx_ref, dw_ref, db_ref = conv.conv2d_backward_naive(dy, x, w, stride, padding)
    for dtype, tol in ((np.float64, EXACT), (np.float32, F32)):
        x_, w_, dy_ = (a.astype(dtype) for a in (x, w, dy))
        for dx, dw, db in (
            conv.conv2d_backward_live(dy_, x_, w_, live, stride, padding, input_grad),
            conv.conv2d_backward_tiled(dy_, x_, w_, stride, padding, input_grad),
        ):
            assert dw.dtype == dtype and dw.shape == w.shape
            assert relative_error(dw, dw_ref) < tol and relative_error(db, db_ref) < tol
            if input_grad:
                assert dx.shape == x.shape and relative_error(dx, dx_ref) < tol
            else:
                assert dx is None


def test_live_positions_stop_past_the_fraction():
    first = np.zeros((1, 2, 3, 3))
    first[0, 1, 0, 0] = 2.0  # only position 0 live: not mistaken for "too many"
    np.testing.assert_array_equal(conv.live_positions(first), [0])
    dy = np.zeros((2, 3, 2, 5))
    dy[0, 2, 1, 4] = 1.0
    dy[1, 1, 0, 0] = np.nan  # a NaN gradient is not skipped
    dy[1, 0, 1, 2] = -0.5
    np.testing.assert_array_equal(conv.live_positions(dy), [9, 10, 17])
    np.testing.assert_array_equal(conv.live_positions(dy, 0.15), [9, 10, 17])  # 3 of 20
    assert conv.live_positions(dy, 0.1) is None  # 2 of 20 allowed
    assert conv.live_positions(np.zeros((1, 2, 3, 3))).size == 0
    assert conv.live_positions(np.ones((1, 2, 3, 3))) is None


@settings(max_examples=30)
@given(
    st.integers(0, 2**16),
    st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 6), st.integers(1, 6)),
    st.floats(0, 1),
    st.sampled_from([0.1, 0.5, 0.9]),
)
def test_live_positions_decide_as_the_full_scan_does(seed, shape, density, fraction):
    """Building the live mask channel by channel and giving up past the limit never
    changes the answer of a scan over every channel (here NumPy's): the same list,
    or None past the fraction."""
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(shape) * (rng.random(shape) < density)
    if seed % 3 == 0:
        dy[:, : min(4, shape[1])] = 0  # the first channels say nothing
    n, c, ho, wo = shape
    most = int(fraction * n * ho * wo)
    scan = np.flatnonzero(np.any(dy != 0, axis=1))
    mask, count = conv._live_mask(dy, most)
    assert count <= scan.size and count == np.count_nonzero(mask)  # a lower bound
    expected = None if scan.size > most else scan
    got = conv.live_positions(dy, fraction)
    if expected is None:
        assert got is None
    else:
        np.testing.assert_array_equal(got, expected)
        assert count == scan.size  # nothing given up: every channel was read


def test_tiled_backward_takes_the_live_route_where_few_positions_have_a_gradient(monkeypatch):
    # A detector's mined loss: a quarter of the windows of each 9x9 map.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 16, 13, 13), dtype=np.float32)
    w = rng.standard_normal((32, 16, 5, 5), dtype=np.float32)
    dy = rng.standard_normal((4, 32, 9, 9), dtype=np.float32)
    mask = rng.random((4, 1, 9, 9)) < 0.25
    calls = []
    original = conv.conv2d_backward_live
    monkeypatch.setattr(
        conv, "conv2d_backward_live", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    sparse = conv.conv2d_backward_tiled(dy * mask, x, w)
    assert len(calls) == 1
    conv.conv2d_backward_tiled(dy, x, w)
    assert len(calls) == 1  # every position live: the dense products
    dense = conv.conv2d_backward(dy * mask, x, w)
    for a, r in zip(sparse, dense, strict=True):
        assert relative_error(a, r) < F32


@given(st.integers(1, 300), st.integers(1, 200), st.integers(1, 2048))
def test_image_groups_come_in_an_even_count_within_the_width(n, positions, width):
    # image_groups is parallel.blocks of the images a tile may hold
    groups = conv.image_groups(n, positions, width)
    sizes = [n1 - n0 for n0, n1 in groups]
    assert groups[0][0] == 0 and groups[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(groups, groups[1:], strict=False))
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    most = max(1, width // positions)  # images a tile may hold (at least one)
    assert max(sizes) <= most
    if len(groups) > 1:
        assert len(groups) % parallel.TILE_COUNT_MULTIPLE == 0 or len(groups) == n
        assert len(groups) < -(-n // most) + parallel.TILE_COUNT_MULTIPLE


def test_tiled_conv_backward_adds_the_weight_gradients_of_every_image_group():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((6, 3, 4, 4))
    assert len(conv.image_groups(6, 16, 32)) == 4  # 3 would do; an even count
    refs = conv.conv2d_backward_naive(dy, x, w)
    with workers(2), tiles(conv, TILE_COLUMNS=32, TILE_BYTES=0):
        for input_grad in (True, False):
            dx, dw, db = conv.conv2d_backward_tiled(dy, x, w, input_grad=input_grad)
            assert relative_error(dw, refs[1]) < EXACT and relative_error(db, refs[2]) < EXACT
            if input_grad:
                assert relative_error(dx, refs[0]) < EXACT


@pytest.mark.parametrize(
    "x_shape, w_shape, stride, padding, sizes",
    [
        # groups of several images, a first layer (9-number columns, 16 positions)
        ((6, 1, 6, 6), (4, 1, 3, 3), 1, 0, {"TILE_COLUMNS": 32, "TILE_BYTES": 0}),
        # bands of rows of one large map, in each of two images
        ((2, 2, 12, 12), (2, 2, 3, 3), 1, 1, {"TILE_COLUMNS": 16, "TILE_BYTES": 0, "MIN_BAND": 4}),
        # one tile per image, and filters enough for blocks: the tiles stay the work
        ((2, 2, 6, 6), (64, 2, 3, 3), 1, 0, {"TILE_COLUMNS": 16, "TILE_BYTES": 0}),
        # one tile of columns, blocks of filters (shared columns), unit stride and not
        ((1, 3, 5, 5), (70, 3, 3, 3), 1, 0, {"FILTER_BLOCK": 32}),
        ((1, 3, 9, 9), (70, 3, 3, 3), 2, 0, {"FILTER_BLOCK": 32}),
        # columns too long for a tile: one product
        ((2, 3, 6, 6), (4, 3, 3, 3), 1, 1, {"TILE_ROWS_MAX": 8}),
        # fully connected on many images, blocks of filters
        ((70, 3, 2, 2), (70, 3, 2, 2), 1, 0, {"FILTER_BLOCK": 32}),
        # fully connected on few images, wide inputs
        ((3, 40, 2, 2), (5, 40, 2, 2), 1, 0, {}),
    ],
)
def test_tiled_conv_routes_against_the_one_product(x_shape, w_shape, stride, padding, sizes):
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    y_ref = conv.conv2d_forward(x, w, b, stride, padding)
    dy = rng.standard_normal(y_ref.shape)
    refs = conv.conv2d_backward(dy, x, w, stride, padding)
    with workers(2), tiles(conv, **sizes):
        for relu in (False, True):
            y = conv.conv2d_forward_tiled(x, w, b, stride, padding, relu=relu)
            expected = np.maximum(y_ref, 0) if relu else y_ref
            assert y.shape == y_ref.shape and relative_error(y, expected) < EXACT
        for input_grad in (True, False):
            dx, dw, db = conv.conv2d_backward_tiled(dy, x, w, stride, padding, input_grad)
            assert relative_error(dw, refs[1]) < EXACT and relative_error(db, refs[2]) < EXACT
            assert (dx is None) if not input_grad else relative_error(dx, refs[0]) < EXACT


@pytest.mark.parametrize("n", [1, 5])
def test_tiled_conv_epilogue_keeps_nan_through_the_fused_relu(n):
    # One image in bands of rows, and groups of images per tile: the epilogue adds
    # the bias and rectifies as np.maximum does, so a NaN input stays NaN.
    rng = np.random.default_rng(13)
    x = rng.standard_normal((n, 2, 12, 12)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x[-1, 1, 5, 5] = np.nan
    expected = np.maximum(conv.conv2d_forward(x, w, b), 0)
    with workers(2), tiles(conv, TILE_COLUMNS=16, MIN_BAND=8):
        y = conv.conv2d_forward_tiled(x, w, b, relu=True)
    assert np.isnan(y).sum() == 4 * 9 and np.isnan(expected).sum() == 4 * 9
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert (y[~np.isnan(y)] >= 0).all()


def test_tiled_conv_defaults_are_unit_stride_no_padding_no_relu():
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), np.zeros(3)
    w[0] = -np.abs(w[0])  # a filter with negative outputs: no ReLU may clip them
    x = np.abs(x)
    y = conv.conv2d_forward_tiled(x, w, b)
    assert y.shape == (2, 3, 3, 3) and (y < 0).any()
    assert relative_error(y, conv.conv2d_naive(x, w, b, 1, 0)) < EXACT
    dy = rng.standard_normal(y.shape)
    refs = conv.conv2d_backward_naive(dy, x, w, 1, 0)
    for got, ref in zip(conv.conv2d_backward_tiled(dy, x, w), refs, strict=True):
        assert got.shape == ref.shape and relative_error(got, ref) < EXACT
    dy[:, :, 1:] = 0.0  # a third of the positions live
    refs = conv.conv2d_backward_naive(dy, x, w, 1, 0)
    live = conv.live_positions(dy)
    for got, ref in zip(conv.conv2d_backward_live(dy, x, w, live), refs, strict=True):
        assert got.shape == ref.shape and relative_error(got, ref) < EXACT


def test_conv_forward_temporaries_by_hand():
    # Each route of conv2d_forward_tiled, counted by hand (float32 numbers).
    fc = conv.forward_temporaries
    assert fc((8, 64, 5, 5), (256, 64, 5, 5), 1, 0, 4, 2) == 2 * 8 * 256  # FC, few images
    # FC on 128 images, 4096 filters: one product, and its sum with the bias.
    assert fc((128, 64, 5, 5), (4096, 64, 5, 5), 1, 0, 4, 2) == 2 * 128 * 4096
    # Long columns (1,600 > 1,024) with padding 1: padded input, columns and product.
    padded = 2 * 64 * 15 * 15
    assert fc((2, 64, 13, 13), (256, 64, 5, 5), 1, 1, 4, 2) == padded + 2 * 11 * 11 * (1600 + 256)
    # Long columns with padding 2: the padded input is 14 x 14.
    assert fc((1, 64, 10, 10), (32, 64, 5, 5), 1, 2, 4, 2) == 64 * 14 * 14 + 10 * 10 * (1600 + 32)
    # Bands of rows of one 56 x 56 map: 4 bands of 14 rows, 2 in flight.
    band = 14 * 56
    assert fc((1, 3, 58, 58), (8, 3, 3, 3), 1, 0, 4, 2) == 2 * band * (27 + 8) + band * 8
    # Tiles of image groups (mini's conv2 at batch 128): 14 tiles of 9 or 10 images.
    widest = 10 * 10 * 10
    assert (
        fc((128, 32, 14, 14), (64, 32, 5, 5), 1, 0, 4, 2) == 2 * widest * (800 + 64) + widest * 64
    )
    # One tile of columns, blocks of filters (the paper's conv2 at batch 1).
    blocks = conv.filter_blocks(256)
    assert (
        fc((1, 96, 28, 28), (256, 96, 3, 3), 1, 0, 4, 2)
        == 26 * 26 * 864 + (min(2, len(blocks)) + 1) * 128 * 26 * 26
    )


@pytest.mark.parametrize(
    "n, c, side, o, k, stride, padding",
    [
        (128, 32, 14, 64, 5, 1, 0),
        (1, 3, 59, 16, 11, 4, 0),
        (2, 64, 12, 160, 3, 1, 1),
        (64, 64, 5, 96, 5, 1, 0),
    ],
)
def test_results_do_not_depend_on_the_number_of_workers(n, c, side, o, k, stride, padding):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, c, side, side), dtype=np.float32)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32) * np.float32(0.1)
    b = rng.standard_normal(o, dtype=np.float32)
    results = []
    for count in (1, 2, 3):
        with workers(count):
            y = conv.conv2d_forward_tiled(x, w, b, stride, padding)
            dy = np.tanh(y)
            results.append((y, *conv.conv2d_backward_tiled(dy, x, w, stride, padding)))
    for other in results[1:]:
        for a, r in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, r)


@settings(max_examples=20)
@given(pool_cases(max_n=3, max_c=4), st.sampled_from([1, 2, 5]))
def test_pooling_in_tiles_matches_loops(case, planes):
    x, k, s = case
    y_ref, arg_ref = pool.max_pool2d_naive(x, k, s)
    dy = np.random.default_rng(7).standard_normal(y_ref.shape)
    with workers(2), tiles(pool, PLANES_PER_TILE=planes, MIN_TILE_ELEMENTS=1):
        y, arg = pool.max_pool2d_forward(x, k, s)
        dx = pool.max_pool2d_backward(dy, arg, x.shape, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    np.testing.assert_allclose(
        dx, pool.max_pool2d_backward_naive(dy, arg_ref, x.shape, k, s), rtol=1e-15
    )


def test_pooling_a_large_input_in_its_own_tiles():
    # mini's pool1 at batch 128 (3.2 M numbers): the tiles the constants choose, against
    # the same pass in one tile.
    x = np.random.default_rng(8).standard_normal((128, 32, 28, 28), dtype=np.float32)
    tiles_used = pool.plane_tiles(x.shape)
    assert len(tiles_used) == x.size // pool.MIN_TILE_ELEMENTS
    assert min(b - a for a, b in tiles_used) >= pool.PLANES_PER_TILE
    dy = np.random.default_rng(9).standard_normal((128, 32, 14, 14), dtype=np.float32)
    with workers(2):
        y, arg = pool.max_pool2d_forward(x, 2, 2)
        dx = pool.max_pool2d_backward(dy, arg, x.shape, 2, 2)
    with tiles(pool, MIN_TILE_ELEMENTS=x.size + 1, PLANES_PER_TILE=x.size):
        assert len(pool.plane_tiles(x.shape)) == 1
        y1, arg1 = pool.max_pool2d_forward(x, 2, 2)
        dx1 = pool.max_pool2d_backward(dy, arg1, x.shape, 2, 2)
    for a, r in ((y, y1), (arg, arg1), (dx, dx1)):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_in_tiles(inplace):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5, 7)).astype(np.float32)
    x[0, 0, 0, :2] = [0.0, -0.0]
    expected = activations.relu_naive(x)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    with workers(2), tiles(activations, ELEMENTS_PER_TILE=17):
        source = x.copy()
        y = activations.relu_forward(source, inplace=inplace)
        assert (y is source) == inplace
        np.testing.assert_array_equal(y, expected)
        dx = activations.relu_backward(dy, y)
        # A transposed (non-contiguous) input gives the same values.
        yt = activations.relu_forward(x.transpose(0, 1, 3, 2))
        np.testing.assert_array_equal(yt, expected.transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(dx, np.where(expected > 0, dy, 0))
    assert dx.dtype == np.float32


def test_run_tiles_keeps_order_and_raises_the_first_error():
    seen = set()

    def job(tile):
        seen.add(threading.get_ident())
        return tile * tile

    with workers(2):
        assert parallel.run_tiles(job, range(50)) == [t * t for t in range(50)]

        def failing(tile):
            if tile == 7:
                raise InputError("tile 7 is bad")
            return tile

        with pytest.raises(InputError, match="tile 7"):
            parallel.run_tiles(failing, range(20))
        # A tile that runs tiles itself runs them in its own thread: no deadlock.
        nested = parallel.run_tiles(
            lambda t: sum(parallel.run_tiles(lambda u: u, range(t))), range(6)
        )
        assert nested == [sum(range(t)) for t in range(6)]
    with workers(1):
        seen.clear()
        parallel.run_tiles(job, range(10))
        assert seen == {threading.get_ident()}


def test_blas_thread_count_is_restored():
    controllers = parallel._blas_controllers()
    if not controllers:
        pytest.skip("no BLAS library that threadpoolctl can control")
    saved = [lib.get_num_threads() for lib in controllers]
    try:
        for lib in controllers:  # two BLAS threads outside, whatever the environment says
            lib.set_num_threads(2)
        before = [lib.get_num_threads() for lib in controllers]
        assert 2 in before
        blas = controllers[before.index(2)]
        for count in (1, 2):
            inside = []
            with workers(count):
                parallel.run_tiles(
                    lambda t, seen=inside: seen.append(blas.get_num_threads()), range(4)
                )
            assert inside == [1] * 4
            assert [lib.get_num_threads() for lib in controllers] == before
    finally:
        for lib, count in zip(controllers, saved, strict=True):
            lib.set_num_threads(count)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_tiles_run_on_as_many_threads_as_workers(count):
    # The calling thread and count - 1 threads of the pool share the tiles; a tile that
    # takes a while leaves the others to the other workers.
    seen = set()

    def job(tile):
        seen.add(threading.get_ident())
        time.sleep(0.02)
        return tile

    def threads_used(tiles):
        seen.clear()
        assert parallel.run_tiles(job, range(tiles)) == list(range(tiles))
        return seen.copy()

    with workers(count):
        for _ in range(2):  # and again: a finished run leaves the thread free to share
            used = threads_used(6 * count)
            assert len(used) == count and threading.get_ident() in used
        assert threads_used(1) == {threading.get_ident()}  # one tile: the caller alone
        # From a thread that never ran tiles before, the same.
        result = []
        caller = threading.Thread(target=lambda: result.append(threads_used(6 * count)))
        caller.start()
        caller.join()
        assert len(result[0]) == count


@pytest.mark.parametrize("where", ["caller", "helper"])
def test_an_error_in_any_worker_reaches_the_caller(where):
    caller = threading.get_ident()

    def job(tile):
        time.sleep(0.01)  # every worker gets tiles
        if (threading.get_ident() == caller) == (where == "caller"):
            raise InputError(f"a tile failed in the {where}")
        return tile

    with workers(2), pytest.raises(InputError, match=f"in the {where}"):
        parallel.run_tiles(job, range(8))


@given(st.integers(0, 200), st.integers(1, 9), st.integers(1, 30))
def test_split_covers_the_range_evenly(count, parts, minimum):
    ranges = parallel.split(count, parts, minimum)
    assert [i for a, b in ranges for i in range(a, b)] == list(range(count))
    sizes = [b - a for a, b in ranges]
    # As many ranges as allowed: at most `parts`, none shorter than `minimum`.
    assert len(ranges) == (max(1, min(parts, count // minimum)) if count else 0)
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert len(sizes) == 1 or min(sizes) >= minimum


def test_split_and_blocks_by_hand():
    assert parallel.split(3, 3) == [(0, 1), (1, 2), (2, 3)]  # minimum 1 by default
    assert parallel.split(4, 4, minimum=2) == [(0, 2), (2, 4)]
    assert parallel.split(7, 2) == [(0, 3), (3, 7)]
    assert parallel.split(0, 3) == []
    assert parallel.blocks(5, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    # 3 ranges would do; an even count is cut instead (two workers, equal shares)
    assert parallel.blocks(5, 2) == [(0, 1), (1, 2), (2, 3), (3, 5)]
    assert parallel.blocks(12, 5) == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert parallel.blocks(6, 6) == [(0, 6)]  # one range stays one
    assert parallel.blocks(4, 0) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_default_worker_count_is_this_process_cores(monkeypatch):
    monkeypatch.delenv("OVERFEAT_THREADS", raising=False)
    # The cores this process may run on (pid 0: this process), not the machine's.
    monkeypatch.setattr(
        parallel.os, "sched_getaffinity", lambda pid: {0, 2, 5} if pid == 0 else {0}
    )
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 8)
    assert parallel._default_workers() == 3
    monkeypatch.delattr(parallel.os, "sched_getaffinity")  # not on Linux
    assert parallel._default_workers() == 8
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: None)  # unknown
    assert parallel._default_workers() == 1


def test_worker_count_is_checked(monkeypatch):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="positive integer"):
            parallel.set_workers(bad)
    monkeypatch.setenv("OVERFEAT_THREADS", "two")
    with pytest.raises(InputError, match="OVERFEAT_THREADS"):
        parallel._default_workers()
    for bad in ("0", "-2", ""):
        monkeypatch.setenv("OVERFEAT_THREADS", bad)
        if bad:
            with pytest.raises(InputError, match="OVERFEAT_THREADS"):
                parallel._default_workers()
    for good in ("1", "3"):
        monkeypatch.setenv("OVERFEAT_THREADS", good)
        assert parallel._default_workers() == int(good)


def test_keeping_freed_memory_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("OVERFEAT_KEEP_FREED_MEMORY", "0")
    assert memory._configure() is False
    monkeypatch.delenv("OVERFEAT_KEEP_FREED_MEMORY")
    assert isinstance(memory.keep_freed_memory(), bool)


def test_workers_follow_the_callers_floating_point_error_settings():
    def overflow(tile):
        return np.float32(3e38) * np.float32(tile + 10)

    with workers(2):
        with np.errstate(over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert all(np.isinf(parallel.run_tiles(overflow, range(8))))
        with np.errstate(over="raise"), pytest.raises(FloatingPointError):
            parallel.run_tiles(overflow, range(8))


@pytest.mark.parametrize("preset", [None, "7"])
def test_importing_the_package_first_shortens_openblas_spinning(preset):
    """The package sets OpenBLAS's idle-thread timeout before NumPy loads OpenBLAS
    (so its threads stop spinning soon after a product and leave the cores to the
    workers), and keeps a value the user set."""
    import os
    import subprocess
    import sys

    import overfeat_scratch

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    code = (
        "import sys, os, overfeat_scratch; assert 'numpy' not in sys.modules; "
        "print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (preset or overfeat_scratch.BLAS_THREAD_TIMEOUT)


def test_tile_counts_are_rounded_over_all_images(monkeypatch):
    assert parallel.tile_count(7) == 8
    assert parallel.tile_count(7, repeats=2) == 7  # 14 tiles already
    assert parallel.tile_count(1, repeats=3) == 1  # one part per image stays one
    monkeypatch.setattr(parallel, "TILE_COUNT_MULTIPLE", 4)
    assert parallel.tile_count(5, repeats=2) == 6  # 12 tiles
    assert parallel.tile_count(5, repeats=3) == 8  # 24 tiles
