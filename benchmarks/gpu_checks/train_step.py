"""One training step of ``mini`` (``--skip-train``), against NumPy and PyTorch.

At batch ``--train-batch`` (128): forward, softmax cross-entropy, backward, momentum SGD
(``MINI_CONFIG``'s settings, dropout on), against the same network in PyTorch on the GPU
(same initial weights; its own dropout masks; ``loss.item()`` each step, as ours copies
the loss to the host). Checked: after the first step the parameters, and the update
itself, agree with the NumPy backend's step from the same weights, same batch and same
dropout masks (relative error at most 1e-3, float32 on both).

With ``--tiny`` a five-layer stand-in for ``mini`` (12x12 grey inputs, batch 2;
``mini`` itself takes minutes per step on the simulator).
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.cuda import SIMULATOR
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.layers import Conv2d, Dropout, MaxPool2d, ReLU
from overfeat_scratch.nn.networks import build_from_specs, build_network
from overfeat_scratch.nn.train import MINI_CONFIG
from overfeat_scratch.ops.optim import SGD

from .common import (
    TOLERANCE,
    TORCH_CELLS,
    TORCH_COLUMNS,
    cells,
    failure_lines,
    first_call,
    measure,
    relative_error,
    report,
    torch_timings,
    yes_no,
)

MINI_SIZE = 32
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
    # The checked step (it also compiles what the kernel checks did not).
    loss, first_ms = first_call(run)
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
    report(f"train {model} b{batch}", rec, ok, hide="_each")
    return rec


def run(args, rng, torch, results, save):
    print(f"one training step, batch {args.train_batch}", flush=True)
    results["train"].append(training_step(args, rng, torch))


def table(results):
    if not results["train"]:
        return []
    lines = [
        "",
        "One training step (ms; ratio = ours / PyTorch; err: after the step, vs NumPy float32)",
        f"{'model':<9}{'b':>4}{'ours':>10}{'img/s':>9}{TORCH_COLUMNS}{'params':>9}{'update':>9}"
        "  ok",
    ]
    for rec in results["train"]:
        lines.append(
            f"{rec['model']:<9}{rec['batch']:>4}{rec['ours_ms']:10.2f}{rec['images_per_s']:9.0f}"
            f"{cells(rec, *TORCH_CELLS)}{rec['rel_err_params']:9.1e}{rec['rel_err_update']:9.1e}"
            f"  {yes_no(rec['ok'])}"
        )
    return lines


def failures(results):
    return failure_lines(
        results["train"],
        lambda rec: f"training step {rec['model']} b{rec['batch']}",
        lambda rec: (
            f"params {rec['rel_err_params']}, update {rec['rel_err_update']}, "
            f"loss {rec['rel_err_loss']}"
        ),
    )
