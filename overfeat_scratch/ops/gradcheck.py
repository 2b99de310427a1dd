"""Gradient checks: the backward pass against central finite differences.

In float64, ``(f(x + h) - f(x - h)) / 2h`` has an error of order ``h**2`` (about
1e-10 for ``h = 1e-5``), so an analytic gradient that agrees to 1e-7 in relative
terms is right; one that is wrong is off by far more.

To check a layer we contract its output with a fixed random tensor ``r``: the scalar
``L = sum(layer(x) * r)`` has ``dL/dy = r``, so ``layer.backward(r)`` must equal
the numerical gradient of ``L``.
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of the scalar function ``f()`` with respect to ``x``.

    ``x`` is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """``max |a - b| / max(max |a|, max |b|)``, 0 when both are 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(a - b).max(initial=0.0) / scale)


def check_layer(layer, x: np.ndarray, seed: int = 0, h: float = 1e-5) -> dict[str, float]:
    """Relative errors of ``layer``'s input and parameter gradients, in float64.

    The layer's parameters are cast to float64 in place. Returns
    ``{"x": err, "<param>": err, ...}``.
    """
    layer.astype(np.float64)
    x = np.array(x, dtype=np.float64)
    r = np.random.default_rng(seed).standard_normal(layer.forward(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * r))

    layer.forward(x)
    dx = layer.backward(r)
    errors = {"x": relative_error(dx, numerical_gradient(loss, x, h))}
    analytic = {key: np.array(g) for key, g in layer.grads.items()}
    for key, param in layer.params.items():
        errors[key] = relative_error(analytic[key], numerical_gradient(loss, param, h))
    return errors
