"""The layer kernels (``--skip-kernels``): every layer's input shape, checked and timed.

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
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.cuda import DEFAULT_RB, DEFAULT_TILE
from overfeat_scratch.cuda import activations as cuda_activations
from overfeat_scratch.cuda import conv as cuda_conv
from overfeat_scratch.cuda import linear as cuda_linear
from overfeat_scratch.cuda import losses as cuda_losses
from overfeat_scratch.cuda import pool as cuda_pool
from overfeat_scratch.nn.layers import Conv2d, Dropout, MaxPool2d, ReLU
from overfeat_scratch.ops import activations, conv, linear, losses, pool

from .common import (
    check_outputs,
    describe,
    f64,
    failure_lines,
    measure,
    networks,
    poison,
    record,
    relative_error,
    untouched,
    yes_no,
)

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

    def forward(config, kernel, **launch):
        y = poison(y_ref.shape)
        run = partial(kernel, xd, wd, bd, s, p, out=y, **launch)
        return check_outputs(
            case, "forward", config, run, args.repeats, (y,), (y_ref,), False, 2 * madds
        )

    def backward(what, config, repeats, refs, each=None, **launch):
        outs = (poison(x.shape), poison(w.shape), poison(b.shape))
        run = partial(cuda_conv.conv2d_backward, dyd, xd, wd, s, p, out=outs, **launch)
        return check_outputs(case, what, config, run, repeats, outs, refs, False, 4 * madds, each)

    if case["batch"] == 1 or args.tiny:  # rung 1, the naive kernel, for the ladder
        records.append(forward("naive", cuda_conv.conv2d_forward_naive))
    for tile, rb in configs(args):
        label = f"t{tile}r{rb}"
        try:
            records.append(forward(label, cuda_conv.conv2d_forward, tile=tile, rb=rb))
            each = "rel_err_dx_dw_db"  # the errors of dx, dw and db
            rec = backward("backward", label, args.repeats, grads_ref, each, tile=tile, rb=rb)
            g = cuda_conv.geometry(x.shape, w.shape, s, p)
            rb_dx = cuda_conv.pick_rb(rb, tile, x.shape[1], x.size // x.shape[1])
            rec["dx_route"] = cuda_conv.choose_dx_route(g, tile, rb_dx)
            records.append(rec)
            # Both routes to dx at the default tile, to check the choice (--tiny: only
            # for 1x1 kernels, the cheap ones on the simulator). Only dx is compared.
            compare = (tile, rb) == (DEFAULT_TILE, DEFAULT_RB)
            if compare and (not args.tiny or case["w"][2] == 1):
                repeats = min(args.repeats, 2)
                for route in ("gather", "col2im"):
                    what = f"bwd-{route}"
                    launch = dict(tile=tile, rb=rb, dx_route=route)
                    records.append(backward(what, label, repeats, grads_ref[:1], **launch))
        except Exception as error:  # e.g. too many registers for a 32x32 block
            print(f"  skip {case['name']} {label}: {describe(error)}", flush=True)
            records.append(
                dict(
                    op="conv",
                    name=case["name"],
                    model=case["model"],
                    batch=case["batch"],
                    config=label,
                    ok=None,
                    error=describe(error),
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
        records.append(
            check_outputs(
                case, "forward", label, run, args.repeats, (y,), (y_ref,), False, 2 * madds
            )
        )
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
    outs, refs = (y, arg), (y_ref, arg_ref)
    records = [check_outputs(case, "forward", "-", run, args.repeats, outs, refs, True)]
    run = partial(cuda_pool.max_pool2d_backward, dyd, arg, x.shape, k, s, out=dx)
    # Overlapping windows add gradients: equal up to the order of the additions.
    records.append(check_outputs(case, "backward", "-", run, args.repeats, (dx,), (dx_ref,), False))
    return records


def check_relu(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    dy = rng.standard_normal(case["x"], dtype=np.float32)
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)
    y, dx = poison(x.shape), poison(x.shape)
    y_ref = activations.relu_forward(x)
    dx_ref = activations.relu_backward(dy, y_ref)
    run = partial(cuda_activations.relu_forward, xd, out=y)
    records = [check_outputs(case, "forward", "-", run, args.repeats, (y,), (y_ref,), True)]
    run = partial(cuda_activations.relu_backward, dyd, y, out=dx)
    records.append(check_outputs(case, "backward", "-", run, args.repeats, (dx,), (dx_ref,), True))
    return records


def check_dropout(case, args, rng):
    x = rng.standard_normal(case["x"], dtype=np.float32)
    dy = rng.standard_normal(case["x"], dtype=np.float32)
    p, seed = case["p"], 1234
    xd, dyd = cuda.to_device(x), cuda.to_device(dy)
    y, keep, dx = poison(x.shape), poison(x.shape, np.uint8), poison(x.shape)
    y_ref, keep_ref = activations.dropout_forward(x, p, seed)
    dx_ref = activations.dropout_backward(dy, keep_ref, p)
    run = partial(cuda_activations.dropout_forward, xd, p, seed, out=(y, keep))
    outs, refs = (y, keep), (y_ref, keep_ref)
    records = [check_outputs(case, "forward", "-", run, args.repeats, outs, refs, True)]
    run = partial(cuda_activations.dropout_backward, dyd, keep, p, out=dx)
    records.append(check_outputs(case, "backward", "-", run, args.repeats, (dx,), (dx_ref,), True))
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


def run(args, rng, torch, results, save):
    """Every layer of each network at each batch; records into ``results["kernels"]``."""
    for model, net, size in networks(args, seed=None):
        for batch in args.batches:
            print(f"kernels: {model} at {size}x{size}, batch {batch}", flush=True)
            for case in layer_cases(net, (3, size, size), batch, model):
                results["kernels"] += CHECKS[case["op"]](case, args, rng)
                save()


# --------------------------------------------------------------------------------------
# Report


def table(results):
    """Per model, batch and operation, total ms over layers per config (offset pooling
    and the SGD update included: they are kernel records too)."""
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
    if not rows:  # the kernel sections were skipped
        return []
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
            f"{row['err']:10.1e}  {yes_no(row['ok'])}"
        )
    return lines


def not_runnable(results):
    """The configurations that raised (e.g. too many registers for a 32x32 block)."""
    return [rec for rec in results["kernels"] if rec.get("ok") is None]


def failures(results):
    """One line per failed kernel record."""
    return failure_lines(
        results["kernels"],
        lambda rec: f"{rec['name']} b{rec['batch']} {rec.get('what')} {rec['config']}",
        lambda rec: f"err {rec.get('rel_err')}, untouched {rec.get('untouched')}",
    )
