"""Training throughput of ``mini``: the NumPy backend against the same network in PyTorch.

Run:  .venv/bin/python benchmarks/bench_train.py [--quick] [--json PATH]

One step = forward, softmax cross-entropy, backward, momentum SGD update, on a
batch of 32x32 digit windows, both sides with the same weights, the same batch
and the same number of threads; they alternate in one run (the machine is shared
and noisy). Reports images per second and the ratios (target: ours at least 1.0x
PyTorch's). PyTorch is optional (``make bench`` installs the CPU wheel); without
it only our numbers are printed.

PyTorch runs twice per round. In this process it shares the allocator setting of
the NumPy backend (:mod:`overfeat_scratch.common.memory`: freed memory is kept for
reuse), which speeds it up too. In a child process it runs as a PyTorch user's
program does, with glibc's default allocator, whose rate from one process to the
next is bimodal (see the performance page). The first lines print the CPU's
vector extensions, the BLAS library and the kernels it chose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import overfeat_scratch  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads it)

# isort: split
import numpy as np

from overfeat_scratch import build_network
from overfeat_scratch.nn.train import MINI_CONFIG
from overfeat_scratch.ops.optim import SGD


def ours(batch, steps, rng):
    net = build_network("mini", seed=0).train()
    optimizer = SGD(net, 0.01, MINI_CONFIG.momentum, MINI_CONFIG.weight_decay)
    x = rng.random((batch, 1, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, (batch, 1, 1))

    def step():
        scores = net.forward(x)
        _, grad = net.backend.softmax_cross_entropy(scores, y)
        net.backward(grad, input_grad=False)
        optimizer.step()

    return net, step


def theirs(net, batch, rng):
    import torch
    from torch import nn

    layers = []
    for layer in net:
        if layer.kind in ("conv", "full"):
            conv = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding
            )
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.params["w"]))
                conv.bias.copy_(torch.from_numpy(layer.params["b"]))
            layers.append(conv)
        elif layer.kind == "relu":
            layers.append(nn.ReLU())
        elif layer.kind == "pool":
            layers.append(nn.MaxPool2d(layer.kernel, layer.stride))
        elif layer.kind == "dropout":
            layers.append(nn.Dropout(layer.p))
    model = nn.Sequential(*layers).train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=0.01,
        momentum=MINI_CONFIG.momentum,
        weight_decay=MINI_CONFIG.weight_decay,
    )
    x = torch.from_numpy(rng.random((batch, 1, 32, 32), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x).flatten(1), y)
        loss.backward()
        optimizer.step()

    return step


def torch_in_child(batch, steps, threads):
    """PyTorch's images per second in a fresh process with the default allocator:
    ``{"median": ..., "best": ...}`` over its steps."""
    env = dict(os.environ, OVERFEAT_KEEP_FREED_MEMORY="0")
    command = [sys.executable, __file__, "--torch-child", str(batch), str(steps), str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(batch, steps, threads):
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(batch)
    net, _ = ours(batch, steps, rng)
    step = theirs(net, batch, rng)
    times = [t for _ in range(3) for t in step_times(step, steps)]
    print(json.dumps({"median": batch / float(np.median(times)), "best": batch / min(times)}))


def machine():
    """The CPU's vector extensions and the BLAS library with its kernels."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    vector = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i['internal_api']} {i.get('version')} ({i.get('architecture')} kernels, "
            f"{i['num_threads']} threads)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ]
    except ImportError:
        blas = []
    return {"vector_extensions": vector, "blas": blas}


def step_times(step, steps):
    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def images_per_second(step, batch, steps):
    return batch / float(np.median(step_times(step, steps)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--torch-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_child:
        return child(*args.torch_child)
    steps = 5 if args.quick else 30
    threads = os.cpu_count() or 1
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
        print("PyTorch is not installed (make bench installs it): NumPy numbers only")
    from overfeat_scratch.common.memory import keep_freed_memory
    from overfeat_scratch.ops.parallel import workers

    kept = keep_freed_memory()
    info = machine() | {"workers": workers(), "threads": threads, "freed_memory_kept": kept}
    print(f"CPU vector extensions: {' '.join(info['vector_extensions']) or 'unknown'}")
    print(f"BLAS: {'; '.join(info['blas']) or 'unknown'}; {workers()} worker threads")
    rows = []
    print(
        "images/s, median (best) step; ratio = ours / PyTorch\n"
        f"{'batch':>6} {'ours':>13} {'PyTorch':>13} {'ratio':>11} "
        f"{'PyTorch default malloc':>23} {'ratio':>11}  (target >= 1.0)"
    )
    for batch in (64, 128):
        rng = np.random.default_rng(batch)
        net, step_ours = ours(batch, steps, rng)
        step_theirs = theirs(net, batch, rng) if torch else None
        times = {"ours": [], "torch": []}
        children = []
        for _ in range(3):  # alternate, so that all see the same machine load
            times["ours"] += step_times(step_ours, steps)
            if step_theirs:
                times["torch"] += step_times(step_theirs, steps)
                children.append(torch_in_child(batch, steps, threads))
        row = {"batch": batch}
        for name, values in times.items():
            if values:
                row[name] = batch / float(np.median(values))
                row[f"{name}_best"] = batch / min(values)
        if children:
            row["torch_default_malloc"] = float(np.median([c["median"] for c in children]))
            row["torch_default_malloc_best"] = max(c["best"] for c in children)
            for key in ("torch", "torch_default_malloc"):
                row[f"ratio_{key}"] = row["ours"] / row[key]
                row[f"ratio_{key}_best"] = row["ours_best"] / row[f"{key}_best"]
        rows.append(row)

        def pair(key, width=13, digits=0, row=row):
            if key not in row:
                return f"{'-':>{width}}"
            text = f"{row[key]:.{digits}f} ({row[key + '_best']:.{digits}f})"
            return f"{text:>{width}}"

        print(
            f"{batch:>6} {pair('ours')} {pair('torch')} {pair('ratio_torch', 11, 2)} "
            f"{pair('torch_default_malloc', 23)} {pair('ratio_torch_default_malloc', 11, 2)}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info | {"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
