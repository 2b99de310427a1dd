"""Offset pooling (``--skip-offset``), against NumPy and PyTorch.

``offset_max_pool2d`` on the map before each network's last pool at the largest of the
paper's six scales (461x569, batch 1: 1024 x 26x33 for fast's 2x2/2 pool, 1024 x 35x44
for accurate's 3x3/3), and ``interleave_offsets`` of the classifier's per-offset maps at
that scale, into poisoned outputs, identical to NumPy's float32 results; timed against
PyTorch's ``F.max_pool2d`` on each of the ``s*s`` shifted slices, and a permute + copy.

The records are kernel records; their table against PyTorch, :func:`table`, also
holds the SGD update's.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.cuda import offset_pool as cuda_offset_pool
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.dense import last_pool_index, offset_plan
from overfeat_scratch.ops import offset_pool

from .common import TINY_SCALES, against_torch, check_outputs, networks, poison, time_torch


def pre_pool_shape(net, size):
    """``(C, H, W)`` of the map that ``net``'s last pool reads for a ``size`` input."""
    shape = (net.in_channels,) + tuple(size)
    for layer in net.layers[: last_pool_index(net)]:
        shape = layer.output_shape(shape)
    return shape


def torch_offset_pool(torch, x, kernel, stride):
    """PyTorch's offset pooling: ``max_pool2d`` of each shifted slice that holds a window."""
    h, w = x.shape[2:]
    return [
        (dy, dx, torch.nn.functional.max_pool2d(x[:, :, dy:, dx:], kernel, stride))
        for dy in range(stride)
        for dx in range(stride)
        if h - dy >= kernel and w - dx >= kernel
    ]


def torch_interleave(y, fine_h, fine_w):
    """PyTorch's interleaving of per-offset maps ``(s, s, N, C, Ho, Wo)``: a permuted copy."""
    s, _, n, c, ho, wo = y.shape
    fine = y.permute(2, 3, 4, 0, 5, 1).reshape(n, c, ho * s, wo * s)
    return fine[:, :, :fine_h, :fine_w].contiguous()


def check_offset(model, net, size, args, rng, torch):
    """Offset pooling before ``net``'s last pool and interleaving, at a ``size`` input."""
    layer = net.layers[last_pool_index(net)]
    k, s = layer.kernel, layer.stride
    plan = offset_plan(net, *size)
    classes = net.output_shape((net.in_channels,) + tuple(size))[0]
    case = dict(op="offset", name=f"{model}/{layer.name}", model=model, batch=1)

    x = rng.standard_normal((1,) + pre_pool_shape(net, size), dtype=np.float32)
    y_ref = offset_pool.offset_max_pool2d(x, k, s)
    xd, y = cuda.to_device(x), poison(y_ref.shape)
    run = partial(cuda_offset_pool.offset_max_pool2d, xd, k, s, out=y)
    rec = check_outputs(case, "pool", "-", run, args.repeats, (y,), (y_ref,), True)
    rec.update(input_size=list(size), x_shape=list(x.shape), y_shape=list(y_ref.shape))
    if torch is not None:
        xt = torch.as_tensor(xd, device="cuda")
        run = partial(torch_offset_pool, torch, xt, k, s)
        against_torch(rec, time_torch(torch, run, args.repeats))
        rec["torch_agrees"] = all(
            np.array_equal(p.cpu().numpy(), y_ref[dy, dx, :, :, : p.shape[2], : p.shape[3]])
            for dy, dx, p in run()
        )
    records = [rec]

    (ho, wo), (fine_h, fine_w) = plan["per_offset"], plan["fine"]
    per_offset = rng.standard_normal((s, s, 1, classes, ho, wo), dtype=np.float32)
    fine_ref = offset_pool.interleave_offsets(per_offset, fine_h, fine_w)
    yd, fine = cuda.to_device(per_offset), poison(fine_ref.shape)
    run = partial(cuda_offset_pool.interleave_offsets, yd, fine_h, fine_w, out=fine)
    rec = check_outputs(case, "interleave", "-", run, args.repeats, (fine,), (fine_ref,), True)
    rec.update(input_size=list(size), y_shape=list(per_offset.shape), fine=[fine_h, fine_w])
    if torch is not None:
        yt = torch.as_tensor(yd, device="cuda")
        run = partial(torch_interleave, yt, fine_h, fine_w)
        against_torch(rec, time_torch(torch, run, args.repeats))
        rec["torch_agrees"] = bool(np.array_equal(run().cpu().numpy(), fine_ref))
    records.append(rec)
    return records


def run(args, rng, torch, results, save):
    """Each network (zero weights) at the largest scale; records into ``results["kernels"]``."""
    size = TINY_SCALES[-1] if args.tiny else paper.SCALES[-1]
    for model, net, _ in networks(args, seed=None):
        print(f"offset pooling: {model}, the last pool at a {size[0]}x{size[1]} input", flush=True)
        results["kernels"] += check_offset(model, net, size, args, rng, torch)
        save()


def table(results):
    """The kernel records timed against PyTorch: offset pooling and the SGD update."""
    rows = [r for r in results["kernels"] if "torch_ms" in r]
    if not rows:
        return []
    lines = [
        "",
        "Offset pooling and SGD against PyTorch (ms; ratio = ours / PyTorch)",
        f"{'name':<22}{'what':<11}{'ours':>10}{'torch':>10}{'ratio':>7}",
    ]
    for rec in rows:
        lines.append(
            f"{rec['name']:<22}{rec['what']:<11}{rec['ms']:10.3f}{rec['torch_ms']:10.3f}"
            f"{rec['ratio_vs_torch']:7.2f}"
        )
    return lines
