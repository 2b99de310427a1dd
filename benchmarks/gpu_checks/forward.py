"""The whole forward pass (``--skip-forward``), against PyTorch + cuDNN.

``Sequential.forward`` of each network on the CUDA backend (default tiles, allocations
included) against PyTorch + cuDNN with the same weights, in float32 (TF32 off) and with
TF32 on, as ratios ours / PyTorch; the outputs are compared too.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.nn.layers import Conv2d, MaxPool2d, ReLU

from .common import (
    TORCH_CELLS,
    TORCH_COLUMNS,
    cells,
    measure,
    networks,
    relative_error,
    report,
    torch_timings,
)


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


def torch_forward(layers, torch, device="cuda"):
    """The same layers in PyTorch, sharing our weights: a function of a device tensor."""
    steps = torch_steps(layers, torch, device)

    def forward(x):
        with torch.inference_mode():
            for step in steps:
                x = step(x)
            return x

    return forward


def whole_forward(args, rng, torch, records):
    """Per network and batch one record, appended to ``records``."""
    for model, net, size in networks(args, seed=0):
        madds = net.multiply_adds((3, size, size))
        net.to("cuda").eval()
        for batch in args.batches:
            x = cuda.to_device(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
            y, ours_ms, times = measure(partial(net.forward, x), args.repeats)
            y = y.copy_to_host()
            rec = dict(model=model, batch=batch, size=size, ours_ms=ours_ms, ours_times_ms=times)
            rec["ours_gflops"] = 2 * madds * batch / ours_ms / 1e6
            if torch is not None:
                forward = torch_forward(net.layers, torch)
                xt = torch.as_tensor(x, device="cuda")
                rec.update(torch_timings(torch, partial(forward, xt), ours_ms, args.repeats))
                rec["rel_err_vs_torch_fp32"] = relative_error(y, forward(xt).cpu().numpy())
            report(f"forward {model} b{batch}", rec)
            records.append(rec)
        net.to("numpy")  # free the device memory before the next model


def run(args, rng, torch, results, save):
    print("whole forward pass", flush=True)
    whole_forward(args, rng, torch, results["forward"])


def table(results):
    if not results["forward"]:
        return []
    lines = [
        "",
        "Whole forward pass (ms; ratio = ours / PyTorch)",
        f"{'model':<9}{'b':>3}{'ours':>10}{'GFLOP/s':>9}{TORCH_COLUMNS}{'err':>9}",
    ]
    for rec in results["forward"]:
        lines.append(
            f"{rec['model']:<9}{rec['batch']:>3}{rec['ours_ms']:10.2f}"
            f"{rec['ours_gflops']:9.0f}"
            f"{cells(rec, *TORCH_CELLS, ('rel_err_vs_torch_fp32', '9.1e'))}"
        )
    return lines
