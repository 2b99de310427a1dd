"""Detection evaluation: APs worked out by hand, matching rules, crowds, class mapping
by name, files in and out, and clear errors for malformed input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overfeat_scratch.cli import main
from overfeat_scratch.detect.evaluation import (
    COCO_IOU_THRESHOLDS,
    average_precision,
    crowd_overlap,
    evaluate_detections,
    load_ground_truth,
    load_results,
    match_detections,
    plot_pr_curves,
    precision_recall,
)
from overfeat_scratch.ops.boxes import iou_matrix, xywh_to_xyxy

DIGITS = [{"id": d + 1, "name": str(d)} for d in range(10)]


def ground_truth(annotations, images=(1,), categories=DIGITS):
    """A COCO ground-truth dict from ``(image_id, category_id, [x, y, w, h][, iscrowd])``."""
    entries = []
    for k, (image_id, cid, bbox, *crowd) in enumerate(annotations, 1):
        entry = {"id": k, "image_id": image_id, "category_id": cid, "bbox": list(bbox)}
        if crowd:
            entry["iscrowd"] = crowd[0]
        entries.append(entry)
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i in images],
        "annotations": entries,
        "categories": [dict(c) for c in categories],
    }


def det(image_id, cid, bbox, score):
    return {"image_id": image_id, "category_id": cid, "bbox": list(bbox), "score": score}


# --------------------------------------------------------------------------------------
# Boxes


def test_box_iou():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10], [2, 2, 2, 8], [0, 0, 10, 7]]
    # 50 / 150, touching, identical, zero width, 70 / 100.
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1 / 3, 0, 1, 0, 0.7])
    assert iou_matrix(a, b)[0, 4] == 0.7
    xywh = [[0, 0, 10, 10]], [[5, 0, 10, 10]]
    assert iou_matrix(*xywh, box_format="xywh")[0, 0] == pytest.approx(1 / 3)
    assert xywh_to_xyxy([[1, 2, 3, 4]]).tolist() == [[1, 2, 4, 6]]
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 5)
    # A crowd region covering the detection's whole area: 1, however large the region.
    assert crowd_overlap([[2, 2, 4, 4], [0, 0, 0, 4]], [[0, 0, 100, 100]]).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="box_format"):
        iou_matrix(a, b, box_format="cxcywh")


# --------------------------------------------------------------------------------------
# Average precision by hand


def three_objects_five_detections():
    """Three objects; detections (score, hit): .9 hit, .8 miss, .7 hit, .6 miss, .5 hit."""
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [20, 0, 10, 10]), (1, 1, [40, 0, 10, 10])])
    results = [
        det(1, 1, [80, 0, 10, 10], 0.6),  # miss
        det(1, 1, [40, 0, 10, 10], 0.5),  # hit C
        det(1, 1, [0, 0, 10, 10], 0.9),  # hit A
        det(1, 1, [20, 0, 10, 10], 0.7),  # hit B
        det(1, 1, [60, 0, 10, 10], 0.8),  # miss
    ]
    return gt, results


def test_all_point_ap_by_hand():
    # In score order: TP FP TP FP TP, G = 3.
    #   precision 1/1, 1/2, 2/3, 2/4, 3/5;  recall 1/3, 1/3, 2/3, 2/3, 3/3
    #   interpolated (max to the right): 1, 2/3, 2/3, 3/5, 3/5
    #   AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 1/3 + 2/9 + 1/5 = 34/45 = 0.7556
    gt, results = three_objects_five_detections()
    result = evaluate_detections(gt, results)
    c = result.per_class["0"]
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(c.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(c.scores, [0.9, 0.8, 0.7, 0.6, 0.5])
    assert c.ap50 == pytest.approx(34 / 45)
    assert c.n_ground_truth == 3 and c.n_detections == 5 and c.max_recall == 1.0
    # Exact boxes: every threshold gives the same AP.
    assert c.ap == pytest.approx(34 / 45)
    assert result.map50 == pytest.approx(34 / 45) and result.map == pytest.approx(34 / 45)
    # Classes without ground truth have no AP and stay out of the mean.
    assert result.per_class["5"].ap50 is None and result.scored_classes == ["0"]


def test_coco101_ap_by_hand():
    # The same curve read at recall 0, 0.01, ..., 1 (first detection reaching it):
    #   0.00-0.33: 34 points at p = 1;  0.34-0.66: 33 points at 2/3;  0.67-1: 34 points at 3/5
    #   AP = (34 + 33 * 2/3 + 34 * 3/5) / 101 = 76.4 / 101 = 0.7564
    gt, results = three_objects_five_detections()
    result = evaluate_detections(gt, results, interpolation="coco101")
    assert result.per_class["0"].ap50 == pytest.approx(76.4 / 101)
    assert abs(76.4 / 101 - 34 / 45) < 0.002  # the two interpolations barely differ


def test_average_precision_edges():
    assert average_precision([], []) == 0.0
    assert average_precision([], [], "coco101") == 0.0
    # Recall 1/2 at full precision, nothing more found: AP = 1/2 (coco101: 51 of 101 points).
    assert average_precision([1.0], [0.5]) == 0.5
    assert average_precision([1.0], [0.5], "coco101") == pytest.approx(51 / 101)
    with pytest.raises(ValueError, match="interpolation"):
        average_precision([1.0], [1.0], "11-point")
    precision, recall = precision_recall([1, -1, 0, 1], 4)  # the ignored one drops out
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 4, 1 / 4, 2 / 4])


def test_ap_takes_the_interpolated_precision():
    # Two objects; detections in score order: miss, hit, hit. Precision 0, 1/2, 2/3 at
    # recall 0, 1/2, 1 rises after the first recall step, so interpolation matters:
    #   interpolated 2/3, 2/3, 2/3 -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3
    #   (the raw precision would give 1/2 * 1/2 + 1/2 * 2/3 = 7/12).
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [20, 0, 10, 10])])
    results = [
        det(1, 1, [60, 0, 10, 10], 0.9),  # miss
        det(1, 1, [0, 0, 10, 10], 0.8),  # hit A
        det(1, 1, [20, 0, 10, 10], 0.7),  # hit B
    ]
    c = evaluate_detections(gt, results).per_class["0"]
    np.testing.assert_allclose(c.precision, [0, 1 / 2, 2 / 3])
    assert c.ap50 == pytest.approx(2 / 3)
    assert voc_all_point_reference([False, True, True], 2) == pytest.approx(2 / 3)


def test_perfect_detections_score_one():
    boxes = [(1, 1, [0, 0, 10, 10]), (1, 2, [30, 30, 5, 8]), (2, 1, [3, 4, 20, 20])]
    gt = ground_truth(boxes, images=(1, 2))
    results = [det(i, c, b, 0.5 + 0.1 * k) for k, (i, c, b) in enumerate(boxes)]
    for interpolation in ("all-point", "coco101"):
        result = evaluate_detections(gt, results, interpolation=interpolation)
        assert result.map50 == 1.0 and result.map == 1.0
        assert result.per_class["0"].ap_per_threshold == (1.0,) * 10


def test_no_detections_score_zero():
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 3, [20, 0, 10, 10])])
    result = evaluate_detections(gt, [])
    assert result.map50 == 0.0 and result.map == 0.0
    c = result.per_class["2"]
    assert c.ap50 == 0.0 and c.max_recall == 0.0 and c.n_detections == 0 and c.recall.size == 0
    assert result.n_detections == 0 and result.n_ground_truth == 2


def test_duplicates_are_false_positives():
    # Two objects; detections A .9, a copy of A .8, B .7: TP FP TP.
    #   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; interpolated 1, 2/3, 2/3
    #   AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [50, 0, 10, 10])])
    results = [
        det(1, 1, [0, 0, 10, 10], 0.9),
        det(1, 1, [0, 0, 10, 10], 0.8),
        det(1, 1, [50, 0, 10, 10], 0.7),
    ]
    c = evaluate_detections(gt, results).per_class["0"]
    np.testing.assert_allclose(c.precision, [1, 1 / 2, 2 / 3])
    assert c.ap50 == pytest.approx(5 / 6)


def test_each_detection_takes_the_best_free_box():
    # The first detection overlaps A (IoU 70/130 = 0.54) and B (IoU 90/110 = 0.82): it
    # takes B, leaving A to the second (IoU 1 with A, 60/140 with B). Both are true
    # positives; taking the first box above 0.5 would have made the second a miss.
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [4, 0, 10, 10])])
    boxes = xywh_to_xyxy([[3, 0, 10, 10], [0, 0, 10, 10]])
    gt_boxes = xywh_to_xyxy([[0, 0, 10, 10], [4, 0, 10, 10]])
    np.testing.assert_allclose(iou_matrix(boxes, gt_boxes), [[70 / 130, 90 / 110], [1, 60 / 140]])
    status = match_detections(boxes, gt_boxes, None, (0.5,))
    assert status.tolist() == [[1, 1]]
    results = [det(1, 1, [3, 0, 10, 10], 0.9), det(1, 1, [0, 0, 10, 10], 0.8)]
    assert evaluate_detections(gt, results).per_class["0"].ap50 == 1.0


def test_iou_exactly_at_the_threshold_counts():
    # Ground truth 2x1, detection its left 1x1 half: IoU = 1 / 2 exactly.
    gt = ground_truth([(1, 1, [0, 0, 2, 1])])
    c = evaluate_detections(gt, [det(1, 1, [0, 0, 1, 1], 0.9)]).per_class["0"]
    assert c.ap50 == 1.0
    assert c.ap_per_threshold == (1.0,) + (0.0,) * 9 and c.ap == pytest.approx(0.1)
    # Just below: a false positive.
    gt = ground_truth([(1, 1, [0, 0, 2.01, 1])])
    assert evaluate_detections(gt, [det(1, 1, [0, 0, 1, 1], 0.9)]).per_class["0"].ap50 == 0.0


def test_coco_average_over_iou_thresholds():
    # Class "0": IoU 70 / 100 = 0.7, a hit at 0.50 ... 0.70: 5 of 10 thresholds -> AP 0.5.
    # Class "1": IoU 80 / 100 = 0.8, a hit at 0.50 ... 0.80: 7 of 10 -> AP 0.7.
    # Class "2": IoU 45 / 100, a miss even at 0.5 -> AP 0.
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 2, [50, 0, 10, 10]), (1, 3, [100, 100, 10, 10])])
    results = [
        det(1, 1, [0, 0, 10, 7], 0.9),
        det(1, 2, [50, 0, 8, 10], 0.9),
        det(1, 3, [100, 100, 4.5, 10], 0.9),
    ]
    result = evaluate_detections(gt, results)
    assert result.iou_thresholds == COCO_IOU_THRESHOLDS
    assert result.per_class["0"].ap_per_threshold == (1.0,) * 5 + (0.0,) * 5
    assert result.per_class["1"].ap_per_threshold == (1.0,) * 7 + (0.0,) * 3
    assert [result.per_class[n].ap for n in "012"] == pytest.approx([0.5, 0.7, 0.0])
    assert result.map == pytest.approx(0.4) and result.map50 == pytest.approx(2 / 3)
    only = evaluate_detections(gt, results, iou_thresholds=[0.75])
    assert only.per_class["1"].ap_per_threshold == (1.0,) and only.map == pytest.approx(1 / 3)


def test_classes_are_mapped_by_category_name():
    categories = [{"id": 40, "name": "7"}, {"id": 9, "name": "3"}, {"id": 12, "name": "10"}]
    gt = ground_truth(
        [(1, 40, [0, 0, 10, 10]), (1, 9, [20, 0, 10, 10]), (1, 12, [40, 0, 10, 10])],
        categories=categories,
    )
    results = [det(1, 40, [0, 0, 10, 10], 0.9), det(1, 9, [40, 0, 10, 10], 0.8)]
    result = evaluate_detections(gt, results)
    assert list(result.per_class) == ["3", "7", "10"]  # natural order of the names
    assert result.per_class["7"].ap50 == 1.0 and result.per_class["7"].category_id == 40
    assert result.per_class["3"].ap50 == 0.0 and result.per_class["10"].ap50 == 0.0
    # Results with their own category ids are translated by name.
    own = {
        "categories": [{"id": 1, "name": "3"}, {"id": 2, "name": "7"}],
        "annotations": [det(1, 2, [0, 0, 10, 10], 0.9), det(1, 1, [40, 0, 10, 10], 0.8)],
    }
    again = evaluate_detections(gt, own)
    assert again.to_json() == result.to_json()
    own["categories"][0]["name"] = "three"
    with pytest.raises(ValueError, match="category 'three' \\(id 1\\) is not a category"):
        evaluate_detections(gt, own)


def test_crowd_regions_absorb_detections():
    # A regular object and a crowd region: detections inside the region are ignored,
    # the region need not be found, and a detection elsewhere is still a false positive.
    annotations = [(1, 1, [0, 0, 10, 10]), (1, 1, [50, 0, 40, 40], 1)]
    results = [
        det(1, 1, [0, 0, 10, 10], 0.5),
        det(1, 1, [55, 5, 10, 10], 0.9),  # inside the crowd, IoU with it only 100/1600
        det(1, 1, [60, 20, 8, 8], 0.8),  # inside the crowd
    ]
    c = evaluate_detections(ground_truth(annotations), results).per_class["0"]
    assert c.n_ground_truth == 1 and c.n_detections == 3
    np.testing.assert_allclose(c.precision, [1.0])
    assert c.ap50 == 1.0 and c.ap == 1.0
    # The same region as a regular box: two false positives first, and a box never found.
    # TP only third: precision 1/3 at recall 1/2 -> AP = 1/2 * 1/3 = 1/6.
    annotations[1] = (1, 1, [50, 0, 40, 40], 0)
    c = evaluate_detections(ground_truth(annotations), results).per_class["0"]
    assert c.n_ground_truth == 2 and c.ap50 == pytest.approx(1 / 6)
    # A far detection is not absorbed.
    annotations[1] = (1, 1, [50, 0, 40, 40], 1)
    far = results + [det(1, 1, [150, 150, 10, 10], 0.95)]
    c = evaluate_detections(ground_truth(annotations), far).per_class["0"]
    np.testing.assert_allclose(c.precision, [0.0, 0.5])


def test_a_regular_box_wins_over_a_crowd():
    gt_boxes = xywh_to_xyxy([[0, 0, 10, 10], [0, 0, 50, 50]])
    boxes = xywh_to_xyxy([[0, 0, 10, 10], [1, 1, 10, 10]])
    # The first takes the regular box; the second finds it taken and falls into the crowd.
    status = match_detections(boxes, gt_boxes, [False, True], (0.5, 0.95))
    assert status.tolist() == [[1, -1], [1, -1]]


def test_crowd_overlap_at_the_threshold_counts():
    # The detection is a unit square, half of it inside the region: an intersection of
    # area 1/2 (below one pixel), so an overlap of 1/2 exactly: ignored at 0.5, a false
    # positive at 0.55.
    detection, region = [[0, 0, 1, 1]], [[0.5, 0, 10, 10]]
    assert crowd_overlap(detection, region).tolist() == [[0.5]]
    status = match_detections(detection, region, [True], (0.5, 0.55))
    assert status.tolist() == [[-1], [0]]


def test_matching_threshold_defaults_to_one_half():
    # IoU 1/2 exactly (the left half of a 2x1 box) matches; 1 / 2.01 does not.
    half = match_detections([[0, 0, 1, 1]], [[0, 0, 2, 1]])
    below = match_detections([[0, 0, 1, 1]], [[0, 0, 2.01, 1]])
    assert half.tolist() == [[1]] and below.tolist() == [[0]]


def test_ap50_and_curves_are_read_at_one_half_whatever_the_thresholds():
    # One object and one crowd region; iou_thresholds=(0.75,) only. The best detection
    # has IoU 0.6 with the object: a hit at 0.5, a miss at 0.75. The other lies 60%
    # inside the region: ignored at 0.5, a false positive at 0.75.
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [50, 50, 20, 20], 1)])
    results = [det(1, 1, [0, 0, 10, 6], 0.9), det(1, 1, [64, 50, 10, 10], 0.8)]
    c = evaluate_detections(gt, results, iou_thresholds=(0.75,)).per_class["0"]
    assert c.ap50 == 1.0 and c.ap_per_threshold == (0.0,) and c.ap == 0.0
    assert c.max_recall == 1.0 and c.n_detections == 2
    assert c.precision.tolist() == [1.0] and c.recall.tolist() == [1.0]
    assert c.scores.tolist() == [0.9]
    # The other way round: a hit at 0.5 that lies inside a crowd region is ignored at
    # 0.75, leaving no curve there; the maximum recall is still read at 0.5.
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 1, [0, 0, 40, 40], 1)])
    c = evaluate_detections(gt, results[:1], iou_thresholds=(0.75,)).per_class["0"]
    assert c.ap50 == 1.0 and c.ap_per_threshold == (0.0,) and c.max_recall == 1.0


def test_detections_without_ground_truth_are_reported_not_averaged():
    gt = ground_truth([(1, 1, [0, 0, 10, 10])])
    result = evaluate_detections(gt, [det(1, 1, [0, 0, 10, 10], 0.9), det(1, 5, [0, 0, 9, 9], 1)])
    c = result.per_class["4"]
    assert c.n_detections == 1 and c.ap50 is None and c.ap is None and c.max_recall is None
    assert result.map50 == 1.0 and result.scored_classes == ["0"]
    assert "4" in result.summary() and result.to_json()["per_class"]["4"]["ap50"] is None


def test_no_ground_truth_at_all_gives_nan_means():
    result = evaluate_detections(ground_truth([]), [det(1, 1, [0, 0, 10, 10], 0.9)])
    assert math.isnan(result.map50) and math.isnan(result.map)
    assert result.to_json()["map50"] is None


# --------------------------------------------------------------------------------------
# Files, summary, JSON, plot, the command-line entry


@pytest.fixture
def files(tmp_path):
    gt, results = three_objects_five_detections()
    gt["annotations"].append({"id": 9, "image_id": 2, "category_id": 4, "bbox": [5, 5, 20, 30]})
    gt["images"].append({"id": 2, "file_name": "2.png", "width": 64, "height": 64})
    results.append(det(2, 4, [5, 6, 20, 30], 0.3))
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "annotations.json").write_text(json.dumps(gt, indent=1))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return folder, tmp_path / "results.json", gt, results


def test_round_trip_through_files(files):
    folder, results_path, gt, results = files
    want = evaluate_detections(gt, results).to_json(curves=True)
    for source in (folder, folder / "annotations.json", str(folder)):
        got = evaluate_detections(source, results_path).to_json(curves=True)
        assert got == want
    assert json.loads(json.dumps(want)) == want
    assert want["per_class"]["3"]["ap50"] == 1.0
    assert want["per_class"]["0"]["ap50"] == pytest.approx(34 / 45)
    assert want["map50"] == pytest.approx((1 + 34 / 45) / 2)
    assert want["n_images"] == 2 and want["n_ground_truth"] == 4 and want["n_detections"] == 6
    assert load_ground_truth(folder).image_ids == (1, 2)


def test_summary_and_main(files, tmp_path, capsys):
    folder, results_path, _, _ = files
    result = evaluate_detections(folder, results_path)
    text = result.summary()
    assert "AP50" in text and "0.756" in text and "0.50:0.05:0.95" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()}
    assert rows["0"][1:4] == ["3", "5", "0.756"] and rows["5"][3] == "-"

    assert main(["evaluate-detections", str(folder), str(results_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == result.to_json()
    plot = tmp_path / "pr.png"
    assert main(["evaluate-detections", str(folder), str(results_path), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and str(plot) in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_a_class_without_detections(tmp_path):
    gt = ground_truth([(1, 1, [0, 0, 10, 10]), (1, 2, [20, 0, 10, 10])])
    result = evaluate_detections(gt, [det(1, 1, [0, 0, 10, 10], 0.9)])
    assert plot_pr_curves(result, tmp_path / "a" / "pr.png").is_file()


def test_files_read_as_the_parsed_data_reads(tmp_path):
    """A file, however laid out, and with keys and nesting the format does not define,
    reads as the data ``json.loads`` gives."""
    gt, results = three_objects_five_detections()
    gt["info"] = {"x": [1, [2, {"a": None}]], "n": 3, "e": []}
    gt["annotations"][1]["note"] = [{"deep": [[], {}]}]
    want = evaluate_detections(gt, results).to_json(curves=True)
    for indent in (None, 2):
        (tmp_path / "gt.json").write_text(json.dumps(gt, indent=indent))
        (tmp_path / "results.json").write_text(json.dumps(results, indent=indent))
        got = evaluate_detections(tmp_path / "gt.json", tmp_path / "results.json")
        assert got.to_json(curves=True) == want
        truth = load_ground_truth(tmp_path / "gt.json")
        np.testing.assert_array_equal(truth.boxes, load_ground_truth(gt).boxes)
        dets = load_results(tmp_path / "results.json", truth)
        np.testing.assert_array_equal(dets.scores, [r["score"] for r in results])


# --------------------------------------------------------------------------------------
# Errors


def edit_gt(key, index, field, value):
    def edit(gt, results):
        target = gt[key][index]
        if value is DELETE:
            del target[field]
        else:
            target[field] = value

    return edit


def edit_result(index, field, value):
    def edit(gt, results):
        if value is DELETE:
            del results[index][field]
        else:
            results[index][field] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    "edit, message",
    [
        (edit_gt("annotations", 1, "bbox", DELETE), r"annotations\[1\] \(id 2\) has no 'bbox'"),
        (edit_gt("annotations", 0, "bbox", [1, 2, 3]), r"annotations\[0\].*four finite numbers"),
        (edit_gt("annotations", 0, "bbox", [1, 2, -3, 4]), r"annotations\[0\].*non-positive"),
        (edit_gt("annotations", 0, "bbox", [1, 2, 0, 4]), r"annotations\[0\].*non-positive width"),
        (
            edit_gt("annotations", 2, "bbox", [1, float("nan"), 3, 4]),
            r"annotations\[2\] \(id 3\): bbox \[1, nan, 3, 4\] is not four finite",
        ),
        (edit_gt("annotations", 0, "image_id", 7), r"annotations\[0\].*image_id 7 is not among"),
        (
            edit_gt("annotations", 0, "category_id", 70),
            r"annotations\[0\] \(id 1\): category_id 70 is not among",
        ),
        (
            edit_gt("annotations", 0, "category_id", "1"),
            r"annotations\[0\] \(id 1\): 'category_id' is '1', expected an int",
        ),
        (edit_gt("annotations", 0, "iscrowd", 2), r"annotations\[0\].*iscrowd is 2"),
        (edit_gt("images", 0, "id", DELETE), r"images\[0\] has no 'id'"),
        (edit_gt("categories", 1, "name", "0"), r"categories\[1\]: category name '0' appears"),
        (edit_gt("categories", 1, "id", 1), r"categories\[1\]: category id 1 appears twice"),
        (edit_result(2, "score", DELETE), r"results\[2\] has no 'score'"),
        (edit_result(1, "score", float("nan")), r"results\[1\]: 'score' is nan, expected a fin"),
        (edit_result(1, "score", True), r"results\[1\]: 'score' is True, expected a number"),
        (edit_result(0, "bbox", [0, 0, 5, -1]), r"results\[0\]: bbox .* negative width"),
        (edit_result(0, "bbox", [0, 0, 5, float("inf")]), r"results\[0\].*four finite"),
        (edit_result(3, "bbox", "0 0 5 5"), r"results\[3\]: 'bbox' is '0 0 5 5', expected a"),
        (edit_result(4, "image_id", 99), r"results\[4\]: image_id 99 is not among the ground"),
        (edit_result(4, "category_id", 42), r"results\[4\]: category_id 42 is not among the gr"),
    ],
)
def test_malformed_input_is_a_clear_error(tmp_path, edit, message):
    gt, results = three_objects_five_detections()
    edit(gt, results)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"\.json: " + message):
        evaluate_detections(tmp_path / "gt.json", tmp_path / "results.json")


def test_bad_json_files_name_the_file_and_entry(tmp_path):
    gt, results = three_objects_five_detections()
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    text = json.dumps(results)

    def fails(content, message, path=results_path):
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            evaluate_detections(gt_path, results_path)

    # Syntax errors are placed by line and column (the entry of a file that does not
    # parse is not known); a file that stops short says so.
    early = r"results\.json: the JSON ends early, at line 1 column {}; is the file truncated\?"
    cut = text.index('"score"', text.index("}, {", text.index("}, {") + 1))
    fails(text[:cut], early.format(len(text[:cut].rstrip()) + 1))
    fails(text[: cut + 4], early.format(cut + 5))
    fails(text[: text.index("}, {") + 1], early.format(text.index("}, {") + 2))
    trailing_comma = text.replace('"score": 0.8', '"score": 0.8,')
    column = trailing_comma.index('"score": 0.8,') + len('"score": 0.8,') + 1
    fails(trailing_comma, rf"results\.json: not valid JSON at line 1 column {column}: Expecting")
    column = text.index("}, {") + 3
    fails(
        text.replace("}, {", "} {", 1), rf"not valid JSON at line 1 column {column}: Expecting ','"
    )
    column = len(text) + 2
    fails(text + " []", rf"results\.json: not valid JSON at line 1 column {column}: Extra data")
    fails("", r"results\.json: the file is empty")
    fails('{"detections": []}', r"results\.json: expected a list under 'annotations'")
    fails("3", r"results\.json: expected a JSON list of detections, got int")
    results_path.write_text(text)
    gt_text = json.dumps(gt, indent=1)
    cut = gt_text.index('"category_id"', gt_text.index('"annotations"'))
    line = gt_text[:cut].rstrip().count("\n") + 1
    fails(gt_text[:cut], rf"gt\.json: the JSON ends early, at line {line} column", gt_path)
    fails('{"images": [], "categories": []}', r"gt\.json: expected a list under 'annot", gt_path)
    fails("[]", r"gt\.json: expected a JSON object, got list", gt_path)
    gt_path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=r"gt\.json: not UTF-8 text"):
        evaluate_detections(gt_path, results_path)
    with pytest.raises(ValueError, match=r"missing\.json: no such file"):
        evaluate_detections(tmp_path / "missing.json", results_path)
    with pytest.raises(ValueError, match=r"the folder holds no annotations\.json; expected the"):
        evaluate_detections(tmp_path, results_path)
    # A folder given for the results is named as one, not as a missing file.
    (tmp_path / "annotations.json").write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=r": is a folder; expected the results as a COCO JSON"):
        evaluate_detections(tmp_path, tmp_path)


def test_bad_settings():
    gt, results = three_objects_five_detections()
    with pytest.raises(ValueError, match=r"iou_thresholds must be numbers in \(0, 1\]"):
        evaluate_detections(gt, results, iou_thresholds=[0.0, 0.5])
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate_detections(gt, results, iou_thresholds=[])
    with pytest.raises(TypeError, match="iou_thresholds must be numbers"):
        evaluate_detections(gt, results, iou_thresholds=["high"])
    with pytest.raises(ValueError, match="interpolation must be one of"):
        evaluate_detections(gt, results, interpolation="11-point")


# --------------------------------------------------------------------------------------
# Average precision against references written here


def curve(hits, n_ground_truth):
    """Precision and recall after each detection of a hit list (score order)."""
    precision, recall, found = [], [], 0
    for k, hit in enumerate(hits, 1):
        found += bool(hit)
        precision.append(found / k)
        recall.append(found / n_ground_truth)
    return precision, recall


def voc_all_point_reference(hits, n_ground_truth) -> float:
    """PASCAL VOC's all-point AP, level by level: each recall level reached adds its
    gain in recall times the best precision at that recall or beyond."""
    precision, recall = curve(hits, n_ground_truth)
    ap, previous = 0.0, 0.0
    for level in sorted(set(recall)):
        if level > previous:
            best = max(p for p, r in zip(precision, recall, strict=True) if r >= level)
            ap += (level - previous) * best
            previous = level
    return ap


def coco101_reference(hits, n_ground_truth) -> float:
    """COCO's AP: the best precision at recall ``t`` or beyond, averaged over the 101
    recall points its tool uses (``np.linspace(0, 1, 101)``, rounding included); a
    point no detection reaches counts 0."""
    precision, recall = curve(hits, n_ground_truth)
    total = 0.0
    for t in np.linspace(0.0, 1.0, 101).tolist():
        reached = [p for p, r in zip(precision, recall, strict=True) if r >= t]
        total += max(reached) if reached else 0.0
    return total / 101


@given(
    hits=st.lists(st.booleans(), min_size=1, max_size=25),
    missed=st.integers(0, 4),
    ignored=st.lists(st.integers(0, 25), max_size=3),
)
def test_ap_matches_references_written_out_here(hits, missed, ignored):
    """AP of any hit list equals the VOC and COCO rules computed above, in float64
    (tolerance 1e-12: only the order of the additions differs); ignored detections
    (-1) slipped in anywhere change nothing."""
    n_gt = sum(hits) + missed
    if n_gt == 0:
        return
    status = [int(h) for h in hits]
    for position in sorted(ignored, reverse=True):
        status.insert(min(position, len(status)), -1)
    precision, recall = precision_recall(np.array(status, dtype=np.int8), n_gt)
    want_p, want_r = curve(hits, n_gt)
    np.testing.assert_allclose(precision, want_p, rtol=0, atol=1e-15)
    np.testing.assert_allclose(recall, want_r, rtol=0, atol=1e-15)
    assert average_precision(precision, recall) == pytest.approx(
        voc_all_point_reference(hits, n_gt), abs=1e-12
    )
    assert average_precision(precision, recall, "coco101") == pytest.approx(
        coco101_reference(hits, n_gt), abs=1e-12
    )


# --------------------------------------------------------------------------------------
# Properties


@st.composite
def scenes_with_detections(draw):
    """Ground truth on three images and three classes, and detections near and far."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    annotations = []
    for _ in range(draw(st.integers(0, 8))):
        x, y = rng.integers(0, 60, 2).tolist()
        w, h = rng.integers(2, 20, 2).tolist()
        crowd = int(rng.random() < 0.1)
        annotations.append((int(rng.integers(1, 4)), int(rng.integers(1, 4)), [x, y, w, h], crowd))
    results = []
    for _ in range(draw(st.integers(0, 12))):
        if annotations and rng.random() < 0.7:
            image_id, cid, (x, y, w, h), _ = annotations[rng.integers(len(annotations))]
            x, y = x + int(rng.integers(-3, 4)), y + int(rng.integers(-3, 4))
            cid = cid if rng.random() < 0.8 else int(rng.integers(1, 4))
        else:
            image_id, cid = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            x, y, w, h = *rng.integers(0, 60, 2).tolist(), *rng.integers(2, 20, 2).tolist()
        results.append(det(image_id, cid, [x, y, w, h], float(rng.random())))
    return ground_truth(annotations, images=(1, 2, 3)), results


@settings(max_examples=40)
@given(case=scenes_with_detections(), seed=st.integers(0, 2**32 - 1))
def test_ap_properties(case, seed):
    gt, results = case
    for interpolation in ("all-point", "coco101"):
        result = evaluate_detections(gt, results, interpolation=interpolation)
        values = [c.ap50 for c in result.per_class.values() if c.ap50 is not None]
        values += [c.ap for c in result.per_class.values() if c.ap is not None]
        assert all(0.0 <= v <= 1.0 for v in values)
        # Permuting detections (scores are distinct) changes nothing.
        perm = np.random.default_rng(seed).permutation(len(results))
        shuffled = evaluate_detections(gt, [results[k] for k in perm], interpolation=interpolation)
        assert shuffled.to_json(curves=True) == result.to_json(curves=True)
        # A false positive scored below everything never raises an AP.
        extra = results + [det(1, cid, [150, 150, 5, 5], -1.0) for cid in (1, 2, 3)]
        worse = evaluate_detections(gt, extra, interpolation=interpolation)
        for name, c in result.per_class.items():
            if c.ap50 is not None:
                assert worse.per_class[name].ap50 <= c.ap50
                assert worse.per_class[name].ap <= c.ap
