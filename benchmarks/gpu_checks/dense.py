"""Dense multi-scale evaluation (``--skip-dense``), against NumPy and PyTorch.

``dense_evaluate(net, x, fine=True)`` on the CUDA backend (offset pooling, classifier on
all offsets, interleaving; host scores returned) for each network with random weights
(seed 0) at the paper's six scales, batch 1, against a PyTorch equivalent with the same
weights (cuDNN convolutions, then per offset a slice + ``max_pool2d`` + the classifier
as convolutions, then interleaving, scores copied to the host), per scale and summed
over the six. At the smallest and largest scale the scores are compared with the NumPy
backend's, **float32 against float32** (a float64 reference of the full-size networks
would cost minutes of CPU): relative error at most 1e-3.
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import dense_evaluate, fine_multiply_adds, last_pool_index
from overfeat_scratch.nn.geometry import Geometry
from overfeat_scratch.ops.offset_pool import fine_size

from .common import (
    TINY_SCALES,
    TOLERANCE,
    TORCH_CELLS,
    TORCH_COLUMNS,
    cells,
    failure_lines,
    measure,
    networks,
    relative_error,
    report,
    torch_timings,
    yes_no,
)
from .forward import torch_forward


def torch_dense(net, torch, device="cuda"):
    """``dense_evaluate(net, x, fine=True)`` in PyTorch, sharing ``net``'s weights.

    The layers before the last pool once; then for each offset ``(dy, dx)`` that
    has a fine output, ``max_pool2d`` of the shifted map and the classifier; each
    offset's map fills every ``s``-th row and column of the fine map from ``(dy, dx)``.
    Returns host scores, as ``dense_evaluate`` does.
    """
    index = last_pool_index(net)
    layer = net.layers[index]
    k, s = layer.kernel, layer.stride
    features = torch_forward(net.layers[:index], torch, device)
    classifier = torch_forward(net.layers[index + 1 :], torch, device)
    window = Geometry.of(net.layers[index + 1 :]).window

    def run(x):
        with torch.inference_mode():
            f = features(x)
            fine_h = fine_size(f.shape[2], k, s, window)
            fine_w = fine_size(f.shape[3], k, s, window)
            fine = None
            for dy in range(min(s, fine_h)):
                for dx in range(min(s, fine_w)):
                    pooled = torch.nn.functional.max_pool2d(f[:, :, dy:, dx:], k, s)
                    out = classifier(pooled)
                    if fine is None:
                        fine = out.new_empty(tuple(out.shape[:2]) + (fine_h, fine_w))
                    fine[:, :, dy::s, dx::s] = out
            return fine.cpu().numpy()

    return run


def dense_multiscale(args, rng, torch, records, save):
    """Per network and scale one record (appended to ``records``), then a total row."""
    scales = TINY_SCALES if args.tiny else paper.SCALES
    for model, net, _ in networks(args, seed=0):
        net.eval()
        reference = copy.deepcopy(net)  # stays on NumPy, float32
        net.to("cuda").eval()
        run_torch = torch_dense(net, torch) if torch is not None else None
        rows = []
        for size in scales:
            x = rng.standard_normal((1, net.in_channels) + tuple(size), dtype=np.float32)
            xd = cuda.to_device(x)
            dense, ours_ms, times = measure(partial(dense_evaluate, net, xd, True), args.repeats)
            features, classifier = fine_multiply_adds(net, *size)
            rec = dict(
                model=model,
                size=list(size),
                fine=list(dense.scores.shape[2:]),
                ours_ms=ours_ms,
                ours_times_ms=times,
                ours_gflops=2 * (features + classifier) / ours_ms / 1e6,
                ok=bool(np.isfinite(dense.scores).all()),
            )
            if size in (scales[0], scales[-1]):  # float32 NumPy: the check
                want = dense_evaluate(reference, x, fine=True).scores
                same_shape = want.shape == dense.scores.shape
                error = relative_error(dense.scores, want) if same_shape else float("inf")
                rec["rel_err_vs_numpy_fp32"] = error
                rec["ok"] = rec["ok"] and error <= TOLERANCE["dense"]
            if run_torch is not None:
                xt = torch.as_tensor(xd, device="cuda")
                rec.update(torch_timings(torch, partial(run_torch, xt), ours_ms, args.repeats))
                rec["rel_err_vs_torch_fp32"] = relative_error(dense.scores, run_torch(xt))
            report(f"dense {model} {size[0]}x{size[1]}", rec, rec["ok"])
            rows.append(rec)
            records.append(rec)
            save()
        total = dict(model=model, size="all", ours_ms=sum(r["ours_ms"] for r in rows))
        total["ok"] = all(r["ok"] for r in rows)
        for label in ("fp32", "tf32"):
            key = f"torch_{label}_ms"
            if all(key in r for r in rows):
                total[key] = sum(r[key] for r in rows)
                total[f"ratio_vs_torch_{label}"] = total["ours_ms"] / total[key]
        report(f"dense {model}, {len(rows)} scales", total)
        records.append(total)
        save()
        del reference, net
        if torch is not None:
            torch.cuda.empty_cache()


def run(args, rng, torch, results, save):
    print("dense multi-scale evaluation (fine stride), batch 1", flush=True)
    dense_multiscale(args, rng, torch, results["dense"], save)


# The errors' cells in the table, after PyTorch's times.
ERROR_CELLS = (("rel_err_vs_numpy_fp32", "10.1e"), ("rel_err_vs_torch_fp32", "10.1e"))


def table(results):
    if not results["dense"]:
        return []
    lines = [
        "",
        "Dense evaluation with offset pooling, batch 1 (ms; ratio = ours / PyTorch; "
        "numpy: float32 vs float32)",
        f"{'model':<9}{'input':>8}{'fine':>7}{'ours':>10}{TORCH_COLUMNS}"
        f"{'vs numpy':>10}{'vs torch':>10}  ok",
    ]
    for rec in results["dense"]:
        size = rec["size"] if rec["size"] == "all" else "{}x{}".format(*rec["size"])
        fine = "{}x{}".format(*rec["fine"]) if "fine" in rec else ""
        lines.append(
            f"{rec['model']:<9}{size:>8}{fine:>7}{rec['ours_ms']:10.2f}"
            f"{cells(rec, *TORCH_CELLS, *ERROR_CELLS)}"
            f"  {yes_no(rec['ok'])}"
        )
    return lines


def failures(results):
    """One line per scale whose scores failed (the totals are not counted)."""
    return failure_lines(
        [rec for rec in results["dense"] if rec["size"] != "all"],
        lambda rec: f"dense {rec['model']} {rec['size']}",
        lambda rec: (
            f"err vs NumPy {rec.get('rel_err_vs_numpy_fp32')} (non-finite scores if missing)"
        ),
    )
