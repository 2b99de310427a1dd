"""Localization and detection on scenes: the box regressor, the scale pyramid,
the detector with its background class, and the COCO-style evaluation."""
