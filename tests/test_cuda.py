"""The CUDA kernels against the NumPy backend, on the Numba CUDA simulator.

``make test`` runs pytest with ``NUMBA_ENABLE_CUDASIM=1``, so every kernel runs here
without a GPU (one Python thread per CUDA thread: shapes stay tiny and tiles are 4
or 8, including sizes that are not multiples of the tile). Float32 device results
are compared with the NumPy backend computing in float64; dropout masks, ReLU and
max-pool values and winners must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda
from strategies import cuda_available, cuda_settings, needs_cuda_marker

from overfeat_scratch.nn.backend import get_backend
from overfeat_scratch.nn.layers import (
    Conv2d,
    Dropout,
    Flatten,
    FullyConnected,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from overfeat_scratch.ops import activations, conv, linear, losses, pool

AVAILABLE = cuda_available()
needs_cuda = needs_cuda_marker()
pytestmark = pytest.mark.cuda

if AVAILABLE:
    from overfeat_scratch.cuda import activations as cuda_activations
    from overfeat_scratch.cuda import conv as cuda_conv
    from overfeat_scratch.cuda import linear as cuda_linear
    from overfeat_scratch.cuda import losses as cuda_losses
    from overfeat_scratch.cuda import pool as cuda_pool
    from overfeat_scratch.nn.cuda_backend import CudaBackend

# float32 kernels against a float64 reference.
RTOL, ATOL = 1e-4, 1e-5
# Few, reproducible examples: the simulator is slow.
SETTINGS = cuda_settings(10)

tiles = st.sampled_from([(4, 1), (4, 2), (2, 3), (8, 2)])  # (tile, register block)
splits = st.sampled_from([None, 1, 2, 3])


def host(x):
    return x.copy_to_host()


def poisoned(shape, dtype=np.float32, value=np.nan):
    """A device buffer full of ``value``: any element a kernel skips stays visible."""
    return cuda.to_device(np.full(shape, value, dtype=dtype))


def close(got, want):
    np.testing.assert_allclose(host(got), want, rtol=RTOL, atol=ATOL)


@st.composite
def conv_cases(draw):
    """``(x, w, b, stride, padding)`` as float32 host arrays, at most 2x3x9x9 and 5 filters."""
    k = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    low = max(1, k - 2 * padding)
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    h, w = draw(st.integers(low, 9)), draw(st.integers(low, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    return x, wt, b, stride, padding


def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# --------------------------------------------------------------------------------------
# Convolution


@needs_cuda
@SETTINGS
@given(case=conv_cases(), tile=tiles, split=splits)
def test_conv_forward_matches_numpy(case, tile, split):
    x, w, b, stride, padding = case
    want = conv.conv2d_forward(*f64(x, w, b), stride, padding)
    out = poisoned(want.shape)
    got = cuda_conv.conv2d_forward(
        x, w, b, stride, padding, tile=tile[0], rb=tile[1], splits=split, out=out
    )
    assert got is out
    close(got, want)


@needs_cuda
@settings(SETTINGS, max_examples=6)
@given(case=conv_cases())
def test_conv_forward_naive_matches_numpy(case):
    x, w, b, stride, padding = case
    want = conv.conv2d_naive(*f64(x, w, b), stride, padding)
    close(cuda_conv.conv2d_forward_naive(x, w, b, stride, padding, out=poisoned(want.shape)), want)


@needs_cuda
@SETTINGS
@given(
    case=conv_cases(),
    tile=tiles,
    split=splits,
    route=st.sampled_from([None, "gather", "col2im"]),
)
def test_conv_backward_matches_numpy(case, tile, split, route):
    x, w, b, stride, padding = case
    y = conv.conv2d_forward(x, w, b, stride, padding)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    want = conv.conv2d_backward(*f64(dy, x, w), stride, padding)
    out = (poisoned(x.shape), poisoned(w.shape), poisoned(b.shape))
    got = cuda_conv.conv2d_backward(
        dy, x, w, stride, padding, tile[0], tile[1], split, dx_route=route, out=out
    )
    for g, o, ref in zip(got, out, want, strict=True):
        assert g is o
        close(g, ref)


@needs_cuda
def test_conv_takes_and_returns_device_arrays():
    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    w = cuda.to_device(rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    b = cuda.to_device(np.zeros(3, np.float32))
    y = cuda_conv.conv2d_forward(x, w, b, 1, 1)
    naive = cuda_conv.conv2d_forward_naive(x, w, b, 1, 1)
    assert cuda.devicearray.is_cuda_ndarray(y) and cuda.devicearray.is_cuda_ndarray(naive)
    np.testing.assert_allclose(host(y), host(naive), rtol=RTOL, atol=ATOL)
    grads = cuda_conv.conv2d_backward(y, x, w, 1, 1)
    assert all(cuda.devicearray.is_cuda_ndarray(g) for g in grads)


@needs_cuda
def test_conv_reports_bad_arguments_like_numpy():
    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((2, 4, 3, 3), np.float32)
    b = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match="input has 3 channels but the weight expects 4"):
        cuda_conv.conv2d_forward(cuda.to_device(x), cuda.to_device(w), b)
    with pytest.raises(TypeError, match="float32 or float64"):
        cuda_conv.conv2d_forward(x.astype(np.int32), w, b)
    as_float64 = [cuda.to_device(a.astype(np.float64)) for a in (x, w[:, :3], b)]
    with pytest.raises(TypeError, match="computes in float32"):
        cuda_conv.conv2d_forward(*as_float64)
    with pytest.raises(ValueError, match="exceeds 1024 threads"):
        cuda_conv.conv2d_forward(x, w[:, :3], b, tile=33)


@needs_cuda
def test_conv_gather_route_stays_where_its_float_division_is_exact():
    # The gather kernel divides by the stride in float32: exact below 2**24 pixels.
    side = cuda_conv.GATHER_MAX_SIDE
    x = np.broadcast_to(np.float32(0), (1, 1, 1, side))  # no memory behind it
    w = np.zeros((1, 1, 1, 1), np.float32)
    dy = np.broadcast_to(np.float32(0), (1, 1, 1, side // 2))
    g = cuda_conv.geometry(x.shape, w.shape, 2, 0)
    assert not cuda_conv.gather_exact(g)
    assert cuda_conv.choose_dx_route(g, 16, 1) == "col2im"
    assert cuda_conv.gather_exact(cuda_conv.geometry(x.shape, w.shape, 1, 0))
    with pytest.raises(ValueError, match="use dx_route='col2im'"):
        cuda_conv.conv2d_backward(dy, x, w, 2, 0, dx_route="gather")


# --------------------------------------------------------------------------------------
# Pooling


@st.composite
def pool_cases(draw):
    """Small integer-valued inputs, so that windows often hold tied maxima."""
    k, stride = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(k, 9)), draw(st.integers(k, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-2, 3, (n, c, h, w)).astype(np.float32)
    return x, k, stride


@needs_cuda
@settings(SETTINGS, max_examples=15)
@given(case=pool_cases())
def test_max_pool_matches_numpy(case):
    x, k, stride = case
    y_want, arg_want = pool.max_pool2d_forward(x, k, stride)
    out = (poisoned(y_want.shape), poisoned(y_want.shape, np.int32, -1))
    y, arg = cuda_pool.max_pool2d_forward(x, k, stride, out=out)
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(host(y), y_want)
    np.testing.assert_array_equal(host(arg), arg_want)  # same first maximum on ties

    dy = np.random.default_rng(2).standard_normal(y_want.shape).astype(np.float32)
    dx_want = pool.max_pool2d_backward(dy, arg_want, x.shape, k, stride)
    dx = cuda_pool.max_pool2d_backward(dy, arg, x.shape, k, stride, out=poisoned(x.shape))
    np.testing.assert_allclose(host(dx), dx_want, rtol=1e-6, atol=1e-7)  # sums of 1-16 terms


@needs_cuda
def test_max_pool_nan_wins_as_in_numpy():
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]]]], np.float32)
    y, arg = cuda_pool.max_pool2d_forward(x, 2)
    y_want, arg_want = pool.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(host(arg), arg_want)
    assert np.isnan(host(y)).all() and np.isnan(y_want).all()


# --------------------------------------------------------------------------------------
# ReLU and dropout


shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)


@needs_cuda
@settings(SETTINGS, max_examples=15)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_relu_matches_numpy_exactly(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[0] = 0.0
    y = cuda_activations.relu_forward(x, out=poisoned(shape))
    np.testing.assert_array_equal(host(y), activations.relu_forward(x))
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = cuda_activations.relu_backward(dy, y, out=poisoned(shape))
    np.testing.assert_array_equal(host(dx), activations.relu_backward(dy, host(y)))


@needs_cuda
@settings(SETTINGS, max_examples=15)
@given(
    shape=shapes,
    p=st.sampled_from([0.0, 0.1, 0.5, 0.9]) | st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_dropout_masks_are_identical_to_numpy(shape, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y_want, keep_want = activations.dropout_forward(x, p, seed)
    out = (poisoned(shape), poisoned(shape, np.uint8, 7))
    y, keep = cuda_activations.dropout_forward(x, p, seed, out=out)
    assert keep.dtype == np.uint8
    np.testing.assert_array_equal(host(keep), keep_want)
    np.testing.assert_array_equal(host(y), y_want)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = cuda_activations.dropout_backward(dy, keep, p, out=poisoned(shape))
    np.testing.assert_array_equal(host(dx), activations.dropout_backward(dy, keep_want, p))


@needs_cuda
def test_dropout_mask_for_large_seeds_and_many_elements():
    x = np.ones(1000, np.float32)
    for seed in (0, 2**32 - 1, 2**40 + 3):
        _, keep = cuda_activations.dropout_forward(x, 0.5, seed)
        np.testing.assert_array_equal(host(keep), activations.dropout_keep_mask(x.size, 0.5, seed))


# --------------------------------------------------------------------------------------
# Linear


@needs_cuda
@SETTINGS
@given(
    n=st.integers(1, 3),
    d=st.integers(1, 9),
    o=st.integers(1, 5),
    tile=tiles,
    split=splits,
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_matches_numpy(n, d, o, tile, split, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, d)), rng.standard_normal((o, d))
    b, dy = rng.standard_normal(o), rng.standard_normal((n, o))
    x, w, b, dy = (a.astype(np.float32) for a in (x, w, b, dy))
    kw = dict(tile=tile[0], rb=tile[1], splits=split)
    y = cuda_linear.linear_forward(x, w, b, out=poisoned((n, o)), **kw)
    close(y, linear.linear_forward(*f64(x, w, b)))
    got = cuda_linear.linear_backward(dy, x, w, **kw)
    for g, ref in zip(got, linear.linear_backward(*f64(dy, x, w)), strict=True):
        close(g, ref)


# --------------------------------------------------------------------------------------
# Losses


@needs_cuda
@settings(SETTINGS, max_examples=12)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 6),
    spatial=st.sampled_from([(), (1, 1), (2, 3)]),
    seed=st.integers(0, 2**32 - 1),
    labels_on_device=st.booleans(),
)
def test_softmax_cross_entropy_matches_numpy(n, c, spatial, seed, labels_on_device):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((n, c) + spatial)).astype(np.float32)
    labels = rng.integers(0, c, (n,) + spatial)
    loss_want, grad_want = losses.softmax_cross_entropy(logits.astype(np.float64), labels)
    labels_in = cuda.to_device(labels) if labels_on_device else labels
    loss, grad = cuda_losses.softmax_cross_entropy(logits, labels_in, out=poisoned(logits.shape))
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_want, rel=1e-5, abs=1e-6)
    close(grad, grad_want)


@needs_cuda
def test_softmax_cross_entropy_rejects_bad_labels():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        cuda_losses.softmax_cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"1 label\(s\) outside \[0, 2\]"):
        cuda_losses.softmax_cross_entropy(logits, cuda.to_device(np.array([-1, 2])))
    with pytest.raises(TypeError, match="integers"):
        cuda_losses.softmax_cross_entropy(logits, cuda.to_device(np.array([0.0, 1.0])))


@needs_cuda
@settings(SETTINGS, max_examples=12)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 4),
    spatial=st.sampled_from([(), (1, 1), (2, 3)]),
    weighted=st.sampled_from([None, "host", "device"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_l2_loss_matches_numpy(n, k, spatial, weighted, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((n, k) + spatial).astype(np.float32)
    target = rng.standard_normal((n, k) + spatial).astype(np.float32)
    weight = None if weighted is None else rng.random((n,) + spatial).astype(np.float32)
    want = losses.l2_loss(*f64(pred, target), None if weight is None else f64(weight)[0])
    if weighted == "device":
        weight = cuda.to_device(weight)
    loss, grad = cuda_losses.l2_loss(pred, target, weight, out=poisoned(pred.shape))
    assert loss == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    close(grad, want[1])


# --------------------------------------------------------------------------------------
# The backend and a whole network


def tiny_network(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        [
            Conv2d(2, 3, 3, stride=1, padding=1, init_std=0.5, rng=rng, name="conv"),
            ReLU(name="relu"),
            MaxPool2d(2, name="pool"),
            FullyConnected(3, 4, map_size=2, init_std=0.5, rng=rng, name="full"),
            Dropout(0.5, seed=7, name="dropout"),
            Flatten(name="flatten"),
            Linear(4, 3, init_std=0.5, rng=rng, name="linear"),
        ]
    )


@needs_cuda
def test_network_on_cuda_matches_numpy_forward_and_gradients():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    labels = np.array([0, 2])

    reference = tiny_network().astype(np.float64).train()
    y_want = reference.forward(x.astype(np.float64))
    loss_want, grad_want = losses.softmax_cross_entropy(y_want, labels)
    reference.backward(grad_want)

    net = tiny_network().to("cuda").train()
    backend = get_backend("cuda")
    assert isinstance(backend, CudaBackend) and net.backend is backend
    y = net.forward(x)
    assert backend.is_array(y)
    close(y, y_want)
    loss, grad = backend.softmax_cross_entropy(y, labels)
    assert loss == pytest.approx(loss_want, rel=1e-5)
    dx = net.backward(grad)
    assert backend.is_array(dx)
    for name, layer, key in net.named_parameters():
        ref_layer = reference[layer.name]
        assert backend.is_array(layer.grads[key]), name
        close(layer.grads[key], ref_layer.grads[key])
    state = net.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())


@needs_cuda
def test_arrays_stay_on_the_device_between_layers():
    net = tiny_network().to("cuda").train()
    x = get_backend("cuda").asarray(np.ones((1, 2, 5, 5)))
    for layer in net:
        x = layer.forward(x)
        assert cuda.devicearray.is_cuda_ndarray(x), layer.name
    for layer in reversed(net.layers):
        x = layer.backward(x)
        assert cuda.devicearray.is_cuda_ndarray(x), layer.name
        for grad in layer.grads.values():
            assert cuda.devicearray.is_cuda_ndarray(grad), layer.name


@needs_cuda
def test_backend_moves_and_checks_arrays():
    backend = get_backend("cuda")
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    d = backend.asarray(x)
    assert backend.is_array(d) and not backend.is_array(x)
    assert d.dtype == np.float32
    assert backend.asarray(d) is d  # already there: no copy
    np.testing.assert_array_equal(backend.to_numpy(d), x)
    np.testing.assert_array_equal(backend.to_numpy(backend.reshape(d, (3, -1))), x.reshape(3, 2))
    assert backend.all_finite(d)
    for bad in (np.nan, np.inf, -np.inf):
        x[1, 2] = bad
        assert not backend.all_finite(backend.asarray(x))
    net = tiny_network().to("cuda")
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.forward(backend.asarray(np.full((1, 2, 5, 5), np.nan)))


def test_cuda_backend_without_a_gpu_says_what_to_do(monkeypatch):
    from overfeat_scratch.nn.cuda_backend import CudaBackend

    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU") as error:
        CudaBackend()
    assert "NUMBA_ENABLE_CUDASIM=1" in str(error.value)
    assert "cuda" in str(error.value)
