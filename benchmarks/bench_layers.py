"""CPU benchmark: the NumPy backend against PyTorch CPU and against the machine's floor.

Run from the repository root::

    .venv/bin/python benchmarks/bench_layers.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_layers.py --quick    # smoke test, under a minute
    .venv/bin/python benchmarks/bench_layers.py --json results.json

Everything is measured in one process, side by side: each group of measurements
(one network and batch size, or all convolution shapes) runs our code and PyTorch's in
two back-to-back phases, the order swapping from group to group (see :class:`Phases`),
and the tables report medians of repeats. At the end the script prints how much CPU
other processes took during the run: on a shared machine, trust only a quiet run.

What is measured

1. The machine's **floor**: the float32 GEMM rate (a large ``np.float32`` matmul) and
   the memory bandwidth (the best of an array copy, an array sum and a BLAS
   matrix-vector product). A forward pass cannot beat
   ``multiply-adds * 2 / GEMM rate + weight bytes / bandwidth``.
2. The **forward pass** of ``fast`` (231x231) and ``accurate`` (221x221), batch 1 and 16:
   the whole network and every layer on its real input, against PyTorch's idiomatic
   path (``nn.Conv2d``/``nn.ReLU``/``nn.MaxPool2d``, then flatten + ``nn.Linear``, in
   ``torch.inference_mode``) with the same weights and the same number of threads.
3. **Convolution forward + backward** for every convolution shape of both networks:
   what a ``Conv2d`` layer runs (its forward in eval mode, the NumPy backend's
   ``conv2d_backward_tiled``) against ``nn.Conv2d`` + autograd.
4. The **peak memory** (VmHWM) of a batch-1 forward pass of ``fast``, in a subprocess.

PyTorch is optional (``pip install torch``, CPU wheel); without it the PyTorch columns
are skipped with a message. It is never a dependency of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import overfeat_scratch  # noqa: E402, F401  (first: it sets OpenBLAS up before NumPy loads it)

# isort: split
import numpy as np  # noqa: E402

from overfeat_scratch.nn.layers import Conv2d  # noqa: E402
from overfeat_scratch.nn.networks import build_network  # noqa: E402
from overfeat_scratch.ops import conv as conv_ops  # noqa: E402

SIZES = {"fast": 231, "accurate": 221}
TARGETS = {
    "forward_vs_torch": 1.0,  # ours / PyTorch, forward pass
    "forward_vs_floor": 1.5,  # ours / machine floor, forward pass
    "conv_forward_vs_torch": 1.0,  # ours / PyTorch, each convolution layer's forward
    "backward_vs_torch": 1.0,  # ours / PyTorch, convolution backward
    "peak_memory_mb": 1500.0,  # batch-1 forward of fast
}
BLAS_ENV = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_THREAD_TIMEOUT",
    "OMP_NUM_THREADS",
)


# --------------------------------------------------------------------------------------
# Timing


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def clock(fn):
    """``fn`` made to return the seconds it took (what :func:`measure` expects)."""
    return lambda: timed(fn)


def measure(fn, repeats: int, warm_s: float = 0.05) -> float:
    """Median of ``repeats`` calls of ``fn`` (which returns seconds), after a warm-up.

    The warm-up is at least one call and at least ``warm_s`` seconds of calls: on this
    kind of machine an idle core takes a few milliseconds to come back.
    """
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < warm_s:
        fn()
    return float(np.median([fn() for _ in range(repeats)]))


class Phases:
    """Measure each library in its own phase, alternating which goes first.

    NumPy's OpenBLAS and PyTorch's OpenMP each keep worker threads spinning for a while
    after a call; interleaving them call by call on a 2-core machine makes each wait
    for the other's spinning threads (a multiple of the 4 ms scheduler tick), which
    measures the collision, not the library. So every group of measurements runs all
    of one library, then all of the other, each phase starting with ``settle_s``
    seconds of that library's work, and the next group swaps the order.
    """

    def __init__(self, repeats: int, settle_s: float, warm_s: float = 0.05):
        self.repeats = repeats
        self.settle_s = settle_s
        self.warm_s = warm_s
        self.flip = False

    def run(self, sides: dict, repeats: int | None = None) -> dict:
        """``sides[library][name]`` is a function returning seconds -> median seconds."""
        repeats = repeats or self.repeats
        names = [lib for lib in sides if sides[lib]]
        if self.flip:
            names = names[::-1]
        self.flip = not self.flip
        out = {}
        for lib in names:
            fns = sides[lib]
            first = next(iter(fns.values()))
            start = time.perf_counter()
            while time.perf_counter() - start < self.settle_s:
                first()
            out[lib] = {name: measure(fn, repeats, self.warm_s) for name, fn in fns.items()}
        return out


# --------------------------------------------------------------------------------------
# The machine


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CpuMonitor:
    """How much CPU *other* processes used while the benchmark ran (Linux only).

    Busy time from ``/proc/stat`` minus this process's own CPU time (and its
    children's). On a shared machine the numbers mean little when others are busy.
    """

    def __init__(self):
        self.start = self.sample()

    @staticmethod
    def sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        steal = fields[7] if len(fields) > 7 else 0
        t = os.times()
        return {
            "busy": sum(fields[:8]) - idle - steal,
            "steal": steal,
            "own": t.user + t.system + t.children_user + t.children_system,
            "wall": time.perf_counter(),
        }

    def report(self) -> dict | None:
        end = self.sample()
        if self.start is None or end is None:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        wall = end["wall"] - self.start["wall"]
        busy = (end["busy"] - self.start["busy"]) / hz
        own = end["own"] - self.start["own"]
        return {
            "wall_s": wall,
            "own_cpu_s": own,
            "other_cores": max(busy - own, 0.0) / wall,
            "steal_cores": (end["steal"] - self.start["steal"]) / hz / wall,
        }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numpy_blas() -> str:
    """The BLAS NumPy was built against, from ``numpy.show_config``."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        detail = blas.get("openblas configuration", "")
        return f"{text} ({' '.join(detail.split())})" if detail else text
    except Exception:  # older NumPy: no mode="dicts"
        return "unknown (see numpy.show_config())"


def load_torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(cpu_count())
    return torch


def environment(torch) -> dict:
    import numba

    env = {
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "blas_env": {key: os.environ.get(key) for key in BLAS_ENV},
        "torch": None,
    }
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return env


def machine_floor(quick: bool) -> dict:
    """Measured float32 GEMM rate (GFLOP/s) and memory bandwidth (GB/s)."""
    rng = np.random.default_rng(0)
    n = 2048
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    repeats = 3 if quick else 9
    t = measure(clock(lambda: np.matmul(a, b, out=c)), repeats, warm_s=0.2 if quick else 0.5)
    gflops = 2 * n**3 / t / 1e9

    size = 64 * 2**20  # float32 elements: 256 MB, far beyond any cache
    src = rng.standard_normal(size, dtype=np.float32)
    dst = np.empty_like(src)
    side = int(np.sqrt(size))
    mat = src[: side * side].reshape(side, side)
    vec = np.ones(side, np.float32)
    fns = {
        "copy": lambda: np.copyto(dst, src),
        "sum": lambda: src.sum(),
        "gemv": lambda: mat @ vec,
    }
    t = {name: measure(clock(fn), repeats, warm_s=0.1) for name, fn in fns.items()}
    nbytes = src.nbytes
    bandwidth = {
        "copy": 2 * nbytes / t["copy"] / 1e9,  # read + write
        "sum": nbytes / t["sum"] / 1e9,
        "gemv": mat.nbytes / t["gemv"] / 1e9,
    }
    return {
        "gemm_size": n,
        "gemm_gflops": gflops,
        "bandwidth_gbs": bandwidth,
        "best_bandwidth_gbs": max(bandwidth.values()),
    }


def layer_floor(layer, in_shape, batch, floor) -> float:
    """Seconds: the layer's multiply-adds at the GEMM rate plus its weights at full bandwidth."""
    macs = layer.multiply_adds(in_shape) * batch
    weight_bytes = sum(p.nbytes for p in layer.params.values())
    return 2 * macs / (floor["gemm_gflops"] * 1e9) + weight_bytes / (
        floor["best_bandwidth_gbs"] * 1e9
    )


# --------------------------------------------------------------------------------------
# The forward pass


def torch_network(net, torch):
    """The same network in idiomatic PyTorch, with our weights; module names match ours."""
    from collections import OrderedDict

    nn = torch.nn
    modules = OrderedDict()
    flat = False
    for layer in net.layers:
        if layer.kind == "conv":
            module = nn.Conv2d(
                layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding
            )
            weight = layer.params["w"]
        elif layer.kind == "full":
            if not flat:
                modules["flatten"] = nn.Flatten()
                flat = True
            module = nn.Linear(layer.in_channels * layer.kernel**2, layer.out_channels)
            weight = layer.params["w"].reshape(layer.out_channels, -1)
        elif layer.kind == "relu":
            module = nn.ReLU(inplace=True)
        elif layer.kind == "pool":
            module = nn.MaxPool2d(layer.kernel, layer.stride)
        elif layer.kind == "dropout":
            module = nn.Dropout(layer.p)
        else:
            raise ValueError(f"no PyTorch equivalent for {layer!r}")
        if layer.params:
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
                module.bias.copy_(torch.from_numpy(layer.params["b"]))
        modules[layer.name] = module
    return nn.Sequential(modules).eval()


def bench_forward(model: str, batch: int, phases: Phases, repeats: int, floor: dict, torch) -> dict:
    """The whole forward pass and every layer on its real input, ours and PyTorch's."""
    size = SIZES[model]
    net = build_network(model).eval()
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size), dtype=np.float32)
    macs = net.multiply_adds((3, size, size))
    weight_bytes = sum(p.nbytes for layer in net for p in layer.params.values())
    result = {
        "model": model,
        "size": size,
        "batch": batch,
        "multiply_adds_per_image": macs,
        "weight_bytes": weight_bytes,
        "floor_s": 2 * macs * batch / (floor["gemm_gflops"] * 1e9)
        + weight_bytes / (floor["best_bandwidth_gbs"] * 1e9),
    }

    # Every layer's real input: one pass through the network.
    inputs, shapes, h = [], [], x
    for layer in net.layers:
        inputs.append(h)
        shapes.append(tuple(h.shape[1:]))
        h = layer.forward(h)
    ours_out = h.reshape(batch, -1)

    ours = {"network": clock(lambda: net.forward(x))}
    for layer, inp in zip(net.layers, inputs, strict=True):
        ours[layer.name] = clock(lambda layer=layer, inp=inp: layer.forward(inp))

    theirs = {}
    if torch is not None:
        tnet = torch_network(net, torch)
        tx = torch.from_numpy(x)
        tinputs, t = {}, tx
        with torch.inference_mode():
            torch_out = tnet(tx).numpy()
            for name, module in tnet.named_children():
                tinputs[name] = t
                # ReLU is in place: keep the recorded input of the ReLU layer intact.
                t = module(t.clone()) if isinstance(module, torch.nn.ReLU) else module(t)
        result["max_rel_diff"] = float(
            np.abs(ours_out - torch_out).max() / max(float(np.abs(torch_out).max()), 1e-30)
        )

        def inference(module, tin):
            def run():
                with torch.inference_mode():
                    module(tin)

            return clock(run)

        theirs["network"] = inference(tnet, tx)
        first_full = next((la for la in net.layers if la.kind == "full"), None)
        for layer in net.layers:
            module, tin = tnet._modules[layer.name], tinputs[layer.name]
            if layer is first_full:  # PyTorch flattens first: time both together
                module, tin = torch.nn.Sequential(tnet.flatten, module), tinputs["flatten"]
            theirs[layer.name] = inference(module, tin)

    times = phases.run({"ours": ours, "torch": theirs}, repeats)
    result["ours_s"] = times["ours"]["network"]
    result["torch_s"] = times["torch"]["network"] if theirs else None
    result["layers"] = [
        {
            "layer": layer.name,
            "kind": layer.kind,
            "in_shape": [batch, *shape],
            "ours_s": times["ours"][layer.name],
            "torch_s": times["torch"][layer.name] if theirs else None,
            "floor_s": layer_floor(layer, shape, batch, floor) if layer.params else None,
        }
        for layer, shape in zip(net.layers, shapes, strict=True)
    ]
    return result


# --------------------------------------------------------------------------------------
# Convolution forward + backward


def conv_shapes(batch: int, models) -> list[dict]:
    """Every convolution layer of the networks at its training-window input size."""
    shapes = []
    for model in models:
        net = build_network(model, seed=None)
        shape = (3, SIZES[model], SIZES[model])
        for layer in net.layers:
            if layer.kind == "conv":
                shapes.append(
                    {
                        "name": f"{model}.{layer.name}",
                        "x": (batch, *shape),
                        "w": (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel),
                        "stride": layer.stride,
                        "padding": layer.padding,
                    }
                )
            shape = layer.output_shape(shape)
    return shapes


def bench_conv(specs: list[dict], phases: Phases, torch) -> list[dict]:
    """A ``Conv2d`` layer's forward (eval mode) and the backend's backward
    (``conv2d_backward_tiled``) against ``nn.Conv2d`` and autograd."""
    ours, theirs, rows = {}, {}, []
    for spec in specs:
        rng = np.random.default_rng(2)
        x = rng.standard_normal(spec["x"], dtype=np.float32)
        w = rng.standard_normal(spec["w"], dtype=np.float32) * np.float32(0.01)
        b = np.zeros(spec["w"][0], np.float32)
        s, p = spec["stride"], spec["padding"]
        y = conv_ops.conv2d_forward(x, w, b, s, p)
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        name = spec["name"]
        # The forward pass as a network in eval mode runs it: 3x3 layers of stride 1 by
        # Winograd's F(2x2, 3x3), with the filters transformed once (Conv2d keeps them).
        layer = Conv2d(spec["w"][1], spec["w"][0], spec["w"][2], s, p).eval()
        layer.params = {"w": w, "b": b}
        layer.forward(x)
        ours[name + ":fwd"] = clock(lambda layer=layer, x=x: layer.forward(x))
        ours[name + ":bwd"] = clock(
            lambda dy=dy, x=x, w=w, s=s, p=p: conv_ops.conv2d_backward_tiled(dy, x, w, s, p)
        )
        if torch is not None:
            module = torch.nn.Conv2d(spec["w"][1], spec["w"][0], spec["w"][2], s, p)
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(w))
                module.bias.zero_()
            tx = torch.from_numpy(x).clone().requires_grad_(True)
            tdy = torch.from_numpy(dy)

            def forward(module=module, tx=tx):
                module.zero_grad(set_to_none=True)
                tx.grad = None
                return module(tx)

            def backward(forward=forward, tdy=tdy):
                ty = forward()  # autograd needs a fresh graph: untimed
                return timed(lambda: ty.backward(tdy))

            theirs[name + ":fwd"] = clock(forward)
            theirs[name + ":bwd"] = backward
        n, c, _, _ = spec["x"]
        o, _, k, _ = spec["w"]
        rows.append({**spec, "multiply_adds": n * o * c * k * k * y.shape[2] * y.shape[3]})

    times = phases.run({"ours": ours, "torch": theirs})
    for row in rows:
        for lib in ("ours", "torch"):
            for part in ("fwd", "bwd"):
                value = times[lib][f"{row['name']}:{part}"] if lib in times else None
                row[f"{lib}_{part}_s"] = value
    return rows


# --------------------------------------------------------------------------------------
# Peak memory


MEMORY_PROBE = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from overfeat_scratch.nn.networks import build_network

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

before = hwm()
net = build_network("fast").eval()
built = hwm()
x = np.random.default_rng(0).standard_normal((1, 3, 231, 231), dtype=np.float32)
net.forward(x)
print(before, built, hwm())
"""


def peak_memory() -> dict:
    """VmHWM in MB of a fresh process after import, after building ``fast``, after a forward."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        check=True,
    )
    before, built, peak = (float(v) for v in out.stdout.split())
    return {"after_import_mb": before, "after_build_mb": built, "after_forward_mb": peak}


# --------------------------------------------------------------------------------------
# Report


def ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def mark(value, target) -> str:
    if value is None:
        return "n/a"
    return "ok" if value <= target else "MISS"


def print_table(header, rows):
    """A plain text table: first column left-aligned, the rest right-aligned."""
    table = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(row):
        cells = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells)

    print(line(table[0]))
    print("-" * len(line(table[0])))
    for row in table[1:]:
        print(line(row))


def report_forward(result):
    b = result["batch"]
    title = (
        f"\n{result['model']} {result['size']}x{result['size']}, batch {b}: forward, ms per image"
    )
    if "max_rel_diff" in result:
        title += f" (ours vs torch: max relative difference {result['max_rel_diff']:.1e})"
    print(title)
    rows = []
    for row in result["layers"]:
        rows.append(
            [
                row["layer"],
                ms(row["ours_s"] / b),
                ms(row["torch_s"] / b if row["torch_s"] else None),
                ratio(row["ours_s"], row["torch_s"]),
                ms(row["floor_s"] / b if row["floor_s"] else None),
                ratio(row["ours_s"], row["floor_s"]),
            ]
        )
    total_ours = sum(r["ours_s"] for r in result["layers"])
    total_torch = (
        sum(r["torch_s"] for r in result["layers"]) if result["torch_s"] is not None else None
    )
    rows.append(
        [
            "sum of layers",
            ms(total_ours / b),
            ms(total_torch / b if total_torch else None),
            ratio(total_ours, total_torch),
            ms(result["floor_s"] / b),
            ratio(total_ours, result["floor_s"]),
        ]
    )
    rows.append(
        [
            "network forward",
            ms(result["ours_s"] / b),
            ms(result["torch_s"] / b if result["torch_s"] else None),
            ratio(result["ours_s"], result["torch_s"]),
            ms(result["floor_s"] / b),
            ratio(result["ours_s"], result["floor_s"]),
        ]
    )
    print_table(["layer", "ours", "torch", "ours/torch", "floor", "ours/floor"], rows)


def summary_rows(results) -> list[dict]:
    """One line per target: the measured value, the target and whether it is met."""
    rows = []
    for f in results["forward"]:
        torch_ratio = f["ours_s"] / f["torch_s"] if f["torch_s"] else None
        rows.append(
            {
                "what": f"{f['model']} forward, batch {f['batch']}",
                "ours_ms_per_image": f["ours_s"] * 1e3 / f["batch"],
                "torch_ms_per_image": f["torch_s"] * 1e3 / f["batch"] if f["torch_s"] else None,
                "floor_ms_per_image": f["floor_s"] * 1e3 / f["batch"],
                "ours_over_torch": torch_ratio,
                "ours_over_floor": f["ours_s"] / f["floor_s"],
                "meets_torch_target": None
                if torch_ratio is None
                else torch_ratio <= TARGETS["forward_vs_torch"],
                "meets_floor_target": f["ours_s"] / f["floor_s"] <= TARGETS["forward_vs_floor"],
            }
        )
    for c in results["conv"]:
        ratio = c["ours_bwd_s"] / c["torch_bwd_s"] if c["torch_bwd_s"] else None
        rows.append(
            {
                "what": f"{c['name']} backward, batch {c['x'][0]}",
                "ours_ms": c["ours_bwd_s"] * 1e3,
                "torch_ms": c["torch_bwd_s"] * 1e3 if c["torch_bwd_s"] else None,
                "ours_over_torch": ratio,
                "meets_torch_target": None
                if ratio is None
                else ratio <= TARGETS["backward_vs_torch"],
            }
        )
    if "memory" in results:
        peak = results["memory"]["after_forward_mb"]
        rows.append(
            {
                "what": "peak memory, fast forward, batch 1",
                "peak_mb": peak,
                "meets_target": peak < TARGETS["peak_memory_mb"],
            }
        )
    return rows


def report(results):
    env = results["environment"]
    print("\n== Summary ==")
    print(f"CPU: {env['cpu']}, {env['cores']} cores; numpy {env['numpy']}, torch {env['torch']}")
    rows = []
    for row in summary_rows(results):
        if not row["what"].split(",")[0].endswith("forward"):
            continue
        rows.append(
            [
                row["what"],
                f"{row['ours_ms_per_image']:.1f}",
                "-" if row["torch_ms_per_image"] is None else f"{row['torch_ms_per_image']:.1f}",
                f"{row['floor_ms_per_image']:.1f}",
                "-" if row["ours_over_torch"] is None else f"{row['ours_over_torch']:.2f}",
                mark(row["ours_over_torch"], TARGETS["forward_vs_torch"]),
                f"{row['ours_over_floor']:.2f}",
                mark(row["ours_over_floor"], TARGETS["forward_vs_floor"]),
            ]
        )
    print(
        f"\nForward (ms per image); targets: ours/torch <= {TARGETS['forward_vs_torch']}, "
        f"ours/floor <= {TARGETS['forward_vs_floor']}"
    )
    print_table(
        ["", "ours", "torch", "floor", "ours/torch", "", "ours/floor", ""],
        rows,
    )

    rows = []
    for c in results["conv"]:
        bwd_ratio = c["ours_bwd_s"] / c["torch_bwd_s"] if c["torch_bwd_s"] else None
        fwd_ratio = c["ours_fwd_s"] / c["torch_fwd_s"] if c["torch_fwd_s"] else None
        both = c["ours_fwd_s"] + c["ours_bwd_s"]
        tboth = c["torch_fwd_s"] + c["torch_bwd_s"] if c["torch_fwd_s"] else None
        rows.append(
            [
                c["name"],
                "x".join(map(str, c["x"][1:])),
                "x".join(map(str, c["w"])) + f" s{c['stride']} p{c['padding']}",
                ms(c["ours_fwd_s"]),
                ms(c["torch_fwd_s"]),
                "-" if fwd_ratio is None else f"{fwd_ratio:.2f}",
                mark(fwd_ratio, TARGETS["conv_forward_vs_torch"]),
                ms(c["ours_bwd_s"]),
                ms(c["torch_bwd_s"]),
                "-" if bwd_ratio is None else f"{bwd_ratio:.2f}",
                mark(bwd_ratio, TARGETS["backward_vs_torch"]),
                ms(both),
                ms(tboth),
                ratio(both, tboth),
            ]
        )
    batch = results["conv"][0]["x"][0] if results["conv"] else 1
    print(
        f"\nConvolution forward + backward, batch {batch} (ms); "
        f"targets: forward ours/torch <= {TARGETS['conv_forward_vs_torch']}, "
        f"backward ours/torch <= {TARGETS['backward_vs_torch']}"
    )
    print_table(
        [
            "layer",
            "input",
            "weight",
            "fwd",
            "torch",
            "fwd ratio",
            "",
            "bwd",
            "torch",
            "bwd ratio",
            "",
            "f+b",
            "torch",
            "f+b ratio",
        ],
        rows,
    )

    mem = results["memory"]
    print(
        f"\nPeak memory, batch-1 forward of fast (VmHWM): {mem['after_forward_mb']:.0f} MB "
        f"(after import {mem['after_import_mb']:.0f} MB, after build "
        f"{mem['after_build_mb']:.0f} MB); target < {TARGETS['peak_memory_mb']:.0f} MB: "
        f"{mark(mem['after_forward_mb'], TARGETS['peak_memory_mb'])}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, batch 1 (CI smoke)")
    parser.add_argument("--json", type=Path, help="write all results to this JSON file")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (median)")
    parser.add_argument(
        "--batches", type=int, nargs="+", help="forward batch sizes (default 1 16; quick: 1)"
    )
    parser.add_argument("--conv-batch", type=int, default=1, help="batch of the conv benchmark")
    parser.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    settle_s, warm_s = (0.25, 0.02) if args.quick else (1.0, 0.05)
    batches = args.batches or ([1] if args.quick else [1, 16])

    start = time.perf_counter()
    monitor = CpuMonitor()
    torch = load_torch()
    env = environment(torch)
    print("== Environment ==")
    for key, value in env.items():
        print(f"{key}: {value}")
    if torch is None:
        print("PyTorch is not importable: PyTorch columns are skipped (pip install torch, CPU).")

    floor = machine_floor(args.quick)
    print("\n== Machine floor ==")
    print(f"float32 GEMM {floor['gemm_size']}^3: {floor['gemm_gflops']:.1f} GFLOP/s")
    bw = ", ".join(f"{k} {v:.1f}" for k, v in floor["bandwidth_gbs"].items())
    print(f"memory bandwidth (GB/s): {bw}; floor uses the best, {floor['best_bandwidth_gbs']:.1f}")

    phases = Phases(repeats, settle_s, warm_s)
    results = {"environment": env, "floor": floor, "targets": TARGETS, "forward": [], "conv": []}
    for model in args.models:
        for batch in batches:
            r = repeats if batch == 1 else max(3, repeats // 2)
            result = bench_forward(model, batch, phases, r, floor, torch)
            results["forward"].append(result)
            report_forward(result)

    print("\nconvolution forward + backward ...")
    specs = conv_shapes(args.conv_batch, args.models)
    results["conv"] = bench_conv(specs, phases, torch)

    results["memory"] = peak_memory()
    results["summary"] = summary_rows(results)
    report(results)
    results["seconds"] = time.perf_counter() - start
    results["contention"] = monitor.report()
    print(f"\n(benchmark took {results['seconds']:.0f} s)")
    if results["contention"] is not None:
        other = results["contention"]["other_cores"]
        steal = results["contention"]["steal_cores"]
        print(
            f"other processes used {other:.2f} of {env['cores']} cores on average during the "
            f"run (hypervisor steal {steal:.2f})"
            + ("; WARNING: a busy machine, timings are unreliable" if other > 0.1 else "")
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
