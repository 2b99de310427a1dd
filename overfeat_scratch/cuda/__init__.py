"""Numba-CUDA kernels: each operation of :mod:`overfeat_scratch.ops`, on the GPU.

Importing this subpackage imports ``numba.cuda``; ``overfeat_scratch`` itself never
does, so the NumPy path does not pay for it. The CUDA backend
(:class:`overfeat_scratch.nn.cuda_backend.CudaBackend`, imported on the first
``get_backend("cuda")``) calls these modules, one per operation, each named after its
NumPy twin and holding the host wrappers over its kernels:

- :mod:`.conv`: convolution forward and backward as tiled implicit GEMMs;
- :mod:`.pool`: max pooling forward (values and winners) and backward;
- :mod:`.offset_pool`: offset max pooling and the interleaving of its outputs;
- :mod:`.activations`: ReLU and dropout;
- :mod:`.linear`: the fully connected layer, through the convolution GEMMs;
- :mod:`.losses`: softmax cross-entropy and L2, reduced on the device;
- :mod:`.optim`: the momentum SGD update;
- :mod:`.boxes`: the package's IoU rule as a device function;
- :mod:`.merge`: the greedy merge of boxes, one round per launch sequence;
- :mod:`.nms`: non-maximum suppression through a bitmask.

:mod:`overfeat_scratch.ptx` compiles every kernel with NVIDIA's compiler for A100 and
H100 without a GPU, with its registers, spills, shared memory and occupancy.

This file holds what they share: the launch settings, the argument checks that
bring arrays onto the device as float32, and the block-wide sum of the reduction
kernels.

With ``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported, every kernel runs on
the Numba CUDA simulator: one Python thread per CUDA thread, correct and very slow,
so the launch sizes below shrink there. ``OVERFEAT_CUDA_SIZES=gpu`` (also read at
import) keeps a GPU's launch sizes on the simulator: every launch then has exactly
the block shape and tile a GPU would get, slowly (:mod:`overfeat_scratch.ptx`
records launches this way).
"""

from __future__ import annotations

import os

import numpy as np
from numba import config, cuda

from ..common.checks import InputError, InputTypeError

SIMULATOR = bool(config.ENABLE_CUDASIM)
_SIZES = os.environ.get("OVERFEAT_CUDA_SIZES", "")
if _SIZES not in ("", "gpu", "simulator"):
    raise InputError(f"OVERFEAT_CUDA_SIZES: expected 'gpu' or 'simulator', got {_SIZES!r}")
# Whether launches use the simulator's small sizes (tiles, block sizes) below.
SMALL_LAUNCHES = SIMULATOR and _SIZES != "gpu"

# Side of a square thread block in the GEMM kernels (TILE x TILE threads). Shared
# memory shapes must be compile-time constants, so each tile size is its own kernel.
DEFAULT_TILE = 4 if SMALL_LAUNCHES else 16
# Register block: each GEMM thread computes RB x RB outputs, so one value read from
# shared memory feeds RB multiply-adds instead of one.
DEFAULT_RB = 2 if SMALL_LAUNCHES else 4
# Threads per block of the one-dimensional kernels (one thread per element). The
# reduction kernels need a power of two.
THREADS = 32 if SMALL_LAUNCHES else 256


# Registers per SM, on every compute capability from 5.0 to 9.0.
REGISTERS_PER_SM = 65536


def kernel_jit(threads: int, registers: int):
    """``cuda.jit`` for a kernel launched with at most ``threads`` threads per block,
    compiled to use at most about ``registers`` registers per thread.

    Launch bounds: at most ``threads`` threads, and as many blocks per SM (1 to 32)
    as leave each thread ``registers`` of the SM's 65,536, which ptxas must then fit
    (spilling if it cannot). Without them it spends registers freely on hoisted
    loads: a register-blocked GEMM ended at 144, one block of 256 threads per SM.
    :mod:`overfeat_scratch.ptx` reports what each kernel gets. The simulator takes no launch bounds.
    """
    if SIMULATOR:
        return cuda.jit
    blocks = min(32, max(1, REGISTERS_PER_SM // (threads * registers)))
    return cuda.jit(launch_bounds=(threads, blocks))


def blocks_for(count: int, threads: int = THREADS) -> int:
    """Enough blocks of ``threads`` threads for one thread per item."""
    return max(1, (count + threads - 1) // threads)


def is_device_array(x) -> bool:
    """Whether ``x`` is a Numba device array (also on the simulator)."""
    return cuda.devicearray.is_cuda_ndarray(x)


def as_device(x, name: str, dtype=np.float32):
    """``x`` as a C-contiguous device array of ``dtype``; host arrays are uploaded.

    Device arrays are never copied: one of another dtype, or not contiguous, is an
    error, because converting it would silently cost a round trip to the host.
    """
    if is_device_array(x):
        if np.dtype(x.dtype) != np.dtype(dtype):
            raise InputTypeError(
                f"{name}: the CUDA backend computes in {np.dtype(dtype)}, got a device array "
                f"of dtype {x.dtype}"
            )
        if not x.is_c_contiguous():
            raise InputError(f"{name}: expected a C-contiguous device array")
        return x
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))


def check_out(out, shape, dtype, name: str):
    """A caller's output buffer, or a new device array, of ``shape`` and ``dtype``."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return cuda.device_array(shape, dtype=dtype)
    if not is_device_array(out):
        raise InputTypeError(f"{name}: out must be a device array, got {type(out).__name__}")
    if tuple(out.shape) != shape or np.dtype(out.dtype) != np.dtype(dtype):
        raise InputError(
            f"{name}: out has shape {tuple(out.shape)} and dtype {out.dtype}, "
            f"expected {shape} and {np.dtype(dtype)}"
        )
    if not out.is_c_contiguous():
        raise InputError(f"{name}: out must be C-contiguous")
    return out


@cuda.jit(device=True)
def unravel4(index, d1, d2, d3):
    """``(a, b, c, d)`` of the C-order flat ``index`` into a ``(*, d1, d2, d3)`` array."""
    d = index % d3
    rest = index // d3
    c = rest % d2
    rest //= d2
    return rest // d1, rest % d1, c, d


@cuda.jit(device=True)
def block_sum(shared, value):
    """The sum of ``value`` over the THREADS threads of a 1-D block, returned to all.

    A tree in shared memory (``shared``: THREADS entries of the sum's dtype): at each
    level the first half of the threads adds the second half, log2(THREADS) levels.
    Every thread of the block must call it (it synchronises).
    """
    tid = cuda.threadIdx.x
    cuda.syncthreads()  # whoever read ``shared`` in an earlier call is done
    shared[tid] = value
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if tid < step:
            shared[tid] += shared[tid + step]
        cuda.syncthreads()
        step //= 2
    return shared[0]
