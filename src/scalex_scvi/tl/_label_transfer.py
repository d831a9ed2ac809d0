"""Label transfer by distance-weighted k nearest neighbours in the SCALEX space."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

UNKNOWN = "Unknown"


def transfer_labels(
    reference: AnnData,
    query: AnnData,
    label_key: str,
    use_rep: str = "X_scalex",
    n_neighbors: int = 15,
    uncertainty_threshold: float = 0.5,
    distance_quantile: float | None = 0.99,
    unknown_label: str = UNKNOWN,
) -> pd.DataFrame:
    """Transfer reference labels to query cells by distance-weighted kNN.

    Neighbours are found exactly with scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors`
    (a KD-tree on the low-dimensional embedding: exact, deterministic and fast at 10
    dimensions, where an approximate index such as pynndescent brings randomness and no speed).
    Each neighbour votes with weight ``1 / (distance + 1e-8)`` normalised per query cell; the
    probability of a label is its share of the votes and the uncertainty is ``1 - probability``
    of the predicted label.

    A query cell is called ``unknown_label`` when its uncertainty exceeds
    ``uncertainty_threshold`` (its neighbours disagree) or, with ``distance_quantile``, when its
    mean distance to its neighbours exceeds that quantile of the reference cells' own mean
    distances to their neighbours (it lies away from every reference type; new types then are not
    forced onto a reference type).

    Parameters
    ----------
    reference
        Reference cells with the embedding in ``obsm[use_rep]`` and labels in ``obs[label_key]``.
    query
        Query cells with the embedding in ``obsm[use_rep]``. Not modified.
    label_key
        Column of ``reference.obs`` with the labels.
    use_rep
        Key of the embedding in ``obsm``.
    n_neighbors
        Number of reference neighbours per query cell.
    uncertainty_threshold
        Cells with a larger uncertainty are called ``unknown_label``; ``1`` disables.
    distance_quantile
        Quantile of the reference's own neighbour distances beyond which a query cell is called
        ``unknown_label``; ``None`` disables.
    unknown_label
        Label given to cells that are not assigned.

    Returns
    -------
    DataFrame indexed like ``query.obs`` with columns ``label`` (prediction after the unknown
    calls), ``best_label`` (the majority label, always a reference label), ``probability``,
    ``uncertainty`` and ``mean_distance``.
    """
    if label_key not in reference.obs:
        raise KeyError(f"{label_key!r} is not a column of reference.obs.")
    for name, data in (("reference", reference), ("query", query)):
        if use_rep not in data.obsm:
            raise KeyError(f"{name}.obsm has no {use_rep!r}; embed it first.")
    labels = reference.obs[label_key].astype(str).to_numpy()
    keep = ~pd.isna(reference.obs[label_key].to_numpy())
    ref_embedding = np.asarray(reference.obsm[use_rep])[keep]
    labels = labels[keep]
    n_neighbors = min(n_neighbors, len(labels))

    index = NearestNeighbors(n_neighbors=n_neighbors).fit(ref_embedding)
    distances, neighbours = index.kneighbors(np.asarray(query.obsm[use_rep]))
    categories, codes = np.unique(labels, return_inverse=True)
    weights = 1.0 / (distances + 1e-8)
    weights /= weights.sum(axis=1, keepdims=True)
    votes = np.zeros((len(distances), len(categories)))
    np.add.at(votes, (np.arange(len(distances))[:, None], codes[neighbours]), weights)

    best = votes.argmax(axis=1)
    probability = votes[np.arange(len(best)), best]
    uncertainty = 1.0 - probability
    mean_distance = distances.mean(axis=1)
    unknown = uncertainty > uncertainty_threshold
    if distance_quantile is not None:
        unknown |= mean_distance > _reference_distance_cutoff(
            index, ref_embedding, n_neighbors, distance_quantile
        )
    best_label = categories[best]
    return pd.DataFrame(
        {
            "label": np.where(unknown, unknown_label, best_label),
            "best_label": best_label,
            "probability": probability,
            "uncertainty": uncertainty,
            "mean_distance": mean_distance,
        },
        index=query.obs_names.copy(),
    )


def _reference_distance_cutoff(
    index: NearestNeighbors, embedding: np.ndarray, n_neighbors: int, quantile: float
) -> float:
    """Quantile of the reference cells' mean distance to their neighbours (self excluded)."""
    k = min(n_neighbors + 1, len(embedding))
    distances, _ = index.kneighbors(embedding, n_neighbors=k)
    return float(np.quantile(distances[:, 1:].mean(axis=1), quantile))
