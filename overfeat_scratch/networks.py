"""The two OverFeat networks, built from the paper's tables in :mod:`.paper`.

Each row of a table becomes ``conv``/``full`` -> ``ReLU`` (all but the last) ->
``MaxPool2d`` (where the table has a pool) -> ``Dropout`` (the first two fully
connected layers). Fully connected layers are :class:`~.layers.FullyConnected`,
i.e. convolutions over their whole input map, so the network that classifies one
231x231 window also evaluates every window of a larger image.
"""

from __future__ import annotations

import numpy as np

from . import paper
from .backend import Backend
from .layers import Conv2d, Dropout, FullyConnected, MaxPool2d, ReLU, Sequential


def build_from_specs(
    specs,
    in_channels: int,
    name: str,
    seed: int | None = 0,
    init_std: float = paper.TRAINING["init_std"],
    backend: str | Backend = "numpy",
) -> Sequential:
    """A :class:`Sequential` network from a list of :class:`~.paper.LayerSpec` rows.

    ``seed=None`` leaves the weights at zero (fast: for loading trained weights);
    otherwise weights are drawn from N(0, ``init_std``\\ :sup:`2`) with that seed.
    """
    rng = None if seed is None else np.random.default_rng(seed)
    layers, channels = [], in_channels
    for index, spec in enumerate(specs, start=1):
        if spec.kind == "conv":
            layers.append(
                Conv2d(
                    channels,
                    spec.out,
                    spec.filter,
                    spec.stride,
                    spec.pad,
                    init_std,
                    rng,
                    name=f"conv{index}",
                )
            )
        elif spec.kind == "full":
            layers.append(
                FullyConnected(channels, spec.out, spec.filter, init_std, rng, name=f"full{index}")
            )
        else:
            raise ValueError(f"layer {index}: unknown kind {spec.kind!r}; expected conv or full")
        if spec.relu:
            layers.append(ReLU(name=f"relu{index}"))
        if spec.pool:
            layers.append(MaxPool2d(spec.pool, spec.pool_stride or spec.pool, name=f"pool{index}"))
        if spec.dropout:
            layers.append(Dropout(spec.dropout, seed=(seed or 0) + index, name=f"dropout{index}"))
        channels = spec.out
    net = Sequential(layers, name=name)
    return net.to(backend) if backend != "numpy" else net


def build_network(model: str, seed: int | None = 0, backend: str | Backend = "numpy") -> Sequential:
    """``"fast"`` or ``"accurate"`` exactly as in the paper's Tables 1 and 3."""
    if model not in paper.ARCHITECTURES:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(paper.ARCHITECTURES)}")
    return build_from_specs(
        paper.ARCHITECTURES[model], paper.INPUT_CHANNELS, model, seed=seed, backend=backend
    )
