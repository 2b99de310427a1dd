"""OverFeat from scratch: NumPy and Numba-CUDA, every step of the paper written out.

The names below are the package's front door (``from overfeat_scratch import
Conv2d, build_network``). They are imported on first use, so that the command line
starts without loading the networks it may not need.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# OpenBLAS's worker threads keep spinning for 2^28 cycles (about 0.1 s) after each
# multi-threaded product, each holding a core. The package's own workers
# (``overfeat_scratch.ops.parallel``) then share the cores with them and run at half
# speed until the spinning stops, which between layers is most of the time. 2^16
# cycles (tens of microseconds) still bridges back-to-back products. OpenBLAS reads
# this once, when it is loaded: it takes effect where the package is imported before
# NumPy (the command line, the benchmarks), and a value already set is kept. See the
# performance chapter.
BLAS_THREAD_TIMEOUT = "16"
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)

# name -> the module that defines it
_EXPORTS = {
    "Conv2d": "nn.layers",
    "Dropout": "nn.layers",
    "Flatten": "nn.layers",
    "FullyConnected": "nn.layers",
    "Layer": "nn.layers",
    "Linear": "nn.layers",
    "MaxPool2d": "nn.layers",
    "ReLU": "nn.layers",
    "Sequential": "nn.layers",
    "available_backends": "nn.backend",
    "get_backend": "nn.backend",
    "register_backend": "nn.backend",
    "build_from_specs": "nn.networks",
    "build_network": "nn.networks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # once found, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
