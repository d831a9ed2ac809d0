"""Plots: the paper's projection figure and the confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

UNKNOWN_COLOR = "#000000"
REFERENCE_COLOR = "#d3d3d3"


def projection(
    reference_coordinates: np.ndarray,
    query_coordinates: np.ndarray,
    query_labels: np.ndarray | pd.Series,
    ax: Axes | None = None,
    title: str | None = None,
    palette: dict[str, str] | None = None,
    unknown_label: str = "Unknown",
    point_size: float | None = None,
) -> Axes:
    """Reference cells in light grey, query cells on top coloured by label (the paper's figure).

    Parameters
    ----------
    reference_coordinates
        2-D coordinates of the reference cells.
    query_coordinates
        2-D coordinates of the query cells (on the same map).
    query_labels
        Label of each query cell (predicted or known).
    ax
        Axes to draw on; a new figure when ``None``.
    title
        Axes title.
    palette
        Label → colour; ``tab20`` colours otherwise, "Unknown" in black.
    unknown_label
        Label drawn in black.
    point_size
        Marker size; chosen from the number of cells when ``None``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    n_cells = len(reference_coordinates) + len(query_coordinates)
    size = point_size if point_size is not None else float(np.clip(6e4 / max(n_cells, 1), 0.5, 12))
    ax.scatter(
        *np.asarray(reference_coordinates).T,
        s=size,
        c=REFERENCE_COLOR,
        linewidths=0,
        label="reference",
        rasterized=True,
    )
    labels = pd.Series(np.asarray(query_labels, dtype=str))
    categories = sorted(labels.unique(), key=lambda c: (c == unknown_label, c))
    colors = plt.get_cmap("tab20").colors
    for i, label in enumerate(categories):
        color = (palette or {}).get(
            label, UNKNOWN_COLOR if label == unknown_label else colors[i % 20]
        )
        points = np.asarray(query_coordinates)[(labels == label).to_numpy()]
        ax.scatter(
            *points.T, s=size * 1.5, color=color, linewidths=0, label=label, rasterized=True
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        fontsize=7,
        markerscale=max(1.0, 8 / size),
        frameon=False,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
    if title:
        ax.set_title(title)
    return ax


def confusion_matrix(
    matrix: pd.DataFrame, ax: Axes | None = None, title: str | None = None, annotate: bool = True
) -> Axes:
    """Heat map of a confusion matrix from :func:`scalex_scvi.tl.confusion_matrix`.

    Parameters
    ----------
    matrix
        Known labels as rows, predicted labels as columns.
    ax
        Axes to draw on; a new figure when ``None``.
    title
        Axes title.
    annotate
        Write the values in the cells.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * matrix.shape[1] + 2.5, 0.45 * matrix.shape[0] + 1.5))
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="Blues", vmin=0, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90)
    ax.set_yticks(range(matrix.shape[0]), matrix.index)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if annotate:
        top = float(np.nanmax(matrix.to_numpy(dtype=float))) or 1.0
        for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if value > 0:
                ax.text(
                    j,
                    i,
                    f"{value:.2f}" if value < 1.5 else f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value > top / 2 else "black",
                )
    plt.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax
