"""The digit task: MNIST as 32x32 windows for ``mini``, and the shipped weights.

Pixels are scaled to ``[0, 1]`` with no mean subtraction, so that black background
is exactly 0 and zero padding (of the 28x28 digits to the 32x32 window, of the
random translations, of offset pooling) is background too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.checks import InputError, InputTypeError
from ..common.fileio import SHIPPED_DIR, shipped_file

# The ten classes, digits 0 to 9: class k is the digit k, everywhere in the package.
DIGITS = 10
WINDOW = 32
MNIST_SIDE = 28
# The trained ``mini`` weights shipped with the package (written by `overfeat-scratch
# train`; the command that made them is in mini.json beside them).
SHIPPED = SHIPPED_DIR / "mini.npz"


def to_input(images) -> np.ndarray:
    """``(N, H, W)`` uint8 grey images to the network's ``(N, 1, H, W)`` float32 input."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise InputError(f"to_input: expected (N, H, W) grey images, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise InputTypeError(f"to_input: expected uint8 pixels 0..255, got dtype {images.dtype}")
    return (images[:, None].astype(np.float32)) / np.float32(255)


def mnist_windows(images) -> np.ndarray:
    """``(N, 28, 28)`` MNIST digits centred in ``(N, 1, 32, 32)`` windows."""
    pad = (WINDOW - MNIST_SIDE) // 2
    return to_input(np.pad(np.asarray(images), ((0, 0), (pad, pad), (pad, pad))))


def shipped_checkpoint() -> Path:
    return shipped_file(SHIPPED, "mini weights", "overfeat-scratch train --model mini --out DIR")
