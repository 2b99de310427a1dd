"""Figures the commands save (matplotlib, written atomically as PNG).

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot, so
saving one never touches pyplot's global state or switches the backend of the
notebook or program that calls it.
"""

from __future__ import annotations

import io

import numpy as np

from .fileio import atomic_write


def new_figure(**kwargs):
    """A figure not registered with pyplot (draw with ``fig.subplots``)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_confusion(confusion: np.ndarray, path, title: str) -> None:
    """A confusion matrix (rows: true class, columns: predicted), log colour scale."""
    from matplotlib.colors import LogNorm

    fig = new_figure(figsize=(5, 4.4))
    ax = fig.subplots()
    image = ax.imshow(confusion + 1, cmap="Blues", norm=LogNorm())
    for (i, j), value in np.ndenumerate(confusion):
        if value:
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if i == j else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(confusion.shape[1]))
    ax.set_yticks(range(confusion.shape[0]))
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="count + 1")
    fig.tight_layout()
    save_figure(fig, path)
