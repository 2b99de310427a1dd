"""Checks of device arrays on the device: whether every value is finite.

The training loop asks after each step whether the loss and the gradients are
finite; on the GPU that question is a kernel, so that only one flag crosses to the
host, not the array.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import THREADS, blocks_for, is_device_array


@cuda.jit
def non_finite_kernel(x, flag):
    """One thread per element: set ``flag[0] = 1`` at a NaN or an infinity.

    Every writer writes the same value, so the race between them is harmless.
    """
    i = cuda.grid(1)
    if i < x.size:
        if math.isnan(x[i]) or math.isinf(x[i]):
            flag[0] = 1


def all_finite(x) -> bool:
    """Whether every value of ``x`` (a device array, or a host array) is finite."""
    if not is_device_array(x):
        return bool(np.isfinite(np.asarray(x)).all())
    if x.size == 0:
        return True
    flag = cuda.to_device(np.zeros(1, dtype=np.int32))
    non_finite_kernel[blocks_for(x.size), THREADS](x.reshape(x.size), flag)
    return not bool(flag.copy_to_host()[0])
