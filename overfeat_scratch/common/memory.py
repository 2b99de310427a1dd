"""Keep freed memory in the process, so that the next array of the same size is free.

A training step allocates and frees arrays of several megabytes per layer (im2col
columns, activations, gradients). With glibc's default settings each allocation
above a threshold is a fresh ``mmap`` and each free gives the pages back to the
operating system, so every step faults every page of every large array in again
(a page fault costs a few microseconds in a virtual machine, and two threads
faulting at once wait for each other). On the ``mini`` training step that was about
a quarter of the time.

:func:`keep_freed_memory` asks glibc to serve arrays of up to 32 MiB from its heap
and to keep freed heap memory for reuse, as PyTorch's and other frameworks' caching
allocators do. The price: the process keeps its peak memory until it exits. It is
called once, when the NumPy backend is created; ``OVERFEAT_KEEP_FREED_MEMORY=0``
turns it off. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest allowed mmap threshold on 64-bit systems.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_done = {"result": None}


def keep_freed_memory() -> bool:
    """Configure glibc's malloc as described above, once; True if it took effect."""
    if _done["result"] is None:
        _done["result"] = _configure()
    return _done["result"]


def _configure() -> bool:
    if os.environ.get("OVERFEAT_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
