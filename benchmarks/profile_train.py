"""Where one training step of ``mini`` spends its time: per layer, per phase.

Run:  .venv/bin/python benchmarks/profile_train.py [--threads N] [--batch 128] [--json PATH]
      .venv/bin/python benchmarks/profile_train.py --detector [--threads N]

One step = forward, softmax cross-entropy, backward, momentum SGD, at batch 128 on
32x32 windows, timed over 20 steps after 3 of warm-up. ``--detector`` profiles the
detector's step instead: ``mini-detector`` on its training patches (batch 16 of
64x64, :data:`~overfeat_scratch.detect.detection.DETECTOR_CONFIG`), each a 9x9 map of
windows, with the mined-window loss. Every layer's forward and
backward pass is timed, and inside the convolutions the im2col copies and the
col2im folds (the rest of a convolution is its matrix products, the bias and the
reshapes). With ``--threads 1`` (the default) everything runs on one core, so the
phases add up to the step; with more threads the phases are summed over the
threads that ran them and only the step time is wall-clock.

The script wraps the functions it times by name, so it profiles any version of
the package that has the same layers (the performance page compares two).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, help="default: 128, or 16 with --detector")
    parser.add_argument("--detector", action="store_true", help="the detector's step")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 16 if args.detector else 128
    return args


def main():
    args = parse()
    # Before NumPy is imported: BLAS and the package's worker pool use this many threads.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    os.environ["OVERFEAT_THREADS"] = str(args.threads)
    import overfeat_scratch  # noqa: F401  (first: it sets OpenBLAS up before NumPy loads it)

    # isort: split
    import numpy as np

    from overfeat_scratch import build_network
    from overfeat_scratch.detect.detection import DETECTOR_CONFIG, PATCH, MinedDetection
    from overfeat_scratch.nn.train import MINI_CONFIG
    from overfeat_scratch.ops import conv
    from overfeat_scratch.ops.optim import SGD

    totals: dict[tuple[str, str], float] = {}

    def timed(key, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

        return wrapper

    network, config = ("mini-detector", DETECTOR_CONFIG) if args.detector else ("mini", MINI_CONFIG)
    net = build_network(network, seed=0).train()
    optimizer = SGD(net, 0.01, config.momentum, config.weight_decay)
    current = {"layer": "", "phase": ""}

    def in_layer(layer, method, phase):
        def wrapper(*a, **k):
            current["layer"], current["phase"] = layer.name, phase
            return timed((layer.name, phase), method)(*a, **k)

        return wrapper

    for layer in net:
        layer.forward = in_layer(layer, layer.forward, "forward")
        layer.backward = in_layer(layer, layer.backward, "backward")
    # The copies inside the convolutions (whichever the version has).
    copy = "columns" if hasattr(conv, "columns") else "im2col"
    for name, label in ((copy, "im2col"), ("col2im", "col2im")):
        original = getattr(conv, name)

        def phase(*a, _original=original, _label=label, **k):
            key = (current["layer"], f"{current['phase']}: of which {_label}")
            return timed(key, _original)(*a, **k)

        setattr(conv, name, phase)

    rng = np.random.default_rng(0)
    size = PATCH if args.detector else net.window()
    x = rng.random((args.batch, 1, size, size), dtype=np.float32)
    out = net.output_shape((1, size, size))[-1]
    # Detector labels: mostly background (class 10), a few digits, some ignored (-1).
    y = rng.choice([-1, 10, 10, 10, 10, 10, 3], size=(args.batch, out, out))
    if not args.detector:
        y = rng.integers(0, 10, (args.batch, 1, 1))
    mined = MinedDetection(seed=0)

    def loss(scores, labels):
        if args.detector:
            return mined.loss(net.backend, scores, labels)[:2]
        return net.backend.softmax_cross_entropy(scores, labels)

    def step():
        scores = net.forward(x)
        _, grad = timed(("loss", "forward+backward"), loss)(scores, y)
        net.backward(grad, input_grad=False)
        timed(("sgd", "update"), optimizer.step)()

    for _ in range(3):
        step()
    totals.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - start) / args.steps * 1e3
    rows = [
        {"layer": layer, "phase": phase, "ms": seconds / args.steps * 1e3}
        for (layer, phase), seconds in totals.items()
    ]
    rows.sort(key=lambda r: (r["phase"].split(":")[0] != "forward", 0))  # forward first
    rate = args.batch / per_step * 1e3
    print(
        f"{network}, batch {args.batch} of {size}x{size}, {args.threads} thread(s): "
        f"{per_step:.1f} ms per step, {rate:.0f} images/s"
    )
    print("| layer | phase | ms per step |\n|---|---|---:|")
    for row in rows:
        print(f"| {row['layer']} | {row['phase']} | {row['ms']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            record = {"threads": args.threads, "batch": args.batch, "step_ms": per_step}
            json.dump(record | {"rows": rows, "python": sys.version}, f, indent=1)


if __name__ == "__main__":
    main()
