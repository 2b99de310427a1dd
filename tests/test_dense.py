"""Dense evaluation equals sliding the network over windows (coarse and fine)."""

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import dense_networks

from overfeat_scratch import build_network
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import dense_evaluate, last_pool_index
from overfeat_scratch.nn.geometry import Geometry, Stage
from overfeat_scratch.ops.gradcheck import relative_error
from overfeat_scratch.ops.offset_pool import (
    interleave_offsets,
    offset_max_pool2d,
    offset_max_pool2d_naive,
)

# float32 dense map against the float64 network on a crop: sums of at most a few
# hundred products of O(1) values, so the error is measured against the scale of
# the whole map (at least 1), not the one output, which may cancel to near zero.
TOL = 1e-4


def close(got, expected, scale):
    return np.abs(got - expected).max() <= TOL * max(1.0, float(np.abs(scale).max()))


def as_float32(net):
    return copy.deepcopy(net).astype(np.float32)


def input_for(draw, net, channels, extra=3):
    g = Geometry.of(net)
    h = draw(st.integers(g.window, g.window + extra * g.stride))
    w = draw(st.integers(g.window, g.window + extra * g.stride))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal((1, channels, h, w))


def check_against_crops(net64, x, dense, stride):
    """Every output of ``dense`` against the float64 network on its own crop."""
    g = Geometry.of(net64)
    _, _, h, w = x.shape
    checked = 0
    for i in range(dense.shape[2]):
        for j in range(dense.shape[3]):
            rows, cols = g.crop(i, h, stride), g.crop(j, w, stride)
            if rows is None or cols is None:
                continue
            (a, b, li), (c, d, lj) = rows, cols
            expected = net64.forward(x[:, :, a:b, c:d])[:, :, li, lj]
            assert close(dense[:, :, i, j], expected, dense), (i, j)
            checked += 1
    return checked


@given(dense_networks(padded=False), st.data())
def test_dense_map_equals_the_network_on_every_window(spec, data):
    channels, net64 = spec
    x = input_for(data.draw, net64, channels)
    g = Geometry.of(net64)
    dense = dense_evaluate(as_float32(net64), x.astype(np.float32))
    assert dense.scores.shape[2:] == g.output_size(*x.shape[2:])
    for i in range(dense.scores.shape[2]):
        for j in range(dense.scores.shape[3]):
            x0, y0, x1, y1 = dense.box(i, j)
            assert (x1 - x0, y1 - y0) == (g.window, g.window)
            crop = x[:, :, y0:y1, x0:x1]
            expected = net64.forward(crop)
            assert expected.shape[2:] == (1, 1)
            assert close(dense.scores[:, :, i, j], expected[:, :, 0, 0], dense.scores)


@given(dense_networks(padded=True), st.data())
def test_padded_dense_map_equals_the_network_on_its_receptive_field(spec, data):
    channels, net64 = spec
    x = input_for(data.draw, net64, channels)
    dense = dense_evaluate(as_float32(net64), x.astype(np.float32))
    checked = check_against_crops(net64, x, dense.scores, Geometry.of(net64).stride)
    assert checked == dense.scores.shape[2] * dense.scores.shape[3]


@given(dense_networks(), st.data())
def test_fine_map_equals_the_network_on_every_fine_window(spec, data):
    channels, net64 = spec
    x = input_for(data.draw, net64, channels)
    g = Geometry.of(net64)
    fine = dense_evaluate(as_float32(net64), x.astype(np.float32), fine=True)
    pool = net64.layers[last_pool_index(net64)]
    assert fine.stride * pool.stride == g.stride
    checked = check_against_crops(net64, x, fine.scores, fine.stride)
    if g.padding == 0:
        assert checked == fine.scores.shape[2] * fine.scores.shape[3]
    # The coarse map is the fine map at offset (0, 0).
    coarse = dense_evaluate(as_float32(net64), x.astype(np.float32)).scores
    s = pool.stride
    np.testing.assert_allclose(fine.scores[:, :, ::s, ::s], coarse, rtol=1e-5, atol=1e-6)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1), st.data())
def test_offset_pool_matches_loops(kernel, stride, seed, data):
    stride = min(stride, kernel) if data.draw(st.booleans()) else stride
    h = data.draw(st.integers(kernel, 11))
    w = data.draw(st.integers(kernel, 11))
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w))
    fast = offset_max_pool2d(x, kernel, stride)
    naive = offset_max_pool2d_naive(x, kernel, stride)
    # One array, as large as the map at offset (0, 0), the largest.
    assert fast.shape == (stride, stride) + naive[0][0].shape
    for dy, row in enumerate(naive):
        for dx, expected in enumerate(row):
            if h - dy < kernel or w - dx < kernel:  # not one whole window: an empty map
                assert expected.shape == (2, 2, 0, 0)
            hh, ww = expected.shape[2:]
            np.testing.assert_array_equal(fast[dy, dx, :, :, :hh, :ww], expected)


def test_offsets_past_the_last_window_give_empty_maps():
    # 4x5 input, 3x3 pool, stride 3: offset dy = 2 leaves 2 rows, less than a window.
    x = np.arange(2 * 2 * 4 * 5, dtype=np.float64).reshape(2, 2, 4, 5)
    naive = offset_max_pool2d_naive(x, 3, 3)
    assert [m.shape for m in naive[2]] == [(2, 2, 0, 0)] * 3
    assert [m.shape for m in naive[1]] == [(2, 2, 1, 1)] * 3
    fast = offset_max_pool2d(x, 3, 3)
    assert fast.shape == (3, 3, 2, 2, 1, 1)
    assert not fast[2].any()  # never read, left at 0
    np.testing.assert_array_equal(fast[1, 2], x[:, :, 1:4, 2:5].max(axis=(2, 3), keepdims=True))


def test_interleave_places_each_offset_on_its_grid():
    s, n, c, ho, wo = 3, 1, 1, 2, 2
    y = np.zeros((s, s, n, c, ho, wo))
    for dy in range(s):
        for dx in range(s):
            for i in range(ho):
                for j in range(wo):
                    y[dy, dx, 0, 0, i, j] = 1000 * (s * i + dy) + (s * j + dx)
    fine = interleave_offsets(y, 5, 6)
    rows, cols = np.indices((5, 6))
    np.testing.assert_array_equal(fine[0, 0], 1000 * rows + cols)


@pytest.mark.parametrize("row", paper.TABLE5, ids=lambda r: "x".join(map(str, r["input"])))
def test_table5_every_cell(row):
    from overfeat_scratch.nn.dense import offset_plan

    net = build_network("accurate", seed=None)
    plan = offset_plan(net, *row["input"])
    for key in ("pre_pool", "post_pool", "per_offset", "fine"):
        assert plan[key] == row[key], key
    assert plan["offsets"] == (3, 3)
    assert plan["fine_stride"] == 12


def test_geometry_reproduces_the_released_size_formulas():
    fast = Geometry.of(build_network("fast", seed=None))
    accurate = Geometry.of(build_network("accurate", seed=None))
    for h in range(221, 700, 7):
        if h >= 231:
            assert fast.output_size(h, h)[0] == ((h - 11) // 4 + 1) // 8 - 6
        assert accurate.output_size(h, h)[0] == ((h - 7) // 2 + 1) // 18 - 5
    assert (fast.window, fast.stride, fast.padding) == (231, 32, 48)
    assert (accurate.window, accurate.stride, accurate.padding) == (221, 36, 48)
    assert fast.window_box(2, 3) == (96, 64, 96 + 231, 64 + 231)
    assert accurate.receptive_box(0, 0) == (-48, -48, 221 + 48, 221 + 48)
    with pytest.raises(ValueError, match="smaller than the network's window 231x231"):
        fast.output_size(230, 500)


def test_receptive_fields_and_crops_of_small_stacks_by_hand():
    # One padded 3x3 convolution, stride 1: output i sees input pixels i - 1 .. i + 1,
    # so its crop is that range cut at the borders, and the output sits at i - a in it.
    conv = Geometry((Stage(3, 1, 1),))
    assert (conv.window, conv.stride, conv.padding, conv.receptive_field) == (1, 1, 1, 3)
    assert [conv.crop(i, 10) for i in (0, 4, 9)] == [(0, 2, 0), (3, 6, 1), (8, 10, 1)]
    # Then a 2x2 pool, stride 2: output 0 pools convolution outputs 0 and 1, which see
    # input pixels -1 .. 2: a receptive field of 4 around a window of 2.
    pooled = Geometry((Stage(3, 1, 1), Stage(2, 2)))
    assert (pooled.window, pooled.stride, pooled.padding) == (2, 2, 1)
    assert pooled.receptive_field == 4 and pooled.receptive_box(1, 0) == (-1, 1, 3, 5)


def tiny_network(end_with_pool=False):
    """conv 3x3 (1 -> 2), ReLU, pool 2x2, then (unless ``end_with_pool``) a 2x2 fully
    connected layer (2 -> 3), ReLU and a 1x1 one (3 -> 4)."""
    from overfeat_scratch import Conv2d, FullyConnected, MaxPool2d, ReLU, Sequential

    rng = np.random.default_rng(0)
    layers = [Conv2d(1, 2, 3, 1, 0, 0.5, rng, "conv"), ReLU(name="relu"), MaxPool2d(2, name="pool")]
    if not end_with_pool:
        layers += [
            FullyConnected(2, 3, 2, 0.5, rng, "fc1"),
            ReLU(name="relu1"),
            FullyConnected(3, 4, 1, 0.5, rng, "fc2"),
        ]
    return Sequential(layers, "tiny")


def test_dense_helpers_on_a_tiny_network():
    from overfeat_scratch.nn.dense import (
        dense_evaluate_heads,
        fine_multiply_adds,
        offset_plan,
        softmax,
    )

    net = tiny_network()
    assert last_pool_index(net) == 2 and last_pool_index(tiny_network(end_with_pool=True)) == 2
    # 10x10 input: conv 8x8 x 2 outputs of 9 multiply-adds = 1152. Pooled 4x4 at each of
    # the 2x2 offsets; per offset fc1 gives 3x3 x 3 outputs of 2x2x2 = 216 and fc2 3x3 x 4
    # outputs of 3 = 108: 4 x 324 = 1296 for the classifier.
    assert fine_multiply_adds(net, 10, 10) == (1152, 1296)
    # Table 5's columns for it: 8x8 before the pool, 4x4 after, 3x3 per offset, and
    # 8 - 2 (2 - 1) - 2 + 1 = 5 fine rows, 2 / 2 = 1 pixel apart (a stride: an int).
    plan = offset_plan(net, 10, 10)
    assert plan == {
        "pre_pool": (8, 8),
        "post_pool": (4, 4),
        "per_offset": (3, 3),
        "fine": (5, 5),
        "offsets": (2, 2),
        "fine_stride": 1,
    }
    assert isinstance(plan["fine_stride"], int)
    # Heads are evaluated coarsely unless asked.
    x = np.random.default_rng(1).standard_normal((2, 1, 10, 10))
    (coarse,) = dense_evaluate_heads(net, [net.layers[3:]], x)
    np.testing.assert_array_equal(coarse.scores, dense_evaluate(net, x).scores)
    assert coarse.scores.shape == (2, 4, 3, 3)
    # Softmax over the classes (axis 1) of a batch of maps.
    z = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    p = softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p[:, 0] / p[:, 2], np.exp(z[:, 0] - z[:, 2]), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fast", "accurate"])
def test_released_networks_dense_equals_crops_at_some_positions(model):
    net = build_network(model, seed=3).eval()
    g = Geometry.of(net)
    x = np.random.default_rng(0).standard_normal((1, 3, 461, 569), dtype=np.float32)
    dense = dense_evaluate(net, x).scores
    fine = dense_evaluate(net, x, fine=True)
    positions = [(0, 0), (3, 5), (dense.shape[2] - 1, dense.shape[3] - 1)]
    for i, j in positions:
        (a, b, li), (c, d, lj) = g.crop(i, 461), g.crop(j, 569)
        expected = net.forward(x[:, :, a:b, c:d])[:, :, li, lj]
        assert relative_error(dense[:, :, i, j], expected) < 1e-5
    for p, q in [(6, 7), (10, 13)]:
        (a, b, li), (c, d, lj) = g.crop(p, 461, fine.stride), g.crop(q, 569, fine.stride)
        expected = net.forward(x[:, :, a:b, c:d])[:, :, li, lj]
        assert relative_error(fine.scores[:, :, p, q], expected) < 1e-5


def test_dense_rejects_small_images():
    net = build_network("fast", seed=None)
    with pytest.raises(ValueError, match="input 200x300 is smaller than the network's window"):
        dense_evaluate(net, np.zeros((1, 3, 200, 300), np.float32))


@pytest.mark.parametrize("fine", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (200, 300)])
def test_dense_memory_estimates_the_peak_from_above(size, fine):
    """The estimate is at least the peak that tracemalloc measures (NumPy's arrays are
    traced) and, with one worker thread, at most 1.5 times it; with the localizer's
    two heads too. With two workers, whether two tiles are in flight at once depends
    on timing: the estimate counts both, so only the bound from above is exact."""
    import tracemalloc

    from overfeat_scratch.detect.localize import build_regressor, head_layers
    from overfeat_scratch.nn.dense import dense_evaluate_heads, dense_memory
    from overfeat_scratch.ops import parallel

    net = build_network("mini", seed=0).eval()
    heads = [head_layers(net), build_regressor(seed=0).eval().layers]
    x = np.random.default_rng(0).random((1, 1, *size), dtype=np.float32)
    saved = parallel.workers()
    try:
        for count in (1, 2):
            parallel.set_workers(count)
            for run, estimate in (
                (lambda: dense_evaluate(net, x, fine), dense_memory(net, *size, fine)),
                (
                    lambda: dense_evaluate_heads(net, heads, x, fine),
                    dense_memory(net, *size, fine, heads),
                ),
            ):
                run()  # compiles the Numba loops, whose memory is not the evaluation's
                tracemalloc.start()
                try:
                    run()
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                assert peak + x.nbytes <= estimate
                assert count == 2 or estimate <= 1.5 * peak
    finally:
        parallel.set_workers(saved)


def test_check_memory_refuses_with_the_estimate_and_a_way_out():
    from overfeat_scratch.nn.dense import check_memory

    check_memory(2**30, 1.0, "dense: a", "downscale it")
    with pytest.raises(
        MemoryError,
        match=r"dense: a would take about 2\.5 GiB of memory, more than "
        r"the limit of 1 GiB; downscale it \(or raise the limit with --max-memory\)",
    ):
        check_memory(int(2.5 * 2**30), 1.0, "dense: a", "downscale it")
