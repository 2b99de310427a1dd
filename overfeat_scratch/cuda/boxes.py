"""The box rule of :mod:`overfeat_scratch.ops.boxes`, compiled for the GPU.

:func:`~overfeat_scratch.ops.boxes.iou` is a plain Python function; compiled here as a
device function, kernels call it like any other (the merge's match score and the NMS
mask kernel do). One rule, three compilations: Python, ``numba.njit``, CUDA.
"""

from __future__ import annotations

from numba import cuda

from ..ops.boxes import iou

iou_device = cuda.jit(device=True)(iou)
