"""Multi-scale classification: scales, flips, fine/coarse, top-k."""

import numpy as np
import pytest

from overfeat_scratch import Conv2d, FullyConnected, MaxPool2d, ReLU, Sequential
from overfeat_scratch.nn.dense import classify_multiscale, dense_evaluate, softmax


def tiny(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        [
            Conv2d(3, 4, 3, 2, 0, 0.3, rng, "conv1"),
            ReLU(name="relu1"),
            MaxPool2d(3, name="pool1"),
            FullyConnected(4, 6, 2, 0.3, rng, "full2"),
            ReLU(name="relu2"),
            FullyConnected(6, 5, 1, 0.3, rng, "full3"),
        ]
    ).eval()


def prepare(image):
    return (np.asarray(image, np.float32).transpose(2, 0, 1)[None] - 128) / 64


def test_window_sized_single_scale_is_plain_classification():
    net = tiny()
    assert net.window() == 13
    image = np.random.default_rng(0).integers(0, 256, (13, 13, 3)).astype(np.uint8)
    result = classify_multiscale(
        net, image, scales=[(13, 13)], flips=False, fine=False, top=3, prepare=prepare
    )
    expected = softmax(net.forward(prepare(image)))[0, :, 0, 0]
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-6)
    assert list(result.top) == list(np.argsort(-expected)[:3])


def test_average_of_spatial_maxima_over_scales_and_flips():
    net = tiny(1)
    image = np.random.default_rng(1).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    scales = [(30, 36), 45]
    result = classify_multiscale(net, image, scales=scales, prepare=prepare, top=5)
    assert len(result.maps) == 4
    assert [(size, flipped) for size, flipped, _ in result.maps] == [
        ((30, 36), False),
        ((30, 36), True),
        ((45, 56), False),
        ((45, 56), True),
    ]
    vectors = [softmax(d.scores)[0].max(axis=(1, 2)) for _, _, d in result.maps]
    np.testing.assert_allclose(result.probabilities, np.mean(vectors, axis=0), rtol=1e-6)
    assert np.all(np.diff(result.probabilities[result.top]) <= 0)
    fine = result.maps[0][2]
    coarse = dense_evaluate(net, prepare(np.zeros((30, 36, 3)))).scores
    assert fine.scores.shape[2] > coarse.shape[2]  # fine maps are denser
    assert fine.stride == 2


def test_flips_of_a_symmetric_image_change_nothing():
    net = tiny(2)
    half = np.random.default_rng(2).integers(0, 256, (30, 15, 3)).astype(np.uint8)
    image = np.concatenate([half, half[:, ::-1]], axis=1)
    with_flips = classify_multiscale(net, image, scales=[30], prepare=prepare, fine=False)
    without = classify_multiscale(net, image, scales=[30], prepare=prepare, fine=False, flips=False)
    np.testing.assert_allclose(with_flips.probabilities, without.probabilities, rtol=1e-6)


def test_bad_images_and_scales():
    net = tiny()
    with pytest.raises(
        ValueError, match=r"expected an \(H, W, 3\) RGB array, got shape \(20, 20\)"
    ):
        classify_multiscale(net, np.zeros((20, 20)), prepare=prepare)
    with pytest.raises(ValueError, match="at least one scale"):
        classify_multiscale(net, np.zeros((20, 20, 3)), scales=[], prepare=prepare)
    with pytest.raises(ValueError, match="smaller than the network's window 13x13"):
        classify_multiscale(net, np.zeros((20, 20, 3)), scales=[(10, 30)], prepare=prepare)
    with pytest.raises(ValueError, match="NaN"):
        classify_multiscale(net, np.full((20, 20, 3), np.nan), scales=[20], prepare=prepare)
