"""The OverFeat networks, built from the paper's tables in :mod:`.paper`, and ``mini``.

Each row of a table becomes ``conv``/``full`` -> ``ReLU`` (all but the last) ->
``MaxPool2d`` (where the table has a pool) -> ``Dropout`` (the first two fully
connected layers). Fully connected layers are :class:`~.layers.FullyConnected`,
i.e. convolutions over their whole input map, so the network that classifies one
231x231 window also evaluates every window of a larger image.
"""

from __future__ import annotations

import math

import numpy as np

from ..common.checks import InputError
from . import paper
from .backend import Backend
from .layers import Conv2d, Dropout, FullyConnected, MaxPool2d, ReLU, Sequential

# ``mini``: an OverFeat-shaped network for 32x32 grey digit windows, small enough to
# train on a laptop CPU in minutes. Same structure as the paper's: convolutions
# with non-overlapping max pools (the last one is what offset pooling repeats),
# then fully connected layers written as convolutions, dropout on the first two.
# 32 -> conv 5x5 -> 28 -> pool 2 -> 14 -> conv 5x5 -> 10 -> pool 2 -> 5 -> full 5x5
# -> 1: window 32, total stride 4 (2 with offset pooling). No padding, so its dense
# evaluation equals sliding the 32x32 window exactly.
MINI = (
    paper.LayerSpec("conv", 32, 5, pool=2, pool_stride=2),
    paper.LayerSpec("conv", 64, 5, pool=2, pool_stride=2),
    paper.LayerSpec("full", 256, 5, dropout=0.5),
    paper.LayerSpec("full", 128, 1, dropout=0.5),
    paper.LayerSpec("full", 10, 1, relu=False),
)

# ``mini-detector``: ``mini`` with an eleventh output, "background" (paper Section 5),
# fine-tuned from ``mini`` on whole digit scenes (:mod:`.detection`).
MINI_DETECTOR = MINI[:-1] + (paper.LayerSpec("full", MINI[-1].out + 1, 1, relu=False),)

# ``mini``'s box regressor (paper Section 4): a head on the same pooled features as
# the classifier (conv2 after its pool: 64 maps of 5x5 per window), two hidden fully
# connected layers (the paper's 4096 and 1024, scaled down like the classifier's) and
# 4 box edges per class; the shared variant has one 4-vector for all classes. Written
# as convolutions, it slides over every window and pooling offset like the classifier.
MINI_FEATURES = MINI[1].out
MINI_REGRESSOR = (
    paper.LayerSpec("full", 256, 5),
    paper.LayerSpec("full", 128, 1),
    paper.LayerSpec("full", 4 * MINI[-1].out, 1, relu=False),
)
MINI_REGRESSOR_SHARED = MINI_REGRESSOR[:-1] + (paper.LayerSpec("full", 4, 1, relu=False),)

# name -> (layer specs, input channels, weight init)
NETWORKS = {
    "fast": (paper.FAST, paper.INPUT_CHANNELS, paper.TRAINING["init_std"]),
    "accurate": (paper.ACCURATE, paper.INPUT_CHANNELS, paper.TRAINING["init_std"]),
    "mini": (MINI, 1, "he"),
    "mini-detector": (MINI_DETECTOR, 1, "he"),
    "mini-regressor": (MINI_REGRESSOR, MINI_FEATURES, "he"),
    "mini-regressor-shared": (MINI_REGRESSOR_SHARED, MINI_FEATURES, "he"),
}

# Networks that read images (the others are heads on a network's features).
IMAGE_NETWORKS = ("fast", "accurate", "mini", "mini-detector")


def build_from_specs(
    specs,
    in_channels: int,
    name: str,
    seed: int | None = 0,
    init_std: float | str = paper.TRAINING["init_std"],
    backend: str | Backend = "numpy",
) -> Sequential:
    """A :class:`Sequential` network from a list of :class:`~.paper.LayerSpec` rows.

    ``seed=None`` leaves the weights at zero (fast: for loading trained weights);
    otherwise weights are drawn from N(0, ``init_std``\\ :sup:`2`) with that seed.
    ``init_std="he"`` uses ``sqrt(2 / fan_in)`` per layer instead of one value, which
    keeps the activations' scale through ReLU layers; a small network trains in
    far fewer epochs than with the paper's 0.01.
    """
    rng = None if seed is None else np.random.default_rng(seed)
    layers, channels = [], in_channels
    for index, spec in enumerate(specs, start=1):
        std = init_std
        if init_std == "he":
            std = math.sqrt(2.0 / (channels * spec.filter * spec.filter))
        elif isinstance(init_std, str):
            raise InputError(f"init_std: expected a number or 'he', got {init_std!r}")
        if spec.kind == "conv":
            layers.append(
                Conv2d(
                    channels,
                    spec.out,
                    spec.filter,
                    spec.stride,
                    spec.pad,
                    std,
                    rng,
                    name=f"conv{index}",
                )
            )
        elif spec.kind == "full":
            layers.append(
                FullyConnected(channels, spec.out, spec.filter, std, rng, name=f"full{index}")
            )
        else:
            raise InputError(f"layer {index}: unknown kind {spec.kind!r}; expected conv or full")
        # In place: a ReLU right after a convolution is the only reader of its input.
        if spec.relu:
            layers.append(ReLU(inplace=True, name=f"relu{index}"))
        if spec.pool:
            layers.append(MaxPool2d(spec.pool, spec.pool_stride or spec.pool, name=f"pool{index}"))
        if spec.dropout:
            layers.append(Dropout(spec.dropout, seed=(seed or 0) + index, name=f"dropout{index}"))
        channels = spec.out
    net = Sequential(layers, name=name)
    return net.to(backend) if backend != "numpy" else net


def build_network(model: str, seed: int | None = 0, backend: str | Backend = "numpy") -> Sequential:
    """``"fast"`` or ``"accurate"`` exactly as in the paper's Tables 1 and 3, or ``"mini"``."""
    if model not in NETWORKS:
        raise InputError(f"unknown model {model!r}; expected one of {sorted(NETWORKS)}")
    specs, in_channels, init_std = NETWORKS[model]
    return build_from_specs(specs, in_channels, model, seed, init_std, backend)
