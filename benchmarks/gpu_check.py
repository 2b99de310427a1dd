"""GPU check: every CUDA kernel against NumPy at OverFeat's sizes, and timings.

Run from the repository root on a machine with an NVIDIA GPU (PyTorch optional)::

    python benchmarks/gpu_check.py                 # fast (231) and accurate (221), batch 1, 32
    python benchmarks/gpu_check.py --models fast --batches 1 --tiles 16
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_check.py --tiny   # smoke test, no GPU

What it does, in one process:

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
3. **The whole forward pass** of each network (``Sequential.forward`` on the CUDA
   backend, default tiles, allocations included) against PyTorch + cuDNN with the same
   weights, in float32 (TF32 off) and with TF32 on, as ratios ours / PyTorch; the
   outputs are compared too.

It prints a short table last and writes everything to ``$OUT/gpu_check.json``
(``OUT`` defaults to ``./out``), rewritten after each case so that an interrupted
run keeps what it measured. The exit status is 1 if any check failed.

``--tiny`` uses a four-layer network on 9x9 inputs, batch 2, tiles 4 and 8 with
register block 2, and one timed run without warm-up, so that the script runs in
under a minute on the Numba CUDA simulator (timings there are meaningless; PyTorch is
skipped).
"""

from __future__ import annotations

import argparse
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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from numba import cuda  # noqa: E402

from overfeat_scratch import activations, conv, linear, losses, paper, pool  # noqa: E402
from overfeat_scratch.cuda import DEFAULT_RB, DEFAULT_TILE, SIMULATOR  # noqa: E402
from overfeat_scratch.cuda import conv as cuda_conv  # noqa: E402
from overfeat_scratch.cuda import elementwise as cuda_elementwise  # noqa: E402
from overfeat_scratch.cuda import linear as cuda_linear  # noqa: E402
from overfeat_scratch.cuda import losses as cuda_losses  # noqa: E402
from overfeat_scratch.cuda import pool as cuda_pool  # noqa: E402
from overfeat_scratch.layers import Conv2d, Dropout, MaxPool2d, ReLU  # noqa: E402
from overfeat_scratch.networks import build_from_specs, build_network  # noqa: E402

SIZES = {"fast": 231, "accurate": 221}
TINY_SPECS = (
    paper.LayerSpec("conv", 3, 3, stride=2, pool=2, pool_stride=2),
    paper.LayerSpec("conv", 4, 3, pad=1),
    paper.LayerSpec("full", 6, 2, dropout=0.5),
    paper.LayerSpec("full", 5, 1, relu=False),
)
TINY_SIZE = 9
# Relative error allowed for float32 kernels against the float64 reference.
TOLERANCE = {"conv": 1e-4, "linear": 1e-4, "loss": 1e-5, "pool": 1e-6}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (simulator smoke test)")
    parser.add_argument("--models", nargs="+", default=["fast", "accurate"], choices=SIZES)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--tiles", nargs="+", type=int, default=None)
    parser.add_argument("--rbs", nargs="+", type=int, default=None, help="register blocks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-forward", action="store_true")
    args = parser.parse_args(argv)
    tiny = args.tiny
    args.batches = args.batches or ([2] if tiny else [1, 32])
    args.tiles = args.tiles or ([4, 8] if tiny else [8, 16, 32])
    args.rbs = args.rbs or ([2] if tiny else [1, 4])
    args.repeats = args.repeats or (1 if tiny else 5)
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


def poison(shape, dtype=np.float32):
    value = {np.float32: np.nan, np.int32: -1, np.uint8: 7}[dtype]
    return cuda.to_device(np.full(shape, value, dtype=dtype))


def untouched(*arrays):
    """How many poison values survived in device arrays (0 if every element was written)."""
    count = 0
    for array in arrays:
        host = array.copy_to_host()
        if host.dtype == np.float32:
            count += int(np.isnan(host).sum())
        else:
            count += int((host == {np.int32: -1, np.uint8: 7}[host.dtype.type]).sum())
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


def torch_forward(net, torch):
    """The same network in PyTorch, sharing our weights (no copy, via CUDA array interface)."""
    functional = torch.nn.functional
    steps = []
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            w = torch.as_tensor(layer.params["w"], device="cuda")
            b = torch.as_tensor(layer.params["b"], device="cuda")
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

    def forward(x):
        with torch.inference_mode():
            for step in steps:
                x = step(x)
        return x

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
    lines = [
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
    failed = [r for r in results["kernels"] if r.get("ok") is False]
    skipped = [r for r in results["kernels"] if r.get("ok") is None]
    lines.append("")
    lines.append(
        f"{len(results['kernels'])} kernel records, {len(failed)} failed, "
        f"{len(skipped)} configs not runnable; {results['seconds']:.0f} s"
    )
    for rec in failed:
        lines.append(
            f"FAILED {rec['name']} b{rec['batch']} {rec.get('what')} {rec['config']}: "
            f"err {rec.get('rel_err')}, untouched {rec.get('untouched')}"
        )
    return "\n".join(lines), bool(failed)


def main(argv=None):
    args = parse_args(argv)
    if not cuda.is_available():
        sys.exit("no CUDA GPU (set NUMBA_ENABLE_CUDASIM=1 for the simulator smoke test)")
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / "gpu_check.json"
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    results = dict(args=vars(args), info=device_info(), kernels=[], forward=[], seconds=0.0)
    print(json.dumps(results["info"]), flush=True)

    def save():
        results["seconds"] = time.perf_counter() - start
        out_path.write_text(json.dumps(results, indent=1, default=float))

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
    if not args.skip_forward:
        print("whole forward pass", flush=True)
        results["forward"] = whole_forward(args, rng, load_torch())
    save()
    table, failed = summary(results)
    print(table)
    print(f"\nfull results: {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
