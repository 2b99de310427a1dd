"""The CUDA backend: every layer operation as Numba-CUDA kernels, float32 on the device.

Arrays live on the GPU as Numba device arrays from the first layer to the loss:
each operation takes device arrays and returns new ones, and nothing is copied to
the host except what must be (the loss scalar, :meth:`CudaBackend.all_finite`'s
flag, and :meth:`CudaBackend.to_numpy` when asked). Host arrays passed in (an
input batch, labels, weights of the L2 loss) are uploaded.

The operations are the host wrappers of :mod:`overfeat_scratch.cuda`'s modules (one
per operation, named as in :mod:`overfeat_scratch.ops`), with their default tile
sizes; the greedy merge and NMS take and return host arrays, as on the NumPy
backend. They validate their arguments with the NumPy backend's checks (which only
look at ``.shape`` and ``.dtype``), so bad input gives the same errors on both.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..common.checks import NotAvailableError
from ..cuda import (
    activations,
    as_device,
    checks,
    conv,
    is_device_array,
    linear,
    losses,
    merge,
    nms,
    offset_pool,
    optim,
    pool,
)
from .backend import Backend


class CudaBackend(Backend):
    """Float32 Numba-CUDA kernels; arrays are Numba device arrays."""

    name = "cuda"

    def __init__(self):
        if not cuda.is_available():
            raise NotAvailableError(
                "the CUDA backend found no CUDA GPU: install the `cuda` extra "
                "(pip install 'overfeat-scratch[cuda]') on a machine with an NVIDIA GPU, "
                "or set NUMBA_ENABLE_CUDASIM=1 before importing numba to use the "
                "(slow) Numba CUDA simulator"
            )

    # Moving data.
    def asarray(self, x, dtype=np.float32):
        """A host or device array as a contiguous device array of ``dtype``.

        A device array of the right dtype is returned as it is (no copy).
        """
        if is_device_array(x) and np.dtype(x.dtype) != np.dtype(dtype):
            x = x.copy_to_host()  # a dtype change is rare: do it on the host
        return as_device(x, "CudaBackend.asarray", dtype=dtype)

    def to_numpy(self, x):
        return x.copy_to_host() if is_device_array(x) else np.asarray(x)

    def is_array(self, x):
        return is_device_array(x)

    def all_finite(self, x):
        return checks.all_finite(x)

    # Layers.
    def conv2d_forward(self, x, w, b, stride, padding, relu=False):
        y = conv.conv2d_forward(x, w, b, stride, padding)
        return self.relu_forward(y, inplace=True) if relu else y

    def conv2d_backward(self, dy, x, w, stride, padding, input_grad=True):
        return conv.conv2d_backward(dy, x, w, stride, padding, input_grad=input_grad)

    def max_pool2d_forward(self, x, kernel, stride):
        return pool.max_pool2d_forward(x, kernel, stride)

    def max_pool2d_backward(self, dy, arg, x_shape, kernel, stride):
        return pool.max_pool2d_backward(dy, arg, x_shape, kernel, stride)

    def offset_max_pool2d(self, x, kernel, stride):
        return offset_pool.offset_max_pool2d(x, kernel, stride)

    def interleave_offsets(self, y, fine_h, fine_w):
        return offset_pool.interleave_offsets(y, fine_h, fine_w)

    def relu_forward(self, x, inplace=False):
        return activations.relu_forward(x, out=x if inplace else None)

    def relu_backward(self, dy, y):
        return activations.relu_backward(dy, y)

    def dropout_forward(self, x, p, seed):
        return activations.dropout_forward(x, p, seed)

    def dropout_backward(self, dy, keep, p):
        return activations.dropout_backward(dy, keep, p)

    def linear_forward(self, x, w, b):
        return linear.linear_forward(x, w, b)

    def linear_backward(self, dy, x, w):
        return linear.linear_backward(dy, x, w)

    def softmax_cross_entropy(self, logits, labels):
        return losses.softmax_cross_entropy(logits, labels)

    def l2_loss(self, pred, target, weight=None):
        return losses.l2_loss(pred, target, weight)

    def sgd_step(self, param, grad, velocity, lr, momentum, weight_decay):
        optim.sgd_step(param, grad, velocity, lr, momentum, weight_decay)

    def reshape(self, x, shape):
        """A view with a new shape (device arrays must be C-contiguous: they are)."""
        return x.reshape(tuple(shape))

    def greedy_merge(
        self, boxes, classes, confidences, threshold=0.5, score="center_iou", average="pair"
    ):
        return merge.merge_cuda(boxes, classes, confidences, threshold, score, average)

    def non_max_suppression(self, boxes, scores, classes=None, iou_threshold=0.5, max_output=None):
        return nms.nms(boxes, scores, classes, iou_threshold, max_output)
