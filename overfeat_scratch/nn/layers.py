"""Layers with parameters, forward and backward side by side, and ``Sequential``.

A layer keeps what its backward pass needs from the last forward pass (references,
not copies), and ``backward(dy)`` returns the input gradient and *overwrites* the
gradients of its parameters in ``layer.grads``. Layers compute through their
``backend`` (see :mod:`.backend`); ``Sequential.to("cuda")`` moves a whole network.

Shapes: images are ``(N, C, H, W)``; ``output_shape`` maps one example's
``(C, H, W)`` to the next layer's, so that a network can be described (and its
multiply-adds counted) without running it.
"""

from __future__ import annotations

import numpy as np

from ..common.checks import (
    InputError,
    check_float_array,
    check_positive_int,
    check_std,
    conv_output_size,
)
from ..ops.winograd import (
    WINOGRAD_MAX_BYTES,
    WINOGRAD_MIN_CHANNELS,
    filter_transform,
    transformed_bytes,
    winograd_applies,
)
from .backend import Backend, get_backend


class Layer:
    """Base class: no parameters, identity shape, not in training mode."""

    kind = "layer"

    def __init__(self, name: str | None = None):
        self.name = name or type(self).__name__.lower()
        self.params: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.backend: Backend = get_backend("numpy")
        self.training = False

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def forward_state(self, *names):
        """What the last forward pass kept for the backward pass (an error before any)."""
        values = [getattr(self, name, None) for name in names]
        if any(value is None for value in values):
            raise RuntimeError(
                f"{self.name}: backward() called before forward(); run a forward pass first"
            )
        return values

    def check_rank(self, x, layout: str = "(N, C, H, W)") -> None:
        """Refuse an input whose rank is not that of ``layout``."""
        rank = layout.count(",") + 1
        if len(getattr(x, "shape", ())) != rank:
            raise InputError(
                f"{self.name}: expected an {layout} input, got shape "
                f"{tuple(getattr(x, 'shape', ()))}"
            )

    def __call__(self, x):
        return self.forward(x)

    def output_shape(self, in_shape: tuple) -> tuple:
        return tuple(in_shape)

    def multiply_adds(self, in_shape: tuple) -> int:
        return 0

    def num_parameters(self) -> int:
        return sum(int(np.prod(p.shape)) for p in self.params.values())

    def to(self, backend: str | Backend) -> Layer:
        """Move the parameters to ``backend`` (float32 there) and compute with it."""
        new = get_backend(backend)
        dtype = np.float32 if new.name != "numpy" else None
        for key, value in self.params.items():
            host = self.backend.to_numpy(value)
            self.params[key] = new.asarray(host, dtype=dtype or host.dtype)
        self.grads = {}
        self.backend = new
        return self

    def astype(self, dtype) -> Layer:
        """Cast the parameters (NumPy backend; float64 is for gradient checks)."""
        for key, value in self.params.items():
            self.params[key] = self.backend.asarray(self.backend.to_numpy(value), dtype=dtype)
        return self

    def train(self, mode: bool = True) -> Layer:
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def describe(self) -> str:
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"


class Conv2d(Layer):
    """Convolution (cross-correlation) with stride and zero padding.

    ``w: (out, in, k, k)`` drawn from N(0, ``init_std``\\ :sup:`2`) as in the paper,
    ``b: (out,)`` zeros.
    """

    kind = "conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        init_std: float = 1e-2,
        rng: np.random.Generator | None = None,
        name: str | None = None,
    ):
        super().__init__(name)
        self.in_channels = check_positive_int(in_channels, f"{self.name} in_channels")
        self.out_channels = check_positive_int(out_channels, f"{self.name} out_channels")
        self.kernel = check_positive_int(kernel, f"{self.name} kernel")
        self.stride = check_positive_int(stride, f"{self.name} stride")
        self.padding = check_positive_int(padding, f"{self.name} padding", minimum=0)
        init_std = check_std(init_std, f"{self.name} init_std")
        shape = (self.out_channels, self.in_channels, self.kernel, self.kernel)
        if rng is None:
            w = np.zeros(shape, np.float32)
        else:
            w = rng.standard_normal(shape, dtype=np.float32)
            w *= np.float32(init_std)
        self.params = {"w": w, "b": np.zeros(self.out_channels, np.float32)}

    def output_shape(self, in_shape):
        c, h, w = in_shape
        if c != self.in_channels:
            raise InputError(
                f"{self.name}: expected {self.in_channels} input channels, got {c} "
                f"(input shape (N, {c}, {h}, {w}))"
            )
        what = f"{self.name} ({self.kind}, kernel {self.kernel})"
        ho = conv_output_size(h, self.kernel, self.stride, self.padding, f"{what} height")
        wo = conv_output_size(w, self.kernel, self.stride, self.padding, f"{what} width")
        return (self.out_channels, ho, wo)

    def multiply_adds(self, in_shape):
        _, ho, wo = self.output_shape(in_shape)
        return ho * wo * self.out_channels * self.in_channels * self.kernel**2

    def forward(self, x, relu: bool = False):
        """The convolution; ``relu=True`` also rectifies the output in the same pass
        (:class:`Sequential` asks for it when an in-place ReLU follows)."""
        self.check_rank(x)
        self.output_shape(tuple(x.shape[1:]))
        self.x = x
        transformed = self.winograd_filters(tuple(x.shape[1:]))
        if transformed is not None:
            return self.backend.conv2d_forward_winograd(
                x, self.params["w"], self.params["b"], self.padding, transformed, relu=relu
            )
        return self.backend.conv2d_forward(
            x, self.params["w"], self.params["b"], self.stride, self.padding, relu=relu
        )

    def uses_winograd(self, in_shape=None) -> bool:
        """Whether :meth:`forward` runs Winograd's route (see :meth:`winograd_filters`)
        on an input of shape ``in_shape`` (C, H, W), without computing anything."""
        w = self.params["w"]
        if (
            self.training
            or getattr(self.backend, "name", None) != "numpy"
            or self.in_channels < WINOGRAD_MIN_CHANNELS
            or not winograd_applies(w.shape, self.stride)
            or transformed_bytes(w.shape, w.itemsize) > WINOGRAD_MAX_BYTES
        ):
            return False
        if in_shape is None:
            return True
        _, ho, wo = self.output_shape(in_shape)
        return ho * wo > 1

    def winograd_filters(self, in_shape=None):
        """The filters transformed for :func:`~overfeat_scratch.ops.winograd.conv2d_winograd`
        where it serves, else ``None``: NumPy backend, not training, square filters of 2
        to 7 taps and stride 1, at least ``WINOGRAD_MIN_CHANNELS`` input channels, and
        transformed filters of at most ``WINOGRAD_MAX_BYTES``; given the input's shape
        ``in_shape`` (C, H, W), also an output of more than one position. So a fully
        connected layer takes it in dense evaluation, where it slides over a map, and
        stays one matrix product on a single window; the paper's large fully connected
        layers (hundreds of MB of transformed filters) never take it.

        The transform is computed once and kept while the weights stay the same array;
        to keep it from going stale, the weights are read-only while it is kept (an
        in-place write raises), and :meth:`train` drops it and makes them writable."""
        if not self.uses_winograd(in_shape):
            return None
        w = self.params["w"]
        kept = getattr(self, "_winograd", None)
        if kept is not None and kept[0] is w and not w.flags.writeable:
            return kept[1]
        self._release_winograd()
        transformed = filter_transform(w)
        self._winograd = (w, transformed, w.flags.writeable)
        w.flags.writeable = False
        return transformed

    def _release_winograd(self):
        kept = getattr(self, "_winograd", None)
        if kept is not None:
            if kept[2]:
                kept[0].flags.writeable = True
            self._winograd = None

    def train(self, mode: bool = True):
        if mode:
            self._release_winograd()
        return super().train(mode)

    def to(self, backend):
        self._release_winograd()  # the weights are replaced
        return super().to(backend)

    def astype(self, dtype):
        self._release_winograd()
        return super().astype(dtype)

    def backward(self, dy, input_grad: bool = True):
        """``dx`` (``None`` with ``input_grad=False``); sets ``grads["w"]``, ``grads["b"]``."""
        (x,) = self.forward_state("x")
        dx, dw, db = self.backend.conv2d_backward(
            dy, x, self.params["w"], self.stride, self.padding, input_grad
        )
        self.grads = {"w": dw, "b": db}
        return dx

    def describe(self):
        text = f"{self.in_channels}->{self.out_channels}, {self.kernel}x{self.kernel}"
        if self.stride != 1:
            text += f", stride {self.stride}"
        if self.padding:
            text += f", pad {self.padding}"
        return text


class FullyConnected(Conv2d):
    """A fully connected layer written as the convolution it is.

    Its kernel covers the whole ``map_size x map_size`` input map, so on the
    training window it sees everything once (a matrix product); on a larger image
    the same weights slide and give a map of outputs. No second definition is
    needed for dense evaluation.
    """

    kind = "full"

    def __init__(self, in_channels, out_channels, map_size=1, init_std=1e-2, rng=None, name=None):
        super().__init__(in_channels, out_channels, map_size, 1, 0, init_std, rng, name)

    def describe(self):
        return f"{self.in_channels}x{self.kernel}x{self.kernel}->{self.out_channels}"


class MaxPool2d(Layer):
    """Max pooling (non-overlapping when ``stride == kernel``, the default)."""

    kind = "pool"

    def __init__(self, kernel: int, stride: int | None = None, name: str | None = None):
        super().__init__(name)
        self.kernel = check_positive_int(kernel, f"{self.name} kernel")
        self.stride = check_positive_int(kernel if stride is None else stride, "stride")

    def output_shape(self, in_shape):
        c, h, w = in_shape
        what = f"{self.name} (max pool {self.kernel}x{self.kernel})"
        ho = conv_output_size(h, self.kernel, self.stride, 0, f"{what} height")
        wo = conv_output_size(w, self.kernel, self.stride, 0, f"{what} width")
        return (c, ho, wo)

    def forward(self, x):
        self.check_rank(x)
        self.output_shape(tuple(x.shape[1:]))
        self.y, self.arg = self.backend.max_pool2d_forward(x, self.kernel, self.stride)
        self.x_shape = tuple(x.shape)
        return self.y

    def backward(self, dy):
        arg, x_shape = self.forward_state("arg", "x_shape")
        return self.backend.max_pool2d_backward(dy, arg, x_shape, self.kernel, self.stride)

    def describe(self):
        return f"{self.kernel}x{self.kernel}, stride {self.stride}"


class ReLU(Layer):
    """``max(x, 0)``. ``inplace=True`` overwrites its input instead of allocating:
    right where nothing else reads that input again (after a convolution, whose
    output only the ReLU reads), wrong anywhere else."""

    kind = "relu"

    def __init__(self, inplace: bool = False, name: str | None = None):
        super().__init__(name)
        self.inplace = inplace

    def forward(self, x):
        self.y = self.backend.relu_forward(x, inplace=self.inplace)
        return self.y

    def rectified(self, y):
        """Record ``y``, already rectified by the layer before (a fused step), as this
        layer's output."""
        self.y = y
        return y

    def backward(self, dy):
        (y,) = self.forward_state("y")
        return self.backend.relu_backward(dy, y)


class Dropout(Layer):
    """Inverted dropout with probability ``p``; the identity in evaluation mode.

    Every training forward pass draws a new mask from ``(seed, call number)``,
    so a run is reproducible from the seed and identical on every backend.
    """

    kind = "dropout"

    def __init__(self, p: float = 0.5, seed: int = 0, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= p < 1.0:
            raise InputError(f"{self.name}: expected 0 <= p < 1, got {p}")
        self.p = float(p)
        self.seed = int(seed)
        self.calls = 0
        self.keep = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.keep = None
            return x
        call_seed = (self.seed * 1_000_003 + self.calls) & 0xFFFFFFFF
        self.calls += 1
        y, self.keep = self.backend.dropout_forward(x, self.p, call_seed)
        return y

    def backward(self, dy):
        if self.keep is None:
            return dy
        return self.backend.dropout_backward(dy, self.keep, self.p)

    def describe(self):
        return f"p={self.p}"


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)``, for heads built from :class:`Linear`."""

    kind = "flatten"

    def output_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        self.x_shape = tuple(x.shape)
        return self.backend.reshape(x, (x.shape[0], -1))

    def backward(self, dy):
        (x_shape,) = self.forward_state("x_shape")
        return self.backend.reshape(dy, x_shape)


class Linear(Layer):
    """``y = x @ w.T + b`` on flat features ``(N, D)``."""

    kind = "linear"

    def __init__(self, in_features, out_features, init_std=1e-2, rng=None, name=None):
        super().__init__(name)
        self.in_features = check_positive_int(in_features, f"{self.name} in_features")
        self.out_features = check_positive_int(out_features, f"{self.name} out_features")
        init_std = check_std(init_std, f"{self.name} init_std")
        shape = (self.out_features, self.in_features)
        w = (
            np.zeros(shape, np.float32)
            if rng is None
            else rng.standard_normal(shape, dtype=np.float32) * np.float32(init_std)
        )
        self.params = {"w": w, "b": np.zeros(self.out_features, np.float32)}

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.in_features,):
            raise InputError(
                f"{self.name}: expected inputs of {self.in_features} features, got shape "
                f"(N, {', '.join(map(str, in_shape))})"
            )
        return (self.out_features,)

    def multiply_adds(self, in_shape):
        return self.in_features * self.out_features

    def forward(self, x):
        self.check_rank(x, "(N, D)")
        self.output_shape(tuple(x.shape[1:]))
        self.x = x
        return self.backend.linear_forward(x, self.params["w"], self.params["b"])

    def backward(self, dy):
        (x,) = self.forward_state("x")
        dx, dw, db = self.backend.linear_backward(dy, x, self.params["w"])
        self.grads = {"w": dw, "b": db}
        return dx

    def describe(self):
        return f"{self.in_features}->{self.out_features}"


def _in_place_relu(layer) -> bool:
    return isinstance(layer, ReLU) and layer.inplace


def multiply_adds_of(layers, in_shape: tuple) -> int:
    """Multiply-adds of a stack of ``layers`` on one input of ``in_shape`` ``(C, H, W)``."""
    total, shape = 0, tuple(in_shape)
    for layer in layers:
        total += layer.multiply_adds(shape)
        shape = layer.output_shape(shape)
    return total


class Sequential(Layer):
    """Layers applied in order; backward in reverse order.

    ``forward`` takes a host or backend array ``(N, C, H, W)``, checks it once
    (dtype, rank, channels, finite values, at least the network's window) and
    returns this backend's array. Parameters are named ``"<layer>.<param>"``.
    """

    kind = "sequential"

    def __init__(self, layers, name: str | None = None):
        super().__init__(name or "net")
        self.layers = list(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise InputError(f"Sequential: layer names must be unique, got {names}")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        if isinstance(index, str):
            for layer in self.layers:
                if layer.name == index:
                    return layer
            raise KeyError(f"no layer named {index!r}; layers are {[la.name for la in self]}")
        return self.layers[index]

    @property
    def in_channels(self) -> int:
        for layer in self.layers:
            if hasattr(layer, "in_channels"):
                return layer.in_channels
        raise InputError("Sequential: no layer fixes the number of input channels")

    def output_shape(self, in_shape):
        shape = tuple(in_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def shapes(self, in_shape) -> list[tuple]:
        """The output shape of every layer for one example of shape ``in_shape``."""
        out, shape = [], tuple(in_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
            out.append(shape)
        return out

    def multiply_adds(self, in_shape):
        return multiply_adds_of(self.layers, in_shape)

    def window(self) -> int:
        """The smallest square input side that gives one output: the network's window.

        See :class:`overfeat_scratch.nn.geometry.Geometry` for the rest of the geometry.
        """
        from .geometry import Geometry

        return Geometry.of(self).window

    def check_size(self, h: int, w: int) -> None:
        """Raise ``ValueError`` unless an ``h x w`` input covers at least one window."""
        window = self.window()
        if h < window or w < window:
            raise InputError(
                f"{self.name}: input {h}x{w} is smaller than the network's window "
                f"{window}x{window}; resize or pad the image to at least that size"
            )

    def check_input(self, x):
        check_float_array(x, f"{self.name} input", ndim=4)
        c = self.in_channels
        if x.shape[1] != c:
            raise InputError(
                f"{self.name}: expected input (N, {c}, H, W) with {c} channel(s), "
                f"got shape {tuple(x.shape)}"
            )
        self.check_size(x.shape[2], x.shape[3])
        on_backend = self.backend.is_array(x)
        finite = self.backend.all_finite(x) if on_backend else bool(np.isfinite(x).all())
        if not finite:
            raise InputError(f"{self.name}: input contains NaN or infinite values")

    # Two steps fuse a ReLU with its neighbour (``fuse = False`` runs every layer on
    # its own; the results are the same to the bit, tests/test_layers.py):
    #
    # - forward, a convolution then an in-place ReLU: the convolution rectifies each
    #   block of its output while computing it, and the ReLU only records the result;
    # - backward, a ReLU then a max pool: the ReLU's mask is applied to the pool's
    #   gradient at the pooled size (where the pooled output is positive: the window's
    #   winner is then positive too), before the pool routes it to the winners, and
    #   the ReLU's own pass over the larger map is skipped.
    fuse = True

    def forward(self, x):
        self.check_input(x)
        if not self.backend.is_array(x) or x.dtype != self.dtype:
            x = self.backend.asarray(x, dtype=self.dtype)
        layers, index = self.layers, 0
        while index < len(layers):
            layer, after = layers[index], layers[index + 1 : index + 2]
            if self.fuse and isinstance(layer, Conv2d) and after and _in_place_relu(after[0]):
                x = after[0].rectified(layer.forward(x, relu=True))
                index += 2
                continue
            x = layer.forward(x)
            index += 1
        return x

    def backward(self, dy, input_grad: bool = True):
        """Gradients of every layer from ``dy``; returns the input's gradient.

        ``input_grad=False`` (training) lets a first convolution skip the gradient
        with respect to the image, and returns ``None``.
        """
        index = len(self.layers) - 1
        while index >= 0:
            layer = self.layers[index]
            if index == 0 and not input_grad and isinstance(layer, Conv2d):
                return layer.backward(dy, input_grad=False)
            before = self.layers[index - 1] if index > 0 else None
            if self.fuse and isinstance(layer, MaxPool2d) and isinstance(before, ReLU):
                (pooled,) = layer.forward_state("y")
                dy = layer.backward(self.backend.relu_backward(dy, pooled))
                index -= 2
                continue
            dy = layer.backward(dy)
            index -= 1
        return dy

    @property
    def dtype(self):
        for layer in self.layers:
            for value in layer.params.values():
                return np.dtype(value.dtype)
        return np.dtype(np.float32)

    def to(self, backend):
        for layer in self.layers:
            layer.to(backend)
        self.backend = get_backend(backend)
        return self

    def astype(self, dtype):
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def train(self, mode: bool = True):
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def named_parameters(self):
        """``(name, layer, key)`` for every parameter, in layer order."""
        return [
            (f"{layer.name}.{key}", layer, key) for layer in self.layers for key in layer.params
        ]

    def num_parameters(self):
        return sum(layer.num_parameters() for layer in self.layers)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter as a host array, by name."""
        return {
            name: self.backend.to_numpy(layer.params[key])
            for name, layer, key in self.named_parameters()
        }

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in by name; names and shapes must match exactly, and every
        value must be finite (a NaN weight would make every answer NaN or garbage)."""
        expected = {name: layer.params[key].shape for name, layer, key in self.named_parameters()}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise InputError(
                f"{self.name}: parameter names do not match; missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, shape in expected.items():
            if tuple(np.shape(state[name])) != tuple(shape):
                raise InputError(
                    f"{self.name}: parameter {name} has shape {tuple(np.shape(state[name]))}, "
                    f"expected {tuple(shape)}"
                )
        for name in expected:
            check_float_array(
                np.asarray(state[name]), f"{self.name}: parameter {name}", finite=True
            )
        for name, layer, key in self.named_parameters():
            value = np.asarray(state[name])
            layer.params[key] = self.backend.asarray(value, dtype=self.dtype)

    def describe(self):
        return ", ".join(repr(layer) for layer in self.layers)
