"""Layers and Sequential: gradients, modes, parameters, and clear errors on bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_scratch import (
    Conv2d,
    Dropout,
    Flatten,
    FullyConnected,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    get_backend,
    register_backend,
)
from overfeat_scratch.nn.backend import NumpyBackend
from overfeat_scratch.ops.gradcheck import check_layer, relative_error


def tiny_net(seed=0, dropout=0.0):
    rng = np.random.default_rng(seed)
    return Sequential(
        [
            Conv2d(2, 3, 3, stride=1, padding=1, init_std=0.5, rng=rng, name="conv1"),
            ReLU(name="relu1"),
            MaxPool2d(2, name="pool1"),
            Conv2d(3, 4, 2, stride=2, init_std=0.5, rng=rng, name="conv2"),
            ReLU(name="relu2"),
            FullyConnected(4, 5, map_size=2, init_std=0.5, rng=rng, name="full3"),
            ReLU(name="relu3"),
            Dropout(dropout, seed=3, name="drop3"),
            FullyConnected(5, 3, map_size=1, init_std=0.5, rng=rng, name="full4"),
        ]
    )


@settings(max_examples=8)
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3), st.integers(0, 99)
)
def test_conv_layer_gradients(kernel, stride, padding, channels, seed):
    padding = min(padding, kernel - 1)
    layer = Conv2d(channels, 2, kernel, stride, padding, rng=np.random.default_rng(seed))
    x = np.random.default_rng(seed + 1).standard_normal((2, channels, 5, 6))
    errors = check_layer(layer, x, seed)
    assert max(errors.values()) < 1e-7, errors


def test_sequential_gradients_match_finite_differences():
    net = tiny_net().astype(np.float64)
    x = np.random.default_rng(1).standard_normal((2, 2, 8, 8))
    r = np.random.default_rng(2).standard_normal((2, 3, 1, 1))
    net.forward(x)
    dx = net.backward(r)
    from overfeat_scratch.ops.gradcheck import numerical_gradient

    def loss():
        return float(np.sum(net.forward(x) * r))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    net.forward(x)
    net.backward(r)
    for name, layer, key in net.named_parameters():
        analytic = layer.grads[key].copy()
        numeric = numerical_gradient(loss, layer.params[key])
        assert relative_error(analytic, numeric) < 1e-6, name


def test_dropout_layer_modes_and_reproducibility():
    x = np.ones((4, 10, 3, 3), np.float32)
    drop = Dropout(0.5, seed=11)
    assert drop.forward(x) is x  # evaluation mode: identity
    drop.train()
    a = drop.forward(x)
    b = drop.forward(x)
    assert not np.array_equal(a, b)  # a new mask every call
    again = Dropout(0.5, seed=11).train()
    np.testing.assert_array_equal(again.forward(x), a)  # same seed, same masks
    dy = np.ones_like(x)
    np.testing.assert_array_equal(drop.backward(dy), b)  # gradient uses the last mask


def test_sequential_train_eval_propagates():
    net = tiny_net(dropout=0.5)
    net.train()
    assert all(layer.training for layer in net)
    net.eval()
    assert not any(layer.training for layer in net)


def test_sequential_parameters_and_state_dict_round_trip():
    net = tiny_net(seed=4)
    names = [name for name, _, _ in net.named_parameters()]
    assert names == [f"{la}.{p}" for la in ("conv1", "conv2", "full3", "full4") for p in "wb"]
    assert net.num_parameters() == sum(v.size for v in net.state_dict().values())
    other = tiny_net(seed=5)
    other.load_state_dict(net.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(other.forward(x), net.forward(x))


def test_load_state_dict_rejects_mismatches():
    net = tiny_net()
    state = net.state_dict()
    bad = dict(state, **{"conv1.w": np.zeros((3, 2, 5, 5), np.float32)})
    with pytest.raises(
        ValueError, match=r"conv1\.w has shape \(3, 2, 5, 5\), expected \(3, 2, 3, 3\)"
    ):
        net.load_state_dict(bad)
    missing = {k: v for k, v in state.items() if k != "full4.b"}
    with pytest.raises(ValueError, match=r"missing \['full4\.b'\]"):
        net.load_state_dict(missing)


def test_load_state_dict_refuses_non_finite_values_and_changes_nothing():
    net = tiny_net()
    before = net.state_dict()
    for bad in (np.nan, np.inf):
        state = {k: v.copy() for k, v in before.items()}
        state["full3.w"][0, 0, 1, 1] = bad
        with pytest.raises(ValueError, match=r"parameter full3\.w: contains 1 NaN or infinite"):
            net.load_state_dict(state)
    # Nothing was half-loaded: conv1 comes before full3 and kept its values.
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("std", [float("nan"), float("inf"), -0.1])
@pytest.mark.parametrize(
    "make",
    [
        lambda std, rng: Conv2d(1, 2, 3, init_std=std, rng=rng, name="c"),
        lambda std, rng: FullyConnected(1, 2, 2, init_std=std, rng=rng, name="c"),
        lambda std, rng: Linear(3, 2, init_std=std, rng=rng, name="c"),
    ],
)
def test_init_std_must_be_a_finite_number_at_least_zero(make, std):
    with pytest.raises(ValueError, match=r"c init_std: expected a finite number >= 0, got"):
        make(std, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"c init_std: expected a number"):
        make("0.1", np.random.default_rng(0))
    assert not make(0.0, np.random.default_rng(0)).params["w"].any()


def test_layers_refuse_inputs_of_the_wrong_rank():
    x3 = np.zeros((1, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"conv7: expected an \(N, C, H, W\) input, got shape"):
        Conv2d(1, 2, 3, name="conv7").forward(x3)
    with pytest.raises(ValueError, match=r"pool7: expected an \(N, C, H, W\) input"):
        MaxPool2d(2, name="pool7").forward(x3)
    with pytest.raises(
        ValueError, match=r"lin7: expected an \(N, D\) input, got shape \(1, 6, 6\)"
    ):
        Linear(6, 2, name="lin7").forward(x3)


@pytest.mark.parametrize(
    "layer, dy",
    [
        (Conv2d(1, 2, 3, name="layer7"), np.zeros((1, 2, 2, 2), np.float32)),
        (MaxPool2d(2, name="layer7"), np.zeros((1, 1, 2, 2), np.float32)),
        (ReLU(name="layer7"), np.zeros((1, 1, 2, 2), np.float32)),
        (Flatten(name="layer7"), np.zeros((1, 4), np.float32)),
        (Linear(4, 2, name="layer7"), np.zeros((1, 2), np.float32)),
    ],
)
def test_backward_before_forward_is_a_clear_error(layer, dy):
    with pytest.raises(RuntimeError, match=r"layer7: backward\(\) called before forward\(\)"):
        layer.backward(dy)


def test_window_and_dense_output_size():
    net = tiny_net()
    assert net.window() == 8
    assert net.output_shape((2, 8, 8)) == (3, 1, 1)
    # Fully connected layers are convolutions: a larger input gives a map.
    assert net.output_shape((2, 16, 24)) == (3, 3, 5)
    x = np.random.default_rng(0).standard_normal((1, 2, 16, 24)).astype(np.float32)
    assert net.forward(x).shape == (1, 3, 3, 5)


def test_linear_and_flatten_layers():
    rng = np.random.default_rng(0)
    net = Sequential(
        [Conv2d(1, 2, 2, rng=rng, name="c"), Flatten(name="f"), Linear(18, 3, rng=rng, name="l")]
    )
    x = rng.standard_normal((2, 1, 4, 4))
    errors = check_layer(net, x)
    assert max(errors.values()) < 1e-7


# ---------------------------------------------------------------------------------------
# Bad input: a clear error naming what was expected and what arrived.


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (
            np.zeros((2, 8, 8), np.float32),
            ValueError,
            r"expected a \(N, C, H, W\) array, got shape \(2, 8, 8\)",
        ),
        (
            np.zeros((1, 3, 8, 8), np.float32),
            ValueError,
            r"expected input \(N, 2, H, W\) with 2 channel\(s\), got shape \(1, 3, 8, 8\)",
        ),
        (
            np.zeros((1, 2, 7, 9), np.float32),
            ValueError,
            r"input 7x9 is smaller than the network's window 8x8",
        ),
        (
            np.zeros((1, 2, 8, 8), np.int64),
            TypeError,
            r"expected a float32 or float64 array, got dtype int64",
        ),
        (np.full((1, 2, 8, 8), np.nan, np.float32), ValueError, r"NaN or infinite"),
        (np.full((1, 2, 8, 8), np.inf, np.float32), ValueError, r"NaN or infinite"),
        ([[1.0]], TypeError, r"expected an array, got a list"),
    ],
)
def test_network_rejects_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        tiny_net().forward(x)


def test_functional_ops_reject_bad_shapes():
    from overfeat_scratch.ops import conv, linear, losses, pool

    x = np.zeros((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="input has 3 channels but the weight expects 4"):
        conv.conv2d_forward(x, np.zeros((2, 4, 3, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="bias has 3 entries, expected 2"):
        conv.conv2d_forward(x, np.zeros((2, 3, 3, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="input side 5 is smaller than the kernel 7"):
        conv.conv2d_forward(x, np.zeros((2, 3, 7, 7), np.float32), np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="mix dtypes"):
        conv.conv2d_forward(x, np.zeros((2, 3, 3, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="stride: expected an integer >= 1, got 0"):
        conv.conv2d_forward(x, np.zeros((2, 3, 3, 3), np.float32), np.zeros(2, np.float32), 0)
    with pytest.raises(ValueError, match="input side 5 is smaller than the kernel 6"):
        pool.max_pool2d_forward(x, 6)
    with pytest.raises(ValueError, match="input has 4 features but the weight expects 5"):
        linear.linear_forward(np.zeros((2, 4)), np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels have shape \(3,\), expected \(2,\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="prediction shape"):
        losses.l2_loss(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0 <= p < 1"):
        Dropout(1.0)


def test_layer_rejects_wrong_channels_with_layer_name():
    layer = Conv2d(3, 4, 3, name="conv7")
    with pytest.raises(ValueError, match="conv7: expected 3 input channels, got 5"):
        layer.forward(np.zeros((1, 5, 6, 6), np.float32))


# ---------------------------------------------------------------------------------------
# The backend switch.


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'; expected one of"):
        get_backend("tpu")


def test_a_new_backend_needs_no_layer_changes():
    calls = []

    class CountingBackend(NumpyBackend):
        name = "counting"

        def conv2d_forward(self, *args, **kwargs):
            calls.append("conv")
            return super().conv2d_forward(*args, **kwargs)

    register_backend("counting", CountingBackend)
    net = tiny_net()
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    expected = net.forward(x)
    net.to("counting")
    np.testing.assert_array_equal(net.forward(x), expected)
    assert calls == ["conv"] * 4


def test_first_layer_can_skip_the_image_gradient():
    net = tiny_net(seed=6)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal((2, 3, 1, 1)).astype(np.float32)
    net.forward(x)
    dx = net.backward(dy)
    full = {name: layer.grads[key].copy() for name, layer, key in net.named_parameters()}
    net.forward(x)
    assert net.backward(dy, input_grad=False) is None
    assert dx is not None and dx.shape == x.shape
    for name, layer, key in net.named_parameters():
        np.testing.assert_array_equal(layer.grads[key], full[name], err_msg=name)


def test_inplace_relu_overwrites_its_input_and_matches():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    expected = ReLU().forward(x.copy())
    y = ReLU(inplace=True).forward(x)
    assert y is x
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", ["mini", "mini-detector"])
def test_fused_steps_give_the_same_bits_as_the_layers_one_by_one(name):
    """A convolution with its ReLU in one pass, and a ReLU's mask applied before the
    max pool's backward pass: the same numbers as every layer on its own."""
    from overfeat_scratch import build_network

    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 1, 40, 44)).astype(np.float32)
    results = []
    for fuse in (False, True):
        net = build_network(name, seed=3).train()
        net.fuse = fuse
        y = net.forward(x)
        dy = np.random.default_rng(10).standard_normal(y.shape).astype(np.float32)
        dx = net.backward(dy)
        results.append((y, dx, [layer.grads[key] for _, layer, key in net.named_parameters()]))
    (y0, dx0, g0), (y1, dx1, g1) = results
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(dx0, dx1)
    for a, b in zip(g0, g1, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (y0 != 0).any() and (dx0 != 0).any()
