"""The backend switch: one place that decides where arrays live and who computes.

Layers never call NumPy or CUDA directly; they call the methods of a
:class:`Backend`. A network moved to a backend keeps its parameters and every
intermediate array there (device arrays stay on the GPU between layers: no host
round trip per layer). Adding a backend means writing one subclass and one
:func:`register_backend` line; no layer changes.

Backends:

- ``"numpy"`` (default): :class:`NumpyBackend`, float32 or float64 on the CPU.
- ``"cuda"``: :class:`overfeat_scratch.nn.cuda_backend.CudaBackend`, float32 Numba-CUDA
  kernels. Available when a GPU is present, or on any machine when
  ``NUMBA_ENABLE_CUDASIM=1`` is set before Numba is imported (the simulator:
  correct, and very slow).
"""

from __future__ import annotations

import importlib

import numpy as np

from ..common.checks import InputError
from ..common.memory import keep_freed_memory
from ..ops import activations, conv, linear, losses, merge, nms, offset_pool, optim, pool, winograd


class Backend:
    """The operations a layer may ask for. Shapes follow the functional modules.

    Arrays passed in and returned are this backend's arrays (``np.ndarray`` for
    NumPy, device arrays for CUDA). Losses return a Python ``float`` and a
    backend array.
    """

    name = "abstract"

    # Moving data.
    def asarray(self, x, dtype=np.float32):
        """A host array (or this backend's array) as this backend's array."""
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        """This backend's array as a host ``np.ndarray``."""
        raise NotImplementedError

    def is_array(self, x) -> bool:
        """Whether ``x`` already lives on this backend."""
        raise NotImplementedError

    def all_finite(self, x) -> bool:
        raise NotImplementedError

    # Layers: see conv, pool, activations, linear, losses for the contracts.
    def conv2d_forward(self, x, w, b, stride, padding, relu=False):
        """The convolution; with ``relu``, its output rectified in the same pass (what a
        convolution followed by an in-place ReLU computes)."""
        raise NotImplementedError

    def conv2d_backward(self, dy, x, w, stride, padding, input_grad=True):
        """``(dx, dw, db)``; ``dx`` is None with ``input_grad=False``."""
        raise NotImplementedError

    def max_pool2d_forward(self, x, kernel, stride):
        raise NotImplementedError

    def max_pool2d_backward(self, dy, arg, x_shape, kernel, stride):
        raise NotImplementedError

    def offset_max_pool2d(self, x, kernel, stride):
        raise NotImplementedError

    def interleave_offsets(self, y, fine_h, fine_w):
        raise NotImplementedError

    def relu_forward(self, x, inplace=False):
        raise NotImplementedError

    def relu_backward(self, dy, y):
        raise NotImplementedError

    def dropout_forward(self, x, p, seed):
        raise NotImplementedError

    def dropout_backward(self, dy, keep, p):
        raise NotImplementedError

    def linear_forward(self, x, w, b):
        raise NotImplementedError

    def linear_backward(self, dy, x, w):
        raise NotImplementedError

    def softmax_cross_entropy(self, logits, labels):
        raise NotImplementedError

    def l2_loss(self, pred, target, weight=None):
        raise NotImplementedError

    def sgd_step(self, param, grad, velocity, lr, momentum, weight_decay):
        """In place: ``v = momentum*v - lr*(g + wd*w)``, ``w += v``
        (see :mod:`~overfeat_scratch.ops.optim`)."""
        raise NotImplementedError

    def reshape(self, x, shape):
        """A view (or copy) of ``x`` with a new shape, on this backend."""
        return x.reshape(shape)

    # Boxes: host arrays in, host arrays out (see ops.merge and ops.nms).
    def greedy_merge(
        self, boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"
    ):
        """The paper's greedy merge of predicted boxes: a ``MergeResult``."""
        raise NotImplementedError

    def non_max_suppression(self, boxes, scores, classes=None, iou_threshold=0.5, max_output=None):
        """Greedy per-class NMS: the kept indices (int64), by descending score."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class NumpyBackend(Backend):
    """Float32 (or float64, for gradient checks) on the CPU with NumPy and BLAS."""

    name = "numpy"

    def __init__(self):
        keep_freed_memory()  # see common.memory: no page faults for reused arrays

    def asarray(self, x, dtype=np.float32):
        if hasattr(x, "copy_to_host"):  # a Numba device array
            x = x.copy_to_host()
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def is_array(self, x):
        return isinstance(x, np.ndarray)

    def all_finite(self, x):
        return bool(np.isfinite(x).all())

    def conv2d_forward(self, x, w, b, stride, padding, relu=False):
        return conv.conv2d_forward_tiled(x, w, b, stride, padding, relu=relu)

    def conv2d_backward(self, dy, x, w, stride, padding, input_grad=True):
        return conv.conv2d_backward_tiled(dy, x, w, stride, padding, input_grad)

    def conv2d_forward_winograd(self, x, w, b, padding, transformed, relu=False):
        """A convolution of stride 1 by F(2x2, r x r), ``transformed`` being
        ``filter_transform(w)``: the compiled bands of tiles, for every filter size."""
        return winograd.conv2d_winograd_tiled(x, w, b, padding, transformed, relu=relu)

    max_pool2d_forward = staticmethod(pool.max_pool2d_forward)
    max_pool2d_backward = staticmethod(pool.max_pool2d_backward)
    offset_max_pool2d = staticmethod(offset_pool.offset_max_pool2d)
    interleave_offsets = staticmethod(offset_pool.interleave_offsets)
    relu_forward = staticmethod(activations.relu_forward)
    relu_backward = staticmethod(activations.relu_backward)
    dropout_forward = staticmethod(activations.dropout_forward)
    dropout_backward = staticmethod(activations.dropout_backward)
    linear_forward = staticmethod(linear.linear_forward)
    linear_backward = staticmethod(linear.linear_backward)
    softmax_cross_entropy = staticmethod(losses.softmax_cross_entropy)
    l2_loss = staticmethod(losses.l2_loss)
    sgd_step = staticmethod(optim.sgd_step_fused)
    greedy_merge = staticmethod(merge.merge_fast)
    non_max_suppression = staticmethod(nms.nms)


# name -> a Backend subclass, or "module:Class" imported on first use (so that the
# CUDA backend's Numba-CUDA import is paid only by those who ask for it).
_REGISTRY: dict[str, type | str] = {
    "numpy": NumpyBackend,
    "cuda": "overfeat_scratch.nn.cuda_backend:CudaBackend",
}
_INSTANCES: dict[str, Backend] = {}


def register_backend(name: str, factory) -> None:
    """Make ``get_backend(name)`` return ``factory()`` (a class or ``"module:Class"``)."""
    _REGISTRY[name] = factory
    _INSTANCES.pop(name, None)


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(backend: str | Backend | None = None) -> Backend:
    """The backend called ``backend`` (default ``"numpy"``), created once.

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` when the
    backend exists but cannot run here (CUDA without a GPU or the simulator).
    """
    if isinstance(backend, Backend):
        return backend
    name = "numpy" if backend is None else backend
    if name not in _REGISTRY:
        raise InputError(f"unknown backend {name!r}; expected one of {available_backends()}")
    if name not in _INSTANCES:
        factory = _REGISTRY[name]
        if isinstance(factory, str):
            module, cls = factory.split(":")
            factory = getattr(importlib.import_module(module), cls)
        _INSTANCES[name] = factory()
    return _INSTANCES[name]
