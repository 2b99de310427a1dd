"""Every CUDA kernel compiled by NVIDIA's compiler, without a GPU: registers, spills, occupancy.

The Numba simulator runs a kernel as plain Python, so it accepts code that the CUDA
compiler rejects (Python objects, unsupported functions, dtype mixes that fail only
in typing) and says nothing about what a kernel costs on a GPU. This module closes
that gap as far as a machine without a GPU can: it compiles every kernel the package
launches to PTX with NVIDIA's NVVM (``numba.cuda.compile_ptx``, which needs neither a
GPU nor a driver), assembles the PTX for a real architecture with ``ptxas -v``, and
reads back each kernel's registers per thread, spill stores and loads, stack frame
and static shared memory. With the threads per block of the launch, those give the
theoretical occupancy against the limits of an SM (:data:`TARGETS`).

Three steps, each in its own process (``python -m overfeat_scratch.ptx ...``;
:func:`run_check` runs all three):

1. **Record** (on the simulator, ``NUMBA_ENABLE_CUDASIM=1``, with
   ``OVERFEAT_CUDA_SIZES=gpu`` so that every launch has a GPU's tile and block size):
   every public CUDA operation runs once at a tiny size (:func:`exercises`), and a
   hook on the simulator's kernel launch records each launch: which kernel (for the
   kernels made by a factory, the factory's arguments: tile, register block, block
   size, store function), the Numba types of its arguments, exactly as the
   dispatcher would type them on a GPU, and the block shape. Then the convolution
   and fully connected layers of ``fast``, ``accurate`` and ``mini`` call the host
   wrappers at their real shapes in a *dry run* (launches recorded, not executed;
   the arrays are allocated but never touched, so they cost no memory): that
   records the tile and register block the backend selects for each layer
   (:func:`network_layers`). No signature is written by hand, so none can drift
   from the code.
2. **Compile** (no simulator, no GPU), one process per target: each recorded
   (kernel, argument types) pair goes through ``compile_ptx`` for the target's
   compute capability, with the kernel's own ``@cuda.jit`` options (launch bounds,
   fastmath, ...: :data:`COMPILE_OPTIONS`), then ``ptxas -v -arch=sm_XY``.
3. **Report**: :func:`occupancy` for every row, a table per target
   (:func:`format_table`) and a JSON record.

The compute capability of device functions
------------------------------------------

``compile_ptx(kernel.py_func, sig, cc=...)`` is given the target, but a kernel that
calls a ``@cuda.jit(device=True)`` function types that call through the device
function's dispatcher, and ``CUDADispatcher.compile_device`` asks
``get_current_device().compute_capability``: with no driver that raises
``CudaSupportError``. numba-cuda has no setting for it (``NUMBA_CUDA_DEFAULT_PTX_CC``
only sets ``compile_ptx``'s default ``cc``, which the dispatcher does not read), and
a kernel cannot be compiled without typing its calls. :func:`target_device` is the
narrowest fix: for the duration of the compile it replaces the one name the
dispatcher module looks up, ``numba.cuda.dispatcher.get_current_device``, with a
function that reports the target's compute capability, and restores it afterwards
(``unittest.mock.patch.object``, which fails loudly if a numba-cuda release renames
it). Nothing else of the driver is touched or faked. A device function's compiled
overload is cached by argument types only, not by compute capability, so each
target compiles in a fresh process: one target's device functions never serve
another.

The compile check does not replace a run on hardware (``benchmarks/gpu_check.py``):
it says what the compiler accepts and what each kernel asks of an SM, not how fast
it runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .common.checks import InputError, InputTypeError

# --------------------------------------------------------------------------------------
# The SM limits of each target: the one place they are written down.
#
# Sources: NVIDIA CUDA C++ Programming Guide, "Compute Capabilities", table
# "Technical Specifications per Compute Capability" (threads, blocks, warps and
# registers per SM and per block, shared memory per SM and per block, the 1 KB the
# driver reserves per block); the allocation granularities are those of the CUDA
# Occupancy Calculator, cuda_occupancy.h in the CUDA runtime (registers allocated per
# warp in units of 256, in 4 sub-partitions per SM; shared memory in units of 128
# bytes). SM counts: the A100 SXM4 (108 SMs) and H100 SXM5 (132 SMs) datasheets.

COMMON_LIMITS = {
    "warp_size": 32,
    "max_threads_per_block": 1024,
    "max_threads_per_sm": 2048,
    "max_blocks_per_sm": 32,
    "regs_per_sm": 65536,
    "regs_per_block": 65536,
    "max_regs_per_thread": 255,
    "reg_alloc_unit": 256,
    "sub_partitions": 4,
    "smem_per_block": 48 * 1024,  # static shared memory, and dynamic without opt-in
    "smem_reserved_per_block": 1024,
    "smem_alloc_unit": 128,
}
TARGETS = {
    "sm_80": dict(
        COMMON_LIMITS,
        cc=(8, 0),
        gpu="A100",
        sms=108,
        smem_per_sm=164 * 1024,
        smem_per_block_optin=163 * 1024,
        # Shared memory carveouts an SM can be configured with (KB).
        smem_carveouts_kb=(0, 8, 16, 32, 64, 100, 132, 164),
    ),
    "sm_90": dict(
        COMMON_LIMITS,
        cc=(9, 0),
        gpu="H100",
        sms=132,
        smem_per_sm=228 * 1024,
        smem_per_block_optin=227 * 1024,
        smem_carveouts_kb=(0, 8, 16, 32, 64, 100, 132, 164, 196, 228),
    ),
}
LIMITS_SOURCE = (
    "CUDA C++ Programming Guide, Compute Capabilities (technical specifications per "
    "compute capability); CUDA Occupancy Calculator (cuda_occupancy.h) for the "
    "allocation granularities; A100 / H100 SXM datasheets for the SM counts"
)

# The kernel options (``@cuda.jit(...)``) that compile_ptx takes too: each kernel is
# compiled as its dispatcher would compile it.
COMPILE_OPTIONS = ("debug", "lineinfo", "opt", "fastmath", "launch_bounds")

# Modules whose kernels must not spill (the hot, per-pixel ones).
NO_SPILL_MODULES = ("conv", "pool", "offset_pool")

# The package of the kernels, and the directory that holds the package.
PACKAGE = "overfeat_scratch.cuda"
ROOT = Path(__file__).resolve().parents[1]
# The committed report: what the docs show and tests/test_ptx.py checks.
RESULTS = ROOT / "benchmarks" / "results" / "ptx_check.json"


# --------------------------------------------------------------------------------------
# Occupancy: the CUDA Occupancy Calculator's arithmetic (cuda_occupancy.h), for the
# default shared-memory carveout and no partitioned global caching (sm_80 and sm_90).


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(threads: int, registers: int, static_smem: int, dynamic_smem: int, target: str):
    """Theoretical occupancy of a kernel launch on one SM of ``target``.

    Returns a dict: ``blocks`` (resident blocks per SM), ``warps`` (resident warps),
    ``occupancy`` (resident warps / the SM's maximum), the block limit of each
    resource (``by_warps``, ``by_registers``, ``by_shared``, ``by_blocks``) and
    ``limited_by``, the resources that set it.
    """
    t = TARGETS[target]
    warp = t["warp_size"]
    max_warps = t["max_threads_per_sm"] // warp
    warps = -(-threads // warp)
    by_warps = 0 if threads > t["max_threads_per_block"] else max_warps // warps

    # Registers go to warps in units of 256, in each of the SM's sub-partitions.
    regs_per_warp = _round_up(registers * warp, t["reg_alloc_unit"])
    parts = t["sub_partitions"]
    if (
        regs_per_warp * _round_up(warps, parts) > t["regs_per_block"]
        or registers > t["max_regs_per_thread"]
    ):
        by_registers = 0
    elif regs_per_warp == 0:
        by_registers = t["max_blocks_per_sm"]
    else:
        by_registers = (t["regs_per_sm"] // parts // regs_per_warp) * parts // warps

    # Shared memory: the block's own plus the driver's reserve, in units of 128 bytes;
    # the carveout is the largest (what the driver picks when shared memory limits).
    smem = _round_up(
        static_smem + dynamic_smem + t["smem_reserved_per_block"], t["smem_alloc_unit"]
    )
    if static_smem > t["smem_per_block"] or smem > (
        t["smem_per_block_optin"] + t["smem_reserved_per_block"]
    ):
        by_shared = 0
    else:
        by_shared = t["smem_per_sm"] // smem

    limits = {
        "warps": by_warps,
        "registers": by_registers,
        "shared": by_shared,
        "blocks": t["max_blocks_per_sm"],
    }
    blocks = min(limits.values())
    return {
        "blocks": blocks,
        "warps": blocks * warps,
        "occupancy": blocks * warps / max_warps,
        **{f"by_{name}": value for name, value in limits.items()},
        "limited_by": [name for name, value in limits.items() if value == blocks],
    }


# --------------------------------------------------------------------------------------
# Kernel identity: which kernel a launch ran, in a form another process can rebuild.


def _short(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def kernel_identity(fn) -> dict:
    """``{"module", "name", "factory", "params"}`` of a kernel's Python function.

    A module-level kernel is its module and name. A kernel made by a factory (a
    closure ``make_...(<params>).<locals>.<name>``) is also the factory and the
    values of its parameters, read from the closure's cells: ints, or device
    functions written as ``{"function": "module:name"}``.
    """
    module, qualname = fn.__module__, fn.__qualname__
    if "<locals>" not in qualname:
        return {"module": module, "name": qualname, "factory": None, "params": {}}
    factory_name = qualname.split(".<locals>.")[0]
    factory = getattr(importlib.import_module(module), factory_name)
    factory = inspect.unwrap(factory)
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
    params = {}
    for name in inspect.signature(factory).parameters:
        if name not in cells:
            raise InputError(
                f"{module}.{qualname}: the factory parameter {name!r} is not in the "
                "kernel's closure, so the launch does not say which kernel it was"
            )
        value = cells[name].cell_contents
        if isinstance(value, bool | int | np.integer | str):
            params[name] = value if isinstance(value, str) else int(value)
        else:  # a device function (its Python function on the simulator)
            inner = getattr(value, "fn", None) or getattr(value, "py_func", None) or value
            params[name] = {"function": f"{inner.__module__}:{inner.__name__}"}
    name = qualname.rsplit(".", 1)[-1]
    return {"module": module, "name": name, "factory": factory_name, "params": params}


def kernel_label(identity: dict) -> str:
    """``conv.conv_forward_tiled[tile=16,rb=4]``: a kernel and its factory arguments."""
    text = f"{_short(identity['module'])}.{identity['name']}"
    if identity["params"]:
        parts = []
        for key, value in identity["params"].items():
            if isinstance(value, dict):
                value = value["function"].split(":")[-1]
            parts.append(f"{key}={value}")
        text += "[" + ",".join(parts) + "]"
    return text


def resolve_kernel(identity: dict):
    """The dispatcher of ``identity`` in this process (built by its factory if it has one)."""
    module = importlib.import_module(identity["module"])
    if identity["factory"] is None:
        return getattr(module, identity["name"])
    params = {}  # in the order of the factory's parameters
    for key, value in identity["params"].items():
        if isinstance(value, dict):
            where, name = value["function"].split(":")
            value = getattr(importlib.import_module(where), name)
        params[key] = value
    # Positional, as the package calls its (cached) factories: the same kernel object.
    made = getattr(module, identity["factory"])(*params.values())
    for kernel in made if isinstance(made, tuple | list) else (made,):
        fn = getattr(kernel, "py_func", None) or kernel.fn  # the simulator's: .fn
        if fn.__name__ == identity["name"]:
            return kernel
    raise LookupError(f"{identity['factory']}({params}) makes no kernel {identity['name']!r}")


# --------------------------------------------------------------------------------------
# Step 1: recording launches on the simulator


class Recorder:
    """Hooks the simulator's kernel launch; keeps one entry per (kernel, argument types)."""

    def __init__(self):
        self.entries = {}
        self.use = None  # what is running: an operation, or a layer of a network
        self.dry = False  # record launches without running them

    @contextlib.contextmanager
    def installed(self):
        from numba.core.typing.typeof import Purpose, typeof
        from numba.cuda.simulator import kernel as simkernel

        original = simkernel.FakeCUDAKernel.__call__
        recorder = self

        def call(kernel, *args):
            if kernel._device or simkernel._get_kernel_context() is not None:
                return original(kernel, *args)  # a device function, called inside a kernel
            argtypes = tuple(typeof(a, Purpose.argument) for a in args)
            recorder.add(kernel, argtypes)
            if not recorder.dry:
                return original(kernel, *args)
            return None

        simkernel.FakeCUDAKernel.__call__ = call
        try:
            yield self
        finally:
            simkernel.FakeCUDAKernel.__call__ = original

    def add(self, kernel, argtypes):
        identity = kernel_identity(kernel.fn)
        key = (json.dumps(identity, sort_keys=True), argtypes)
        entry = self.entries.setdefault(
            key,
            {"identity": identity, "argtypes": argtypes, "blocks": set(), "uses": [], "dyn": 0},
        )
        block = tuple(int(d) for d in kernel.block_dim)
        entry["blocks"].add(block)
        entry["dyn"] = max(entry["dyn"], int(kernel.dynshared_size or 0))
        if self.use not in entry["uses"]:
            entry["uses"].append(self.use)


def exercises():
    """``(name, thunk)`` for every public CUDA operation, at a tiny size.

    Each convolution GEMM runs with both register blocks (1, and the default) and
    with a split reduction, and the input gradient by both routes, so that every
    kernel a layer of any shape can select is launched here, whatever the tiny
    shapes would select by themselves.
    """
    from .cuda import DEFAULT_RB, conv, losses, nms, optim
    from .cuda.merge import merge_cuda
    from .nn.cuda_backend import CudaBackend

    rng = np.random.default_rng(0)

    def normal(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    ops = []

    def op(name, fn, *args, **kwargs):
        ops.append((name, functools.partial(fn, *args, **kwargs)))

    cb = CudaBackend()
    # Shapes for which each GEMM (16x16 tiles) has a reduction of at least two tile
    # steps, so that it can be split, in few blocks: the simulator runs every thread
    # of a block as a Python thread.
    x, w, b, dy = normal(1, 2, 5, 5), normal(4, 2, 3, 3), normal(4), normal(1, 4, 5, 5)
    op("all_finite", lambda: cb.all_finite(cb.asarray(x)))
    op("conv2d_forward_naive", conv.conv2d_forward_naive, x, w, b, 1, 1)
    op("conv2d_forward", cb.conv2d_forward, x, w, b, 1, 1)
    op("conv2d_backward", cb.conv2d_backward, dy, x, w, 1, 1)
    # Both register blocks, both routes to dx, and a split of each GEMM's reduction
    # (the split-sum kernel has one store per GEMM output: y, a matrix, dx).
    for rb, splits in ((1, 1), (DEFAULT_RB, 2)):
        op(f"conv2d_forward rb={rb} splits={splits}", conv.conv2d_forward, x, w, b, 1, 1,
           rb=rb, splits=splits)  # fmt: skip
    for rb, splits, route in (
        (1, 2, "gather"),
        (1, 1, "col2im"),
        (DEFAULT_RB, 1, "gather"),
        (DEFAULT_RB, 1, "col2im"),
    ):
        op(f"conv2d_backward rb={rb} splits={splits} dx_route={route}", conv.conv2d_backward,
           dy, x, w, 1, 1, rb=rb, splits=splits, dx_route=route)  # fmt: skip

    xl, wl, bl = normal(3, 10), normal(4, 10), normal(4)
    op("linear_forward", cb.linear_forward, xl, wl, bl)
    op("linear_backward", cb.linear_backward, normal(3, 4), xl, wl)

    y4 = normal(2, 3, 8, 8)
    op("max_pool2d_forward", cb.max_pool2d_forward, y4, 2, 2)
    op("max_pool2d_backward", lambda: cb.max_pool2d_backward(
        *cb.max_pool2d_forward(y4, 2, 2), y4.shape, 2, 2))  # fmt: skip
    op("offset_max_pool2d", cb.offset_max_pool2d, y4, 2, 2)
    op("interleave_offsets", cb.interleave_offsets, normal(2, 2, 1, 3, 3, 3), 6, 6)
    op("relu_forward", cb.relu_forward, y4)
    op("relu_backward", cb.relu_backward, y4, y4)
    op("dropout_forward", cb.dropout_forward, y4, 0.5, 1)
    op("dropout_backward", cb.dropout_backward, y4, np.ones(y4.shape, np.uint8), 0.5)

    logits, labels = normal(4, 5), np.array([0, 1, 4, 2])
    maps, map_labels = normal(2, 5, 2, 3), rng.integers(0, 5, (2, 2, 3))
    op("softmax_cross_entropy", cb.softmax_cross_entropy, logits, labels)
    op("softmax_cross_entropy (maps)", losses.softmax_cross_entropy, maps, map_labels)
    op("l2_loss", cb.l2_loss, logits, logits * 0.5)
    op("l2_loss (weighted)", cb.l2_loss, maps, maps * 0.5, np.ones((2, 2, 3)))
    op("sgd_step", lambda: optim.sgd_step(cb.asarray(w), w, cb.asarray(w * 0), 0.1, 0.9, 1e-4))

    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [0, 1, 10, 11], [30, 30, 40, 40], [31, 30, 41, 40]],
        dtype=np.float64,
    )
    scores, classes = np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([0, 0, 1, 0, 0])
    op("merge_cuda", merge_cuda, boxes, classes, scores)
    op("nms", nms.nms, boxes, scores, classes, 0.5)
    return ops


def network_layers(model: str):
    """``(label, x_shape, w_shape, stride, padding, backward, input_grad)`` per
    convolution or fully connected layer of ``model`` in its scenarios: training
    (its training batch, one window: forward and backward), one window at batch 1,
    and dense evaluation with offset pooling at the largest scale (the classifier
    runs on the ``s*s`` pooled maps as a batch).
    """
    from .datasets.scenes import SceneConfig
    from .nn import paper
    from .nn.dense import last_pool_index
    from .nn.geometry import Geometry
    from .nn.layers import Conv2d, MaxPool2d
    from .nn.networks import NETWORKS, build_from_specs
    from .nn.train import MINI_CONFIG

    specs, channels, _ = NETWORKS[model]
    net = build_from_specs(specs, channels, model, seed=None)  # zeros: never touched
    window = Geometry.of(net).window
    if model == "mini":
        batch, largest = MINI_CONFIG.batch_size, (SceneConfig().max_size,) * 2
    else:
        batch, largest = paper.TRAINING["batch_size"], paper.SCALES[-1]
    last_pool = last_pool_index(net)
    rows = []
    for scenario, n, (h, w), backward in (
        ("train", batch, (window, window), True),
        ("window", 1, (window, window), False),
        ("dense", 1, largest, False),
    ):
        shape = (n, channels, h, w)
        first = True
        for index, layer in enumerate(net.layers):
            if scenario == "dense" and index == last_pool:
                assert isinstance(layer, MaxPool2d)
                s, k = layer.stride, layer.kernel
                nn, c, hh, ww = shape
                shape = (s * s * nn, c, (hh - k) // s + 1, (ww - k) // s + 1)
                continue
            if isinstance(layer, Conv2d):
                label = f"{model} {scenario} {layer.name}"
                rows.append(
                    (
                        label,
                        shape,
                        layer.params["w"].shape,
                        layer.stride,
                        layer.padding,
                        backward,
                        not first,
                    )
                )
                first = False
            shape = (shape[0], *layer.output_shape(shape[1:]))
    return rows


def record(models=("fast", "accurate", "mini")) -> list[dict]:
    """Step 1 (simulator, GPU launch sizes): every launch of :func:`exercises`, then the
    dry run of the layers of ``models``. Returns one entry per (kernel, argument types).
    """
    from numba import config, cuda

    from .cuda import SMALL_LAUNCHES, conv

    if not config.ENABLE_CUDASIM or SMALL_LAUNCHES:
        raise RuntimeError(
            "recording runs on the simulator with a GPU's launch sizes: set "
            "NUMBA_ENABLE_CUDASIM=1 and OVERFEAT_CUDA_SIZES=gpu before Numba is imported"
        )
    recorder = Recorder()
    with recorder.installed():
        for name, thunk in exercises():
            recorder.use = name
            thunk()
        recorder.dry = True
        for model in models:
            for label, xs, ws, stride, pad, backward, input_grad in network_layers(model):
                x = cuda.device_array(xs, np.float32)
                w = cuda.device_array(ws, np.float32)
                b = cuda.device_array(ws[:1], np.float32)
                recorder.use = f"{label} fwd"
                y = conv.conv2d_forward(x, w, b, stride, pad)
                if backward:
                    recorder.use = f"{label} bwd"
                    dy = cuda.device_array(y.shape, np.float32)
                    conv.conv2d_backward(dy, x, w, stride, pad, input_grad=input_grad)
    return [
        {
            "identity": e["identity"],
            "label": kernel_label(e["identity"]),
            "argtypes": e["argtypes"],
            "signature": ", ".join(str(t) for t in e["argtypes"]),
            "blocks": sorted(e["blocks"]),
            "threads": max(math.prod(b) for b in e["blocks"]),
            "dynamic_smem": e["dyn"],
            "uses": e["uses"],
        }
        for e in recorder.entries.values()
    ]


def package_kernels() -> list[str]:
    """Labels (without factory arguments) of every kernel defined in the CUDA modules:
    module-level kernels, and the kernels their ``make_...`` factories define (a
    nested function decorated ``@cuda.jit`` without ``device=True``, or
    ``@kernel_jit(...)``). What :func:`record` must have launched. Runs on the
    simulator.
    """
    import ast
    import pkgutil
    import textwrap

    from numba.cuda.simulator.kernel import FakeCUDAKernel

    def is_kernel_decorator(node) -> bool:
        call = node if isinstance(node, ast.Call) else None
        name = ast.unparse(call.func if call else node)
        if name == "kernel_jit":
            return True
        device = call and any(
            k.arg == "device" and ast.unparse(k.value) == "True" for k in call.keywords
        )
        return name == "cuda.jit" and not device

    names = set()
    package = importlib.import_module(PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, FakeCUDAKernel) and not value._device:
                if value.fn.__module__ == module.__name__:
                    names.add(f"{info.name}.{name}")
            elif name.startswith("make_") and inspect.isfunction(inspect.unwrap(value)):
                value = inspect.unwrap(value)  # the factories are functools.cache'd
                if value.__module__ != module.__name__:
                    continue
                tree = ast.parse(textwrap.dedent(inspect.getsource(value)))
                for node in ast.walk(tree.body[0]):
                    if isinstance(node, ast.FunctionDef) and node is not tree.body[0]:
                        if any(is_kernel_decorator(d) for d in node.decorator_list):
                            names.add(f"{info.name}.{node.name}")
    return sorted(names)


# --------------------------------------------------------------------------------------
# Step 2: compiling for a target, without a driver


class _TargetDevice:
    """What the dispatcher reads of "the current device": its compute capability."""

    def __init__(self, cc):
        self.compute_capability = tuple(cc)


@contextlib.contextmanager
def target_device(cc):
    """Make device functions compile for ``cc`` (see the module text)."""
    from unittest import mock

    from numba.cuda import dispatcher

    with mock.patch.object(dispatcher, "get_current_device", lambda: _TargetDevice(cc)):
        yield


def toolchain() -> tuple[str | None, str]:
    """``(ptxas, "")`` when NVVM and ptxas are installed, else ``(None, why not)``.

    Both come from the ``cuda`` extra's wheels (``nvidia-cuda-nvcc-cu12``), found the
    way numba-cuda finds them (``cuda.pathfinder``: site-packages, then CUDA_HOME).
    """
    hint = "install the cuda extra: pip install -e '.[cuda]'"
    try:
        from cuda import pathfinder
    except ImportError:
        return None, f"cuda.pathfinder is not installed ({hint})"
    try:
        pathfinder.load_nvidia_dynamic_lib("nvvm")
    except Exception as error:  # DynamicLibNotFoundError and kin
        return None, f"NVIDIA's NVVM library was not found ({hint}): {error}"
    ptxas = pathfinder.find_nvidia_binary_utility("ptxas")
    if ptxas is None:
        return None, f"ptxas was not found ({hint})"
    return ptxas, ""


_PTXAS_FUNCTION = re.compile(r"Function properties for (\S+)")
_PTXAS_FRAME = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SMEM = re.compile(r"(\d+) bytes smem")
_PTXAS_BARRIERS = re.compile(r"used (\d+) barriers")


def parse_ptxas(text: str) -> dict:
    """Resources of the entry function in ``ptxas -v`` output.

    ``registers``, ``static_smem`` (bytes), ``barriers``, the entry's
    ``stack_frame``, and ``spill_stores`` / ``spill_loads`` summed over every
    function in the output (a non-inlined device function spills for its kernel).
    """
    out = {
        "entry": None,
        "registers": None,
        "static_smem": 0,
        "barriers": 0,
        "stack_frame": 0,
        "spill_stores": 0,
        "spill_loads": 0,
    }
    current = None
    for line in text.splitlines():
        if m := _PTXAS_ENTRY.search(line):
            out["entry"] = m.group(1)
        elif m := _PTXAS_FUNCTION.search(line):
            current = m.group(1)
        elif m := _PTXAS_FRAME.search(line):
            stack, stores, loads = (int(g) for g in m.groups())
            out["spill_stores"] += stores
            out["spill_loads"] += loads
            if current == out["entry"]:
                out["stack_frame"] = stack
        if m := _PTXAS_USED.search(line):
            out["registers"] = int(m.group(1))
            if m := _PTXAS_SMEM.search(line):
                out["static_smem"] = int(m.group(1))
            if m := _PTXAS_BARRIERS.search(line):
                out["barriers"] = int(m.group(1))
    if out["registers"] is None:
        raise InputError(f"no 'Used N registers' line in ptxas output:\n{text}")
    return out


def run_ptxas(ptxas: str, ptx_path: Path, target: str) -> dict:
    """``ptxas -v`` for ``target`` on one PTX file; its parsed resources."""
    result = subprocess.run(
        [ptxas, "-v", f"-arch={target}", "-o", os.devnull, str(ptx_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ptxas failed ({result.returncode}):\n{result.stderr}")
    return parse_ptxas(result.stdout + result.stderr)


def compile_all(entries: list[dict], target: str, workdir: Path) -> list[dict]:
    """Step 2 (no simulator): PTX of every entry for ``target``, then its resources."""
    from numba import config
    from numba.cuda import compile_ptx

    if config.ENABLE_CUDASIM:
        raise RuntimeError("compiling needs Numba without the simulator (NUMBA_ENABLE_CUDASIM)")
    ptxas, why = toolchain()
    if ptxas is None:
        raise RuntimeError(why)
    cc = TARGETS[target]["cc"]
    results, jobs = [], []
    with target_device(cc):
        for index, entry in enumerate(entries):
            row = {k: v for k, v in entry.items() if k != "argtypes"}
            start = time.perf_counter()
            try:
                kernel = resolve_kernel(entry["identity"])
                options = {
                    key: kernel.targetoptions[key]
                    for key in COMPILE_OPTIONS
                    if kernel.targetoptions.get(key) is not None
                }
                row["launch_bounds"] = options.get("launch_bounds")
                ptx, _ = compile_ptx(kernel.py_func, entry["argtypes"], cc=cc, **options)
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"
                results.append(row)
                continue
            row["compile_s"] = round(time.perf_counter() - start, 3)
            path = workdir / f"{target}_{index}.ptx"
            path.write_text(ptx)
            results.append(row)
            jobs.append((row, path))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(row, pool.submit(run_ptxas, ptxas, path, target)) for row, path in jobs]
        for row, future in futures:
            try:
                row.update(future.result())
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"
    return results


# --------------------------------------------------------------------------------------
# Step 3: the report


def analyse(rows: list[dict], target: str) -> list[dict]:
    """Each compiled row with its occupancy on ``target``, and its module's spill rule."""
    for row in rows:
        row["module"] = _short(row["identity"]["module"])
        row["no_spill"] = row["module"] in NO_SPILL_MODULES
        if "error" in row:
            continue
        row.update(
            occupancy(
                row["threads"], row["registers"], row["static_smem"], row["dynamic_smem"], target
            )
        )
    return sorted(rows, key=lambda r: r["label"])


def problems(report: dict) -> list[str]:
    """What the limits forbid, one line each: compile errors, more than 1024 threads
    per block (or more than the kernel's launch bounds), static shared memory over
    48 KB, spills in conv and pooling kernels."""
    found = []
    for target, rows in report["targets"].items():
        limit = TARGETS[target]
        for row in rows:
            where = f"{target} {row['label']} ({row['signature']})"
            if "error" in row:
                found.append(f"{where}: does not compile: {row['error']}")
                continue
            if row["threads"] > limit["max_threads_per_block"]:
                found.append(f"{where}: {row['threads']} threads per block at launch")
            bounds = row.get("launch_bounds")
            if bounds and row["threads"] > (bounds if isinstance(bounds, int) else bounds[0]):
                found.append(
                    f"{where}: launched with {row['threads']} threads per block, more than "
                    f"its launch bounds {bounds} allow"
                )
            if row["static_smem"] > limit["smem_per_block"]:
                found.append(f"{where}: {row['static_smem']} bytes of static shared memory")
            if row["no_spill"] and (row["spill_stores"] or row["spill_loads"]):
                found.append(
                    f"{where}: spills {row['spill_stores']} bytes stored, "
                    f"{row['spill_loads']} loaded"
                )
    return found


def format_table(rows: list[dict], target: str) -> str:
    """One line per kernel and configuration on ``target`` (plain text; the docs' table
    with the targets side by side is :func:`markdown_table`)."""
    head = (
        "kernel",
        "threads",
        "regs",
        "spill B (st/ld)",
        "stack B",
        "smem B (static/dyn)",
        "blocks/SM",
        "occupancy",
        "limited by",
    )
    lines = []
    for row in rows:
        if "error" in row:
            lines.append((row["label"], str(row["threads"]), "error", *[""] * 6))
            continue
        lines.append(
            (
                row["label"],
                str(row["threads"]),
                str(row["registers"]),
                f"{row['spill_stores']}/{row['spill_loads']}",
                str(row["stack_frame"]),
                f"{row['static_smem']}/{row['dynamic_smem']}",
                str(row["blocks"]),
                f"{row['occupancy']:.0%}",
                ", ".join(row["limited_by"]),
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    t = TARGETS[target]
    out = [f"{target} ({t['gpu']}, compute capability {t['cc'][0]}.{t['cc'][1]})"]
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    return "\n".join(out)


def markdown_table(report: dict) -> str:
    """One row per kernel and configuration, the targets side by side."""
    targets = list(report["targets"])
    rows = {t: {r["label"]: r for r in report["targets"][t]} for t in targets}
    labels = sorted(rows[targets[0]])
    head = ["kernel", "threads", "smem B"]
    for t in targets:
        head += [f"{t} regs", f"{t} spill B", f"{t} occupancy (blocks/SM)"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for label in labels:
        first = rows[targets[0]][label]
        cells = [f"`{label}`", str(first["threads"]), str(first.get("static_smem", "-"))]
        for t in targets:
            r = rows[t][label]
            if "error" in r:
                cells += ["error", "", ""]
                continue
            spill = r["spill_stores"] + r["spill_loads"]
            cells += [str(r["registers"]), str(spill), f"{r['occupancy']:.1%} ({r['blocks']})"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# The whole check, in subprocesses


def _python(args, env, timeout):
    result = subprocess.run(
        [sys.executable, "-m", "overfeat_scratch.ptx", *args],
        cwd=ROOT,  # ``-m`` finds this copy of the package first, as the caller did
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"python -m overfeat_scratch.ptx {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


def committed_table(path=None) -> dict:
    """The report that ``benchmarks/ptx_check.py`` wrote to ``benchmarks/results`` (the
    table of the docs; ``tests/test_ptx.py`` checks it against a fresh compile)."""
    path = Path(path) if path is not None else RESULTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `python benchmarks/ptx_check.py` with the cuda extra"
        )
    return json.loads(path.read_text())


def run_check(targets=("sm_80", "sm_90"), timeout: float = 600) -> dict:
    """Record, compile for every target (in parallel processes), analyse.

    Returns ``{"targets": {target: rows}, "limits": TARGETS, "kernels": [...],
    "timings": {...}}``; raises if a step fails as a whole.
    """
    timings = {}
    with tempfile.TemporaryDirectory(prefix="ptx-check-") as tmp:
        tmp = Path(tmp)
        base = {k: v for k, v in os.environ.items() if k != "OVERFEAT_CUDA_SIZES"}
        sim = dict(base, NUMBA_ENABLE_CUDASIM="1", OVERFEAT_CUDA_SIZES="gpu")
        start = time.perf_counter()
        _python(["record", str(tmp / "launches.json")], sim, timeout)
        timings["record_s"] = round(time.perf_counter() - start, 1)
        recorded = json.loads((tmp / "launches.json").read_text())

        real = {k: v for k, v in base.items() if k != "NUMBA_ENABLE_CUDASIM"}
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            futures = {
                target: pool.submit(
                    _python,
                    ["compile", target, str(tmp / "launches.json"), str(tmp / f"{target}.json")],
                    real,
                    timeout,
                )
                for target in targets
            }
            for future in futures.values():
                future.result()
        timings["compile_s"] = round(time.perf_counter() - start, 1)
        report = {"targets": {}}
        for target in targets:
            rows = json.loads((tmp / f"{target}.json").read_text())
            report["targets"][target] = analyse(rows, target)
    report["kernels"] = recorded["kernels"]
    report["recorded"] = sorted({e["label"] for e in recorded["entries"]})
    report["limits"] = TARGETS
    report["limits_source"] = LIMITS_SOURCE
    report["timings"] = timings
    return report


def missing_kernels(report: dict) -> list[str]:
    """Kernels of the package that no recorded launch ran."""
    launched = {label.split("[")[0] for label in report["recorded"]}
    return [name for name in report["kernels"] if name not in launched]


def type_record(numba_type) -> dict:
    """A kernel argument's Numba type as JSON (the recording and the compiling run in
    separate processes, one with the simulator and one without)."""
    from numba.core import types

    if isinstance(numba_type, types.Array):
        return {
            "array": str(numba_type.dtype),
            "ndim": numba_type.ndim,
            "layout": numba_type.layout,
            "readonly": not numba_type.mutable,
        }
    if isinstance(numba_type, types.UniTuple):
        return {"tuple": type_record(numba_type.dtype), "count": numba_type.count}
    if isinstance(numba_type, types.Boolean | types.Integer | types.Float):
        return {"scalar": str(numba_type)}
    raise InputTypeError(f"type_record: no JSON form for the kernel argument type {numba_type}")


def type_from_record(record: dict):
    """The inverse of :func:`type_record`."""
    from numba.core import types

    def scalar(name):
        value = getattr(types, "boolean" if name == "bool" else name, None)
        if not isinstance(value, types.Boolean | types.Integer | types.Float):
            raise InputError(f"type_from_record: unknown scalar type {name!r}")
        return value

    if "array" in record:
        return types.Array(
            scalar(record["array"]), record["ndim"], record["layout"], readonly=record["readonly"]
        )
    if "tuple" in record:
        return types.UniTuple(type_from_record(record["tuple"]), record["count"])
    if "scalar" in record:
        return scalar(record["scalar"])
    raise InputError(f"type_from_record: unknown type record {record!r}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["record"] and len(argv) == 2:
        entries = [dict(e, argtypes=[type_record(t) for t in e["argtypes"]]) for e in record()]
        Path(argv[1]).write_text(json.dumps({"entries": entries, "kernels": package_kernels()}))
    elif argv[:1] == ["compile"] and len(argv) == 4:
        target, source, out = argv[1:]
        entries = json.loads(Path(source).read_text())["entries"]
        for entry in entries:
            entry["argtypes"] = tuple(type_from_record(t) for t in entry["argtypes"])
        with tempfile.TemporaryDirectory(prefix=f"ptx-{target}-") as tmp:
            rows = compile_all(entries, target, Path(tmp))
        Path(out).write_text(json.dumps(rows, default=list))
    else:
        raise SystemExit(
            "usage: python -m overfeat_scratch.ptx record OUT.json\n"
            "       python -m overfeat_scratch.ptx compile TARGET IN.json OUT.json"
        )


if __name__ == "__main__":
    main()
