"""A network's per-layer table: output shape, parameters, multiply-adds."""

from __future__ import annotations

from .layers import Sequential


def layer_table(net: Sequential, size: int | tuple[int, int] | None = None) -> list[dict]:
    """One row per layer for an input of ``size`` (default: the network's window).

    Each row: ``name``, ``kind``, ``description``, ``output`` ``(C, H, W)``,
    ``parameters``, ``multiply_adds``.
    """
    if size is None:
        size = net.window()
    h, w = (size, size) if isinstance(size, int) else size
    net.check_size(h, w)
    shape = (net.in_channels, h, w)
    rows = []
    for layer in net:
        out = layer.output_shape(shape)
        rows.append(
            {
                "name": layer.name,
                "kind": layer.kind,
                "description": layer.describe(),
                "output": out,
                "parameters": layer.num_parameters(),
                "multiply_adds": layer.multiply_adds(shape),
            }
        )
        shape = out
    return rows


def format_table(net: Sequential, size: int | tuple[int, int] | None = None) -> str:
    """:func:`layer_table` as aligned text, with totals."""
    rows = layer_table(net, size)
    header = (
        f"{'layer':<10} {'kind':<8} {'':<26} {'output (C, H, W)':>18} "
        f"{'params':>13} {'mult-adds':>15}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        c, h, w = r["output"]
        lines.append(
            f"{r['name']:<10} {r['kind']:<8} {r['description']:<26} {f'{c} x {h} x {w}':>18} "
            f"{r['parameters']:>13,} {r['multiply_adds']:>15,}"
        )
    lines.append("-" * len(header))
    params = sum(r["parameters"] for r in rows)
    macs = sum(r["multiply_adds"] for r in rows)
    lines.append(f"{'total':<65} {params:>13,} {macs:>15,}")
    return "\n".join(lines)
