"""Window geometry: which input pixels each output of a ConvNet looks at.

A stack of convolutions and pools (kernel ``k``, stride ``s``, padding ``p`` each)
maps an input side ``H`` to ``H' = (H + 2p - k) // s + 1`` per layer. Run on an
image larger than its window, it returns a map of outputs; this module says where
each of them sits in the image.

Three sizes describe a network:

- the **window** ``w``: the smallest input that gives one output (231 for the fast
  model, 221 for the accurate one). Output ``(i, j)`` is the network's answer for
  the window whose top-left pixel is ``(S*j, S*i)``: :meth:`Geometry.window_box`.
- the **total stride** ``S``: the product of all strides (32 and 36), the spacing of
  neighbouring windows.
- the **receptive field** ``r = w + 2P``: every pixel that can influence an output.
  ``P`` is the padding of each layer, scaled by the strides before it. Without
  padding ``r = w`` and the dense map equals the network applied to each window
  crop exactly; OverFeat's middle layers pad by 1 (3-5 in the fast model, 3-6 in the
  accurate one), so an output also sees ``P`` pixels
  of real neighbours on each side where a lone window crop would see zeros
  (``P = 48`` for both models: three padded layers at a stride of 16 in the fast
  one, four at a stride of 12 in the accurate one).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.checks import InputError, conv_output_size


@dataclass(frozen=True)
class Stage:
    """One spatial layer: kernel, stride, padding (pools have padding 0)."""

    kernel: int
    stride: int
    padding: int = 0
    name: str = ""


def window_box(i: int, j: int, stride: int, window: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the window of output ``(i, j)``: row ``i``, column ``j``."""
    return (stride * j, stride * i, stride * j + window, stride * i + window)


def stages_of(net) -> list[Stage]:
    """The spatial layers of a network (layers with a ``kernel``), in order."""
    return [
        Stage(layer.kernel, layer.stride, getattr(layer, "padding", 0), layer.name)
        for layer in net
        if hasattr(layer, "kernel")
    ]


@dataclass(frozen=True)
class Geometry:
    """Window, stride and receptive field of a stack of :class:`Stage`\\ s."""

    stages: tuple[Stage, ...]

    @classmethod
    def of(cls, net) -> Geometry:
        """The geometry of a :class:`~overfeat_scratch.nn.layers.Sequential` network."""
        return cls(tuple(stages_of(net)))

    @property
    def stride(self) -> int:
        total = 1
        for st in self.stages:
            total *= st.stride
        return total

    @property
    def window(self) -> int:
        """The smallest input side that gives one output."""
        size = 1
        for st in reversed(self.stages):
            size = (size - 1) * st.stride + st.kernel - 2 * st.padding
        return size

    @property
    def padding(self) -> int:
        """``P``: how far the receptive field reaches outside the window, per side."""
        total, jump = 0, 1
        for st in self.stages:
            total += st.padding * jump
            jump *= st.stride
        return total

    @property
    def receptive_field(self) -> int:
        return self.window + 2 * self.padding

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The output map size for an ``height x width`` input (``ValueError`` if too small)."""
        if height < self.window or width < self.window:
            raise InputError(
                f"input {height}x{width} is smaller than the network's window "
                f"{self.window}x{self.window}"
            )
        h, w = height, width
        for st in self.stages:
            h = conv_output_size(h, st.kernel, st.stride, st.padding, f"{st.name} height")
            w = conv_output_size(w, st.kernel, st.stride, st.padding, f"{st.name} width")
        return h, w

    def window_box(self, i: int, j: int, stride: int | None = None) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the window seen by output ``(i, j)`` (row ``i``).

        Half-open pixel coordinates, x to the right, y down. ``stride`` overrides the
        spacing (the fine map of offset pooling has a smaller one).
        """
        return window_box(i, j, self.stride if stride is None else stride, self.window)

    def receptive_box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of every pixel that can influence output ``(i, j)``.

        May reach outside the image (negative or beyond the size) where padding is.
        """
        x0, y0, x1, y1 = self.window_box(i, j)
        p = self.padding
        return (x0 - p, y0 - p, x1 + p, y1 + p)

    def crop(self, i: int, size: int, stride: int | None = None) -> tuple[int, int, int] | None:
        """An input range ``[a, b)`` whose own output ``local`` equals output ``i``.

        Along one axis of an input of ``size`` pixels: evaluating the network on
        ``input[a:b]`` alone gives, at its output ``local``, exactly the dense
        output ``i``. Without padding this is the window itself (``local = 0``).
        With padding the crop must hold the whole receptive field (or stop at the
        image border, where the dense evaluation sees the same zeros), and start on
        the grid of the total stride so that every layer samples the same pixels.

        ``stride`` is the spacing of the outputs (``self.stride``, or the fine
        stride of offset pooling). Returns ``None`` where no such crop exists: fine
        positions whose receptive field is cut by the top/left image border.
        """
        s = self.stride if stride is None else stride
        start = s * i
        p, big = self.padding, self.stride
        if p == 0:
            return start, start + self.window, 0
        if start % big == 0:
            a = big * (max(0, start - p) // big)
        else:
            a = start - big * (-(-p // big))
            if a < 0:
                return None
        b = min(size, start - p + self.receptive_field)
        return a, b, (start - a) // big
