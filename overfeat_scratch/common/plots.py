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


def show_boxes(ax, image, boxes, labels=(), truths=None, color="tab:orange", linewidth=1.5):
    """Draw a grey ``image`` and corner ``boxes`` (with text ``labels``) on ``ax``;
    ``truths``: true boxes, drawn dashed in green."""
    from matplotlib.patches import Rectangle

    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    for box in truths or ():
        x0, y0, x1, y1 = box
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="tab:green", lw=1.5, ls="--")
        )
    labels = list(labels)
    for k, box in enumerate(boxes):
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=color, lw=linewidth))
        if k < len(labels):
            ax.text(x0, y0 - 1, labels[k], color=color, fontsize=8, va="bottom")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_boxes(image, boxes, labels, path, truths=None) -> None:
    """Save ``image`` with ``boxes`` and their ``labels`` (and true boxes) as a PNG."""
    h, w = np.asarray(image).shape[:2]
    fig = new_figure(figsize=(max(3.0, w / 40), max(3.0, h / 40)))
    ax = fig.subplots()
    show_boxes(ax, image, boxes, labels, truths)
    fig.tight_layout()
    save_figure(fig, path)


def save_pr_curves(curves, path, title: str) -> None:
    """Precision-recall curves, one per ``(label, recall, precision, interpolated)``.

    Each is drawn twice, in one colour: the raw ``precision`` against ``recall``
    (thin) and the ``interpolated`` precision as a step line from recall 0, labelled
    ``label`` (for average precision, the area under it). A curve with no points is
    only named in the legend.
    """
    fig = new_figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    for label, recall, precision, interpolated in curves:
        if len(recall) == 0:
            ax.plot([], [], label=label)
            continue
        (line,) = ax.plot(recall, precision, linewidth=0.7, alpha=0.4)
        ax.plot(
            np.concatenate([[0.0], recall]),
            np.concatenate([[interpolated[0]], interpolated]),
            drawstyle="steps-pre",
            color=line.get_color(),
            linewidth=1.5,
            label=label,
        )
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
