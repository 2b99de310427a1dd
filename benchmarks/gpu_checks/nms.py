"""Non-maximum suppression (``--skip-nms``), against NumPy and torchvision.

``cuda.nms.suppression_mask`` (device inputs, poisoned output) for each of
``--nms-blocks`` (32, 64, 128, 256), identical to a NumPy computation of the same mask,
and ``cuda.nms.nms`` (host boxes in, kept indices out: sort, upload, mask, host walk)
identical to NumPy's ``nms``, on the same kind of boxes as the merge's (1,000 and
10,000; corners rounded to 1/16 pixel, so that every product and sum of the IoU is exact
and an FMA cannot change a decision: any difference is a bug), IoU threshold 0.5. Timed
against NumPy's ``nms`` on the CPU and ``torchvision.ops.batched_nms`` on the GPU
(float64, boxes already on the device, indices copied to the host; recorded as not
available if torchvision does not import). Its agreement with ours is information only
(it sorts scores with an unstable sort).

With ``--tiny``: 20 boxes.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from bench_merge import localizer_boxes
from numba import cuda

from overfeat_scratch.cuda import nms as cuda_nms
from overfeat_scratch.ops import nms as nms_numpy
from overfeat_scratch.ops.boxes import iou_matrix

from .common import (
    POISON,
    attempt,
    box_sizes,
    cells,
    config_table,
    describe,
    failure_lines,
    measure,
    measure_host,
    poison,
    report,
    time_torch,
    yes_no,
)

TINY_NMS_SIZE = 20
NMS_IOU = 0.5
NMS_GRID = 16  # NMS corners are rounded to 1/16 pixel: the IoU's products are exact


def nms_boxes(n):
    """``(boxes, scores, classes)``: boxes like the merge's (another seed), corners
    rounded to 1/16 pixel."""
    boxes, classes, scores = localizer_boxes(n, 1)
    return np.round(boxes * NMS_GRID) / NMS_GRID, scores, classes


def nms_mask_numpy(boxes, classes, threshold, chunk=256):
    """The suppression mask of boxes in walk order (``cuda.nms.suppression_mask``'s
    definition), in NumPy, ``chunk`` rows at a time (the package's ``iou_matrix``)."""
    n = boxes.shape[0]
    words = cuda_nms.words_for(n)
    mask = np.zeros((n, words), dtype=np.uint64)
    column = np.arange(n)
    for lo in range(0, n, chunk):
        r = slice(lo, min(n, lo + chunk))
        later = column > column[r, None]
        hit = later & (classes[r, None] == classes) & (iou_matrix(boxes[r], boxes) > threshold)
        bits = np.zeros((hit.shape[0], words * cuda_nms.WORD), dtype=bool)
        bits[:, :n] = hit
        mask[r] = np.packbits(bits, axis=1, bitorder="little").view("<u8")
    return mask


def set_bits(words):
    """How many bits are set in an array of uint64 words."""
    return int(np.unpackbits(np.ascontiguousarray(words).view(np.uint8)).sum())


def load_torchvision(torch):
    """``(torchvision.ops, None)``, or ``(None, why not)``."""
    if torch is None:
        return None, "torchvision not available (PyTorch skipped or missing)"
    try:
        import torchvision.ops
    except Exception as error:  # ImportError, or a build that does not match PyTorch
        return None, f"torchvision not available ({describe(error)})"
    return torchvision.ops, None


def torchvision_nms(ops, boxes, scores, classes):
    """``batched_nms`` on device tensors; the kept indices copied to the host."""
    return ops.batched_nms(boxes, scores, classes, NMS_IOU).cpu().numpy()


def time_torchvision(ops, torch, data, want, repeats):
    """torchvision's time on ``(boxes, scores, classes)``, and whether it keeps ``want``."""
    bt, st, ct = (torch.as_tensor(a, device="cuda") for a in data)
    run_tv = partial(torchvision_nms, ops, bt, st, ct)
    return dict(
        torchvision_ms=time_torch(torch, run_tv, repeats),
        torchvision_agrees=bool(np.array_equal(run_tv(), want)),
    )


def time_nms(rec, data, sorted_d, classes_d, mask_want, want, args):
    """The mask kernel and the whole NMS with ``rec["block"]``, timed and compared with
    NumPy's ``mask_want`` and ``want``, into ``rec``."""
    block, repeats = rec["block"], min(args.repeats, 3)
    mask = poison(mask_want.shape, np.uint64)
    run = partial(cuda_nms.suppression_mask, sorted_d, classes_d, NMS_IOU, block, out=mask)
    _, mask_ms, mask_times = measure(run, args.repeats)
    got_mask = mask.copy_to_host()
    run = partial(cuda_nms.nms, *data, NMS_IOU, block=block)
    keep, ms, times = measure_host(run, repeats)
    rec.update(mask_ms=mask_ms, mask_times_ms=mask_times)
    rec.update(ours_ms=ms, ours_times_ms=times, ratio_vs_cpu=ms / rec["cpu_ms"])
    if "torchvision_ms" in rec:
        rec["ratio_vs_torchvision"] = ms / rec["torchvision_ms"]
    rec["mask_wrong_bits"] = set_bits(got_mask ^ mask_want)
    rec["untouched"] = int((got_mask == POISON[np.uint64]).sum())
    rec["same_keep"] = bool(np.array_equal(keep, want))
    rec["ok"] = rec["same_keep"] and rec["mask_wrong_bits"] == 0 and rec["untouched"] == 0


def check_nms(args, torch, records, save):
    """The mask kernel and the whole NMS for each block size, per input size."""
    repeats = min(args.repeats, 3)
    ops, why = load_torchvision(torch)
    for n in box_sizes(args, TINY_NMS_SIZE):
        data = boxes, scores, classes = nms_boxes(n)
        run_cpu = partial(nms_numpy.nms, *data, NMS_IOU)
        want, cpu_ms, cpu_times = measure_host(run_cpu, repeats)
        order = nms_numpy.score_order(scores)
        mask_want = nms_mask_numpy(boxes[order], classes[order], NMS_IOU)
        sorted_d = cuda.to_device(np.ascontiguousarray(boxes[order]))
        classes_d = cuda.to_device(np.ascontiguousarray(classes[order]))
        common = dict(n=n, kept=len(want), suppressions=set_bits(mask_want))
        common.update(cpu_ms=cpu_ms, cpu_times_ms=cpu_times)
        if ops is not None:
            try:  # e.g. a torchvision built without CUDA
                common.update(time_torchvision(ops, torch, data, want, args.repeats))
            except Exception as error:
                common["torchvision"] = f"torchvision failed ({describe(error)})"
        else:
            common["torchvision"] = why
        for block in args.nms_blocks:
            rec = dict(common, block=block)
            attempt(rec, partial(time_nms, rec, data, sorted_d, classes_d, mask_want, want, args))
            report(f"nms n{n} b{block}", rec, rec["ok"], hide="times_ms")
            records.append(rec)
            save()
        del sorted_d, classes_d


def run(args, rng, torch, results, save):
    sizes = ", ".join(str(n) for n in box_sizes(args, TINY_NMS_SIZE))
    print(f"nms: {sizes} boxes, blocks {args.nms_blocks}", flush=True)
    check_nms(args, torch, results["nms"], save)


def table_cells(rec):
    tv_same = rec.get("torchvision_agrees")
    return (
        f"{rec['mask_ms']:9.3f}{rec['ours_ms']:9.2f}{rec['cpu_ms']:9.2f}"
        f"{rec['ratio_vs_cpu']:7.2f}"
        f"{cells(rec, ('torchvision_ms', '9.2f'), ('ratio_vs_torchvision', '7.2f'))}"
        f"{'-' if tv_same is None else 'yes' if tv_same else 'no':>8}"
        f"{rec['mask_wrong_bits']:>9}{yes_no(rec['same_keep']):>5}  {yes_no(rec['ok'])}"
    )


def table(results):
    rows = results["nms"]
    if not rows:
        return []
    lines = config_table(
        "NMS (ms; mask: the kernel alone; nms: host boxes to kept indices; ratios = ours "
        "nms / NumPy nms on this CPU, and / torchvision batched_nms on the GPU)",
        f"{'':<6}{'n':>6}{'kept':>6}{'block':>6}{'mask':>9}{'nms':>9}{'numpy':>9}"
        f"{'ratio':>7}{'tvision':>9}{'ratio':>7}{'tv same':>8}{'bad bits':>9}{'same':>5}  ok",
        rows,
        lambda rec: f"{'nms':<6}{rec['n']:>6}{rec['kept']:>6}{rec['block']:>6}",
        table_cells,
    )
    # Why torchvision was not timed, once per reason.
    lines += dict.fromkeys(r["torchvision"] for r in rows if "torchvision" in r)
    return lines


def failures(results):
    return failure_lines(
        results["nms"],
        lambda rec: f"nms n{rec['n']} b{rec['block']}",
        lambda rec: (
            f"same kept {rec['same_keep']}, mask wrong bits {rec['mask_wrong_bits']}, "
            f"untouched words {rec['untouched']}"
        ),
    )
