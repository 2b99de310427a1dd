"""GPU check: every CUDA kernel against NumPy at OverFeat's sizes, and timings.

Run from the repository root on a machine with an NVIDIA GPU (PyTorch optional)::

    python benchmarks/gpu_check.py                 # fast (231) and accurate (221), batch 1, 32
    python benchmarks/gpu_check.py --quick         # one tile config, batch 1, 3 repeats
    python benchmarks/gpu_check.py --models fast --batches 1 --tiles 16
    python benchmarks/gpu_check.py --skip-kernels --skip-forward   # the other sections only
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_check.py --tiny   # smoke test, no GPU

What it does, in one process (each numbered part can be skipped with ``--skip-...``):

1. **Correctness** of every kernel on the input shapes of every layer of both networks
   (conv forward, naive and tiled, and backward; max pool; ReLU; dropout; linear;
   softmax cross-entropy; L2). Outputs are written into buffers poisoned with NaN (or
   -1 / 7 for integer outputs), so an element a kernel forgets to write is caught.
   Float results are compared with the NumPy backend in float64 as a relative error
   ``max|got - ref| / max|ref|``; max-pool values and winners, ReLU and dropout must be
   identical to NumPy's float32 results.
2. **Kernel timings** for several tile sizes and register blocks (``t16r4``: 16x16
   threads, 4x4 outputs each), each the median of ``--repeats`` runs timed with CUDA
   events after a warm-up run (compilation excluded), into preallocated outputs. At
   the default tile the convolution backward pass is also timed with each of the two
   routes to ``dx`` (``bwd-gather``, ``bwd-col2im``), to check the choice between them.
3. **Offset pooling** (``--skip-offset``): ``offset_max_pool2d`` on the map before
   each network's last pool at the largest of the paper's six scales (461x569, batch
   1: 1024 x 26x33 for fast's 2x2/2 pool, 1024 x 35x44 for accurate's 3x3/3), and
   ``interleave_offsets`` of the classifier's per-offset maps at that scale, into
   poisoned outputs, identical to NumPy's float32 results; timed against PyTorch's
   ``F.max_pool2d`` on each of the ``s*s`` shifted slices, and a permute + copy.
4. **The SGD update** (``--skip-sgd``): ``cuda.optim.sgd_step`` on a parameter the size
   of the fast model's largest (``full6.w``, 113M floats) with the paper's settings,
   against NumPy's ``optim.sgd_step`` in float64 (parameter and velocity; the update
   writes every element, so one it skips is caught); timed against one step of
   ``torch.optim.SGD(momentum, weight_decay, foreach=True)`` (and ``fused=True``) on a
   tensor of the same size. PyTorch applies the learning rate after the momentum
   (``v = m*v + g'``, ``w -= lr*v``; ours ``v = m*v - lr*g'``, ``w += v``): the same
   memory traffic, so only the timing is compared.
5. **The whole forward pass** of each network (``Sequential.forward`` on the CUDA
   backend, default tiles, allocations included) against PyTorch + cuDNN with the same
   weights, in float32 (TF32 off) and with TF32 on, as ratios ours / PyTorch; the
   outputs are compared too.
6. **Dense multi-scale evaluation** (``--skip-dense``): ``dense_evaluate(net, x,
   fine=True)`` on the CUDA backend (offset pooling, classifier on all offsets,
   interleaving; host scores returned) for each network with random weights (seed 0)
   at the paper's six scales, batch 1, against a PyTorch equivalent with the same
   weights (cuDNN convolutions, then per offset a slice + ``max_pool2d`` + the
   classifier as convolutions, then interleaving, scores copied to the host), per
   scale and summed over the six. At the smallest and largest scale the scores are
   compared with the NumPy backend's, **float32 against float32** (a float64
   reference of the full-size networks would cost minutes of CPU): relative error
   at most 1e-3.
7. **One training step of** ``mini`` (``--skip-train``) at batch ``--train-batch``
   (128): forward, softmax cross-entropy, backward, momentum SGD (``MINI_CONFIG``'s
   settings, dropout on), against the same network in PyTorch on the GPU (same
   initial weights; its own dropout masks; ``loss.item()`` each step, as ours copies
   the loss to the host). Checked: after the first step the parameters, and the
   update itself, agree with the NumPy backend's step from the same weights, same
   batch and same dropout masks (relative error at most 1e-3, float32 on both).
8. **The greedy merge** (``--skip-merge``): ``merge_cuda`` on boxes like a dense
   localizer's (``localizer_boxes`` of ``benchmarks/bench_merge.py``: jittered
   clusters around six objects plus 20% stray boxes, five classes; 1,000 and 10,000
   boxes) for each of ``--merge-threads`` (64, 128, 256), against ``merge_fast`` on
   the same input: the same memberships, classes and counts, boxes and confidences
   within 1e-9 relative (``identical``, bit for bit, is reported as information: a
   GPU compiler may contract a multiply and an add into one FMA, so a score can
   differ in its last bit). Timed by the wall clock (each call synchronises: it
   reads the best pair back every round), warm: the median of 3 calls (at 1,000
   boxes after a first call that compiles), against ``merge_fast`` on this
   machine's CPU timed the same way: ``ratio`` = GPU / CPU. Target: below 1 at
   10,000 boxes.
9. **NMS** (``--skip-nms``): ``cuda.nms.suppression_mask`` (device inputs, poisoned
   output) for each of ``--nms-blocks`` (32, 64, 128, 256), identical to a NumPy
   computation of the same mask, and ``cuda.nms.nms`` (host boxes in, kept indices
   out: sort, upload, mask, host walk) identical to NumPy's ``nms``, on the same
   kind of boxes (1,000 and 10,000; corners rounded to 1/16 pixel, so that every
   product and sum of the IoU is exact and an FMA cannot change a decision: any
   difference is a bug), IoU threshold 0.5. Timed against NumPy's ``nms`` on the
   CPU and ``torchvision.ops.batched_nms`` on the GPU (float64, boxes already on the
   device, indices copied to the host; recorded as not available if torchvision
   does not import). Its agreement with ours is information only (it sorts scores
   with an unstable sort).

It prints a rough estimate of the real-GPU run time first, short tables last, and
writes everything to ``$OUT/gpu_check.json`` (``OUT`` defaults to ``./out``),
rewritten after each case so that an interrupted run keeps what it measured. The
exit status is 1 if any check failed.

``--tiny`` uses a four-layer network on 9x9 inputs, batch 2, tiles 4 and 8 with
register block 2, and one timed run without warm-up, so that the script runs in
under two minutes on the Numba CUDA simulator (timings there are meaningless;
PyTorch is skipped). The other parts shrink with it: offset pooling and dense
evaluation use the same tiny network (inputs 9x9 and 13x15), the SGD update a
525-element parameter, and the training step a five-layer stand-in for ``mini``
(12x12 grey inputs, batch 2; ``mini`` itself takes minutes per step there). The
merge runs on 16 boxes (two objects, two classes: seven merges) with 8 and 16
threads, NMS on 20 boxes with blocks of 4 and 8.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):  # the package, and bench_merge's box generator
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_merge import localizer_boxes, same  # noqa: E402
from numba import cuda  # noqa: E402

from overfeat_scratch import (  # noqa: E402
    activations,
    conv,
    linear,
    losses,
    offset_pool,
    optim,
    paper,
    pool,
)
from overfeat_scratch import nms as nms_numpy  # noqa: E402
from overfeat_scratch.cuda import DEFAULT_RB, DEFAULT_TILE, SIMULATOR, THREADS  # noqa: E402
from overfeat_scratch.cuda import conv as cuda_conv  # noqa: E402
from overfeat_scratch.cuda import elementwise as cuda_elementwise  # noqa: E402
from overfeat_scratch.cuda import linear as cuda_linear  # noqa: E402
from overfeat_scratch.cuda import losses as cuda_losses  # noqa: E402
from overfeat_scratch.cuda import nms as cuda_nms  # noqa: E402
from overfeat_scratch.cuda import offset_pool as cuda_offset_pool  # noqa: E402
from overfeat_scratch.cuda import optim as cuda_optim  # noqa: E402
from overfeat_scratch.cuda import pool as cuda_pool  # noqa: E402
from overfeat_scratch.cuda.merge import merge_cuda  # noqa: E402
from overfeat_scratch.detect.evaluation import box_iou  # noqa: E402
from overfeat_scratch.nn.dense import (  # noqa: E402
    dense_evaluate,
    fine_multiply_adds,
    last_pool_index,
    offset_plan,
)
from overfeat_scratch.nn.geometry import Geometry  # noqa: E402
from overfeat_scratch.nn.layers import Conv2d, Dropout, MaxPool2d, ReLU  # noqa: E402
from overfeat_scratch.nn.networks import build_from_specs, build_network  # noqa: E402
from overfeat_scratch.nn.train import MINI_CONFIG  # noqa: E402
from overfeat_scratch.ops.merge import merge_fast  # noqa: E402
from overfeat_scratch.ops.offset_pool import fine_size  # noqa: E402
from overfeat_scratch.ops.optim import SGD  # noqa: E402

SIZES = {"fast": 231, "accurate": 221}
TINY_SPECS = (
    paper.LayerSpec("conv", 3, 3, stride=2, pool=2, pool_stride=2),
    paper.LayerSpec("conv", 4, 3, pad=1),
    paper.LayerSpec("full", 6, 2, dropout=0.5),
    paper.LayerSpec("full", 5, 1, relu=False),
)
TINY_SIZE = 9
# Dense evaluation of the tiny network (window 9; its last pool is layer 1's 2x2/2).
TINY_SCALES = ((9, 9), (13, 15))
# A stand-in for ``mini`` on the simulator, shaped like it: conv + pool twice, then
# three fully connected layers, dropout on the first two; 12x12 grey inputs.
TINY_TRAIN_SPECS = (
    paper.LayerSpec("conv", 3, 3, pool=2, pool_stride=2),
    paper.LayerSpec("conv", 4, 2, pool=2, pool_stride=2),
    paper.LayerSpec("full", 6, 2, dropout=0.5),
    paper.LayerSpec("full", 5, 1, dropout=0.5),
    paper.LayerSpec("full", 3, 1, relu=False),
)
TINY_TRAIN_SIZE = 12
TINY_SGD_SHAPE = (5, 3, 5, 7)  # 525 elements: not a multiple of the block size
MINI_SIZE = 32
# The greedy merge and NMS: boxes per input, and the settings (bench_merge's).
BOX_SIZES = (1000, 10_000)
TINY_MERGE_SIZE = 16
TINY_NMS_SIZE = 20
MERGE_SETTINGS = dict(threshold=0.5, score="center_iou", average="pair")
NMS_IOU = 0.5
NMS_GRID = 16  # NMS corners are rounded to 1/16 pixel: the IoU's products are exact
# Relative error allowed for float32 kernels against the float64 reference. "dense"
# and "train" compare float32 CUDA with float32 NumPy (see the module text).
TOLERANCE = {
    "conv": 1e-4,
    "linear": 1e-4,
    "loss": 1e-5,
    "pool": 1e-6,
    "sgd": 1e-6,
    "dense": 1e-3,
    "train": 1e-3,
    "merge": 1e-9,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (simulator smoke test)")
    parser.add_argument("--models", nargs="+", default=["fast", "accurate"], choices=SIZES)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--tiles", nargs="+", type=int, default=None)
    parser.add_argument("--rbs", nargs="+", type=int, default=None, help="register blocks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="batch 1, tile 16 with register block 4, 3 repeats (unless given explicitly)",
    )
    parser.add_argument(
        "--train-batch", type=int, default=None, help="batch of the mini training step (128)"
    )
    parser.add_argument("--skip-kernels", action="store_true", help="the per-layer kernels")
    parser.add_argument("--skip-offset", action="store_true", help="offset pooling")
    parser.add_argument("--skip-sgd", action="store_true", help="the SGD update")
    parser.add_argument("--skip-forward", action="store_true", help="the whole forward pass")
    parser.add_argument("--skip-dense", action="store_true", help="dense multi-scale evaluation")
    parser.add_argument("--skip-train", action="store_true", help="the mini training step")
    parser.add_argument("--skip-merge", action="store_true", help="the greedy merge")
    parser.add_argument("--skip-nms", action="store_true", help="non-maximum suppression")
    parser.add_argument(
        "--merge-threads", nargs="+", type=int, default=None, help="threads per merge block"
    )
    parser.add_argument(
        "--nms-blocks", nargs="+", type=int, default=None, help="threads per NMS mask block"
    )
    args = parser.parse_args(argv)
    tiny, quick = args.tiny, args.quick and not args.tiny
    args.batches = args.batches or ([2] if tiny else [1] if quick else [1, 32])
    args.tiles = args.tiles or ([4, 8] if tiny else [16] if quick else [8, 16, 32])
    args.rbs = args.rbs or ([2] if tiny else [4] if quick else [1, 4])
    args.repeats = args.repeats or (1 if tiny else 3 if quick else 5)
    args.train_batch = args.train_batch or (2 if tiny else 128)
    args.merge_threads = args.merge_threads or (
        [8, 16] if tiny else [THREADS] if quick else [64, 128, 256]
    )
    args.nms_blocks = args.nms_blocks or (
        [4, 8] if tiny else [cuda_nms.DEFAULT_BLOCK] if quick else [32, 64, 128, 256]
    )
    return args


# --------------------------------------------------------------------------------------
# Timing and comparison


def sync():
    cuda.synchronize()


def measure(run, repeats):
    """Call ``run`` once (the call whose output is checked), then time it.

    Returns ``(first result, median ms, all ms)``. On a GPU the first call is also the
    warm-up (it compiles); then ``repeats`` calls are timed with CUDA events. On the
    simulator, whose events time nothing, the first call's wall time is the timing.
    """
    start = time.perf_counter()
    result = run()
    sync()
    if SIMULATOR:
        ms = (time.perf_counter() - start) * 1e3
        return result, ms, [ms]
    times = []
    for _ in range(repeats):
        begin, end = cuda.event(), cuda.event()
        begin.record()
        run()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return result, statistics.median(times), times


def relative_error(got, ref):
    """``max|got - ref| / max|ref|``; ``got`` may be a device array."""
    if hasattr(got, "copy_to_host"):
        got = got.copy_to_host()
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-30)
    return float(np.abs(got - ref).max(initial=0.0) / scale)


def mismatch(got, ref):
    """0.0 if the device array ``got`` equals ``ref`` exactly, else 1.0."""
    return 0.0 if np.array_equal(got.copy_to_host(), ref) else 1.0


# The value an output buffer is filled with before a kernel writes it. For the NMS
# mask (uint64) bit 0 is set: word 0 of a row can never have it (box 0 comes first).
POISON = {np.float32: np.nan, np.int32: -1, np.uint8: 7, np.uint64: 0xA5A5_A5A5_A5A5_A5A5}


def poison(shape, dtype=np.float32):
    return cuda.to_device(np.full(shape, POISON[dtype], dtype=dtype))


def untouched(*arrays):
    """How many poison values survived in device arrays (0 if every element was written)."""
    count = 0
    for array in arrays:
        host = array.copy_to_host()
        if host.dtype == np.float32:
            count += int(np.isnan(host).sum())
        else:
            count += int((host == POISON[host.dtype.type]).sum())
    return count


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


# --------------------------------------------------------------------------------------
# The cases: every layer's input shape


def layer_cases(net, in_shape, batch, model):
    """One dict per kernel case for ``net`` on ``batch`` inputs of ``in_shape``."""
    cases, shape = [], tuple(in_shape)
    for layer in net.layers:
        x_shape = (batch,) + shape
        name = f"{model}/{layer.name}"
        if isinstance(layer, Conv2d):  # FullyConnected included
            w_shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
            cases.append(
                dict(
                    op="conv",
                    name=name,
                    x=x_shape,
                    w=w_shape,
                    stride=layer.stride,
                    padding=layer.padding,
                )
            )
            if layer.kernel == 1:
                cases.append(dict(op="linear", name=name, x=(batch, shape[0]), w=w_shape[:2]))
        elif isinstance(layer, MaxPool2d):
            cases.append(
                dict(op="pool", name=name, x=x_shape, kernel=layer.kernel, stride=layer.stride)
            )
        elif isinstance(layer, ReLU):
            cases.append(dict(op="relu", name=name, x=x_shape))
        elif isinstance(layer, Dropout):
            cases.append(dict(op="dropout", name=name, x=x_shape, p=layer.p))
        shape = layer.output_shape(shape)
    classes = shape[0]
    cases.append(dict(op="softmax", name=f"{model}/loss", x=(batch, classes)))
    cases.append(dict(op="l2", name=f"{model}/boxes", x=(batch, 4, 2, 2)))
    for case in cases:
        case.update(model=model, batch=batch)
    return cases


def configs(args):
    """The (tile, register block) pairs to check and time; a block has at most 1024 threads."""
    return [(tile, rb) for tile in args.tiles for rb in args.rbs if tile * tile <= 1024]


# --------------------------------------------------------------------------------------
# Checks and timings, one function per operation. Each returns a list of records.


def record(case, what, config, error, left, exact, ms=None, times=None, flops=None):
    tolerance = 0.0 if exact else TOLERANCE.get(case["op"], 1e-4)
    ok = left == 0 and error <= tolerance
    rec = dict(
        op=case["op"],
        name=case["name"],
        model=case["model"],
        batch=case["batch"],
        what=what,
        config=config,
        rel_err=error,
        untouched=left,
        ok=bool(ok),
        ms=ms,
        times_ms=times,
    )
    if flops and ms:
        rec["gflops"] = flops / ms / 1e6
    status = "ok " if ok else "FAIL"
    timing = f"{ms:9.3f} ms" if ms is not None else " " * 12
    print(
        f"  {status} {case['name']:<22} b{case['batch']:<3} {what:<8} {config:<7} "
        f"{timing}  err {error:.1e}  untouched {left}",
        flush=True,
    )
    return rec


def check_conv(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    fan_in = int(np.prod(case["w"][1:]))
    w = (rng.standard_normal(case["w"], dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(case["w"][0], dtype=np.float32)
    s, p = case["stride"], case["padding"]
    y_ref = conv.conv2d_forward(*f64(x, w, b), s, p)
    dy = rng.standard_normal(y_ref.shape, dtype=np.float32)
    grads_ref = conv.conv2d_backward(*f64(dy, x, w), s, p)
    xd, wd, bd, dyd = (cuda.to_device(a) for a in (x, w, b, dy))
    madds = y_ref.size * fan_in
    records = []

    if case["batch"] == 1 or args.tiny:  # rung 1, the naive kernel, for the ladder
        y = poison(y_ref.shape)
        run = partial(cuda_conv.conv2d_forward_naive, xd, wd, bd, s, p, out=y)
        _, ms, times = measure(run, args.repeats)
        err, left = relative_error(y, y_ref), untouched(y)
        records.append(record(case, "forward", "naive", err, left, False, ms, times, 2 * madds))
    for tile, rb in configs(args):
        label = f"t{tile}r{rb}"
        try:
            y = poison(y_ref.shape)
            run = partial(cuda_conv.conv2d_forward, xd, wd, bd, s, p, tile=tile, rb=rb, out=y)
            _, ms, times = measure(run, args.repeats)
            err, left = relative_error(y, y_ref), untouched(y)
            records.append(record(case, "forward", label, err, left, False, ms, times, 2 * madds))

            outs = (poison(x.shape), poison(w.shape), poison(b.shape))
            run = partial(cuda_conv.conv2d_backward, dyd, xd, wd, s, p, tile=tile, rb=rb, out=outs)
            _, ms, times = measure(run, args.repeats)
            errs = [relative_error(o, r) for o, r in zip(outs, grads_ref, strict=True)]
            rec = record(
                case, "backward", label, max(errs), untouched(*outs), False, ms, times, 4 * madds
            )
            rec["rel_err_dx_dw_db"] = errs
            g = cuda_conv.geometry(x.shape, w.shape, s, p)
            rb_dx = cuda_conv.pick_rb(rb, tile, x.shape[1], x.size // x.shape[1])
            rec["dx_route"] = cuda_conv.choose_dx_route(g, tile, rb_dx)
            records.append(rec)
            # Both routes to dx at the default tile, to check the choice (--tiny: only
            # for 1x1 kernels, the cheap ones on the simulator).
            compare = (tile, rb) == (DEFAULT_TILE, DEFAULT_RB)
            if compare and (not args.tiny or case["w"][2] == 1):
                for route in ("gather", "col2im"):
                    outs = (poison(x.shape), poison(w.shape), poison(b.shape))
                    run = partial(
                        cuda_conv.conv2d_backward,
                        dyd,
                        xd,
                        wd,
                        s,
                        p,
                        tile=tile,
                        rb=rb,
                        dx_route=route,
                        out=outs,
                    )
                    _, ms, times = measure(run, min(args.repeats, 2))
                    err = relative_error(outs[0], grads_ref[0])
                    records.append(
                        record(
                            case,
                            f"bwd-{route}",
                            label,
                            err,
                            untouched(*outs),
                            False,
                            ms,
                            times,
                            4 * madds,
                        )
                    )
        except Exception as error:  # e.g. too many registers for a 32x32 block
            print(f"  skip {case['name']} {label}: {type(error).__name__}: {error}", flush=True)
            records.append(
                dict(
                    op="conv",
                    name=case["name"],
                    model=case["model"],
                    batch=case["batch"],
                    config=label,
                    ok=None,
                    error=f"{type(error).__name__}: {error}",
                )
            )
    return records


def check_linear(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    w = rng.standard_normal(case["w"], dtype=np.float32) / np.float32(np.sqrt(case["w"][1]))
    b = rng.standard_normal(case["w"][0], dtype=np.float32)
    y_ref = linear.linear_forward(*f64(x, w, b))
    dy = rng.standard_normal(y_ref.shape, dtype=np.float32)
    grads_ref = linear.linear_backward(*f64(dy, x, w))
    xd, wd, bd, dyd = (cuda.to_device(a) for a in (x, w, b, dy))
    madds = y_ref.size * case["w"][1]
    records = []
    for tile, rb in configs(args):
        label = f"t{tile}r{rb}"
        y = poison(y_ref.shape)
        run = partial(cuda_linear.linear_forward, xd, wd, bd, tile=tile, rb=rb, out=y)
        _, ms, times = measure(run, args.repeats)
        err, left = relative_error(y, y_ref), untouched(y)
        records.append(record(case, "forward", label, err, left, False, ms, times, 2 * madds))
        run = partial(cuda_linear.linear_backward, dyd, xd, wd, tile=tile, rb=rb)
        grads, ms, times = measure(run, args.repeats)
        errs = [relative_error(g, r) for g, r in zip(grads, grads_ref, strict=True)]
        records.append(record(case, "backward", label, max(errs), 0, False, ms, times, 4 * madds))
    return records


def check_pool(case, args, rng):
    # Rounded values, so that windows hold ties and the first maximum must win.
    x = np.round(rng.standard_normal(case["x"], dtype=np.float32) * 2)
    k, s = case["kernel"], case["stride"]
    y_ref, arg_ref = pool.max_pool2d_forward(x, k, s)
    dy = rng.standard_normal(y_ref.shape, dtype=np.float32)
    dx_ref = pool.max_pool2d_backward(dy, arg_ref, x.shape, k, s)
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)
    y, arg, dx = poison(y_ref.shape), poison(y_ref.shape, np.int32), poison(x.shape)
    run = partial(cuda_pool.max_pool2d_forward, xd, k, s, out=(y, arg))
    _, ms, times = measure(run, args.repeats)
    wrong = max(mismatch(y, y_ref), mismatch(arg, arg_ref))
    records = [record(case, "forward", "-", wrong, untouched(y, arg), True, ms, times)]
    run = partial(cuda_pool.max_pool2d_backward, dyd, arg, x.shape, k, s, out=dx)
    _, ms, times = measure(run, args.repeats)
    # Overlapping windows add gradients: equal up to the order of the additions.
    err = relative_error(dx, dx_ref)
    records.append(record(case, "backward", "-", err, untouched(dx), False, ms, times))
    return records


def check_relu(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    dy = rng.standard_normal(case["x"], dtype=np.float32)
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)
    y, dx = poison(x.shape), poison(x.shape)
    y_ref = activations.relu_forward(x)
    dx_ref = activations.relu_backward(dy, y_ref)
    _, ms, times = measure(partial(cuda_elementwise.relu_forward, xd, out=y), args.repeats)
    records = [record(case, "forward", "-", mismatch(y, y_ref), untouched(y), True, ms, times)]
    run = partial(cuda_elementwise.relu_backward, dyd, y, out=dx)
    _, ms, times = measure(run, args.repeats)
    records.append(
        record(case, "backward", "-", mismatch(dx, dx_ref), untouched(dx), True, ms, times)
    )
    return records


def check_dropout(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    dy = rng.standard_normal(case["x"], dtype=np.float32)
    p, seed = case["p"], 1234
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)
    y, keep, dx = poison(x.shape), poison(x.shape, np.uint8), poison(x.shape)
    y_ref, keep_ref = activations.dropout_forward(x, p, seed)
    dx_ref = activations.dropout_backward(dy, keep_ref, p)
    run = partial(cuda_elementwise.dropout_forward, xd, p, seed, out=(y, keep))
    _, ms, times = measure(run, args.repeats)
    wrong = max(mismatch(y, y_ref), mismatch(keep, keep_ref))
    records = [record(case, "forward", "-", wrong, untouched(y, keep), True, ms, times)]
    run = partial(cuda_elementwise.dropout_backward, dyd, keep, p, out=dx)
    _, ms, times = measure(run, args.repeats)
    records.append(
        record(case, "backward", "-", mismatch(dx, dx_ref), untouched(dx), True, ms, times)
    )
    return records


def check_loss(case, args, rng):
    shape = case["x"]
    grad = poison(shape)
    if case["op"] == "softmax":
        z = (3 * rng.standard_normal(shape)).astype(np.float32)
        labels = rng.integers(0, shape[1], (shape[0],) + shape[2:])
        loss_ref, grad_ref = losses.softmax_cross_entropy(z.astype(np.float64), labels)
        zd, labels_d = cuda.to_device(z), cuda.to_device(labels.astype(np.int32))
        run = partial(cuda_losses.softmax_cross_entropy, zd, labels_d, out=grad)
    else:
        pred = rng.standard_normal(shape, dtype=np.float32)
        target = rng.standard_normal(shape, dtype=np.float32)
        weight = rng.random((shape[0],) + shape[2:], dtype=np.float32)
        loss_ref, grad_ref = losses.l2_loss(*f64(pred, target, weight))
        pd, td, wd = (cuda.to_device(a) for a in (pred, target, weight))
        run = partial(cuda_losses.l2_loss, pd, td, wd, out=grad)
    (loss, _), ms, times = measure(run, args.repeats)
    err = max(abs(loss - loss_ref) / max(abs(loss_ref), 1e-30), relative_error(grad, grad_ref))
    case = dict(case, op="loss", kind=case["op"])
    return [record(case, "fwd+grad", "-", err, untouched(grad), False, ms, times)]


CHECKS = {
    "conv": check_conv,
    "linear": check_linear,
    "pool": check_pool,
    "relu": check_relu,
    "dropout": check_dropout,
    "softmax": check_loss,
    "l2": check_loss,
}


# --------------------------------------------------------------------------------------
# The whole forward pass against PyTorch


def load_torch():
    if SIMULATOR:
        return None
    try:
        import torch
    except ImportError:
        print("PyTorch not installed: the comparison with cuDNN is skipped", flush=True)
        return None
    if not torch.cuda.is_available():
        print("PyTorch has no CUDA: the comparison with cuDNN is skipped", flush=True)
        return None
    return torch


def torch_steps(layers, torch, device="cuda"):
    """Our layers as PyTorch functions, sharing our weights (no copy on the GPU: the
    CUDA array interface); dropout is left out (the identity in evaluation)."""
    functional = torch.nn.functional
    steps = []
    for layer in layers:
        if isinstance(layer, Conv2d):
            w = torch.as_tensor(layer.params["w"], device=device)
            b = torch.as_tensor(layer.params["b"], device=device)
            steps.append(
                lambda x, w=w, b=b, s=layer.stride, p=layer.padding: functional.conv2d(
                    x, w, b, s, p
                )
            )
        elif isinstance(layer, MaxPool2d):
            steps.append(lambda x, k=layer.kernel, s=layer.stride: functional.max_pool2d(x, k, s))
        elif isinstance(layer, ReLU):
            steps.append(functional.relu)
        # Dropout: the identity in evaluation
    return steps


def apply_steps(steps, x):
    for step in steps:
        x = step(x)
    return x


def torch_forward(net, torch):
    """The same network in PyTorch, sharing our weights."""
    steps = torch_steps(net.layers, torch)

    def forward(x):
        with torch.inference_mode():
            return apply_steps(steps, x)

    return forward


def time_torch(torch, fn, repeats):
    for _ in range(3):  # warm-up, and cuDNN's algorithm search
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return statistics.median(times)


def whole_forward(args, rng, torch):
    records = []
    for model in args.models if not args.tiny else ["tiny"]:
        if args.tiny:
            net, size = build_from_specs(TINY_SPECS, 3, "tiny", seed=0), TINY_SIZE
        else:
            net, size = build_network(model, seed=0), SIZES[model]
        madds = net.multiply_adds((3, size, size))
        net.to("cuda").eval()
        for batch in args.batches:
            x = cuda.to_device(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
            y, ours_ms, times = measure(partial(net.forward, x), args.repeats)
            y = y.copy_to_host()
            rec = dict(
                model=model,
                batch=batch,
                size=size,
                ours_ms=ours_ms,
                ours_times_ms=times,
                ours_gflops=2 * madds * batch / ours_ms / 1e6,
            )
            if torch is not None:
                forward = torch_forward(net, torch)
                xt = torch.as_tensor(x, device="cuda")
                torch.backends.cudnn.benchmark = True
                for label, tf32 in [("fp32", False), ("tf32", True)]:
                    torch.backends.cudnn.allow_tf32 = tf32
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    ms = time_torch(torch, partial(forward, xt), args.repeats)
                    rec[f"torch_{label}_ms"] = ms
                    rec[f"ratio_vs_torch_{label}"] = ours_ms / ms
                    if not tf32:
                        rec["rel_err_vs_torch_fp32"] = relative_error(y, forward(xt).cpu().numpy())
            print(f"  forward {model} b{batch}: {json.dumps(rec, default=float)}", flush=True)
            records.append(rec)
        net.to("numpy")  # free the device memory before the next model
    return records


def set_tf32(torch, on):
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def torch_timings(torch, fn, ours_ms, repeats):
    """``torch_fp32_ms`` (TF32 off), ``torch_tf32_ms`` and the ratios ours / PyTorch.

    Leaves TF32 off.
    """
    rec = {}
    torch.backends.cudnn.benchmark = True
    for label, tf32 in [("fp32", False), ("tf32", True)]:
        set_tf32(torch, tf32)
        ms = time_torch(torch, fn, repeats)
        rec[f"torch_{label}_ms"] = ms
        rec[f"ratio_vs_torch_{label}"] = ours_ms / ms
    set_tf32(torch, False)
    return rec


# --------------------------------------------------------------------------------------
# Offset pooling and the SGD update (kernel records, with a PyTorch timing)


def weightless_nets(args):
    """``(model, network with zero weights)`` for each model (``tiny`` with ``--tiny``)."""
    if args.tiny:
        return [("tiny", build_from_specs(TINY_SPECS, 3, "tiny", seed=None))]
    return [(model, build_network(model, seed=None)) for model in args.models]


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
    _, ms, times = measure(run, args.repeats)
    rec = record(case, "pool", "-", mismatch(y, y_ref), untouched(y), True, ms, times)
    rec.update(input_size=list(size), x_shape=list(x.shape), y_shape=list(y_ref.shape))
    if torch is not None:
        xt = torch.as_tensor(xd, device="cuda")
        rec["torch_ms"] = time_torch(
            torch, partial(torch_offset_pool, torch, xt, k, s), args.repeats
        )
        rec["ratio_vs_torch"] = ms / rec["torch_ms"]
        rec["torch_agrees"] = all(
            np.array_equal(p.cpu().numpy(), y_ref[dy, dx, :, :, : p.shape[2], : p.shape[3]])
            for dy, dx, p in torch_offset_pool(torch, xt, k, s)
        )
    records = [rec]

    (ho, wo), (fine_h, fine_w) = plan["per_offset"], plan["fine"]
    per_offset = rng.standard_normal((s, s, 1, classes, ho, wo), dtype=np.float32)
    fine_ref = offset_pool.interleave_offsets(per_offset, fine_h, fine_w)
    yd, fine = cuda.to_device(per_offset), poison(fine_ref.shape)
    run = partial(cuda_offset_pool.interleave_offsets, yd, fine_h, fine_w, out=fine)
    _, ms, times = measure(run, args.repeats)
    rec = record(
        case, "interleave", "-", mismatch(fine, fine_ref), untouched(fine), True, ms, times
    )
    rec.update(input_size=list(size), y_shape=list(per_offset.shape), fine=[fine_h, fine_w])
    if torch is not None:
        yt = torch.as_tensor(yd, device="cuda")
        run = partial(torch_interleave, yt, fine_h, fine_w)
        rec["torch_ms"] = time_torch(torch, run, args.repeats)
        rec["ratio_vs_torch"] = ms / rec["torch_ms"]
        rec["torch_agrees"] = bool(np.array_equal(run().cpu().numpy(), fine_ref))
    records.append(rec)
    return records


def sgd_shape(args):
    """``(shape, name)`` of the fast model's largest parameter (``full6.w``), or a tiny one."""
    if args.tiny:
        return TINY_SGD_SHAPE, "tiny/param"
    net = build_network("fast", seed=None)  # zero weights: no time spent drawing them
    name, layer, key = max(net.named_parameters(), key=lambda item: item[1].params[item[2]].size)
    return tuple(layer.params[key].shape), f"fast/{name}"


def check_sgd(args, rng, torch):
    """One update of a large parameter against NumPy in float64, then timings."""
    shape, name = sgd_shape(args)
    lr, momentum, decay = (paper.TRAINING[k] for k in ("learning_rate", "momentum", "weight_decay"))
    case = dict(op="sgd", name=name, model=name.split("/")[0], batch=1)
    # A later step: the velocity is not zero. Scales as in training.
    w = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    g = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    v = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.001)
    w_ref, v_ref = f64(w, v)
    optim.sgd_step(w_ref, g.astype(np.float64), v_ref, lr, momentum, decay)
    wd, gd, vd = (cuda.to_device(a) for a in (w, g, v))
    del w, g, v
    run = partial(cuda_optim.sgd_step, wd, gd, vd, lr, momentum, decay)
    run()  # the checked update (in place: the timed runs below change the values)
    sync()
    error = max(relative_error(wd, w_ref), relative_error(vd, v_ref))
    del w_ref, v_ref
    _, ms, times = measure(run, args.repeats)
    rec = record(case, "step", "-", error, 0, False, ms, times)
    size = int(np.prod(shape))
    # Five accesses of 4 bytes per element: read w, g, v; write v, w.
    rec.update(shape=list(shape), elements=size, gb_per_s=20 * size / ms / 1e6)
    if torch is not None:
        p = torch.empty(shape, device="cuda").normal_(0.0, 0.01).requires_grad_()
        p.grad = torch.empty_like(p).normal_(0.0, 0.01)
        for label in ("foreach", "fused"):
            try:
                opt = torch.optim.SGD(
                    [p], lr=lr, momentum=momentum, weight_decay=decay, **{label: True}
                )
                rec[f"torch_{label}_ms"] = time_torch(torch, opt.step, args.repeats)
            except (RuntimeError, TypeError, ValueError) as error:  # fused: newer PyTorch
                rec[f"torch_{label}_error"] = f"{type(error).__name__}: {error}"
        if "torch_foreach_ms" in rec:
            rec["torch_ms"] = rec["torch_foreach_ms"]
            rec["ratio_vs_torch"] = ms / rec["torch_ms"]
        del p, opt
        torch.cuda.empty_cache()
    return [rec]


# --------------------------------------------------------------------------------------
# Dense multi-scale evaluation against PyTorch


def dense_nets(args):
    """``(model, network with random weights, scales)``, one network at a time."""
    if args.tiny:
        yield "tiny", build_from_specs(TINY_SPECS, 3, "tiny", seed=0), TINY_SCALES
        return
    for model in args.models:
        yield model, build_network(model, seed=0), paper.SCALES


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
    features = torch_steps(net.layers[:index], torch, device)
    classifier = torch_steps(net.layers[index + 1 :], torch, device)
    window = Geometry.of(net.layers[index + 1 :]).window

    def run(x):
        with torch.inference_mode():
            f = apply_steps(features, x)
            fine_h = fine_size(f.shape[2], k, s, window)
            fine_w = fine_size(f.shape[3], k, s, window)
            fine = None
            for dy in range(min(s, fine_h)):
                for dx in range(min(s, fine_w)):
                    pooled = torch.nn.functional.max_pool2d(f[:, :, dy:, dx:], k, s)
                    out = apply_steps(classifier, pooled)
                    if fine is None:
                        fine = out.new_empty(tuple(out.shape[:2]) + (fine_h, fine_w))
                    fine[:, :, dy::s, dx::s] = out
            return fine.cpu().numpy()

    return run


def dense_multiscale(args, rng, torch, records, save):
    """Per network and scale one record (appended to ``records``), then a total row."""
    for model, net, scales in dense_nets(args):
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
            print(
                f"  {'ok ' if rec['ok'] else 'FAIL'} dense {model} {size[0]}x{size[1]}: "
                f"{json.dumps(rec, default=float)}",
                flush=True,
            )
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
        print(
            f"  dense {model}, {len(rows)} scales: {json.dumps(total, default=float)}", flush=True
        )
        records.append(total)
        save()
        del reference, net
        if torch is not None:
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# One training step of mini against PyTorch


def train_step(net, optimizer, x, labels):
    """Forward, softmax cross-entropy, backward, SGD update; returns the loss."""
    scores = net.forward(x)
    loss, grad = net.backend.softmax_cross_entropy(scores, labels)
    net.backward(grad, input_grad=False)
    optimizer.step()
    return loss


def torch_train_step(net, torch, lr, momentum, weight_decay, device="cuda"):
    """The same network as ``torch.nn`` modules with copies of ``net``'s current
    weights and momentum SGD; returns ``step(x, labels) -> loss``."""
    nn = torch.nn
    modules = []
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            module = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding
            )
            with torch.no_grad():
                for key, param in (("w", module.weight), ("b", module.bias)):
                    param.copy_(torch.as_tensor(net.backend.to_numpy(layer.params[key])))
            modules.append(module)
        elif isinstance(layer, MaxPool2d):
            modules.append(nn.MaxPool2d(layer.kernel, layer.stride))
        elif isinstance(layer, ReLU):
            modules.append(nn.ReLU(inplace=True))
        elif isinstance(layer, Dropout):
            modules.append(nn.Dropout(layer.p))
    model = nn.Sequential(*modules).to(device).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True
    )

    def step(x, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).flatten(1), labels)
        loss.backward()
        optimizer.step()
        return loss.item()  # as ours: the loss reaches the host every step

    return step


def training_step(args, rng, torch):
    """One checked step of ``mini`` (or the tiny stand-in), then timings; one record."""
    if args.tiny:
        model, size = "tiny", TINY_TRAIN_SIZE
        net = build_from_specs(TINY_TRAIN_SPECS, 1, "tiny-train", seed=0, init_std="he")
    else:
        model, size = "mini", MINI_SIZE
        net = build_network("mini", seed=0)
    batch = args.train_batch
    classes = net.output_shape((net.in_channels, size, size))[0]
    x = rng.random((batch, net.in_channels, size, size), dtype=np.float32)
    labels = rng.integers(0, classes, batch)
    settings = dict(
        lr=MINI_CONFIG.learning_rate,
        momentum=MINI_CONFIG.momentum,
        weight_decay=MINI_CONFIG.weight_decay,
    )
    net.train()
    reference = copy.deepcopy(net)  # NumPy float32, same weights and dropout streams
    start = {name: value.copy() for name, value in net.state_dict().items()}
    step_torch = torch_train_step(net, torch, **settings) if torch is not None else None
    net.to("cuda").train()

    loss_ref = train_step(reference, SGD(reference, **settings), x, labels.reshape(-1, 1, 1))
    want = reference.state_dict()
    xd = cuda.to_device(x)
    labels_d = cuda.to_device(labels.reshape(-1, 1, 1).astype(np.int32))
    run = partial(train_step, net, SGD(net, **settings), xd, labels_d)
    begin = time.perf_counter()
    loss = run()  # the checked step (it also compiles what the kernel checks did not)
    sync()
    first_ms = (time.perf_counter() - begin) * 1e3
    got = net.state_dict()
    param_err = {k: relative_error(got[k], want[k]) for k in want}
    update_err = {k: relative_error(got[k] - start[k], want[k] - start[k]) for k in want}
    loss_err = abs(loss - loss_ref) / max(abs(loss_ref), 1e-30)
    tolerance = TOLERANCE["train"]
    ok = max(param_err.values()) <= tolerance and max(update_err.values()) <= tolerance
    ok = ok and loss_err <= tolerance

    if SIMULATOR:  # the checked step is the timing: a second one would double the wait
        ms, times = first_ms, [first_ms]
    else:
        _, ms, times = measure(run, args.repeats)
    rec = dict(
        model=model,
        batch=batch,
        size=size,
        ours_ms=ms,
        ours_times_ms=times,
        images_per_s=batch / ms * 1e3,
        first_step_ms=first_ms,
        loss=loss,
        loss_numpy=loss_ref,
        rel_err_loss=loss_err,
        rel_err_params=max(param_err.values()),
        rel_err_update=max(update_err.values()),
        rel_err_params_each=param_err,
        rel_err_update_each=update_err,
        ok=bool(ok),
    )
    if step_torch is not None:
        xt = torch.as_tensor(x, device="cuda")
        yt = torch.as_tensor(labels, device="cuda")
        rec.update(torch_timings(torch, partial(step_torch, xt, yt), ms, args.repeats))
    shown = {k: v for k, v in rec.items() if not k.endswith("_each")}
    print(
        f"  {'ok ' if ok else 'FAIL'} train {model} b{batch}: {json.dumps(shown, default=float)}",
        flush=True,
    )
    return rec


# --------------------------------------------------------------------------------------
# The greedy merge and NMS against the CPU (and torchvision)


def measure_host(run, repeats, warm=False):
    """Like :func:`measure`, by the wall clock: for host functions that synchronise
    themselves (results read back) or run on the CPU. ``sync()`` after each call.

    Returns ``(first result, median ms, all ms)``. ``warm``: everything is already
    compiled, so the first call is also one of the ``repeats`` timed ones (the
    slow calls are not repeated for nothing). On the simulator the first call's
    time is the timing.
    """
    start = time.perf_counter()
    result = run()
    sync()
    first = (time.perf_counter() - start) * 1e3
    if SIMULATOR:
        return result, first, [first]
    times = [first] if warm else []
    while len(times) < repeats:
        begin = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - begin) * 1e3)
    return result, statistics.median(times), times


def box_sizes(args, tiny_size):
    return [tiny_size] if args.tiny else list(BOX_SIZES)


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
            try:
                run = partial(merge_cuda, *data, **MERGE_SETTINGS, threads=threads)
                got, ms, times = measure_host(run, repeats, warm)
                rec.update(ours_ms=ms, ours_times_ms=times, ratio_vs_cpu=ms / cpu_ms)
                rec.update(compare_merges(got, want))
            except Exception as error:  # a launch or compilation failure: the others go on
                rec.update(ok=False, error=f"{type(error).__name__}: {error}")
            shown = {k: v for k, v in rec.items() if not k.endswith("times_ms")}
            print(
                f"  {'ok ' if rec['ok'] else 'FAIL'} merge n{n} t{threads}: "
                f"{json.dumps(shown, default=float)}",
                flush=True,
            )
            records.append(rec)
            save()


def nms_boxes(n):
    """``(boxes, scores, classes)``: boxes like the merge's (another seed), corners
    rounded to 1/16 pixel."""
    boxes, classes, scores = localizer_boxes(n, 1)
    return np.round(boxes * NMS_GRID) / NMS_GRID, scores, classes


def nms_mask_numpy(boxes, classes, threshold, chunk=256):
    """The suppression mask of boxes in walk order (``cuda.nms.suppression_mask``'s
    definition), in NumPy, ``chunk`` rows at a time (the evaluator's ``box_iou``)."""
    n = boxes.shape[0]
    words = cuda_nms.words_for(n)
    mask = np.zeros((n, words), dtype=np.uint64)
    column = np.arange(n)
    for lo in range(0, n, chunk):
        r = slice(lo, min(n, lo + chunk))
        later = column > column[r, None]
        hit = later & (classes[r, None] == classes) & (box_iou(boxes[r], boxes) > threshold)
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
        return None, f"torchvision not available ({type(error).__name__}: {error})"
    return torchvision.ops, None


def torchvision_nms(ops, boxes, scores, classes):
    """``batched_nms`` on device tensors; the kept indices copied to the host."""
    return ops.batched_nms(boxes, scores, classes, NMS_IOU).cpu().numpy()


def check_nms(args, torch, records, save):
    """The mask kernel and the whole NMS for each block size, per input size."""
    repeats = min(args.repeats, 3)
    ops, why = load_torchvision(torch)
    for n in box_sizes(args, TINY_NMS_SIZE):
        boxes, scores, classes = nms_boxes(n)
        run_cpu = partial(nms_numpy.nms, boxes, scores, classes, NMS_IOU)
        want, cpu_ms, cpu_times = measure_host(run_cpu, repeats)
        order = nms_numpy.score_order(scores)
        mask_want = nms_mask_numpy(boxes[order], classes[order], NMS_IOU)
        sorted_d = cuda.to_device(np.ascontiguousarray(boxes[order]))
        classes_d = cuda.to_device(np.ascontiguousarray(classes[order]))
        common = dict(n=n, kept=len(want), suppressions=set_bits(mask_want))
        common.update(cpu_ms=cpu_ms, cpu_times_ms=cpu_times)
        if ops is not None:
            try:  # e.g. a torchvision built without CUDA
                bt, st, ct = (torch.as_tensor(a, device="cuda") for a in (boxes, scores, classes))
                run_tv = partial(torchvision_nms, ops, bt, st, ct)
                common["torchvision_ms"] = time_torch(torch, run_tv, args.repeats)
                common["torchvision_agrees"] = bool(np.array_equal(run_tv(), want))
            except Exception as error:
                common["torchvision"] = f"torchvision failed ({type(error).__name__}: {error})"
        else:
            common["torchvision"] = why
        for block in args.nms_blocks:
            rec = dict(common, block=block)
            try:
                mask = poison(mask_want.shape, np.uint64)
                run = partial(
                    cuda_nms.suppression_mask, sorted_d, classes_d, NMS_IOU, block, out=mask
                )
                _, mask_ms, mask_times = measure(run, args.repeats)
                got_mask = mask.copy_to_host()
                run = partial(cuda_nms.nms, boxes, scores, classes, NMS_IOU, block=block)
                keep, ms, times = measure_host(run, repeats)
            except Exception as error:  # a launch or compilation failure: the others go on
                rec.update(ok=False, error=f"{type(error).__name__}: {error}")
            else:
                rec.update(mask_ms=mask_ms, mask_times_ms=mask_times)
                rec.update(ours_ms=ms, ours_times_ms=times, ratio_vs_cpu=ms / cpu_ms)
                if "torchvision_ms" in rec:
                    rec["ratio_vs_torchvision"] = ms / rec["torchvision_ms"]
                rec["mask_wrong_bits"] = set_bits(got_mask ^ mask_want)
                rec["untouched"] = int((got_mask == POISON[np.uint64]).sum())
                rec["same_keep"] = bool(np.array_equal(keep, want))
                rec["ok"] = (
                    rec["same_keep"] and rec["mask_wrong_bits"] == 0 and rec["untouched"] == 0
                )
            shown = {k: v for k, v in rec.items() if not k.endswith("times_ms")}
            print(
                f"  {'ok ' if rec['ok'] else 'FAIL'} nms n{n} b{block}: "
                f"{json.dumps(shown, default=float)}",
                flush=True,
            )
            records.append(rec)
            save()
        del sorted_d, classes_d


# --------------------------------------------------------------------------------------
# Run-time estimate (printed first; the JSON keeps it beside the measured seconds)

# Assumed rates, rough guesses for a data-centre GPU and a 16-core host; compare
# ``estimate_s`` with ``section_seconds`` in the JSON after a run to correct them.
ESTIMATE = dict(
    compile_per_config_s=12.0,  # the tiled GEMM kernels of one (tile, register block)
    compile_base_s=30.0,  # every other kernel, CUDA context, PyTorch and cuDNN start-up
    cpu_f64_gflops=150.0,  # NumPy float64 references (im2col + BLAS)
    cpu_f32_gflops=300.0,  # NumPy float32 (the dense check)
    gpu_gflops=2000.0,  # our kernels, averaged over the tile configs (slow ones included)
    network_s=4.0,  # drawing one network's 145M weights and copying them over
)


def estimate_seconds(args):
    """Rough seconds per section for ``args`` on a GPU, from :data:`ESTIMATE`."""
    rate = ESTIMATE
    madds = {m: build_network(m, seed=None).multiply_adds((3, SIZES[m], SIZES[m])) for m in SIZES}
    models = args.models
    gpu = rate["gpu_gflops"] * 1e9
    torch_runs = 2 * (3 + args.repeats)  # fp32 and tf32, each with 3 warm-ups
    est = {}
    if not args.skip_kernels:
        seconds = rate["compile_base_s"] + rate["compile_per_config_s"] * len(configs(args))
        runs = len(configs(args)) * (args.repeats + 1) + 2 * (min(args.repeats, 2) + 1)
        for model in models:
            for batch in args.batches:
                flops = 6 * madds[model] * batch  # forward 2, backward 4 per multiply-add
                seconds += flops / (rate["cpu_f64_gflops"] * 1e9) + runs * flops / gpu
        est["kernels"] = seconds
    if not args.skip_offset:
        est["offset"] = 2.0 * len(models)
    if not args.skip_sgd:
        est["sgd"] = 15.0  # 3 x 113M floats drawn, a float64 reference, comparisons
    if not args.skip_forward:
        flops = sum(2 * madds[m] * b for m in models for b in args.batches)
        runs = args.repeats + 1 + torch_runs
        est["forward"] = rate["network_s"] * len(models) + runs * flops / gpu
    if not args.skip_dense:
        seconds = 0.0
        for model in models:
            net = build_network(model, seed=None)
            flops = [2 * sum(fine_multiply_adds(net, *size)) for size in paper.SCALES]
            seconds += 2 * rate["network_s"]  # drawn once, copied for the NumPy check
            seconds += (flops[0] + flops[-1]) / (rate["cpu_f32_gflops"] * 1e9)
            seconds += (args.repeats + 1 + torch_runs) * sum(flops) / gpu
        est["dense"] = seconds
    if not args.skip_train:
        est["train"] = 10.0
    if not args.skip_merge:  # compiling, then about a second per 10,000-box merge
        est["merge"] = 5.0 + 5.0 * len(args.merge_threads)
    if not args.skip_nms:  # the NumPy mask of 10,000 boxes, torchvision's import
        est["nms"] = 6.0 + 0.5 * len(args.nms_blocks)
    return est


def estimate_text(est):
    total = sum(est.values())
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in est.items())
    return (
        f"estimated run time: about {total:.0f} s ({total / 60:.1f} min): {parts}. Rough: "
        "assumed rates in ESTIMATE (compilation dominates the kernel section); "
        "--quick runs one tile config at batch 1."
    )


# --------------------------------------------------------------------------------------
# Report


def device_info():
    info = dict(simulator=SIMULATOR, python=platform.python_version(), numpy=np.__version__)
    import numba

    info["numba"] = numba.__version__
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:  # pragma: no cover - metadata missing
        info["numba_cuda"] = None
    if not SIMULATOR:
        device = cuda.get_current_device()
        name = device.name
        info.update(
            device=name.decode() if isinstance(name, bytes) else str(name),
            compute_capability=list(device.compute_capability),
            multiprocessors=device.MULTIPROCESSOR_COUNT,
        )
    return info


def table_cell(rec, key, fmt):
    """``rec[key]`` formatted, or a dash of the same width where it is missing."""
    return format(rec[key], fmt) if key in rec else "-".rjust(len(format(0.0, fmt)))


def summary(results):
    """The short table: per model, batch and operation, total ms over layers per config."""
    rows = {}
    for rec in results["kernels"]:
        if rec.get("ms") is None:
            continue
        key = (rec["model"], rec["batch"], rec["op"], rec["what"])
        row = rows.setdefault(key, {"configs": {}, "err": 0.0, "ok": True, "layers": set()})
        row["configs"][rec["config"]] = row["configs"].get(rec["config"], 0.0) + rec["ms"]
        row["err"] = max(row["err"], rec["rel_err"])
        row["ok"] &= rec["ok"]
        row["layers"].add(rec["name"])
    labels = sorted({c for row in rows.values() for c in row["configs"]})
    lines = []
    if rows:  # none when the kernel sections are skipped
        lines += [
            "",
            "Kernels: total ms over the layers of each network, per tile config",
            f"{'model':<9}{'b':>3} {'op':<8}{'what':<11}{'n':>3} "
            + "".join(f"{c:>10}" for c in labels)
            + f"{'max err':>10}  ok",
        ]
    for (model, batch, op, what), row in sorted(rows.items()):
        cells = "".join(
            f"{row['configs'][c]:10.3f}" if c in row["configs"] else f"{'':>10}" for c in labels
        )
        lines.append(
            f"{model:<9}{batch:>3} {op:<8}{what:<11}{len(row['layers']):>3} {cells}"
            f"{row['err']:10.1e}  {'yes' if row['ok'] else 'NO'}"
        )
    if results["forward"]:
        lines += [
            "",
            "Whole forward pass (ms; ratio = ours / PyTorch)",
            f"{'model':<9}{'b':>3}{'ours':>10}{'GFLOP/s':>9}{'torch fp32':>11}{'ratio':>7}"
            f"{'torch tf32':>11}{'ratio':>7}{'err':>9}",
        ]
        for rec in results["forward"]:
            cell = partial(table_cell, rec)
            lines.append(
                f"{rec['model']:<9}{rec['batch']:>3}{rec['ours_ms']:10.2f}"
                f"{rec['ours_gflops']:9.0f}{cell('torch_fp32_ms', '11.2f')}"
                f"{cell('ratio_vs_torch_fp32', '7.2f')}{cell('torch_tf32_ms', '11.2f')}"
                f"{cell('ratio_vs_torch_tf32', '7.2f')}"
                f"{cell('rel_err_vs_torch_fp32', '9.1e')}"
            )
    lines += against_torch_table(results) + dense_table(results) + train_table(results)
    lines += merge_table(results) + nms_table(results)
    failed = [r for r in results["kernels"] if r.get("ok") is False]
    skipped = [r for r in results["kernels"] if r.get("ok") is None]
    failed_dense = [r for r in results["dense"] if r.get("ok") is False and r["size"] != "all"]
    failed_train = [r for r in results["train"] if r.get("ok") is False]
    failed_merge = [r for r in results["merge"] if not r["ok"]]
    failed_nms = [r for r in results["nms"] if not r["ok"]]
    lines.append("")
    lines.append(
        f"{len(results['kernels'])} kernel records, {len(failed)} failed, "
        f"{len(skipped)} configs not runnable; dense {len(failed_dense)} failed, "
        f"training step {len(failed_train)} failed; merge {len(failed_merge)} of "
        f"{len(results['merge'])} failed, NMS {len(failed_nms)} of {len(results['nms'])} "
        f"failed; {results['seconds']:.0f} s"
    )
    for rec in failed:
        lines.append(
            f"FAILED {rec['name']} b{rec['batch']} {rec.get('what')} {rec['config']}: "
            f"err {rec.get('rel_err')}, untouched {rec.get('untouched')}"
        )
    for rec in failed_dense:
        lines.append(
            f"FAILED dense {rec['model']} {rec['size']}: err vs NumPy "
            f"{rec.get('rel_err_vs_numpy_fp32')} (non-finite scores if missing)"
        )
    for rec in failed_train:
        lines.append(
            f"FAILED training step {rec['model']} b{rec['batch']}: params "
            f"{rec['rel_err_params']}, update {rec['rel_err_update']}, loss {rec['rel_err_loss']}"
        )
    for rec in failed_merge:
        if "error" in rec:
            lines.append(f"FAILED merge n{rec['n']} t{rec['threads']}: {rec['error']}")
            continue
        lines.append(
            f"FAILED merge n{rec['n']} t{rec['threads']}: outputs {rec['outputs']} (CPU "
            f"{rec['outputs_cpu']}), same members {rec['same_members']}, classes "
            f"{rec['same_classes']}, counts {rec['same_counts']}, err {rec['rel_err']}"
        )
    for rec in failed_nms:
        if "error" in rec:
            lines.append(f"FAILED nms n{rec['n']} b{rec['block']}: {rec['error']}")
            continue
        lines.append(
            f"FAILED nms n{rec['n']} b{rec['block']}: same kept {rec['same_keep']}, mask "
            f"wrong bits {rec['mask_wrong_bits']}, untouched words {rec['untouched']}"
        )
    failed_any = failed or failed_dense or failed_train or failed_merge or failed_nms
    return "\n".join(lines), bool(failed_any)


def against_torch_table(results):
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


def dense_table(results):
    if not results["dense"]:
        return []
    lines = [
        "",
        "Dense evaluation with offset pooling, batch 1 (ms; ratio = ours / PyTorch; "
        "numpy: float32 vs float32)",
        f"{'model':<9}{'input':>8}{'fine':>7}{'ours':>10}{'torch fp32':>11}{'ratio':>7}"
        f"{'torch tf32':>11}{'ratio':>7}{'vs numpy':>10}{'vs torch':>10}  ok",
    ]
    for rec in results["dense"]:
        cell = partial(table_cell, rec)
        size = rec["size"] if rec["size"] == "all" else "{}x{}".format(*rec["size"])
        fine = "{}x{}".format(*rec["fine"]) if "fine" in rec else ""
        lines.append(
            f"{rec['model']:<9}{size:>8}{fine:>7}{rec['ours_ms']:10.2f}"
            f"{cell('torch_fp32_ms', '11.2f')}{cell('ratio_vs_torch_fp32', '7.2f')}"
            f"{cell('torch_tf32_ms', '11.2f')}{cell('ratio_vs_torch_tf32', '7.2f')}"
            f"{cell('rel_err_vs_numpy_fp32', '10.1e')}{cell('rel_err_vs_torch_fp32', '10.1e')}"
            f"  {'yes' if rec['ok'] else 'NO'}"
        )
    return lines


def train_table(results):
    if not results["train"]:
        return []
    lines = [
        "",
        "One training step (ms; ratio = ours / PyTorch; err: after the step, vs NumPy float32)",
        f"{'model':<9}{'b':>4}{'ours':>10}{'img/s':>9}{'torch fp32':>11}{'ratio':>7}"
        f"{'torch tf32':>11}{'ratio':>7}{'params':>9}{'update':>9}  ok",
    ]
    for rec in results["train"]:
        cell = partial(table_cell, rec)
        lines.append(
            f"{rec['model']:<9}{rec['batch']:>4}{rec['ours_ms']:10.2f}{rec['images_per_s']:9.0f}"
            f"{cell('torch_fp32_ms', '11.2f')}{cell('ratio_vs_torch_fp32', '7.2f')}"
            f"{cell('torch_tf32_ms', '11.2f')}{cell('ratio_vs_torch_tf32', '7.2f')}"
            f"{rec['rel_err_params']:9.1e}{rec['rel_err_update']:9.1e}"
            f"  {'yes' if rec['ok'] else 'NO'}"
        )
    return lines


def merge_table(results):
    rows = results["merge"]
    if not rows:
        return []
    lines = [
        "",
        "Greedy merge against merge_fast on this CPU (ms; ratio = GPU / CPU, below 1: the "
        "GPU is faster; err: boxes and confidences, relative; same: memberships, classes, "
        "counts; identical: bit for bit)",
        f"{'':<6}{'n':>6}{'merges':>8}{'threads':>8}{'gpu':>10}{'cpu':>10}{'ratio':>7}"
        f"{'err':>9}{'same':>6}{'identical':>10}  ok",
    ]
    for rec in rows:
        if "error" in rec:
            lines.append(f"{'merge':<6}{rec['n']:>6}{rec['merges']:>8}{rec['threads']:>8}  NO")
            continue
        same = rec["same_members"] and rec["same_classes"] and rec["same_counts"]
        lines.append(
            f"{'merge':<6}{rec['n']:>6}{rec['merges']:>8}{rec['threads']:>8}"
            f"{rec['ours_ms']:10.2f}{rec['cpu_ms']:10.2f}{rec['ratio_vs_cpu']:7.2f}"
            f"{rec['rel_err']:9.1e}{'yes' if same else 'NO':>6}"
            f"{'yes' if rec['identical'] else 'no':>10}  {'yes' if rec['ok'] else 'NO'}"
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


def nms_table(results):
    rows = results["nms"]
    if not rows:
        return []
    lines = [
        "",
        "NMS (ms; mask: the kernel alone; nms: host boxes to kept indices; ratios = ours "
        "nms / NumPy nms on this CPU, and / torchvision batched_nms on the GPU)",
        f"{'':<6}{'n':>6}{'kept':>6}{'block':>6}{'mask':>9}{'nms':>9}{'numpy':>9}"
        f"{'ratio':>7}{'tvision':>9}{'ratio':>7}{'tv same':>8}{'bad bits':>9}{'same':>5}  ok",
    ]
    for rec in rows:
        if "error" in rec:
            lines.append(f"{'nms':<6}{rec['n']:>6}{rec['kept']:>6}{rec['block']:>6}  NO")
            continue
        cell = partial(table_cell, rec)
        tv_same = rec.get("torchvision_agrees")
        lines.append(
            f"{'nms':<6}{rec['n']:>6}{rec['kept']:>6}{rec['block']:>6}{rec['mask_ms']:9.3f}"
            f"{rec['ours_ms']:9.2f}{rec['cpu_ms']:9.2f}{rec['ratio_vs_cpu']:7.2f}"
            f"{cell('torchvision_ms', '9.2f')}{cell('ratio_vs_torchvision', '7.2f')}"
            f"{'-' if tv_same is None else 'yes' if tv_same else 'no':>8}"
            f"{rec['mask_wrong_bits']:>9}{'yes' if rec['same_keep'] else 'NO':>5}"
            f"  {'yes' if rec['ok'] else 'NO'}"
        )
    for why in dict.fromkeys(r["torchvision"] for r in rows if "torchvision" in r):
        lines.append(why)
    return lines


def main(argv=None):
    args = parse_args(argv)
    if not cuda.is_available():
        sys.exit("no CUDA GPU (set NUMBA_ENABLE_CUDASIM=1 for the simulator smoke test)")
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / "gpu_check.json"
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    results = dict(
        args=vars(args),
        info=device_info(),
        estimate_s=None if SIMULATOR else estimate_seconds(args),
        section_seconds={},
        kernels=[],
        forward=[],
        dense=[],
        train=[],
        merge=[],
        nms=[],
        seconds=0.0,
    )
    print(json.dumps(results["info"]), flush=True)
    if SIMULATOR:
        print("simulator: every check runs, timings mean nothing, PyTorch is skipped", flush=True)
    else:
        print(estimate_text(results["estimate_s"]), flush=True)

    def save():
        results["seconds"] = time.perf_counter() - start
        out_path.write_text(json.dumps(results, indent=1, default=float))

    def section(name):
        """Record the seconds since the last section ended, and save."""
        now = time.perf_counter() - start
        results["section_seconds"][name] = now - sum(results["section_seconds"].values())
        save()

    torch = load_torch()
    if not args.skip_kernels:
        models = ["tiny"] if args.tiny else args.models
        for model in models:
            if args.tiny:
                net, size = build_from_specs(TINY_SPECS, 3, "tiny", seed=None), TINY_SIZE
            else:
                net, size = build_network(model, seed=None), SIZES[model]
            for batch in args.batches:
                print(f"kernels: {model} at {size}x{size}, batch {batch}", flush=True)
                for case in layer_cases(net, (3, size, size), batch, model):
                    results["kernels"] += CHECKS[case["op"]](case, args, rng)
                    save()
        section("kernels")
    if not args.skip_offset:
        size = TINY_SCALES[-1] if args.tiny else paper.SCALES[-1]
        for model, net in weightless_nets(args):
            print(
                f"offset pooling: {model}, the last pool at a {size[0]}x{size[1]} input",
                flush=True,
            )
            results["kernels"] += check_offset(model, net, size, args, rng, torch)
            save()
        section("offset")
    if not args.skip_sgd:
        print("sgd update", flush=True)
        results["kernels"] += check_sgd(args, rng, torch)
        section("sgd")
    if not args.skip_forward:
        print("whole forward pass", flush=True)
        results["forward"] = whole_forward(args, rng, torch)
        section("forward")
    if not args.skip_dense:
        print("dense multi-scale evaluation (fine stride), batch 1", flush=True)
        dense_multiscale(args, rng, torch, results["dense"], save)
        section("dense")
    if not args.skip_train:
        print(f"one training step, batch {args.train_batch}", flush=True)
        results["train"].append(training_step(args, rng, torch))
        section("train")
    if not args.skip_merge:
        sizes = ", ".join(str(n) for n in box_sizes(args, TINY_MERGE_SIZE))
        print(f"greedy merge: {sizes} boxes, threads {args.merge_threads}", flush=True)
        check_merge(args, results["merge"], save)
        section("merge")
    if not args.skip_nms:
        sizes = ", ".join(str(n) for n in box_sizes(args, TINY_NMS_SIZE))
        print(f"nms: {sizes} boxes, blocks {args.nms_blocks}", flush=True)
        check_nms(args, torch, results["nms"], save)
        section("nms")
    save()
    table, failed = summary(results)
    print(table)
    print(f"\nfull results: {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
