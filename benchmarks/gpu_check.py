"""GPU check: every CUDA kernel against NumPy at OverFeat's sizes, and timings.

Run from the repository root on a machine with an NVIDIA GPU (PyTorch optional)::

    python benchmarks/gpu_check.py                 # fast (231) and accurate (221), batch 1, 32
    python benchmarks/gpu_check.py --quick         # one tile config, batch 1, 3 repeats
    python benchmarks/gpu_check.py --models fast --batches 1 --tiles 16
    python benchmarks/gpu_check.py --skip-kernels --skip-forward   # the other sections only
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_check.py --tiny   # smoke test, no GPU

What it does, in one process, section by section (each can be skipped with
``--skip-<section>``); each family of checks is a module of ``benchmarks/gpu_checks/``,
whose text says what it checks and how:

1. and 2. ``kernels`` (:mod:`gpu_checks.layers`): every layer kernel on the input
   shapes of every layer of both networks, into poisoned outputs, against NumPy in
   float64, and timed for several tile sizes and register blocks;
3. ``offset`` (:mod:`gpu_checks.offset`): offset pooling and interleaving at 461x569,
   against NumPy and PyTorch;
4. ``sgd`` (:mod:`gpu_checks.sgd`): the SGD update of a 113M-float parameter,
   against NumPy in float64 and ``torch.optim.SGD``;
5. ``forward`` (:mod:`gpu_checks.forward`): the whole forward pass of each network,
   against PyTorch + cuDNN (float32 and TF32);
6. ``dense`` (:mod:`gpu_checks.dense`): dense multi-scale evaluation at the paper's
   six scales, against NumPy (float32) and PyTorch;
7. ``train`` (:mod:`gpu_checks.train_step`): one training step of ``mini``, against
   NumPy's step and PyTorch's;
8. ``merge`` (:mod:`gpu_checks.merge`): the greedy merge, against ``merge_fast`` on
   the CPU (target: faster at 10,000 boxes);
9. ``nms`` (:mod:`gpu_checks.nms`): the NMS mask kernel and the whole NMS, against
   NumPy and torchvision.

It prints a rough estimate of the real-GPU run time first (:mod:`gpu_checks.estimate`),
short tables last, and writes everything to ``$OUT/gpu_check.json`` (``OUT`` defaults
to ``./out``), rewritten after each case so that an interrupted run keeps what it
measured. The exit status is 1 if any check failed.

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
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The package, and the checks with bench_merge's box generator.
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from gpu_checks import dense, forward, layers, merge, nms, offset, sgd, train_step  # noqa: E402
from gpu_checks.common import SIZES, load_torch  # noqa: E402
from gpu_checks.estimate import estimate_seconds, estimate_text  # noqa: E402
from numba import cuda  # noqa: E402

from overfeat_scratch.cuda import SIMULATOR, THREADS  # noqa: E402
from overfeat_scratch.cuda import nms as cuda_nms  # noqa: E402

# The sections in the order they run, each skipped with ``--skip-<name>``.
SECTIONS = {
    "kernels": layers,
    "offset": offset,
    "sgd": sgd,
    "forward": forward,
    "dense": dense,
    "train": train_step,
    "merge": merge,
    "nms": nms,
}
# The final tables, in the order they are printed (offset's holds the SGD update too).
TABLES = (layers, forward, offset, dense, train_step, merge, nms)
# Whose records can fail, in the order their failures are listed (layers: every
# kernel record, offset pooling and the SGD update included).
FAILURES = (layers, dense, train_step, merge, nms)


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


def summary(results):
    """The short tables of every section, a count of the failures, then each failure.

    Returns ``(text, whether anything failed)``.
    """
    lines = [line for module in TABLES for line in module.table(results)]
    failed = {module: module.failures(results) for module in FAILURES}
    lines.append("")
    lines.append(
        f"{len(results['kernels'])} kernel records, {len(failed[layers])} failed, "
        f"{len(layers.not_runnable(results))} configs not runnable; dense "
        f"{len(failed[dense])} failed, training step {len(failed[train_step])} failed; "
        f"merge {len(failed[merge])} of {len(results['merge'])} failed, NMS "
        f"{len(failed[nms])} of {len(results['nms'])} failed; {results['seconds']:.0f} s"
    )
    for found in failed.values():
        lines += found
    return "\n".join(lines), any(failed.values())


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

    torch = load_torch()
    for name, module in SECTIONS.items():
        if getattr(args, f"skip_{name}"):
            continue
        module.run(args, rng, torch, results, save)
        # The seconds since the last section ended.
        now = time.perf_counter() - start
        results["section_seconds"][name] = now - sum(results["section_seconds"].values())
        save()
    save()
    table, failed = summary(results)
    print(table)
    print(f"\nfull results: {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
