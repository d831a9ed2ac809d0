"""The SCALEX paper's integration metrics, on embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

ArrayOrKey = np.ndarray | pd.Series | Sequence | str


def _embedding(data: np.ndarray | AnnData, use_rep: str | None) -> np.ndarray:
    if isinstance(data, AnnData):
        if use_rep is None:
            matrix = data.X
            return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        return np.asarray(data.obsm[use_rep])
    return np.asarray(data)


def _annotation(data: np.ndarray | AnnData | None, values: ArrayOrKey, name: str) -> np.ndarray:
    """One string per cell of ``data`` (any number without it); missing values raise.

    A missing value would count as a category of its own.
    """
    if isinstance(values, str):
        if not isinstance(data, AnnData):
            raise TypeError(f"{name} given as a column name needs an AnnData.")
        values = data.obs[values]
    missing = int(pd.isna(np.asarray(values, dtype=object)).sum())
    if missing:
        raise ValueError(
            f"{name} has {missing} missing values; score the cells that have one "
            "(e.g. adata[adata.obs[key].notna()])."
        )
    out = np.asarray(values).astype(str)
    if data is not None and len(out) != (data.n_obs if isinstance(data, AnnData) else len(data)):
        raise ValueError(f"{name} has {len(out)} values, not one per cell.")
    return out


def _type_spans_batches(labels: np.ndarray | pd.Series, batches: np.ndarray | pd.Series) -> bool:
    """Whether some cell type has cells in two batches (scib's batch silhouette needs one)."""
    return bool(((pd.crosstab(np.asarray(labels), np.asarray(batches)) > 0).sum(axis=1) > 1).any())


def batch_entropy_mixing_score(
    data: np.ndarray | AnnData,
    batches: ArrayOrKey,
    labels: ArrayOrKey | None = None,
    n_neighbors: int = 30,
    n_pools: int = 10,
    n_samples_per_pool: int = 100,
    use_rep: str | None = "X_scalex",
    seed: int = 0,
) -> float:
    r"""Batch entropy mixing score of :cite:p:`Xiong22`, normalised to ``[0, 1]``.

    ``n_samples_per_pool`` random cells are drawn; around each, the neighbourhood is the cell and
    its ``n_neighbors`` nearest cells. In it, the fraction :math:`p_i` of each batch is divided
    by the batch's share :math:`P_i` of all cells (correcting for batch sizes) and renormalised,
    :math:`q_i = (p_i / P_i) / \sum_j p_j / P_j`; the regional entropy is
    :math:`-\sum_i q_i \ln q_i`. The score is the mean over cells and ``n_pools`` repeats,
    divided by :math:`\ln B` for :math:`B` batches: 1 when every neighbourhood holds the batches
    in their global proportions, 0 when every neighbourhood holds a single batch. (The original
    package divides a natural-log entropy by :math:`\log_2 B`, so it tops out at
    :math:`\ln 2 \approx 0.69`.)

    Parameters
    ----------
    data
        Embedding ``(n_cells, n_dims)``, or an AnnData with it in ``obsm[use_rep]``.
    batches
        Batch of each cell, or a column of ``data.obs``.
    labels
        Cell type of each cell, or a column of ``data.obs``. When given, only cells of types
        present in every batch are scored (mixing is only expected for shared types).
    n_neighbors
        Neighbours around each sampled cell.
    n_pools
        Repeats with different random cells.
    n_samples_per_pool
        Random cells per repeat.
    use_rep
        ``obsm`` key when ``data`` is an AnnData (``None``: ``X``).
    seed
        Seed of the random cells.

    Returns
    -------
    The score; NaN when fewer than two batches (or no shared cell type) remain.
    """
    embedding = _embedding(data, use_rep)
    batch = _annotation(data, batches, "batches")
    if labels is not None:
        label = _annotation(data, labels, "labels")
        table = pd.crosstab(label, batch)
        shared = table.index[(table > 0).all(axis=1)]
        keep = np.isin(label, shared)
        embedding, batch = embedding[keep], batch[keep]
    categories, codes = np.unique(batch, return_inverse=True)
    n_batches = len(categories)
    if n_batches < 2 or len(codes) < 2:
        return float("nan")
    k = min(n_neighbors, len(codes) - 1)
    global_share = np.bincount(codes, minlength=n_batches) / len(codes)
    index = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    rng = np.random.default_rng(seed)
    pool_scores = []
    for _ in range(n_pools):
        cells = rng.choice(len(codes), size=min(n_samples_per_pool, len(codes)), replace=False)
        _, neighbours = index.kneighbors(embedding[cells])  # the cell itself comes first
        counts = np.zeros((len(cells), n_batches))
        np.add.at(counts, (np.arange(len(cells))[:, None], codes[neighbours]), 1.0)
        adjusted = counts / counts.sum(axis=1, keepdims=True) / global_share
        adjusted /= adjusted.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(adjusted > 0, adjusted * np.log(adjusted), 0.0).sum(axis=1)
        pool_scores.append(entropy.mean())
    return float(np.mean(pool_scores) / np.log(n_batches))


def over_correction_score(
    data: np.ndarray | AnnData,
    labels: ArrayOrKey,
    n_neighbors: int = 100,
    use_rep: str | None = "X_scalex",
) -> float:
    """Over-correction score of :cite:p:`Xiong22` (eq. 18): higher is worse.

    For each cell, the fraction of its ``n_neighbors`` nearest cells (itself excluded) whose cell
    type differs from its own, averaged over cells. An integration that merges distinct cell
    types (over-correction, e.g. forcing a batch-specific type onto another) raises it.

    Parameters
    ----------
    data
        Embedding ``(n_cells, n_dims)``, or an AnnData with it in ``obsm[use_rep]``.
    labels
        Cell type of each cell, or a column of ``data.obs``.
    n_neighbors
        Neighbours per cell (the paper's 100), capped at the number of cells minus one.
    use_rep
        ``obsm`` key when ``data`` is an AnnData (``None``: ``X``).
    """
    embedding = _embedding(data, use_rep)
    label = _annotation(data, labels, "labels")
    k = min(n_neighbors, len(label) - 1)
    if k < 1:
        return float("nan")
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    # drop each cell itself (normally the first column, but duplicates may come first)
    is_other = neighbours != np.arange(len(label))[:, None]
    first_others = np.argsort(~is_other, axis=1, kind="stable")[:, :k]
    others = np.take_along_axis(neighbours, first_others, axis=1)
    return float((label[others] != label[:, None]).mean())


def over_correction_floor(
    labels: np.ndarray | pd.Series | Sequence, n_neighbors: int = 100
) -> float:
    """The lowest :func:`over_correction_score` any embedding of these cells can have.

    Among a cell's ``n_neighbors`` nearest other cells at most ``n_t - 1`` share its type, for a
    type of ``n_t`` cells, so a cell of a type smaller than ``n_neighbors + 1`` has other-type
    neighbours however well the types are kept apart. The floor is the mean over cells of
    ``max(0, k - (n_t - 1)) / k``; an embedding in which each type is a compact cluster far from
    the others scores exactly this. It depends on the type sizes alone, so scores of several
    methods on one dataset are best compared above it.

    Parameters
    ----------
    labels
        Cell type of each cell (e.g. ``adata.obs["cell_type"]``).
    n_neighbors
        Neighbours per cell, as given to :func:`over_correction_score` (capped likewise at the
        number of cells minus one).

    Returns
    -------
    The floor in ``[0, 1]`` (1 when every cell is of a type of its own); NaN for fewer than
    two cells.
    """
    label = _annotation(None, labels, "labels")
    k = min(n_neighbors, len(label) - 1)
    if k < 1:
        return float("nan")
    _, codes, sizes = np.unique(label, return_inverse=True, return_counts=True)
    return float((np.maximum(0, k - (sizes[codes] - 1)) / k).mean())
