"""The greedy merge (``--skip-merge``), against ``merge_fast`` on the CPU.

``merge_cuda`` on boxes like a dense localizer's (``localizer_boxes`` of
``benchmarks/bench_merge.py``: jittered clusters around six objects plus 20% stray
boxes, five classes; 1,000 and 10,000 boxes) for each of ``--merge-threads`` (64, 128,
256), against ``merge_fast`` on the same input: the same memberships, classes and
counts, boxes and confidences within 1e-9 relative (``identical``, bit for bit, is
reported as information: a GPU compiler may contract a multiply and an add into one FMA,
so a score can differ in its last bit). Timed by the wall clock (each call synchronises:
it reads the best pair back every round), warm: the median of 3 calls (at 1,000 boxes
after a first call that compiles), against ``merge_fast`` on this machine's CPU timed
the same way: ``ratio`` = GPU / CPU. Target: below 1 at 10,000 boxes.

With ``--tiny``: 16 boxes (two objects, two classes: seven merges).
"""

from __future__ import annotations

from functools import partial

import numpy as np
from bench_merge import localizer_boxes, same

from overfeat_scratch.cuda.merge import merge_cuda
from overfeat_scratch.ops.merge import merge_fast

from .common import (
    TOLERANCE,
    attempt,
    box_sizes,
    config_table,
    failure_lines,
    measure_host,
    relative_error,
    report,
    yes_no,
)

TINY_MERGE_SIZE = 16
# The merge's settings (bench_merge's).
MERGE_SETTINGS = dict(threshold=0.5, score="center_iou", average="pair")


def compare_merges(got, want):
    """The merge check: discrete fields equal, floats within 1e-9; a dict."""
    same_size = len(got) == len(want) and got.members.shape == want.members.shape
    rec = dict(outputs=len(got), outputs_cpu=len(want))
    for field in ("members", "classes", "counts"):
        rec[f"same_{field}"] = bool(
            same_size and np.array_equal(getattr(got, field), getattr(want, field))
        )
    if same_size:
        rec["moved_inputs"] = int((got.members != want.members).sum())
        rec["rel_err_boxes"] = relative_error(got.boxes, want.boxes)
        rec["rel_err_confidences"] = relative_error(got.confidences, want.confidences)
        rec["identical"] = same(got, want)
    else:
        rec.update(rel_err_boxes=float("inf"), rel_err_confidences=float("inf"), identical=False)
    rec["rel_err"] = max(rec["rel_err_boxes"], rec["rel_err_confidences"])
    discrete = rec["same_members"] and rec["same_classes"] and rec["same_counts"]
    rec["ok"] = bool(discrete and rec["rel_err"] <= TOLERANCE["merge"])
    return rec


def time_merge(rec, data, want, repeats, warm):
    """``merge_cuda`` with ``rec["threads"]``, timed and compared with ``want``, into ``rec``."""
    run = partial(merge_cuda, *data, **MERGE_SETTINGS, threads=rec["threads"])
    got, ms, times = measure_host(run, repeats, warm)
    rec.update(ours_ms=ms, ours_times_ms=times, ratio_vs_cpu=ms / rec["cpu_ms"])
    rec.update(compare_merges(got, want))


def check_merge(args, records, save):
    """``merge_cuda`` for each thread count against ``merge_fast``, per input size."""
    repeats = min(args.repeats, 3)
    clusters = dict(objects=2, classes=2) if args.tiny else {}  # --tiny: a few merges
    for index, n in enumerate(box_sizes(args, TINY_MERGE_SIZE)):
        data = localizer_boxes(n, 0, **clusters)
        warm = index > 0  # the smallest size compiled everything: no call wasted at 10,000
        run_cpu = partial(merge_fast, *data, **MERGE_SETTINGS)
        want, cpu_ms, cpu_times = measure_host(run_cpu, repeats, warm)
        for threads in args.merge_threads:
            rec = dict(n=n, merges=n - len(want), threads=threads)
            rec.update(cpu_ms=cpu_ms, cpu_times_ms=cpu_times)
            attempt(rec, partial(time_merge, rec, data, want, repeats, warm))
            report(f"merge n{n} t{threads}", rec, rec["ok"], hide="times_ms")
            records.append(rec)
            save()


def run(args, rng, torch, results, save):
    sizes = ", ".join(str(n) for n in box_sizes(args, TINY_MERGE_SIZE))
    print(f"greedy merge: {sizes} boxes, threads {args.merge_threads}", flush=True)
    check_merge(args, results["merge"], save)


def table_cells(rec):
    same_all = rec["same_members"] and rec["same_classes"] and rec["same_counts"]
    return (
        f"{rec['ours_ms']:10.2f}{rec['cpu_ms']:10.2f}{rec['ratio_vs_cpu']:7.2f}"
        f"{rec['rel_err']:9.1e}{yes_no(same_all):>6}"
        f"{'yes' if rec['identical'] else 'no':>10}  {yes_no(rec['ok'])}"
    )


def table(results):
    rows = results["merge"]
    if not rows:
        return []
    lines = config_table(
        "Greedy merge against merge_fast on this CPU (ms; ratio = GPU / CPU, below 1: the "
        "GPU is faster; err: boxes and confidences, relative; same: memberships, classes, "
        "counts; identical: bit for bit)",
        f"{'':<6}{'n':>6}{'merges':>8}{'threads':>8}{'gpu':>10}{'cpu':>10}{'ratio':>7}"
        f"{'err':>9}{'same':>6}{'identical':>10}  ok",
        rows,
        lambda rec: f"{'merge':<6}{rec['n']:>6}{rec['merges']:>8}{rec['threads']:>8}",
        table_cells,
    )
    largest = max(r["n"] for r in rows)
    timed = [r for r in rows if r["n"] == largest and "ours_ms" in r]
    if not timed:
        return lines
    best = min(timed, key=lambda r: r["ours_ms"])
    met = "met" if best["ratio_vs_cpu"] < 1 else "NOT met"
    lines.append(
        f"target, the GPU merge faster than merge_fast at {largest} boxes: {met} "
        f"(best {best['threads']} threads, ratio {best['ratio_vs_cpu']:.2f})"
        + (" (simulator: timings mean nothing)" if results["info"]["simulator"] else "")
    )
    return lines


def failures(results):
    return failure_lines(
        results["merge"],
        lambda rec: f"merge n{rec['n']} t{rec['threads']}",
        lambda rec: (
            f"outputs {rec['outputs']} (CPU {rec['outputs_cpu']}), same members "
            f"{rec['same_members']}, classes {rec['same_classes']}, counts {rec['same_counts']}, "
            f"err {rec['rel_err']}"
        ),
    )
