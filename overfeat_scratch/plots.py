"""Figures the commands save (matplotlib, written atomically as PNG)."""

from __future__ import annotations

import io

import numpy as np

from .fileio import atomic_write


def save_figure(fig, path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_confusion(confusion: np.ndarray, path, title: str) -> None:
    """A confusion matrix (rows: true class, columns: predicted), log colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(5, 4.4))
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
