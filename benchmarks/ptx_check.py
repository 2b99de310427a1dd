"""Every CUDA kernel compiled for A100 (sm_80) and H100 (sm_90), without a GPU.

Run from the repository root, with the ``cuda`` extra installed (NVIDIA's NVVM and
``ptxas`` from PyPI wheels; no GPU, no driver)::

    python benchmarks/ptx_check.py                        # both targets, tables, JSON
    python benchmarks/ptx_check.py --targets sm_90        # one target
    python benchmarks/ptx_check.py --markdown             # the table of docs/performance.md

What it does (:mod:`overfeat_scratch.ptx` has the details): runs every public
CUDA operation once at a tiny size on the Numba simulator with a GPU's launch sizes,
recording each launch's kernel, argument types and block shape, plus a dry run of
every convolution and fully connected layer of ``fast``, ``accurate`` and ``mini``
(which tile and register block the backend selects for each); compiles each recorded
kernel to PTX with NVVM for every target and assembles it with ``ptxas -v``; prints
per target one row per kernel and configuration: threads per block at launch,
registers per thread, spill bytes, stack frame, static and dynamic shared memory, and
the theoretical occupancy with what limits it. Writes everything as JSON (``--json``,
default ``benchmarks/results/ptx_check.json``, which the docs read and a test holds to
what the compiler says). Exits with status 1 if a kernel fails to compile,
breaks a limit (more than 1024 threads per block, static shared memory over 48 KB, a
spill in a convolution or pooling kernel) or is never launched.

This is not a timing: ``benchmarks/gpu_check.py`` measures the kernels on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from overfeat_scratch import ptx


def selections(report: dict) -> list[str]:
    """For each convolution GEMM configuration: the layers that select it."""
    target = next(iter(report["targets"]))
    lines = []
    for row in report["targets"][target]:
        layers = [u for u in row["uses"] if u.endswith((" fwd", " bwd"))]
        if not layers:
            continue
        groups = {}
        for use in layers:
            model, scenario, layer, direction = use.split()
            groups.setdefault(f"{model} {scenario} {direction}", []).append(layer)
        text = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(groups.items()))
        lines.append(f"{row['label']}: {text}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", default=list(ptx.TARGETS), choices=ptx.TARGETS)
    parser.add_argument(
        "--json",
        type=Path,
        default=ptx.RESULTS,
        help="default: benchmarks/results/ptx_check.json (the docs' table)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    ptxas, why = ptx.toolchain()
    if ptxas is None:
        print(f"cannot compile: {why}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    report = ptx.run_check(tuple(args.targets))
    elapsed = time.perf_counter() - start

    if args.markdown:
        print(ptx.markdown_table(report))
    else:
        for target, rows in report["targets"].items():
            print(ptx.format_table(rows, target))
            print()
    print("Configurations the layers select (dry run of fast, accurate and mini):")
    for line in selections(report):
        print(f"  {line}")
    count = len(next(iter(report["targets"].values())))
    print(
        f"\n{count} kernels and configurations, {len(args.targets)} targets, {elapsed:.0f} s "
        f"(record {report['timings']['record_s']} s, compile {report['timings']['compile_s']} s)"
    )
    print(f"SM limits: {ptx.LIMITS_SOURCE}")

    found = ptx.problems(report) + [
        f"{name}: never launched by the recorded operations" for name in ptx.missing_kernels(report)
    ]
    for line in found:
        print(f"PROBLEM: {line}")
    if not found:
        print("No problem: every kernel compiles for every target within the limits.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report["problems"] = found
    report["elapsed_s"] = round(elapsed, 1)
    args.json.write_text(json.dumps(report, indent=1, default=list))
    print(f"JSON written to {args.json}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
