"""Localization: box parameterisation, regression windows, dense regression, the metric."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_scratch.datasets.scenes import Scene
from overfeat_scratch.detect.localize import (
    MIN_COVERAGE,
    BoxRegression,
    CroppedWindows,
    Localizer,
    MergeSettings,
    SharedWindows,
    build_regressor,
    candidates,
    decode_boxes,
    encode_boxes,
    feature_layers,
    head_layers,
    localization_error,
    localize,
    regression_examples,
    scale_outputs,
    train_regressor,
)
from overfeat_scratch.detect.pyramid import BORDER, resize_scene, scene_border, scene_input
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import dense_evaluate_heads, last_pool_index, run_layers
from overfeat_scratch.nn.networks import build_from_specs, build_network
from overfeat_scratch.nn.train import TrainConfig, save_checkpoint

finite = st.floats(-500, 500, allow_nan=False)


@given(st.lists(st.tuples(finite, finite, finite, finite, finite, finite), min_size=1, max_size=8))
def test_encode_then_decode_gives_the_boxes_back(rows):
    rows = np.array(rows)
    boxes, centers = rows[:, :4], rows[:, 4:]
    t = encode_boxes(boxes, centers, 32)
    np.testing.assert_allclose(decode_boxes(t, centers, 32), boxes, atol=1e-9)


def test_encoding_is_relative_to_the_window_centre_in_window_units():
    t = encode_boxes([[10, 20, 26, 52]], [[16, 36]], 32)
    np.testing.assert_allclose(t, [[-6 / 32, -16 / 32, 10 / 32, 16 / 32]])


def test_box_regression_trains_only_the_true_class_outputs():
    objective = BoxRegression(class_specific=True, edge_errors="window")
    from overfeat_scratch.nn.backend import get_backend

    backend = get_backend("numpy")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 40, 1, 1)).astype(np.float32)
    labels = np.array(
        [[2, 0.1, 0.2, 0.3, 0.4], [9, -0.1, 0, 0.1, 0.2], [0, 0, 0, 0, 0]], np.float32
    )
    loss, grad, right, scored = objective.loss(backend, scores, labels)
    pred = scores.reshape(3, 40)
    chosen = np.stack([pred[0, 8:12], pred[1, 36:40], pred[2, 0:4]])
    expected = 0.5 * np.sum((chosen.astype(np.float64) - labels[:, 1:]) ** 2) / 3
    assert loss == pytest.approx(expected, rel=1e-5)
    assert scored == 3 and 0 <= right <= 3
    g = grad.reshape(3, 40)
    mask = np.zeros((3, 40), bool)
    mask[0, 8:12] = mask[1, 36:40] = mask[2, 0:4] = True
    assert np.all(g[~mask] == 0)
    np.testing.assert_allclose(g[mask].reshape(3, 4), (chosen - labels[:, 1:]) / 3, rtol=1e-5)
    shared = BoxRegression(class_specific=False, edge_errors="window")
    _, grad, _, _ = shared.loss(backend, scores[:, :4], labels)
    assert grad.shape == (3, 4, 1, 1)
    with pytest.raises(ValueError, match="class 9 needs output"):
        objective.loss(backend, scores[:, :20], labels)


def box_loss_loops(pred, target, floor):
    """Float64 loops: each edge's error over the true box's width (x edges) or
    height (y edges), at least ``floor``; ``0.5 * sum(e**2) / N`` and its gradient."""
    n = len(pred)
    loss, grad = 0.0, np.zeros((n, 4))
    for i in range(n):
        width = max(float(target[i, 2]) - float(target[i, 0]), floor)
        height = max(float(target[i, 3]) - float(target[i, 1]), floor)
        for k, extent in enumerate((width, height, width, height)):
            e = (float(pred[i, k]) - float(target[i, k])) / extent
            loss += 0.5 * e * e / n
            grad[i, k] = e / extent / n
    return loss, grad


def test_box_edge_errors_are_fractions_of_the_true_box():
    """``edge_errors="box"``: loss and gradient as float64 loops compute them, within
    float32 rounding (rtol 1e-5); a thin box's edges weigh more than a wide one's, and
    the shared and class-specific heads agree on the chosen outputs."""
    from overfeat_scratch.detect.localize import MIN_BOX_EXTENT
    from overfeat_scratch.nn.backend import get_backend

    backend = get_backend("numpy")
    rng = np.random.default_rng(3)
    # Boxes 0.05 to 0.9 windows wide and tall: the thinnest below the floor.
    lo = rng.uniform(-0.5, 0.0, size=(6, 2))
    size = np.array([[0.05, 0.6], [0.3, 0.7], [0.9, 0.9], [0.12, 0.5], [0.5, 0.08], [0.6, 0.4]])
    target = np.concatenate([lo, lo + size], axis=1)
    classes = np.arange(6) % 10
    labels = np.concatenate([classes[:, None], target], axis=1).astype(np.float32)
    scores = rng.normal(scale=0.2, size=(6, 4, 1, 1)).astype(np.float32)
    shared = BoxRegression(class_specific=False)
    assert shared.edge_errors == "box"
    loss, grad, _, scored = shared.loss(backend, scores, labels)
    want_loss, want_grad = box_loss_loops(scores.reshape(6, 4), labels[:, 1:], MIN_BOX_EXTENT)
    assert scored == 6
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad.reshape(6, 4), want_grad, rtol=1e-5, atol=1e-7)
    # The gradient is the loss's: central differences in float64 on one output.
    step = 1e-3
    up, down = scores.astype(np.float64).copy(), scores.astype(np.float64).copy()
    up[1, 2], down[1, 2] = up[1, 2] + step, down[1, 2] - step
    numeric = (
        box_loss_loops(up.reshape(6, 4), labels[:, 1:], MIN_BOX_EXTENT)[0]
        - box_loss_loops(down.reshape(6, 4), labels[:, 1:], MIN_BOX_EXTENT)[0]
    ) / (2 * step)
    assert grad.reshape(6, 4)[1, 2] == pytest.approx(numeric, rel=1e-4)
    # The same error on one edge costs a thin box more than a wide one.
    two = np.array([[0, -0.05, -0.3, 0.05, 0.3], [0, -0.4, -0.3, 0.4, 0.3]], np.float32)
    one = two[:, 1:, None, None].copy()
    one[:, 0] += 0.05
    thin, wide = (shared.loss(backend, one[k : k + 1], two[k : k + 1])[0] for k in (0, 1))
    assert thin == pytest.approx(wide * 8**2, rel=1e-5)  # widths 0.1 and 0.8
    # The class-specific head trains the same numbers at the class's outputs.
    specific = BoxRegression(class_specific=True)
    wide_scores = np.zeros((6, 40, 1, 1), np.float32)
    for i, c in enumerate(classes):
        wide_scores[i, 4 * c : 4 * c + 4] = scores[i]
    loss_specific, grad_specific, _, _ = specific.loss(backend, wide_scores, labels)
    assert loss_specific == pytest.approx(loss, rel=1e-6)
    for i, c in enumerate(classes):
        np.testing.assert_array_equal(grad_specific[i, 4 * c : 4 * c + 4], grad[i])
    with pytest.raises(ValueError, match="edge errors 'pixels'; expected one of"):
        BoxRegression(class_specific=True, edge_errors="pixels")


def tiny_scene(seed=0, size=(70, 80), box=(30, 20, 48, 42), label=3):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=size).astype(np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = rng.integers(100, 255, size=(y1 - y0, x1 - x0))
    return Scene(image, [{"box": box, "label": label, "mnist_index": 0}])


def test_regression_windows_cover_half_the_box_and_match_dense_features():
    net = build_network("mini", seed=1).eval()
    scene = tiny_scene()
    features, labels = regression_examples(net, [scene], factors=(1.0, 0.8), per_scale=50)
    assert features.shape[1:] == (64, 5, 5) and labels.shape == (len(features), 5)
    assert np.all(labels[:, 0] == 3)
    # Decoded in window units, the box is at least half inside the window [-1/2, 1/2]^2.
    t = labels[:, 1:].astype(np.float64)
    inside_w = np.clip(np.minimum(t[:, 2], 0.5) - np.maximum(t[:, 0], -0.5), 0, None)
    inside_h = np.clip(np.minimum(t[:, 3], 0.5) - np.maximum(t[:, 1], -0.5), 0, None)
    area = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    assert np.all(inside_w * inside_h / area >= MIN_COVERAGE - 1e-6)
    # Every feature vector is one of the offset-pooled dense features of its scale.
    image = scene_input(scene.image, normalize=True)  # as regression_examples reads it
    dense = run_layers(feature_layers(net), image[None, None])
    assert dense.shape[1] == 64
    index = last_pool_index(net)
    resized, _ = resize_scene(image, 1.0, scene_border(32))
    x = resized[None, None]
    pre = run_layers(net.layers[:index], x)
    pooled = net.backend.offset_max_pool2d(pre, 2, 2)  # (2, 2, 1, 64, Hq, Wq)
    first = features[0]
    found = any(
        np.allclose(pooled[a, b, 0, :, i : i + 5, j : j + 5], first, atol=1e-5)
        for a in range(2)
        for b in range(2)
        for i in range(pooled.shape[4] - 4)
        for j in range(pooled.shape[5] - 4)
    )
    assert found


@settings(max_examples=12)
@given(
    st.integers(0, 2**16),
    st.lists(
        st.tuples(st.integers(32, 61), st.integers(32, 61), st.integers(1, 9)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 40),
)
def test_shared_windows_equal_each_window_cut_out_and_run_alone(seed, images, batch_size):
    # float64 network: the shared regions and the lone crops must agree to rounding.
    net = build_network("mini-detector", seed=seed % 7).eval().astype(np.float64)
    layers = feature_layers(net)
    shared = SharedWindows.for_layers(net, layers, 32, 2, batch_size)
    alone = CroppedWindows(net, layers, 32, batch_size)
    assert shared is not None and shared.size == (10, 10) and shared.stride == 2
    rng = np.random.default_rng(seed)
    for height, width, count in images:
        image = rng.standard_normal((height, width))
        # Window corners anywhere on the grid 2 apart, repeats allowed: each image
        # is a region of its own size, so the batches mix sizes and flush at odd counts.
        tops = 2 * rng.integers(0, (height - 32) // 2 + 1, size=count)
        lefts = 2 * rng.integers(0, (width - 32) // 2 + 1, size=count)
        shared.add(image, tops, lefts)
        alone.add(image, tops, lefts)
    expected = alone.features()
    got = shared.features()
    assert got.shape == expected.shape == (sum(c for _, _, c in images), 64, 5, 5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_regression_examples_share_the_windows_work_with_the_same_result():
    net = build_network("mini-detector", seed=3).eval()
    scenes = [tiny_scene(seed=s, size=(70 + 6 * s, 80 - 4 * s)) for s in range(4)]
    kwargs = dict(factors=(1.0, 0.8, 0.63), per_scale=6, seed=5, batch_size=16)
    shared_stats, alone_stats = {}, {}
    shared = regression_examples(net, scenes, stats=shared_stats, **kwargs)
    alone = regression_examples(net, scenes, shared=False, stats=alone_stats, **kwargs)
    np.testing.assert_array_equal(shared[1], alone[1])
    assert shared_stats["way"] == "shared" and alone_stats["way"] == "cropped"
    assert shared_stats["windows"] == alone_stats["windows"] == len(alone[1])
    # The cropped way: each window costs conv1 (28 x 28 outputs, 32 maps, 1 x 5 x 5
    # taps) plus conv2 (10 x 10 outputs, 64 maps, 32 x 5 x 5 taps).
    per_window = 28 * 28 * 32 * 25 + 10 * 10 * 64 * 32 * 25
    assert alone_stats["multiply_adds"] == len(alone[1]) * per_window
    assert shared_stats["multiply_adds"] < alone_stats["multiply_adds"]
    # float32: the products of a region and of a crop may round differently.
    scale = np.abs(alone[0]).max()
    np.testing.assert_allclose(shared[0], alone[0], rtol=0, atol=1e-5 * scale)


def test_shared_windows_refuse_where_they_would_not_be_exact():
    net = build_network("mini", seed=1).eval()
    layers = feature_layers(net)
    # Windows off the trunk's grid (1 pixel apart; the trunk's stride is 2).
    assert SharedWindows.for_layers(net, layers, 32, 1) is None
    assert SharedWindows.for_layers(net, layers, 32, 4) is not None
    # A padded trunk sees its neighbours where a crop sees zeros.
    specs = (
        paper.LayerSpec("conv", 4, 3, pad=1, pool=2, pool_stride=2),
        paper.LayerSpec("conv", 4, 3, pool=2, pool_stride=2),
        paper.LayerSpec("full", 3, 3, relu=False),
    )
    padded = build_from_specs(specs, 1, "padded", seed=0, init_std="he").eval()
    window = padded.window()
    assert SharedWindows.for_layers(padded, feature_layers(padded), window, 2) is None
    # regression_examples then cuts the windows out, and still works.
    scene = tiny_scene()
    stats = {}
    fine = regression_examples(padded, [scene], factors=(1.0,), per_scale=4, stats=stats)
    assert stats["way"] == "cropped"
    cut = regression_examples(padded, [scene], factors=(1.0,), per_scale=4, shared=False)
    np.testing.assert_array_equal(fine[0], cut[0])


@pytest.mark.parametrize("kind", [SharedWindows, CroppedWindows])
def test_window_collectors_refuse_bad_windows(kind):
    net = build_network("mini", seed=1).eval()
    layers = feature_layers(net)
    windows = kind(net, layers, 32, 2) if kind is SharedWindows else kind(net, layers, 32)
    image = np.zeros((40, 50), np.float32)
    with pytest.raises(ValueError, match="no window was added"):
        windows.features()
    with pytest.raises(ValueError, match="2-D image"):
        windows.add(image[None], [0], [0])
    with pytest.raises(ValueError, match="one length"):
        windows.add(image, [0, 2], [0])
    with pytest.raises(ValueError, match="outside the 40x50 image"):
        windows.add(image, [10], [0])
    with pytest.raises(ValueError, match="outside"):
        windows.add(image, [0], [-2])
    if kind is SharedWindows:
        with pytest.raises(ValueError, match="multiples of 2"):
            windows.add(image, [1], [0])
    windows.add(image, [8], [18])
    assert windows.features().shape == (1, 64, 5, 5)


def test_regression_examples_need_single_digit_scenes():
    net = build_network("mini", seed=1).eval()
    scene = tiny_scene()
    two = Scene(scene.image, scene.annotations * 2)
    with pytest.raises(ValueError, match="single-digit"):
        regression_examples(net, [two])


@pytest.mark.parametrize("border", [0.0, BORDER])
@pytest.mark.parametrize("factor", [1.0, 0.8])
def test_dense_boxes_equal_the_regressor_on_each_window(factor, border):
    """The regressor slid densely (offset pooling) equals it run on each window's crop;
    with a border, windows over it are reported in the image's own pixels."""
    net = build_network("mini", seed=2).eval()
    regressor = build_regressor(class_specific=True, seed=3).eval()
    loc = Localizer(net, regressor)
    image = scene_input(tiny_scene(seed=4, size=(44, 50)).image)
    out = scale_outputs(loc, image, factor, border=border)
    pad = scene_border(32, border)
    assert pad == round(32 * border)
    resized, (fx, fy) = resize_scene(image, factor, pad)
    assert out.size == (resized.shape[0] - 2 * pad, resized.shape[1] - 2 * pad)
    if pad:
        assert np.all(resized[:pad] == np.median(image)) and out.windows[0].min() < 0
    c, fh, fw = out.probabilities.shape
    assert c == 10 and out.boxes.shape == (10, 4, fh, fw)
    assert (fh, fw) == ((resized.shape[0] - 32) // 2 + 1, (resized.shape[1] - 32) // 2 + 1)
    for i, j in [(0, 0), (fh - 1, fw - 1), (fh // 2, 1)]:
        crop = resized[2 * i : 2 * i + 32, 2 * j : 2 * j + 32][None, None]
        features = run_layers(feature_layers(net), crop)
        t = run_layers(regressor.layers, features).reshape(10, 4).astype(np.float64)
        center = np.array([[2 * j + 16 - pad, 2 * i + 16 - pad]] * 10)
        expected = decode_boxes(t, center, 32) / np.array([fx, fy, fx, fy])
        np.testing.assert_allclose(out.boxes[:, :, i, j], expected, rtol=1e-4, atol=1e-3)
        logits = run_layers(head_layers(net), features).reshape(-1)
        p = np.exp(logits - logits.max())
        np.testing.assert_allclose(out.probabilities[:, i, j], p / p.sum(), atol=1e-5)
        corners = np.array([2 * j, 2 * i, 2 * j + 32, 2 * i + 32]) - pad
        np.testing.assert_allclose(out.windows[:, i, j], corners / np.array([fx, fy, fx, fy]))


def test_dense_heads_share_the_features_and_match_dense_evaluate():
    from overfeat_scratch.nn.dense import dense_evaluate

    net = build_network("mini", seed=2).eval()
    x = np.random.default_rng(0).random((1, 1, 40, 46), dtype=np.float32)
    for fine in (False, True):
        (only,) = dense_evaluate_heads(net, [head_layers(net)], x, fine)
        ref = dense_evaluate(net, x, fine)
        np.testing.assert_array_equal(only.scores, ref.scores)
        assert (only.stride, only.window) == (ref.stride, ref.window)


def test_candidates_take_the_top_classes_sort_edges_and_clip():
    class Out:
        factor = 1.0

    out = Out()
    probs = np.zeros((11, 1, 2))
    probs[4] = [[0.9, 0.1]]
    probs[7] = [[0.2, 0.5]]
    probs[10] = [[1.0, 1.0]]  # background: never a candidate
    out.probabilities = probs
    out.boxes = np.zeros((10, 4, 1, 2))
    out.boxes[4, :, 0, 0] = [30, 5, -10, 50]  # inverted x, beyond the image
    out.windows = np.zeros((4, 1, 2))
    cand = candidates([out, None], 2, True, (40, 60))
    assert list(cand.classes) == [4, 4, 7, 7]
    np.testing.assert_allclose(cand.confidences, [0.9, 0.1, 0.2, 0.5])
    np.testing.assert_allclose(cand.boxes[0], [0, 5, 30, 40])
    high = candidates([out], 2, True, (40, 60), min_confidence=0.3)
    assert list(high.classes) == [4, 7]


def test_localization_error_hand_cases():
    truths = [{"box": (0, 0, 10, 10), "label": 1}, {"box": (0, 0, 10, 10), "label": 2}]
    good = {"box": (0, 0, 10, 12), "label": 1}  # IoU 10/12
    shifted = {"box": (5, 0, 15, 10), "label": 2}  # IoU 1/3
    right2 = {"box": (1, 1, 10, 10), "label": 2}
    predictions = [[good], [shifted, good, right2]]
    error = localization_error(predictions, truths)
    assert error == {"top1": 0.5, "top5": 0.0, "n": 2}
    with pytest.raises(ValueError, match="2 predictions for 1 images"):
        localization_error(predictions, truths[:1])
    # Exactly IoU 0.5 counts.
    half = [[{"box": (0, 0, 10, 5), "label": 1}]]
    assert localization_error(half, truths[:1])["top1"] == 0.0


def test_localization_error_counts_each_k_once():
    """``top=(1, 1)`` (``localize --top 1``) is one top-1 error, not hits counted twice."""
    truths = [{"box": (0, 0, 10, 10), "label": 1}, {"box": (0, 0, 10, 10), "label": 2}]
    predictions = [[{"box": (0, 0, 10, 10), "label": 1}], [{"box": (0, 0, 10, 10), "label": 3}]]
    assert localization_error(predictions, truths, top=(1, 1)) == {"top1": 0.5, "n": 2}
    for top in ((0,), (1, -1), ()):
        with pytest.raises(ValueError, match=r"expected top-k values k >= 1"):
            localization_error(predictions, truths, top=top)


def test_localize_conserves_confidence_and_keeps_boxes_in_the_image():
    net = build_network("mini", seed=2).eval()
    loc = Localizer(net, build_regressor(class_specific=False, seed=5).eval())
    scene = tiny_scene(seed=6, size=(48, 52))
    result = localize(
        loc, scene.image, factors=(1.0, 0.8), settings=MergeSettings(top_k=2, min_confidence=0.0)
    )
    cand = result.candidates
    assert np.isclose(result.confidences.sum(), cand.confidences.sum())
    assert np.all(np.diff(result.confidences) <= 1e-12)
    assert np.all(result.boxes[:, [0, 1]] >= 0)
    assert np.all(result.boxes[:, 2] <= 52) and np.all(result.boxes[:, 3] <= 48)
    with pytest.raises(ValueError, match="smaller than the network's 32x32 window"):
        localize(loc, np.zeros((20, 40), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        localize(loc, np.zeros((40, 40), np.float32))


def test_regressor_checkpoint_holds_the_classifier_and_loads_as_a_localizer(tmp_path):
    net = build_network("mini", seed=2).eval()
    scenes = [tiny_scene(seed=s) for s in range(3)]
    data = regression_examples(net, scenes, factors=(1.0,), per_scale=8)
    config = TrainConfig(
        epochs=1,
        batch_size=8,
        learning_rate=0.01,
        lr_decay_epochs=(),
        lr_decay_factor=0.1,
        momentum=0.9,
        weight_decay=0.0,
        init_std="he",
        pad=0,
        flips=False,
    )
    result = train_regressor(
        net, data, data, config=config, out_dir=tmp_path, log=None, progress=False
    )
    assert 0 <= result.history[0]["test_error"] <= 1
    loaded = Localizer.from_checkpoint(tmp_path / "checkpoint.npz")
    assert loaded.class_specific
    for a, b in zip(
        loaded.classifier.state_dict().values(), net.state_dict().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # A classifier checkpoint is not a localizer.
    save_checkpoint(tmp_path / "mini.npz", net, None, {"epoch": 1})
    with pytest.raises(ValueError, match="expected a box regressor"):
        Localizer.from_checkpoint(tmp_path / "mini.npz")


def test_keeping_some_merged_boxes_keeps_members_pointing_at_them():
    """After ``keep``, ``boxes[members[k]]`` is still where candidate ``k`` ended, and
    candidates of a dropped box have -1."""
    from overfeat_scratch.detect.localize import Localization

    boxes = np.arange(12, dtype=np.float64).reshape(3, 4)
    result = Localization(
        boxes.copy(),
        np.array([1, 2, 3]),
        np.array([3.0, 2.0, 1.0]),
        np.array([2, 1, 2]),
        None,
        np.array([0, 2, 1, 0, 2]),
    )
    result.keep([2, 0])
    np.testing.assert_array_equal(result.members, [1, 0, -1, 1, 0])
    kept = result.members >= 0
    np.testing.assert_array_equal(
        result.boxes[result.members[kept]], boxes[np.array([0, 2, 1, 0, 2])[kept]]
    )
    np.testing.assert_array_equal(result.classes, [3, 1])


# --------------------------------------------------------------------------------------
# How a checkpoint reads scenes


def test_input_settings_from_checkpoint_metadata():
    from overfeat_scratch.detect.localize import input_record, input_settings
    from overfeat_scratch.detect.pyramid import (
        LEGACY_SCALE_FACTORS,
        SCALE_FACTORS,
        WIDE_SCALE_FACTORS,
    )

    assert input_settings({}) == (False, LEGACY_SCALE_FACTORS)
    assert input_settings(input_record()) == (True, SCALE_FACTORS)
    assert input_settings(input_record(True, WIDE_SCALE_FACTORS)) == (True, WIDE_SCALE_FACTORS)
    assert input_settings(input_record(False, (1.0, 0.5))) == (False, (1.0, 0.5))
    assert len(WIDE_SCALE_FACTORS) == 8 and WIDE_SCALE_FACTORS[:6] == LEGACY_SCALE_FACTORS
    with pytest.raises(ValueError, match="input 'colour'"):
        input_settings({"input": "colour"})
    # Networks trained on the earlier normalisation (no contrast step) read scenes
    # differently: refused by name, not run on input they never saw.
    with pytest.raises(ValueError, match="contrast step"):
        input_settings({"input": "normalized"})
    with pytest.raises(ValueError, match="scale_factors"):
        input_settings({"input": "raw", "scale_factors": [0.5, -1]})


def test_scene_input_normalises_unless_told_not_to():
    from overfeat_scratch.ops.image import INK_LEVEL

    image = np.full((40, 40), 200, np.uint8)
    image[10:30, 18:22] = 20  # dark ink on light paper
    raw = scene_input(image)
    np.testing.assert_allclose(raw, image / 255, atol=1e-7)
    x = scene_input(image, normalize=True)
    # Ground at 0, the ink turned positive and its contrast (180 grey levels) brought
    # to the level the default scenes have.
    assert np.median(x) == 0 and x.max() == pytest.approx(INK_LEVEL) and x.min() == 0


def test_localizer_reads_its_input_mode_from_the_checkpoint(tmp_path):
    from overfeat_scratch.detect.localize import input_record
    from overfeat_scratch.detect.pyramid import LEGACY_SCALE_FACTORS

    classifier = build_network("mini-detector", seed=0)
    regressor = build_regressor(seed=1)
    for meta, expected in (
        ({"objective": "box-regression"}, (False, LEGACY_SCALE_FACTORS)),
        (
            {"objective": "box-regression", **input_record(True, (1.0, 0.63))},
            (True, (1.0, 0.63)),
        ),
    ):
        path = tmp_path / f"reg{len(meta)}.npz"
        save_checkpoint(path, regressor, None, {"epoch": 1, **meta}, {"classifier": classifier})
        loc = Localizer.from_checkpoint(path)
        assert (loc.normalize, loc.factors) == expected
        scene = np.full((36, 36), 90, np.uint8)
        np.testing.assert_array_equal(loc.prepare(scene), scene_input(scene, expected[0]))


def test_the_localizer_flattens_shaded_scenes_unless_told_not_to():
    """By default a localizer removes a sloping ground before its networks read the
    scene (and leaves an even one alone); ``flatten=False`` reads the scene as it is."""
    from overfeat_scratch.datasets.scenes import SceneConfig, generate_scenes

    net = build_network("mini", seed=2).eval()
    regressor = build_regressor(class_specific=True, seed=3).eval()
    on, off = Localizer(net, regressor), Localizer(net, regressor, flatten=False)
    assert on.flatten and not off.flatten
    even = generate_scenes(1, 9, "test", SceneConfig())[0].image
    lit = generate_scenes(1, 9, "test", SceneConfig(shading=90.0))[0].image
    np.testing.assert_array_equal(on.prepare(even), off.prepare(even))
    np.testing.assert_array_equal(off.prepare(lit), scene_input(lit, normalize=True))
    np.testing.assert_array_equal(on.prepare(lit), scene_input(lit, True, flatten=True))
    reference = on.prepare(even)
    assert (
        np.abs(on.prepare(lit) - reference).mean()
        < 0.3 * np.abs(off.prepare(lit) - reference).mean()
    )
