"""The settings of localization and detection, with their defaults.

Only dataclasses: the command line builds its options from these defaults without
importing the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datasets.digits import DIGITS


@dataclass
class MergeSettings:
    """The merge's parameters (see :mod:`overfeat_scratch.ops.merge`): ``top_k``
    classes per scale, the match ``score`` convention, the ``threshold`` t, the
    ``average`` rule, and ``min_confidence`` (windows whose class probability is below
    it do not vote). The merge runs on the localizer's backend.

    The defaults serve localization and detection alike: every digit class at every
    scale (a scene may hold any digit, and a single digit's runner-up reading keeps its
    own cluster instead of being dropped at the scales where it came second), t = 0.3,
    and boxes averaged by confidence (a box that joins a cluster late weighs what its
    windows' probabilities sum to, not half, so one oversized box cannot drag a merged
    box off its digit). The paper's rule for two boxes is ``average="pair"``, their
    plain mean.
    """

    top_k: int = DIGITS
    threshold: float = 0.3
    score: str = "center_iou"
    average: str = "confidence"
    min_confidence: float = 0.1


@dataclass
class DetectSettings:
    """How the boxes of every window become detections.

    ``final``: ``"merge"`` (the paper: accumulate) or ``"nms"`` (suppress: the
    candidate windows ranked by their own probability, overlapping ones of the same
    class removed at IoU above ``nms_iou``).

    ``after_merge_iou``: the merge stops at its threshold, and an object can be left
    with two merged boxes (scales that disagree on its size), or with a box of a
    second class (windows that read a 4 as a 9). Each such leftover is a false
    positive with a large summed score. With this set (the default), merged boxes
    that overlap a better-scored one by more than this IoU are dropped, whatever
    their class (``after_merge_classes=False``; digits in the scenes overlap by
    at most 0.1). ``None``: the merge's output as it is.

    ``min_score``: detections below it are dropped (after merging, scores are
    sums of window probabilities); at most ``max_detections`` per image.
    """

    final: str = "merge"
    nms_iou: float = 0.3
    after_merge_iou: float | None = 0.5
    after_merge_classes: bool = False
    min_score: float = 0.0
    max_detections: int = 100
