"""OverFeat from scratch: NumPy and Numba-CUDA, every step of the paper written out."""

from .nn.backend import available_backends, get_backend, register_backend
from .nn.layers import (
    Conv2d,
    Dropout,
    Flatten,
    FullyConnected,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from .nn.networks import build_from_specs, build_network

__version__ = "0.1.0"

__all__ = [
    "Conv2d",
    "Dropout",
    "Flatten",
    "FullyConnected",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "available_backends",
    "build_from_specs",
    "build_network",
    "get_backend",
    "register_backend",
]
