"""The SGD update on the GPU, matching :func:`overfeat_scratch.ops.optim.sgd_step`.

One thread per parameter element on a 1-D grid: read ``w``, ``g``, ``v`` once,
write ``v`` and ``w`` once, in place. The update is memory-bound (five accesses
for three flops), so coalesced access is all that matters.
"""

from __future__ import annotations

from numba import cuda, float32

from ..common.checks import InputTypeError
from ..ops.optim import check_sgd_args
from . import THREADS, as_device, blocks_for, is_device_array


@cuda.jit
def sgd_kernel(w, g, v, lr, momentum, weight_decay):
    """``v = momentum*v - lr*(g + weight_decay*w)``; ``w += v``; in place, flat arrays."""
    i = cuda.grid(1)
    if i < w.size:
        step = momentum * v[i] - lr * (g[i] + weight_decay * w[i])
        v[i] = step
        w[i] = w[i] + step


def sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    """In-place update of device arrays ``param`` and ``velocity``.

    Both must already be device arrays: a host array would be uploaded as a copy,
    and the update would be lost. ``grad`` may be a host array (it is only read).
    """
    check_sgd_args(param, grad, velocity, lr, momentum, weight_decay)
    for name, array in (("parameter", param), ("velocity", velocity)):
        if not is_device_array(array):
            raise InputTypeError(
                f"sgd {name}: the CUDA update is in place and needs a device array, "
                f"got {type(array).__name__}"
            )
    w = as_device(param, "sgd parameter").reshape(param.size)
    g = as_device(grad, "sgd gradient").reshape(param.size)
    v = as_device(velocity, "sgd velocity").reshape(param.size)
    if w.size:
        sgd_kernel[blocks_for(w.size), THREADS](
            w, g, v, float32(lr), float32(momentum), float32(weight_decay)
        )
