"""What the GPU checks share: the sizes, timing, error measures, poisoned buffers, the
kernel record, PyTorch, and the cells of the final tables."""

from __future__ import annotations

import json
import statistics
import time
from functools import partial

import numpy as np
from numba import cuda

from overfeat_scratch.cuda import SIMULATOR
from overfeat_scratch.nn import paper
from overfeat_scratch.nn.networks import build_from_specs, build_network

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
# The greedy merge and NMS: boxes per input.
BOX_SIZES = (1000, 10_000)
# Relative error allowed for float32 kernels against the float64 reference. "dense"
# and "train" compare float32 CUDA with float32 NumPy (see their modules).
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


# --------------------------------------------------------------------------------------
# The networks


def networks(args, seed):
    """``(model, network, input side)`` for each network a section checks, built one at
    a time: the tiny network of :data:`TINY_SPECS` with ``--tiny``, else the paper's
    ``--models`` (``seed=None``: zero weights, nothing drawn)."""
    if args.tiny:
        yield "tiny", build_from_specs(TINY_SPECS, 3, "tiny", seed=seed), TINY_SIZE
        return
    for model in args.models:
        yield model, build_network(model, seed=seed), SIZES[model]


def box_sizes(args, tiny_size):
    """Boxes per input of the merge and NMS checks."""
    return [tiny_size] if args.tiny else list(BOX_SIZES)


# --------------------------------------------------------------------------------------
# Timing


def sync():
    cuda.synchronize()


def first_call(run):
    """``(run(), ms)``: one call, synchronised, timed by the wall clock."""
    start = time.perf_counter()
    result = run()
    sync()
    return result, (time.perf_counter() - start) * 1e3


def event_times(event, run, repeats):
    """``repeats`` calls of ``run``, each timed in ms between two events of ``event()``
    (Numba's or PyTorch's CUDA events)."""
    times = []
    for _ in range(repeats):
        begin, end = event(), event()
        begin.record()
        run()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return times


def measure(run, repeats):
    """Call ``run`` once (the call whose output is checked), then time it.

    Returns ``(first result, median ms, all ms)``. On a GPU the first call is also the
    warm-up (it compiles); then ``repeats`` calls are timed with CUDA events. On the
    simulator, whose events time nothing, the first call's wall time is the timing.
    """
    result, ms = first_call(run)
    if SIMULATOR:
        return result, ms, [ms]
    times = event_times(cuda.event, run, repeats)
    return result, statistics.median(times), times


def measure_host(run, repeats, warm=False):
    """Like :func:`measure`, by the wall clock: for host functions that synchronise
    themselves (results read back) or run on the CPU. ``sync()`` after each call.

    Returns ``(first result, median ms, all ms)``. ``warm``: everything is already
    compiled, so the first call is also one of the ``repeats`` timed ones (the
    slow calls are not repeated for nothing). On the simulator the first call's
    time is the timing.
    """
    result, first = first_call(run)
    if SIMULATOR:
        return result, first, [first]
    times = [first] if warm else []
    while len(times) < repeats:
        times.append(first_call(run)[1])
    return result, statistics.median(times), times


# --------------------------------------------------------------------------------------
# Comparison, and outputs poisoned before a kernel writes them


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


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


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


# --------------------------------------------------------------------------------------
# Records and the lines printed as the checks go


def status(ok):
    """The word a progress line starts with."""
    return "ok " if ok else "FAIL"


def describe(error):
    """An exception as one line."""
    return f"{type(error).__name__}: {error}"


def report(what, rec, ok=None, hide=None):
    """Print ``rec`` as JSON after ``what`` (and after ``ok``/``FAIL`` when ``ok`` is
    given), without the keys that end with ``hide``."""
    shown = rec if hide is None else {k: v for k, v in rec.items() if not k.endswith(hide)}
    word = "" if ok is None else f"{status(ok)} "
    print(f"  {word}{what}: {json.dumps(shown, default=float)}", flush=True)


def record(case, what, config, error, left, exact, ms=None, times=None, flops=None):
    """One kernel record: ``error`` within the operation's tolerance (0 if ``exact``)
    and no output element ``left`` unwritten; printed as one line."""
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
    timing = f"{ms:9.3f} ms" if ms is not None else " " * 12
    print(
        f"  {status(ok)} {case['name']:<22} b{case['batch']:<3} {what:<8} {config:<7} "
        f"{timing}  err {error:.1e}  untouched {left}",
        flush=True,
    )
    return rec


def check_outputs(case, what, config, run, repeats, outs, refs, exact, flops=None, each=None):
    """Time ``run``, which writes the poisoned device arrays ``outs``, and record how far
    they are from ``refs``: identical if ``exact``, else the largest relative error.

    ``refs`` may be shorter than ``outs``: the outputs past it are only checked for
    being written. ``each``: a key for the list of the outputs' errors.
    """
    _, ms, times = measure(run, repeats)
    compare = mismatch if exact else relative_error
    errors = [compare(out, ref) for out, ref in zip(outs, refs, strict=False)]
    rec = record(case, what, config, max(errors), untouched(*outs), exact, ms, times, flops)
    if each is not None:
        rec[each] = errors
    return rec


def against_torch(rec, torch_ms):
    """Add PyTorch's time of the same work to a kernel record, and the ratio ours / it."""
    rec["torch_ms"] = torch_ms
    rec["ratio_vs_torch"] = rec["ms"] / torch_ms


def attempt(rec, run):
    """``run()``; if it raises (a launch or compilation failure), None, with ``rec``
    marked failed and the error kept, so that the other configurations go on."""
    try:
        return run()
    except Exception as error:
        rec.update(ok=False, error=describe(error))
        return None


def failure_lines(records, head, detail):
    """``FAILED`` and ``head(rec)`` for each failed record (``ok`` False; None is a
    configuration that could not run), then its error or ``detail(rec)``."""
    return [
        f"FAILED {head(rec)}: {rec['error'] if 'error' in rec else detail(rec)}"
        for rec in records
        if rec.get("ok") is False
    ]


# --------------------------------------------------------------------------------------
# PyTorch


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


def time_torch(torch, fn, repeats):
    for _ in range(3):  # warm-up, and cuDNN's algorithm search
        fn()
    torch.cuda.synchronize()
    event = partial(torch.cuda.Event, enable_timing=True)
    return statistics.median(event_times(event, fn, repeats))


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
# Table cells

# The columns of a PyTorch comparison in the tables, float32 (TF32 off) then TF32, and
# the ``(key, format)`` of their cells.
TORCH_COLUMNS = f"{'torch fp32':>11}{'ratio':>7}{'torch tf32':>11}{'ratio':>7}"
TORCH_CELLS = (
    ("torch_fp32_ms", "11.2f"),
    ("ratio_vs_torch_fp32", "7.2f"),
    ("torch_tf32_ms", "11.2f"),
    ("ratio_vs_torch_tf32", "7.2f"),
)


def table_cell(rec, key, fmt):
    """``rec[key]`` formatted, or a dash of the same width where it is missing."""
    return format(rec[key], fmt) if key in rec else "-".rjust(len(format(0.0, fmt)))


def cells(rec, *columns):
    """:func:`table_cell` of each ``(key, format)`` of ``columns``, side by side."""
    return "".join(table_cell(rec, key, fmt) for key, fmt in columns)


def yes_no(flag):
    return "yes" if flag else "NO"


def config_table(title, header, rows, first, cells):
    """A table: a blank line, ``title``, ``header``, then one line per record of
    ``rows``: ``first(rec)``, then ``cells(rec)``, or ``NO`` for a configuration that
    raised."""
    lines = ["", title, header]
    for rec in rows:
        lines.append(first(rec) + ("  NO" if "error" in rec else cells(rec)))
    return lines
