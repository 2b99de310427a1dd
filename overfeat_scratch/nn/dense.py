"""Dense evaluation: a ConvNet is a sliding window (paper Section 3.5).

Because the fully connected layers are convolutions (:class:`~.layers.FullyConnected`),
the network that classifies one window classifies every window of a larger image
in one pass, sharing all the computation where windows overlap. Output ``(i, j)``
of the map is the network's answer for the window at
``geometry.window_box(i, j)``.

``fine=True`` adds offset pooling (:mod:`~overfeat_scratch.ops.offset_pool`): the last
pool is applied at every offset, the classifier runs on all ``s*s`` pooled maps in one
batch, and the interleaved map has outputs ``S / s`` pixels apart (12 instead of 36 for
the accurate model, 16 instead of 32 for the fast one).

Multi-scale classification (paper Section 3.3) runs this at several image sizes
and with horizontal flips, takes each class's spatial maximum and averages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..common.checks import InputError
from ..ops.image import check_image, hflip, resize_bilinear, resize_short_side
from ..ops.offset_pool import fine_size
from . import paper
from .geometry import Geometry, window_box
from .layers import MaxPool2d, Sequential
from .weights import preprocess


@dataclass
class DenseMap:
    """Scores ``(N, C, H', W')`` and where each output's window lies in the input."""

    scores: np.ndarray
    stride: int
    window: int

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the window of output ``(i, j)`` (row ``i``)."""
        return window_box(i, j, self.stride, self.window)


def last_pool_index(net: Sequential) -> int:
    """Index in ``net.layers`` of the last max pool (the one offset pooling repeats)."""
    for index in range(len(net.layers) - 1, -1, -1):
        if isinstance(net.layers[index], MaxPool2d):
            return index
    raise InputError(f"{net.name}: has no max-pool layer, so offset pooling does not apply")


def run_layers(layers, x):
    for layer in layers:
        x = layer.forward(x)
    return x


def dense_evaluate(net: Sequential, x, fine: bool = False) -> DenseMap:
    """The network's output map on ``x: (N, C, H, W)``, ``H, W >=`` the window.

    Returns host scores ``(N, classes, H', W')`` (raw outputs of the last layer,
    before any softmax). Call ``net.eval()`` first for inference (dropout off).
    """
    net.check_input(x)
    if not fine:
        geometry = Geometry.of(net)
        x = _as_input(net, x)
        return DenseMap(
            net.backend.to_numpy(run_layers(net.layers, x)), geometry.stride, geometry.window
        )
    return dense_evaluate_heads(net, [net.layers[last_pool_index(net) + 1 :]], x, fine)[0]


def _as_input(net: Sequential, x):
    backend = net.backend
    if not backend.is_array(x) or x.dtype != net.dtype:
        x = backend.asarray(x, dtype=net.dtype)
    return x


def dense_evaluate_heads(net: Sequential, heads, x, fine: bool = False) -> list[DenseMap]:
    """Several heads on the same pooled features of ``net``, densely: one map per head.

    ``net``'s layers up to and including its last max pool are the shared
    features; each head (a list of layers or a :class:`Sequential`, e.g. the
    classifier ``net.layers[last_pool_index(net) + 1:]`` and a box regressor) reads
    them. The features are computed once; with ``fine`` the last pool runs at every
    offset and every head runs on all ``s*s`` pooled maps, so output ``(i, j)`` of
    every map describes the same window.
    """
    net.check_input(x)
    index = last_pool_index(net)
    geometry = Geometry.of(net)
    backend = net.backend
    x = _as_input(net, x)
    features = run_layers(net.layers[:index], x)
    pool = net.layers[index]
    maps = []
    if not fine:
        pooled = pool.forward(features)
        for head in heads:
            out = run_layers(head, pooled)
            maps.append(DenseMap(backend.to_numpy(out), geometry.stride, geometry.window))
        return maps
    s, k = pool.stride, pool.kernel
    n, c, h, w = features.shape
    pooled = backend.offset_max_pool2d(features, k, s)  # (s, s, N, C, Hq, Wq)
    batch = backend.reshape(pooled, (s * s * n, c) + tuple(pooled.shape[4:]))
    for head in heads:
        head_geometry = Geometry.of(list(head))
        if head_geometry.stride != 1:
            raise InputError(
                f"{net.name}: offset pooling needs the layers after the last pool to have "
                f"stride 1, got a total stride of {head_geometry.stride}"
            )
        fine_h = fine_size(h, k, s, head_geometry.window)
        fine_w = fine_size(w, k, s, head_geometry.window)
        out = run_layers(head, batch)
        out = backend.reshape(out, (s, s, n) + tuple(out.shape[1:]))
        scores = backend.interleave_offsets(out, fine_h, fine_w)
        maps.append(DenseMap(backend.to_numpy(scores), geometry.stride // s, geometry.window))
    return maps


def offset_plan(net: Sequential, height: int, width: int) -> dict:
    """The map sizes of offset pooling for an input, as in the paper's Table 5.

    ``pre_pool``: the map before the last pool; ``post_pool``: after it, at offset
    (0, 0); ``per_offset``: the classifier map at offset (0, 0); ``fine``: the
    interleaved map; ``offsets``: how many offsets per axis; ``fine_stride``: pixels
    between neighbouring fine outputs.
    """
    index = last_pool_index(net)
    net.check_size(height, width)
    shape = (net.in_channels, height, width)
    for layer in net.layers[:index]:
        shape = layer.output_shape(shape)
    pool = net.layers[index]
    pooled = pool.output_shape(shape)
    out = pooled
    for layer in net.layers[index + 1 :]:
        out = layer.output_shape(out)
    classifier = Geometry.of(net.layers[index + 1 :])
    return {
        "pre_pool": shape[1:],
        "post_pool": pooled[1:],
        "per_offset": out[1:],
        "fine": tuple(
            fine_size(side, pool.kernel, pool.stride, classifier.window) for side in shape[1:]
        ),
        "offsets": (pool.stride, pool.stride),
        "fine_stride": Geometry.of(net).stride // pool.stride,
    }


def fine_multiply_adds(net: Sequential, height: int, width: int) -> tuple[int, int]:
    """``(features, classifier)`` multiply-adds of ``dense_evaluate(..., fine=True)``.

    The layers before the last pool run once; the classifier runs on all ``s*s``
    pooled maps, each the size of the offset-0 map (see :mod:`~overfeat_scratch.ops.offset_pool`).
    """
    index = last_pool_index(net)
    net.check_size(height, width)
    shape, features = (net.in_channels, height, width), 0
    for layer in net.layers[:index]:
        features += layer.multiply_adds(shape)
        shape = layer.output_shape(shape)
    s = net.layers[index].stride
    shape, classifier = net.layers[index].output_shape(shape), 0
    for layer in net.layers[index + 1 :]:
        classifier += s * s * layer.multiply_adds(shape)
        shape = layer.output_shape(shape)
    return features, classifier


def _layer_memory(layer, shape: tuple, n: int, itemsize: int) -> tuple[int, int, tuple]:
    """``(temporary, kept, output shape)``: elements one layer's forward pass over ``n``
    inputs of ``shape`` allocates for the pass only, and keeps afterwards.

    Layers keep references to what their backward pass would need (a convolution its
    input, a ReLU its output, a pool its winners' indices), in evaluation too, so
    every layer's output stays alive until the network's next forward pass. A
    convolution's temporaries are those of its tiles
    (:func:`~overfeat_scratch.ops.conv.forward_temporaries`, or
    :func:`~overfeat_scratch.ops.winograd.forward_temporaries` where it runs Winograd's
    route); an in-place ReLU allocates nothing.
    """
    from ..ops import winograd
    from ..ops.conv import forward_temporaries
    from ..ops.parallel import workers
    from .layers import Conv2d, Dropout, MaxPool2d, ReLU

    out = layer.output_shape(shape)
    outputs = n * int(np.prod(out))
    if isinstance(layer, Conv2d):
        w_shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        if layer.uses_winograd(shape):
            temporary = winograd.forward_temporaries(
                (n, *shape), w_shape, layer.padding, itemsize, workers()
            )
        else:
            temporary = forward_temporaries(
                (n, *shape), w_shape, layer.stride, layer.padding, itemsize, workers()
            )
        return temporary, outputs, out
    if isinstance(layer, MaxPool2d):
        return 0, 2 * outputs, out
    if isinstance(layer, Dropout) or (isinstance(layer, ReLU) and layer.inplace):
        return 0, 0, out
    return 0, outputs, out


def dense_memory(net: Sequential, height: int, width: int, fine: bool = False, heads=None) -> int:
    """An estimate, in bytes, of the peak memory of a dense evaluation of one input.

    ``net`` on one ``(C, height, width)`` input, as :func:`dense_evaluate` (``heads``
    ``None``) or :func:`dense_evaluate_heads` runs it: the input, every layer's
    output (:func:`_layer_memory`: layers keep them), the largest temporaries of
    one layer, and with ``fine`` the ``s*s`` pooled maps and the interleaved map.
    It counts the arrays of the NumPy backend: an estimate for refusing inputs
    that cannot fit, within some tens of percent, not an exact account.
    """
    itemsize = np.dtype(net.dtype).itemsize
    shape = (net.in_channels, height, width)
    net.check_size(height, width)
    if heads is None and not fine:
        split, heads = len(net.layers), []
    else:
        split = last_pool_index(net)
        heads = [net.layers[split + 1 :]] if heads is None else heads
    kept, peak = int(np.prod(shape)), 0
    for layer in net.layers[:split]:
        temporary, more, shape = _layer_memory(layer, shape, 1, itemsize)
        peak, kept = max(peak, kept + temporary + more), kept + more
    if split < len(net.layers):
        n = net.layers[split].stride ** 2 if fine else 1
        temporary, more, pooled = _layer_memory(net.layers[split], shape, n, itemsize)
        peak, kept = max(peak, kept + temporary + more), kept + more
        for head in heads:
            head_shape = pooled
            for layer in head:
                temporary, more, head_shape = _layer_memory(layer, head_shape, n, itemsize)
                peak, kept = max(peak, kept + temporary + more), kept + more
            kept += n * int(np.prod(head_shape))  # the interleaved map
    return max(peak, kept) * itemsize


def check_memory(estimate: int, limit_gib: float, what: str, remedy: str) -> None:
    """Refuse (``MemoryError``) a computation whose estimated memory exceeds the limit.

    ``what`` names the computation, ``remedy`` says how to make it smaller.
    """
    if estimate > limit_gib * 2**30:
        raise MemoryError(
            f"{what} would take about {estimate / 2**30:.1f} GiB of memory, more than the "
            f"limit of {limit_gib:g} GiB; {remedy} (or raise the limit with --max-memory)"
        )


def softmax(scores: np.ndarray, axis: int = 1) -> np.ndarray:
    z = scores - scores.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


@dataclass
class MultiScaleResult:
    """Averaged class probabilities, the top classes, and every map that went in."""

    probabilities: np.ndarray
    top: np.ndarray
    maps: list = field(default_factory=list)  # (size, flipped, DenseMap) per evaluation


def classify_multiscale(
    net: Sequential,
    image,
    scales=paper.SCALES,
    flips: bool = True,
    fine: bool = True,
    top: int = 5,
    prepare=preprocess,
) -> MultiScaleResult:
    """Multi-scale classification of one ``(H, W, 3)`` RGB image (paper Section 3.3).

    For each scale and (with ``flips``) its mirror image: dense evaluation (with
    offset pooling when ``fine``), softmax at every position, then each class's
    maximum over the map. The class vectors are averaged over scales and flips.

    ``scales``: ``(H, W)`` pairs resize the image to exactly that size (the paper's
    Table 5 sizes, the default); an integer resizes the shorter side to it,
    keeping the aspect ratio. ``prepare`` turns an RGB image into the network's
    ``(1, C, H, W)`` input (default: the released networks' normalisation).
    """
    image = check_image(image)
    if not scales:
        raise InputError("classify_multiscale: expected at least one scale")
    vectors, maps = [], []
    for scale in scales:
        if isinstance(scale, (int, np.integer)):
            resized = resize_short_side(image, int(scale))
        else:
            resized = resize_bilinear(image, int(scale[0]), int(scale[1]))
        for flipped in (False, True) if flips else (False,):
            x = prepare(hflip(resized) if flipped else resized)
            dense = dense_evaluate(net, x, fine=fine)
            vectors.append(softmax(dense.scores)[0].max(axis=(1, 2)))
            maps.append((resized.shape[:2], flipped, dense))
    probabilities = np.mean(vectors, axis=0)
    order = np.argsort(-probabilities, kind="stable")[:top]
    return MultiScaleResult(probabilities, order, maps)
