"""The NumPy backend against the loop references, and backward against finite differences."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import classification_cases, conv_cases, matrices, pool_cases

from overfeat_scratch.ops import activations, conv, linear, losses, pool
from overfeat_scratch.ops.gradcheck import numerical_gradient, relative_error

# float64 against float64: the two only differ in summation order.
EXACT = 1e-10
# float32 fast path against the float64 reference: a few ulps of the largest term
# times the sqrt of the number of terms summed stays far below this.
F32 = 2e-5


def f32(*arrays):
    return [a.astype(np.float32) for a in arrays]


@given(conv_cases())
def test_conv_forward_matches_loops(case):
    x, w, b, stride, padding = case
    expected = conv.conv2d_naive(x, w, b, stride, padding)
    got = conv.conv2d_forward(x, w, b, stride, padding)
    assert got.shape == expected.shape
    assert relative_error(got, expected) < EXACT
    got32 = conv.conv2d_forward(*f32(x, w, b), stride, padding)
    assert got32.dtype == np.float32
    assert relative_error(got32, expected) < F32


@given(conv_cases())
def test_conv_backward_matches_loops(case):
    x, w, b, stride, padding = case
    dy = np.random.default_rng(1).standard_normal(conv.conv2d_naive(x, w, b, stride, padding).shape)
    expected = conv.conv2d_backward_naive(dy, x, w, stride, padding)
    got = conv.conv2d_backward(dy, x, w, stride, padding)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert relative_error(g, e) < EXACT
    got32 = conv.conv2d_backward(*f32(dy, x, w), stride, padding)
    for g, e in zip(got32, expected, strict=True):
        assert g.dtype == np.float32
        assert relative_error(g, e) < F32


@settings(max_examples=10)
@given(conv_cases(max_n=1, max_c=2, max_o=2, max_side=6, max_kernel=3))
def test_conv_backward_matches_finite_differences(case):
    x, w, b, stride, padding = case
    r = np.random.default_rng(2).standard_normal(
        conv.conv2d_forward(x, w, b, stride, padding).shape
    )

    def loss():
        return float(np.sum(conv.conv2d_forward(x, w, b, stride, padding) * r))

    dx, dw, db = conv.conv2d_backward(r, x, w, stride, padding)
    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-7
    assert relative_error(dw, numerical_gradient(loss, w)) < 1e-7
    assert relative_error(db, numerical_gradient(loss, b)) < 1e-7


def test_conv_is_cross_correlation_not_convolution():
    # A kernel with a single 1 in its top-left corner copies the input shifted,
    # with no flip: y[i, j] = x[i, j] for a 2x2 kernel [[1, 0], [0, 0]].
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 0] = 1
    y = conv.conv2d_forward(x, w, np.zeros(1))
    np.testing.assert_array_equal(y[0, 0], x[0, 0, :3, :3])


# (stride, padding): the unit-stride kernel with and without padding, the strided one.
# Kernels wider than stride + padding leave the last window short of the edge.
@pytest.mark.parametrize(
    "stride, padding", [(1, 0), (1, 1), (1, 2), (2, 1), (3, 0), (2, 2), (2, 0)]
)
@pytest.mark.parametrize("kh, kw", [(3, 2), (2, 3)])
def test_im2col_col2im_are_adjoint(stride, padding, kh, kw):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = conv.im2col(x, kh, kw, stride=stride, padding=padding)
    c = rng.standard_normal(cols.shape)
    back = conv.col2im(c, x.shape, kh, kw, stride=stride, padding=padding)
    assert back.shape == x.shape and back.flags.c_contiguous
    assert np.isclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 2), (2, 1), (4, 0)])
def test_compiled_columns_equal_the_strided_view(stride, padding):
    x = np.random.default_rng(4).standard_normal((3, 2, 11, 9)).astype(np.float32)
    xp = conv.pad_input(x, padding)
    np.testing.assert_array_equal(
        conv.columns(xp, 3, 4, stride), conv.im2col(x, 3, 4, stride, padding)
    )
    # A band of rows of one image (a non-contiguous view), as the tiles pass it.
    band = xp[1:2, :, 2:9]
    np.testing.assert_array_equal(conv.columns(band, 3, 4, stride), conv.im2col(band, 3, 4, stride))


def test_conv_defaults_by_hand():
    """Stride 1, no padding unless asked: a 2x2 kernel of ones over a 3x3 ramp sums each
    2x2 window; its gradient counts the windows over each pixel."""
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    b = np.array([0.5])
    sums = [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]]
    np.testing.assert_array_equal(conv.conv2d_naive(x, w, b)[0, 0], np.add(sums, 0.5))
    np.testing.assert_array_equal(conv.conv2d_forward(x, w, b)[0, 0], np.add(sums, 0.5))
    dy = np.ones((1, 1, 2, 2))
    for backward in (conv.conv2d_backward_naive, conv.conv2d_backward):
        dx, dw, db = backward(dy, x, w)
        np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
        np.testing.assert_array_equal(dw[0, 0], sums)
        np.testing.assert_array_equal(db, [4])
    # col2im adds each column back onto its window: with columns of ones, the counts.
    cols = np.ones((4, 4))
    np.testing.assert_array_equal(
        conv.col2im(cols, x.shape, 2, 2)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    )


def test_im2col_by_default_takes_every_window_unpadded():
    # 2x3 windows of a 4x5 image, stride 1, no padding: 3x3 positions; column (n, i, j)
    # holds the window at row i, column j, read row by row, channel by channel.
    x = np.arange(2 * 2 * 4 * 5, dtype=np.float64).reshape(2, 2, 4, 5)
    cols = conv.im2col(x, 2, 3)
    assert cols.shape == (2 * 2 * 3, 2 * 3 * 3)
    for n, i, j in np.ndindex(2, 3, 3):
        window = x[n, :, i : i + 2, j : j + 3].reshape(-1)
        np.testing.assert_array_equal(cols[:, (n * 3 + i) * 3 + j], window)


@given(pool_cases())
def test_pool_forward_matches_loops(case):
    x, k, s = case
    y_ref, arg_ref = pool.max_pool2d_naive(x, k, s)
    y, arg = pool.max_pool2d_forward(x, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    y32, arg32 = pool.max_pool2d_forward(x.astype(np.float32), k, s)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, y_ref.astype(np.float32))


@given(pool_cases())
def test_pool_backward_matches_loops(case):
    x, k, s = case
    y, arg = pool.max_pool2d_forward(x, k, s)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    expected = pool.max_pool2d_backward_naive(dy, arg, x.shape, k, s)
    np.testing.assert_allclose(pool.max_pool2d_backward(dy, arg, x.shape, k, s), expected, 1e-12)


@pytest.mark.parametrize("kernel", [2, 3, 4])  # the unrolled 2x2 and 3x3 loops, and the rest
def test_pool_nan_wins_as_np_argmax_says(kernel):
    """A NaN inside a window wins it, the first NaN if there are several, as in the loop
    reference (np.argmax); a window without NaN keeps its maximum."""
    x = np.random.default_rng(kernel).standard_normal((1, 2, 2 * kernel, 2 * kernel))
    x[0, 0, 1, 1] = np.nan  # inside the first window, not its first element
    x[0, 1, kernel + 1, kernel] = np.nan
    x[0, 1, kernel + 1, kernel + 1] = np.nan
    y, arg = pool.max_pool2d_forward(x, kernel, kernel)
    y_ref, arg_ref = pool.max_pool2d_naive(x, kernel, kernel)
    np.testing.assert_array_equal(y, y_ref)  # NaNs compare equal here
    np.testing.assert_array_equal(arg, arg_ref)
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == kernel + 1
    assert arg[0, 1, 1, 1] == kernel


def test_pool_2x2_tree_picks_the_first_maximum_of_every_window_of_ties_and_nans():
    """Every 2x2 window of the values 0, 1 and NaN (81 of them): the tree of the 2x2
    loop gives np.argmax's winner, as the loop reference does."""
    values = np.array([0.0, 1.0, np.nan])
    windows = np.array(list(itertools.product(values, repeat=4)))  # (81, 4), reading order
    # Lay the windows side by side in one plane, 2 rows x (2 * 81) columns.
    x = windows.reshape(81, 2, 2).transpose(1, 0, 2).reshape(1, 1, 2, 162)
    for dtype in (np.float32, np.float64):
        y, arg = pool.max_pool2d_forward(x.astype(dtype), 2, 2)
        y_ref, arg_ref = pool.max_pool2d_naive(x, 2, 2)
        np.testing.assert_array_equal(arg[0, 0, 0], np.argmax(windows, axis=1))
        np.testing.assert_array_equal(arg, arg_ref)
        np.testing.assert_array_equal(y, y_ref.astype(dtype))


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 2, 5, 7), (3, 1, 9, 2)])
def test_pool_2x2_backward_writes_every_input_pixel(shape):
    """The 2x2 backward pass writes each pixel once instead of zeroing first: pixels
    that lost their window, and the odd row or column no window covers, must be 0
    (dx comes from np.empty, so a pixel it missed would hold garbage)."""
    rng = np.random.default_rng(sum(shape))
    x = np.round(rng.standard_normal(shape) * 2) / 2  # ties
    for dtype in (np.float32, np.float64):
        y, arg = pool.max_pool2d_forward(x.astype(dtype), 2, 2)
        dy = rng.standard_normal(y.shape).astype(dtype)
        for _ in range(3):  # fresh np.empty each time
            dx = pool.max_pool2d_backward(dy, arg, shape, 2, 2)
            expected = pool.max_pool2d_backward_naive(dy, arg, shape, 2)
            np.testing.assert_array_equal(dx, expected)
        assert np.count_nonzero(dx) == np.count_nonzero(dy)


def test_pool_backward_refuses_winners_outside_the_window():
    x = np.zeros((1, 1, 4, 4))
    dy = np.ones((1, 1, 2, 2))
    for bad in (-1, 4):  # a 2x2 window has positions 0 .. 3
        arg = np.zeros((1, 1, 2, 2), dtype=np.int32)
        arg[0, 0, 1, 0] = bad
        with pytest.raises(ValueError, match=r"arg must lie in \[0, 4\)"):
            pool.max_pool2d_backward(dy, arg, x.shape, 2, 2)
    # Two 2x2 windows, stride 2, need 4 rows and 4 columns: 3 of either is refused, and
    # so is another batch size or channel count.
    arg = np.zeros((1, 1, 2, 2), dtype=np.int32)
    for shape in ((1, 1, 3, 4), (1, 1, 4, 3), (2, 1, 4, 4), (1, 2, 4, 4)):
        with pytest.raises(ValueError, match="cannot give output"):
            pool.max_pool2d_backward(dy, arg, shape, 2, 2)


@given(pool_cases())
def test_pool_backward_routes_each_gradient_to_its_argmax(case):
    x, k, s = case
    y, arg = pool.max_pool2d_forward(x, k, s)
    n, c, ho, wo = y.shape
    for idx in np.ndindex(y.shape):
        dy = np.zeros(y.shape)
        dy[idx] = 1.0
        dx = pool.max_pool2d_backward(dy, arg, x.shape, k, s)
        assert np.count_nonzero(dx) == 1
        where = np.unravel_index(np.argmax(dx), dx.shape)
        i, j = idx[2] * s, idx[3] * s
        # The gradient lands inside the window, on an element equal to the max.
        assert where[:2] == idx[:2]
        assert i <= where[2] < i + k and j <= where[3] < j + k
        assert x[where] == y[idx]


def test_pool_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.permutation(72).reshape(2, 1, 6, 6).astype(np.float64)  # distinct values: no ties
    r = rng.standard_normal((2, 1, 3, 3))
    y, arg = pool.max_pool2d_forward(x, 2, 2)

    def loss():
        return float(np.sum(pool.max_pool2d_forward(x, 2, 2)[0] * r))

    dx = pool.max_pool2d_backward(r, arg, x.shape, 2, 2)
    assert relative_error(dx, numerical_gradient(loss, x, h=1e-3)) < 1e-9


@given(st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_relu_matches_loops_and_gradient(size, seed):
    x = np.random.default_rng(seed).standard_normal(size)
    before = x.copy()
    y = activations.relu_forward(x)
    np.testing.assert_array_equal(x, before)  # not in place unless asked
    np.testing.assert_array_equal(y, activations.relu_naive(x))
    dy = np.ones_like(x)
    np.testing.assert_array_equal(activations.relu_backward(dy, y), (x > 0).astype(float))


@pytest.mark.parametrize(
    "dy_shape, y_shape, dy_dtype, y_dtype",
    [
        ((2, 5), (2, 5), np.float32, np.float32),  # the compiled kernel
        ((2, 5), (2, 5), np.float32, np.float64),  # mixed types
        ((5,), (2, 5), np.float64, np.float64),  # dy broadcast
        ((2, 5), (5,), np.float64, np.float64),  # y broadcast
    ],
)
def test_relu_backward_blocks_with_a_plus_zero(dy_shape, y_shape, dy_dtype, y_dtype):
    # Where the output is 0 the gradient is +0, whatever dy holds there (negative,
    # NaN); any positive output passes it, however small.
    rng = np.random.default_rng(9)
    y = rng.choice([0.0, 0.25, 3.0], size=y_shape).astype(y_dtype)
    y.flat[0], y.flat[1] = 0.0, 0.25
    dy = rng.standard_normal(dy_shape).astype(dy_dtype)
    dy.flat[0], dy.flat[-1] = -1.5, np.nan
    dx = activations.relu_backward(dy, y)
    shape = np.broadcast_shapes(dy_shape, y_shape)
    expected = np.empty(shape, np.result_type(dy, y))
    for index in np.ndindex(shape):
        value = np.broadcast_to(dy, shape)[index]
        expected[index] = value if np.broadcast_to(y, shape)[index] > 0 else 0.0
    assert dx.shape == shape and dx.dtype == expected.dtype
    np.testing.assert_array_equal(dx, expected)
    assert not np.signbit(dx[np.broadcast_to(y, shape) == 0]).any()


def test_relu_in_place_on_a_strided_array_writes_into_it():
    x = np.arange(-6.0, 6.0).reshape(3, 4)[:, ::2]  # not contiguous
    before = x.copy()
    y = activations.relu_forward(x, inplace=True)
    assert y is x
    np.testing.assert_array_equal(x, np.maximum(before, 0))


@given(st.sampled_from([0.1, 0.5, 0.9]), st.integers(0, 2**32 - 1))
def test_dropout_matches_loops_and_is_seeded(p, seed):
    x = np.random.default_rng(seed).standard_normal((3, 40))
    y, keep = activations.dropout_forward(x, p, seed)
    y_ref, keep_ref = activations.dropout_naive(x, p, seed)
    np.testing.assert_array_equal(keep, keep_ref)
    np.testing.assert_allclose(y, y_ref, rtol=1e-15)
    y_again, _ = activations.dropout_forward(x, p, seed)
    np.testing.assert_array_equal(y, y_again)
    dy = np.random.default_rng(seed + 1).standard_normal(x.shape)
    np.testing.assert_allclose(activations.dropout_backward(dy, keep, p), dy * keep / (1 - p))


def test_dropout_keeps_an_element_whose_hash_is_the_threshold():
    # keep[i] = hash >= p * 2**32: a hash equal to the threshold is kept.
    seed = 11
    key = murmur3_fmix32(seed ^ 0x2545F491)
    hashes = [murmur3_fmix32((i * 0x9E3779B9 + key) & 0xFFFFFFFF) for i in range(4)]
    for i, h in enumerate(hashes):
        keep = activations.dropout_keep_mask(4, h / 2**32, seed)
        assert keep[i] == 1
        np.testing.assert_array_equal(keep, [int(g >= h) for g in hashes])
        # The compiled mask of dropout_forward draws the same line.
        _, compiled = activations.dropout_forward(np.ones(4), h / 2**32, seed)
        np.testing.assert_array_equal(compiled, keep)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_dropout_equals_the_numpy_expression_across_tiles(dtype):
    # More elements than one tile, so that workers start mid-array; a transposed
    # (non-contiguous) input; NaN and infinity pass through as x * keep * scale.
    size = 2 * activations.ELEMENTS_PER_TILE + 1001
    x = np.random.default_rng(3).standard_normal((size // 7, 7)).astype(dtype).T
    x[0, :3] = [np.nan, np.inf, -np.inf]
    for p, seed in ((0.5, 0), (0.3, 2**32 - 1)):
        y, keep = activations.dropout_forward(x, p, seed)
        keep_ref = activations.dropout_keep_mask(x.size, p, seed).reshape(x.shape)
        np.testing.assert_array_equal(keep, keep_ref)
        y_ref = np.ascontiguousarray(x) * keep_ref * dtype(1 / (1 - p))
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_array_equal(y.view(np.uint8), y_ref.view(np.uint8))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_keeps_the_expected_scale(p):
    x = np.ones(200_000, np.float32)
    y, keep = activations.dropout_forward(x, p, seed=7)
    n = x.size
    # Binomial keep count: 5 standard deviations.
    assert abs(keep.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert set(np.unique(y)) <= {0.0, np.float32(1 / (1 - p))}


def murmur3_fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser, from its published definition, on Python ints."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


@given(st.sampled_from([0.0, 0.25, 0.5, 0.9]), st.integers(0, 2**40))
def test_dropout_mask_is_the_documented_hash(p, seed):
    """keep[i] = hash(seed, i) >= round(p 2**32), with hash(seed, i) = fmix32((i *
    0x9E3779B9 + fmix32((seed mod 2**32) ^ 0x2545F491)) mod 2**32), computed here on
    Python integers (the CUDA kernels compute the same bits)."""
    key = murmur3_fmix32((seed & 0xFFFFFFFF) ^ 0x2545F491)
    threshold = round(p * 2**32)
    want = [murmur3_fmix32((i * 0x9E3779B9 + key) & 0xFFFFFFFF) >= threshold for i in range(64)]
    keep = activations.dropout_keep_mask(64, p, seed)
    np.testing.assert_array_equal(keep, np.array(want, dtype=np.uint8))


def test_dropout_threshold_stays_within_32_bits():
    # p just below 1 rounds to 2**32, past every 32-bit hash: it is held at 2**32 - 1.
    assert activations.dropout_threshold(1 - 2**-40) == 2**32 - 1
    assert activations.dropout_threshold(0.5) == 2**31


def test_dropout_seeds_differ():
    a = activations.dropout_keep_mask(1000, 0.5, 1)
    b = activations.dropout_keep_mask(1000, 0.5, 2)
    assert 0.3 < np.mean(a != b) < 0.7


@given(matrices(), st.integers(1, 6))
def test_linear_matches_loops_and_finite_differences(x, out):
    rng = np.random.default_rng(out)
    w = rng.standard_normal((out, x.shape[1]))
    b = rng.standard_normal(out)
    y = linear.linear_forward(x, w, b)
    assert relative_error(y, linear.linear_naive(x, w, b)) < EXACT
    r = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(linear.linear_forward(x, w, b) * r))

    dx, dw, db = linear.linear_backward(r, x, w)
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        assert relative_error(analytic, numerical_gradient(loss, wrt)) < 1e-8


@given(classification_cases())
def test_softmax_cross_entropy_matches_loops(case):
    logits, labels = case
    loss, grad = losses.softmax_cross_entropy(logits, labels)
    loss_ref, grad_ref = losses.softmax_cross_entropy_naive(logits, labels)
    assert np.isclose(loss, loss_ref, rtol=1e-10)
    assert relative_error(grad, grad_ref) < EXACT
    loss32, grad32 = losses.softmax_cross_entropy(logits.astype(np.float32), labels)
    assert np.isclose(loss32, loss_ref, rtol=1e-5, atol=1e-5)
    assert grad32.dtype == np.float32


@settings(max_examples=10)
@given(classification_cases(max_n=2, max_c=4))
def test_softmax_cross_entropy_gradient(case):
    logits, labels = case
    _, grad = losses.softmax_cross_entropy(logits, labels)
    numeric = numerical_gradient(lambda: losses.softmax_cross_entropy(logits, labels)[0], logits)
    assert relative_error(grad, numeric) < 1e-6


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]], dtype=np.float32)
    loss, grad = losses.softmax_cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert np.isclose(loss, 500.0)


@given(classification_cases(), st.booleans())
def test_l2_loss_matches_loops_and_gradient(case, weighted):
    pred, _ = case
    rng = np.random.default_rng(pred.size)
    target = rng.standard_normal(pred.shape)
    weight = rng.random((pred.shape[0],) + pred.shape[2:]) if weighted else None
    loss, grad = losses.l2_loss(pred, target, weight)
    loss_ref, grad_ref = losses.l2_loss_naive(pred, target, weight)
    assert np.isclose(loss, loss_ref, rtol=1e-10)
    assert relative_error(grad, grad_ref) < EXACT
    numeric = numerical_gradient(lambda: losses.l2_loss(pred, target, weight)[0], pred)
    assert relative_error(grad, numeric) < 1e-7
