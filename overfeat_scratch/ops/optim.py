"""Stochastic gradient descent with momentum and L2 weight decay (paper Section 3.1).

For every parameter ``w`` with gradient ``g`` and velocity ``v`` (zero at first):

    v <- momentum * v - lr * (g + weight_decay * w)
    w <- w + v

The paper trains with momentum 0.6, weight decay 1e-5 and a learning rate of 5e-2
halved after epochs 30, 50, 60, 70 and 80 (:class:`StepSchedule`). The update
runs in place on the parameters' backend. Three versions, each the reference of the
next: the loop over the elements (:func:`sgd_step_naive`), the update on whole
arrays (:func:`sgd_step`), and the NumPy backend's one compiled pass
(:func:`sgd_step_fused`), the same bits as the array version. The CUDA kernel is in
:mod:`overfeat_scratch.cuda.optim`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..common.checks import InputError, check_float_array


def check_sgd_args(param, grad, velocity, lr, momentum, weight_decay):
    for name, array in (("parameter", param), ("gradient", grad), ("velocity", velocity)):
        check_float_array(array, f"sgd {name}")
    if tuple(grad.shape) != tuple(param.shape) or tuple(velocity.shape) != tuple(param.shape):
        raise InputError(
            f"sgd: parameter {tuple(param.shape)}, gradient {tuple(grad.shape)} and velocity "
            f"{tuple(velocity.shape)} must have one shape"
        )
    if isinstance(param, np.ndarray) and not param.flags.writeable:
        raise InputError(
            "sgd: the parameter is read-only (a network in eval mode keeps its filters "
            "transformed for Winograd's convolution and their weights read-only); call "
            "net.train() before updating it"
        )
    if not (lr >= 0 and 0 <= momentum < 1 and weight_decay >= 0):
        raise InputError(
            f"sgd: expected lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got lr={lr}, "
            f"momentum={momentum}, weight_decay={weight_decay}"
        )


def sgd_step_naive(param, grad, velocity, lr, momentum, weight_decay):
    """The update with a loop over the elements (the spec); in place."""
    check_sgd_args(param, grad, velocity, lr, momentum, weight_decay)
    for i in range(param.size):
        v = momentum * velocity.flat[i] - lr * (grad.flat[i] + weight_decay * param.flat[i])
        velocity.flat[i] = v
        param.flat[i] += v


def sgd_step(param, grad, velocity, lr, momentum, weight_decay):
    """The update on whole arrays, in place, without temporaries the size of ``param``
    beyond one."""
    check_sgd_args(param, grad, velocity, lr, momentum, weight_decay)
    t = param.dtype.type
    velocity *= t(momentum)
    step = grad + t(weight_decay) * param
    step *= t(lr)
    velocity -= step
    param += velocity


@numba.njit(cache=False, nogil=True)
def _sgd_kernel(param, grad, velocity, lr, momentum, weight_decay):
    """:func:`sgd_step`'s operations, element by element, in its order and its dtype
    (``lr``, ``momentum`` and ``weight_decay`` come in the parameter's dtype)."""
    for i in range(param.size):
        v = velocity[i] * momentum
        step = grad[i] + weight_decay * param[i]
        step = step * lr
        v = v - step
        velocity[i] = v
        param[i] = param[i] + v


def sgd_step_fused(param, grad, velocity, lr, momentum, weight_decay):
    """:func:`sgd_step` in one compiled pass: each element's parameter, gradient and
    velocity are read once and written once, where the array version makes five
    passes and a temporary (3x faster on ``mini``'s parameters). The operations and
    their order are the array version's, in the same dtype, so the result is the
    same bits. Arrays that are not contiguous, or of mixed dtypes, take
    :func:`sgd_step`."""
    check_sgd_args(param, grad, velocity, lr, momentum, weight_decay)
    arrays = (param, grad, velocity)
    if not all(
        isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == param.dtype
        for a in arrays
    ):
        sgd_step(param, grad, velocity, lr, momentum, weight_decay)
        return
    t = param.dtype.type
    flat = [a.reshape(-1) for a in arrays]
    _sgd_kernel(*flat, t(lr), t(momentum), t(weight_decay))


@dataclass(frozen=True)
class StepSchedule:
    """``base * factor ** (number of decay epochs <= epoch)``; epochs count from 0."""

    base: float
    decay_epochs: tuple[int, ...] = ()
    factor: float = 0.5

    def __call__(self, epoch: int) -> float:
        steps = sum(1 for e in self.decay_epochs if epoch >= e)
        return float(self.base * self.factor**steps)


class SGD:
    """Momentum SGD over a network's parameters, with one velocity per parameter."""

    def __init__(self, net, lr: float, momentum: float, weight_decay: float):
        self.net = net
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        backend = net.backend
        # Each velocity has its parameter's dtype: a float64 network (gradient checks)
        # keeps float64 velocities, or its updates would be rounded to float32.
        self.velocity = {
            name: backend.asarray(
                np.zeros(layer.params[key].shape), dtype=np.dtype(layer.params[key].dtype)
            )
            for name, layer, key in net.named_parameters()
        }

    def step(self) -> None:
        """Apply one update from the gradients of the last backward pass."""
        backend = self.net.backend
        for name, layer, key in self.net.named_parameters():
            if key not in layer.grads:
                raise RuntimeError(f"sgd: no gradient for {name}; call backward() first")
            backend.sgd_step(
                layer.params[key],
                layer.grads[key],
                self.velocity[name],
                self.lr,
                self.momentum,
                self.weight_decay,
            )

    def state_dict(self) -> dict[str, np.ndarray]:
        backend = self.net.backend
        return {name: backend.to_numpy(v) for name, v in self.velocity.items()}

    def load_state_dict(self, state: dict) -> None:
        """Velocities by name, with the shapes and the dtypes of the parameters; finite."""
        if set(state) != set(self.velocity):
            raise InputError(
                f"sgd: velocity names {sorted(state)} do not match the network's parameters "
                f"{sorted(self.velocity)}"
            )
        backend = self.net.backend
        for name, value in state.items():
            if tuple(value.shape) != tuple(self.velocity[name].shape):
                raise InputError(
                    f"sgd: velocity {name} has shape {value.shape}, expected "
                    f"{tuple(self.velocity[name].shape)}"
                )
            check_float_array(np.asarray(value), f"sgd: velocity {name}", finite=True)
        for name, value in state.items():
            dtype = np.dtype(self.velocity[name].dtype)
            self.velocity[name] = backend.asarray(np.asarray(value), dtype=dtype)
