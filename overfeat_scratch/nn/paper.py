"""The paper's numbers, in one place.

Everything here is a fact from Sermanet et al., "OverFeat" (ICLR 2014) or from the
authors' released weight files; the rest of the package reads these tables instead
of repeating the numbers, and ``tests/test_networks.py`` checks the networks built
from them against the paper's tables (parameters and multiply-adds per layer).

Architectures are lists of :class:`LayerSpec`, one per row of the paper's Tables 1
and 3: a convolution (or fully connected layer) with its ReLU, optionally followed
by a non-overlapping max pool and, for the first two fully connected layers,
dropout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSpec:
    """One row of an architecture table.

    ``kind`` is ``"conv"`` or ``"full"``. A fully connected layer is stored as the
    convolution it is: ``filter`` is the side of the map it reads (6 for the fast
    model's layer 6, 1 for later ones), so the same weights slide over a larger
    map without a second definition.
    """

    kind: str
    out: int
    filter: int
    stride: int = 1
    pool: int = 0
    pool_stride: int = 0
    pad: int = 0
    dropout: float = 0.0
    relu: bool = True


# Fast model, paper Table 1 (input 231x231, total stride 4*2*2*2 = 32).
FAST = (
    LayerSpec("conv", 96, 11, stride=4, pool=2, pool_stride=2),
    LayerSpec("conv", 256, 5, pool=2, pool_stride=2),
    LayerSpec("conv", 512, 3, pad=1),
    LayerSpec("conv", 1024, 3, pad=1),
    LayerSpec("conv", 1024, 3, pad=1, pool=2, pool_stride=2),
    LayerSpec("full", 3072, 6, dropout=0.5),
    LayerSpec("full", 4096, 1, dropout=0.5),
    LayerSpec("full", 1000, 1, relu=False),
)

# Accurate model, paper Table 3 (input 221x221, total stride 2*3*2*3 = 36).
ACCURATE = (
    LayerSpec("conv", 96, 7, stride=2, pool=3, pool_stride=3),
    LayerSpec("conv", 256, 7, pool=2, pool_stride=2),
    LayerSpec("conv", 512, 3, pad=1),
    LayerSpec("conv", 512, 3, pad=1),
    LayerSpec("conv", 1024, 3, pad=1),
    LayerSpec("conv", 1024, 3, pad=1, pool=3, pool_stride=3),
    LayerSpec("full", 4096, 5, dropout=0.5),
    LayerSpec("full", 4096, 1, dropout=0.5),
    LayerSpec("full", 1000, 1, relu=False),
)

ARCHITECTURES = {"fast": FAST, "accurate": ACCURATE}

# The "input size" column of Tables 1 and 3, one entry per row. The fast model's
# layer 2 entry (24) is that layer's convolution *output*: it reads the 28x28 map
# left by layer 1's 2x2 pool of a 56x56 map, and 28 - 5 + 1 = 24.
TABLE_INPUT_SIZES = {
    "fast": (231, 24, 12, 12, 12, 6, 1, 1),
    "accurate": (221, 36, 15, 15, 15, 15, 5, 1, 1),
}

# The smallest input that gives one output (the network's window), in pixels.
WINDOW = {"fast": 231, "accurate": 221}
# Total subsampling ratio of the conv/pool stack: the spacing of dense windows.
TOTAL_STRIDE = {"fast": 32, "accurate": 36}
INPUT_CHANNELS = 3
NUM_CLASSES = 1000

# Weights plus biases, from the released weight layout (paper Table 4: 145M, 144M).
PARAMETERS = {"fast": 145_920_872, "accurate": 144_656_488}
# Multiply-adds for one window (derived from the architecture).
MULTIPLY_ADDS = {"fast": 2_801_403_904, "accurate": 5_355_446_784}

# Multi-scale classification, paper Table 5 (accurate model), one row per scale:
# input (H, W); layer-5 map before the last pool; after it, per offset (there are
# 3x3 offsets); classifier map per offset; and the interleaved classifier map.
# fmt: off
TABLE5 = (
    {"input": (245, 245), "pre_pool": (17, 17), "post_pool": (5, 5), "per_offset": (1, 1),
     "fine": (3, 3)},
    {"input": (281, 317), "pre_pool": (20, 23), "post_pool": (6, 7), "per_offset": (2, 3),
     "fine": (6, 9)},
    {"input": (317, 389), "pre_pool": (23, 29), "post_pool": (7, 9), "per_offset": (3, 5),
     "fine": (9, 15)},
    {"input": (389, 461), "pre_pool": (29, 35), "post_pool": (9, 11), "per_offset": (5, 7),
     "fine": (15, 21)},
    {"input": (425, 497), "pre_pool": (32, 38), "post_pool": (10, 12), "per_offset": (6, 8),
     "fine": (18, 24)},
    {"input": (461, 569), "pre_pool": (35, 44), "post_pool": (11, 14), "per_offset": (7, 10),
     "fine": (21, 30)},
)
# fmt: on
# The six input sizes, used for both models (the paper gives them for the accurate one).
SCALES = tuple(row["input"] for row in TABLE5)

# Preprocessing of the released networks: RGB in 0..255, one scalar mean and std.
PIXEL_MEAN = 118.380948
PIXEL_STD = 61.896913

# Training settings, paper Section 3.1.
TRAINING = {
    "crop": 221,
    "resize_short_side": 256,
    "batch_size": 128,
    "init_std": 1e-2,
    "momentum": 0.6,
    "weight_decay": 1e-5,
    "learning_rate": 5e-2,
    "lr_decay_epochs": (30, 50, 60, 70, 80),
    "lr_decay_factor": 0.5,
    "dropout": 0.5,
}
