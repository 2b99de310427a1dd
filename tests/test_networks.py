"""The two networks against the paper's tables, and the command line around them."""

import numpy as np
import pytest

from overfeat_scratch import FullyConnected, build_network
from overfeat_scratch.cli import main
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.summary import layer_table
from overfeat_scratch.ops.gradcheck import relative_error


@pytest.fixture(scope="module", params=["fast", "accurate"])
def model(request):
    # seed=None: zero weights, allocated lazily, so building is instant.
    return request.param, build_network(request.param, seed=None)


def test_parameter_and_multiply_add_counts(model):
    name, net = model
    window = paper.WINDOW[name]
    assert net.num_parameters() == paper.PARAMETERS[name]
    assert net.multiply_adds((3, window, window)) == paper.MULTIPLY_ADDS[name]
    rows = layer_table(net)
    assert sum(r["parameters"] for r in rows) == paper.PARAMETERS[name]
    assert sum(r["multiply_adds"] for r in rows) == paper.MULTIPLY_ADDS[name]


def test_window_stride_and_output(model):
    name, net = model
    window = paper.WINDOW[name]
    assert net.window() == window
    assert net.output_shape((3, window, window)) == (paper.NUM_CLASSES, 1, 1)
    stride = paper.TOTAL_STRIDE[name]
    # One more output per total stride of extra input: windows are `stride` apart.
    assert net.output_shape((3, window + stride, window + 2 * stride)) == (1000, 2, 3)
    assert net.output_shape((3, window + stride - 1, window)) == (1000, 1, 1)


def test_layers_follow_the_paper_table(model):
    name, net = model
    specs = paper.ARCHITECTURES[name]
    table_inputs = paper.TABLE_INPUT_SIZES[name]
    weighted = [layer for layer in net if layer.kind in ("conv", "full")]
    assert len(weighted) == len(specs)
    shape = (3, paper.WINDOW[name], paper.WINDOW[name])
    sides = {}
    for layer in net:
        if layer in weighted:
            sides[layer.name] = (shape[1], layer.output_shape(shape)[1])
        shape = layer.output_shape(shape)
    for index, (layer, spec, table) in enumerate(zip(weighted, specs, table_inputs, strict=True)):
        assert layer.out_channels == spec.out
        assert layer.kernel == spec.filter and layer.stride == spec.stride
        assert layer.padding == spec.pad
        assert isinstance(layer, FullyConnected) == (spec.kind == "full")
        side_in, side_out = sides[layer.name]
        if name == "fast" and index == 1:
            assert (side_in, side_out) == (28, table)
        else:
            assert side_in == table
    pools = [(layer.kernel, layer.stride) for layer in net if layer.kind == "pool"]
    assert pools == [(s.pool, s.pool_stride) for s in specs if s.pool]
    assert all(k == s for k, s in pools)  # OverFeat's pools never overlap
    drops = [layer.p for layer in net if layer.kind == "dropout"]
    assert drops == [0.5, 0.5]
    assert net.layers[-1].kind == "full"  # no ReLU after the last layer


def test_layer5_has_1024_maps(model):
    name, net = model
    last_conv = [layer for layer in net if layer.kind == "conv"][-1]
    assert last_conv.out_channels == 1024


@pytest.mark.slow
def test_fast_forward_float32_matches_float64():
    net = build_network("fast", seed=1).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 231, 231), dtype=np.float32)
    y32 = net.forward(x)
    y64 = net.astype(np.float64).forward(x.astype(np.float64))
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    # Sums of up to 36,864 products in float32: stated tolerance 1e-4 relative.
    assert relative_error(y32, y64) < 1e-4


def test_initialisation_follows_the_paper():
    net = build_network("fast", seed=0)
    w = net["conv5"].params["w"]
    assert w.dtype == np.float32
    assert abs(float(w.std()) - paper.TRAINING["init_std"]) < 1e-4
    assert abs(float(w.mean())) < 1e-4
    assert not np.any(net["conv5"].params["b"])


def test_cli_summary_prints_table_and_totals(capsys):
    assert main(["summary", "fast"]) == 0
    out = capsys.readouterr().out
    assert "145,920,872" in out and "2,801,403,904" in out
    assert "full6" in out and "1024x6x6->3072" in out
    assert main(["summary", "accurate", "--size", "461", "569"]) == 0
    out = capsys.readouterr().out
    assert "1000 x 7 x 10" in out  # Table 5, scale 6, one offset


def test_cli_summary_too_small_is_a_clear_error(capsys):
    assert main(["summary", "fast", "--size", "100", "300"]) == 2
    err = capsys.readouterr().err
    assert "input 100x300 is smaller than the network's window 231x231" in err


def test_cli_unknown_backend_is_a_clear_error(capsys):
    assert main(["demo", "--backend", "tpu"]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().err
