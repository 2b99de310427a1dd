"""Detection training: window labels, mined negatives, the detector's start, inference."""

import numpy as np
import pytest

from overfeat_scratch.datasets.scenes import Scene
from overfeat_scratch.detect.detection import (
    BACKGROUND,
    DetectSettings,
    MinedDetection,
    detect,
    detection_patches,
    detection_window_errors,
    detector_from_classifier,
    window_labels,
)
from overfeat_scratch.detect.localize import Localizer, MergeSettings, build_regressor
from overfeat_scratch.detect.pyramid import scene_input
from overfeat_scratch.nn.backend import get_backend
from overfeat_scratch.nn.dense import softmax
from overfeat_scratch.nn.networks import build_network
from overfeat_scratch.nn.train import TrainConfig, load_checkpoint, resume_state, train


def test_window_labels_hand_cases():
    # Windows of 32 px every 4 px on a 64x64 patch: 9x9. A 20-px digit centred on
    # window (2, 3) (x 12..44, y 8..40 -> centre 28, 24).
    box = [18, 14, 38, 34]  # 20x20, centre (28, 24)
    labels = window_labels([box], [7], 9, 9, 4, 32)
    assert labels[2, 3] == 7
    # 6 px off in x is still positive (0.19 of the window), 12 px is not.
    assert labels[2, 2] == 7 or labels[2, 4] == 7
    assert labels[2, 0] != 7 and labels[2, 6] != 7
    # Far away: background; nearby but off-centre: ignored.
    assert labels[8, 8] == BACKGROUND
    assert labels[2, 6] == -1
    # Too small a digit (8 px, like a clutter fragment) is background everywhere.
    small = window_labels([[24, 20, 32, 28]], [1], 9, 9, 4, 32)
    assert np.all(small == BACKGROUND)
    # Two digits positive at one window: the closer centre wins.
    both = window_labels([box, [20, 14, 40, 34]], [7, 2], 9, 9, 4, 32)
    assert both[2, 3] == 7 and both[2, 4] == 2
    assert np.all(window_labels(np.zeros((0, 4)), [], 3, 3, 4, 32) == BACKGROUND)


def scene_with_digit(seed=0, size=(90, 100), box=(40, 30, 58, 52), label=5):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 50, size=size).astype(np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = rng.integers(120, 255, size=(y1 - y0, x1 - x0))
    return Scene(image, [{"box": box, "label": label, "mnist_index": 0}])


def test_detection_patches_labels_follow_the_boxes():
    scenes = [scene_with_digit(s) for s in range(6)]
    patches, labels = detection_patches(scenes, seed=0, per_scene=3)
    assert patches.shape == (18, 1, 64, 64) and patches.dtype == np.float32
    assert labels.shape == (18, 9, 9)
    assert set(np.unique(labels)) <= {-1, 5, BACKGROUND}
    assert np.any(labels == 5)  # the digit-centred half of the patches hold positives
    again = detection_patches(scenes, seed=0, per_scene=3)
    np.testing.assert_array_equal(again[0], patches)


def test_a_digit_on_the_edge_gets_centred_windows_over_the_border():
    """The border lets a window frame a digit that touches the scene's edge."""
    scene = scene_with_digit(size=(90, 100), box=(0, 30, 18, 52), label=5)
    patches, labels = detection_patches([scene] * 12, seed=1, per_scene=2, factors=(1.0,))
    assert np.any(labels == 5)
    # A positive window is centred on the digit (x = 9), so it starts 7 px left of
    # the scene: the patches that hold one show the flat border there.
    grey = np.median(scene_input(scene.image, normalize=True))
    with_pos = np.flatnonzero((labels == 5).any(axis=(1, 2)))
    assert any(np.all(patches[k, 0, :, 0] == grey) for k in with_pos)


def test_mining_takes_every_positive_the_hardest_and_some_random_negatives():
    labels = np.full((1, 3, 4), BACKGROUND)
    labels[0, 0, 0] = 3
    labels[0, 0, 1] = -1
    probs = np.zeros((1, 11, 3, 4))
    probs[:, BACKGROUND] = 1.0
    probs[0, BACKGROUND, 2, 3] = 0.1  # the most offending negative
    probs[0, BACKGROUND, 1, 1] = 0.4  # the second
    objective = MinedDetection(random_negatives=2, hard_negatives=2)
    weights = objective.select(probs, labels)
    assert weights[0, 0, 0] and not weights[0, 0, 1]
    assert weights[0, 2, 3] and weights[0, 1, 1]
    assert weights.sum() == 1 + 2 + 2
    no_mining = MinedDetection(random_negatives=2, hard_negatives=2, mining=False, seed=1)
    assert no_mining.select(probs, labels).sum() == 1 + 4


def test_mined_loss_gradient_matches_finite_differences():
    backend = get_backend("numpy")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 11, 2, 3))
    labels = rng.choice([0, 4, BACKGROUND, -1], size=(2, 2, 3))
    objective = MinedDetection(random_negatives=0, hard_negatives=0)  # positives only
    loss, grad, right, count = objective.loss(backend, scores.astype(np.float64), labels)
    positives = (labels >= 0) & (labels != BACKGROUND)
    assert count == max(int(positives.sum()), 1)
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (1, 4, 1, 2), (0, BACKGROUND, 1, 1)]:
        bumped = scores.copy()
        bumped[idx] += eps
        up = objective.loss(backend, bumped, labels)[0]
        bumped[idx] -= 2 * eps
        down = objective.loss(backend, bumped, labels)[0]
        assert grad[idx] == pytest.approx((up - down) / (2 * eps), abs=1e-6)
    p = softmax(scores)
    expected = (
        -np.sum(
            np.log(np.take_along_axis(p, np.where(labels >= 0, labels, 0)[:, None], 1)[:, 0])[
                positives
            ]
        )
        / count
    )
    assert loss == pytest.approx(expected)
    assert 0 <= right <= count


def test_the_detector_starts_as_mini_with_a_silent_background():
    mini = build_network("mini", seed=3).eval()
    detector = detector_from_classifier(mini).eval()
    x = np.random.default_rng(0).random((2, 1, 40, 36), dtype=np.float32)
    a = mini.forward(x)
    b = detector.forward(x)
    np.testing.assert_allclose(b[:, :10], a, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b[:, 10], 0)
    with pytest.raises(ValueError, match="expected the mini network"):
        detector_from_classifier(detector)


CONFIG = TrainConfig(
    epochs=2,
    batch_size=4,
    learning_rate=0.01,
    lr_decay_epochs=(1,),
    lr_decay_factor=0.5,
    momentum=0.9,
    weight_decay=5e-4,
    init_std="he",
    pad=0,
    flips=False,
)


def test_detector_training_resumes_exactly(tmp_path):
    scenes = [scene_with_digit(s) for s in range(4)]
    data = detection_patches(scenes, seed=0, per_scene=2)
    mini = build_network("mini", seed=3)

    def train_detector(net, config, **kwargs):
        objective = MinedDetection(seed=config.seed)
        return train(
            net, config, data, data, log=None, progress=False, objective=objective, **kwargs
        )

    full = train_detector(detector_from_classifier(mini), CONFIG, out_dir=tmp_path / "full")
    assert {"train_error", "test_error", "train_loss"} <= set(full.history[0])
    one_epoch = TrainConfig(**{**CONFIG.__dict__, "epochs": 1})
    one = train_detector(detector_from_classifier(mini), one_epoch, out_dir=tmp_path / "one")
    net, meta, velocity = load_checkpoint(one.checkpoint, "mini-detector")
    assert meta["objective"] == "detection"
    resumed = train_detector(net, CONFIG, resume=resume_state(meta, velocity))
    for a, b in zip(full.net.state_dict().values(), resumed.net.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    errors = detection_window_errors(full.net, *data)
    assert set(errors) == {"positive", "background", "balanced"}


def test_detect_with_merge_and_with_nms():
    detector = detector_from_classifier(build_network("mini", seed=3)).eval()
    loc = Localizer(detector, build_regressor(class_specific=True, seed=1).eval())
    image = scene_with_digit(1, size=(60, 70)).image
    merge = MergeSettings(top_k=3, min_confidence=0.0)
    whole = DetectSettings(max_detections=10**6, after_merge_iou=None)
    merged = detect(loc, image, (1.0,), merge, whole)
    cleaned = detect(loc, image, (1.0,), merge, DetectSettings(max_detections=10**6))
    assert 0 < len(cleaned.boxes) <= len(merged.boxes)
    from overfeat_scratch.ops.boxes import iou_matrix

    overlap = iou_matrix(cleaned.boxes, cleaned.boxes)
    np.fill_diagonal(overlap, 0)
    # what the merge left overlapping is gone
    assert overlap.max(initial=0) <= DetectSettings().after_merge_iou
    assert set(map(tuple, cleaned.boxes)) <= set(map(tuple, merged.boxes))
    nms = detect(loc, image, (1.0,), merge, DetectSettings(final="nms", nms_iou=0.5))
    for result in (merged, nms):
        assert len(result.boxes) > 0
        assert np.all(np.diff(result.confidences) <= 1e-12)
        assert set(result.classes) <= set(range(10))
    # NMS keeps window probabilities (each <= 1); the merge sums them.
    assert nms.confidences.max() <= 1 + 1e-9
    assert merged.confidences.sum() == pytest.approx(merged.candidates.confidences.sum())
    high = detect(loc, image, (1.0,), merge, DetectSettings(min_score=1e9))
    assert len(high.boxes) == 0
    with pytest.raises(ValueError, match="final step"):
        detect(loc, image, (1.0,), merge, DetectSettings(final="vote"))


def test_detect_refuses_a_classifier_without_background():
    """On plain mini every window must vote for a digit: empty ground would become
    detections, so detect refuses instead of returning them."""
    plain = Localizer(build_network("mini", seed=3).eval(), build_regressor(seed=1).eval())
    image = scene_with_digit(1, size=(60, 70)).image
    with pytest.raises(ValueError, match=r"features of 'mini', which has 10 outputs and no back"):
        detect(plain, image, (1.0,))


def test_detection_averages_merged_boxes_by_confidence_by_default():
    """detect() and the ``detect`` and ``localize`` commands merge with MergeSettings(),
    whose boxes are averaged by confidence; the paper's pair average is an option away
    and gives other boxes on the same windows."""
    from overfeat_scratch.cli import build_parser

    assert MergeSettings().average == "confidence"
    for command in ("detect", "localize"):
        args = build_parser().parse_args([command, "scene.png"])
        assert (args.average, args.threshold, args.top_classes) == ("confidence", 0.3, 10)
    detector = detector_from_classifier(build_network("mini", seed=3)).eval()
    loc = Localizer(detector, build_regressor(class_specific=True, seed=1).eval())
    image = scene_with_digit(1, size=(60, 70)).image
    whole = DetectSettings(max_detections=10**6, after_merge_iou=None)
    default = detect(loc, image, (1.0,), None, whole)
    by_confidence = detect(loc, image, (1.0,), MergeSettings(average="confidence"), whole)
    by_pair = detect(loc, image, (1.0,), MergeSettings(average="pair"), whole)
    np.testing.assert_array_equal(default.boxes, by_confidence.boxes)
    np.testing.assert_array_equal(default.confidences, by_confidence.confidences)
    assert default.boxes.shape != by_pair.boxes.shape or not np.allclose(
        default.boxes, by_pair.boxes
    )
