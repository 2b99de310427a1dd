"""The GPU check script's merge and NMS sections, in ``--tiny`` mode on the simulator.

The script runs in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` (set before Numba is
imported there, whatever this process has), every other section skipped, and its
JSON written to a temporary ``OUT``. The whole ``--tiny`` run takes minutes on the
simulator, so it is not run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
OTHER_SECTIONS = [
    "--skip-kernels",
    "--skip-offset",
    "--skip-sgd",
    "--skip-forward",
    "--skip-dense",
    "--skip-train",
]

pytestmark = pytest.mark.cuda


def load_script():
    """The script as a module (it imports ``numba.cuda``; no kernel runs here). Loading
    it puts ``benchmarks`` on ``sys.path``, where its checks are the package
    ``gpu_checks``."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_check(name):
    """The module ``gpu_checks.<name>`` of the script's checks."""
    load_script()
    return importlib.import_module(f"gpu_checks.{name}")


def table_rows(stdout, first_word):
    """The lines of the final tables that start with ``first_word``."""
    return [line.split() for line in stdout.splitlines() if line.split()[:1] == [first_word]]


def test_merge_and_nms_sections_tiny(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", OUT=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", *OTHER_SECTIONS],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "FAIL" not in out

    merge_rows = table_rows(out, "merge")
    nms_rows = table_rows(out, "nms")
    # One row per thread count (8, 16) and per block size (4, 8); "ok" is the last column.
    assert len(merge_rows) == 2 and len(nms_rows) == 2, out
    assert all(row[-1] == "yes" for row in merge_rows + nms_rows), out
    assert "merge 0 of 2 failed, NMS 0 of 2 failed" in out

    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["info"]["simulator"] is True
    assert set(results["section_seconds"]) == {"merge", "nms"}
    merges, nmss = results["merge"], results["nms"]
    assert [r["threads"] for r in merges] == [8, 16]
    assert [r["block"] for r in nmss] == [4, 8]
    for rec in merges:
        assert rec["ok"] and rec["n"] == 16 and rec["merges"] > 0
        assert rec["same_members"] and rec["same_classes"] and rec["same_counts"]
        assert rec["identical"]  # the simulator computes as the CPU does, to the bit
    for rec in nmss:
        assert rec["ok"] and rec["n"] == 20 and rec["same_keep"]
        assert rec["mask_wrong_bits"] == 0 and rec["untouched"] == 0
        assert 0 < rec["kept"] < 20 and rec["suppressions"] > 0
        assert rec["torchvision"].startswith("torchvision not available")


def test_nms_mask_reference_gives_numpy_nms():
    """The NumPy mask that the kernel is checked against, walked, is NumPy's NMS."""
    check = load_check("nms")
    from overfeat_scratch.ops import nms

    boxes, scores, classes = check.nms_boxes(300)
    order = nms.score_order(scores)
    mask = check.nms_mask_numpy(boxes[order], classes[order], check.NMS_IOU, chunk=64)
    assert mask.shape == (300, 5) and mask.dtype == np.uint64
    assert check.set_bits(mask) > 0
    assert not np.any(mask[:, 0] & np.uint64(1))  # box 0 comes first: never suppressed
    # The walk of cuda.nms, written out here so that no CUDA module is needed.
    removed, keep = np.zeros(mask.shape[1], np.uint64), []
    for i in range(300):
        if not (int(removed[i // 64]) >> (i % 64)) & 1:
            keep.append(i)
            removed |= mask[i]
    np.testing.assert_array_equal(order[keep], nms.nms(boxes, scores, classes, check.NMS_IOU))


def test_summary_fails_on_a_wrong_merge_or_nms():
    script = load_script()
    results = dict(kernels=[], forward=[], dense=[], train=[], merge=[], nms=[], seconds=1.0)
    results["info"] = dict(simulator=False)
    merge = dict(n=10, merges=3, threads=64, ours_ms=1.0, cpu_ms=2.0, ratio_vs_cpu=0.5)
    merge.update(outputs=7, outputs_cpu=7, rel_err=0.0, identical=True, ok=True)
    merge.update(same_members=True, same_classes=True, same_counts=True)
    nms_rec = dict(n=10, kept=4, block=32, mask_ms=0.1, ours_ms=1.0, cpu_ms=1.0)
    nms_rec.update(ratio_vs_cpu=1.0, mask_wrong_bits=0, untouched=0, same_keep=True, ok=True)
    results["merge"], results["nms"] = [merge], [nms_rec]
    table, failed = script.summary(results)
    assert not failed and "target, the GPU merge faster than merge_fast at 10 boxes: met" in table

    results["merge"] = [dict(merge, same_members=False, ok=False)]
    table, failed = script.summary(results)
    assert failed and "FAILED merge n10 t64" in table
    results["merge"] = [merge]
    results["nms"] = [dict(nms_rec, mask_wrong_bits=3, ok=False)]
    table, failed = script.summary(results)
    assert failed and "FAILED nms n10 b32" in table and "mask wrong bits 3" in table
    # A configuration that raised (e.g. a launch failure) is a failure, and the rest stays.
    results["nms"] = [nms_rec, dict(n=10, kept=4, block=2048, ok=False, error="ValueError: x")]
    table, failed = script.summary(results)
    assert failed and "FAILED nms n10 b2048: ValueError: x" in table
