"""Silhouettes, Leiden clustering agreement and LISI, on embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

from ._paper import ArrayOrKey, _annotation, _embedding, _type_spans_batches


def silhouette_scores(
    data: np.ndarray | AnnData,
    labels: ArrayOrKey,
    batches: ArrayOrKey | None = None,
    use_rep: str | None = "X_scalex",
) -> dict[str, float]:
    """Cell-type silhouette and batch silhouette, from scib-metrics.

    ``silhouette_cell_type`` is :func:`scib_metrics.silhouette_label` rescaled to ``[0, 1]``
    (higher: types better separated); ``silhouette_batch`` is :func:`scib_metrics.silhouette_batch`
    (1 − |silhouette| of batches within each cell type; higher: batches better mixed). When no
    cell type spans two batches the batch silhouette is undefined and reported as NaN (scib-metrics
    itself raises on that case).
    """
    import scib_metrics

    embedding = _embedding(data, use_rep)
    label = _annotation(data, labels, "labels")
    scores = {"silhouette_cell_type": float(scib_metrics.silhouette_label(embedding, label))}
    if batches is not None:
        batch = _annotation(data, batches, "batches")
        scores["silhouette_batch"] = (
            float(scib_metrics.silhouette_batch(embedding, label, batch, rescale=True))
            if _type_spans_batches(label, batch)
            else float("nan")
        )
    return scores


def leiden_ari_nmi(
    data: np.ndarray | AnnData,
    labels: ArrayOrKey,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    use_rep: str | None = "X_scalex",
    seed: int = 0,
) -> dict[str, float]:
    """ARI and NMI between Leiden clusters of the embedding and the labels (the paper's protocol).

    The kNN graph and Leiden clusters are computed by scanpy (:func:`scanpy.pp.neighbors`, also
    from 8,192 cells on, see ``scalex_scvi._scanpy_compat``;
    :func:`scanpy.tl.leiden` with the igraph implementation) on a private AnnData.
    """
    import scanpy as sc

    from scalex_scvi._scanpy_compat import neighbors

    embedding = _embedding(data, use_rep)
    label = _annotation(data, labels, "labels")
    tmp = AnnData(obs=pd.DataFrame(index=np.arange(len(label)).astype(str)))
    tmp.obsm["X_emb"] = np.asarray(embedding, dtype=np.float32)
    neighbors(tmp, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.leiden(
        tmp,
        resolution=resolution,
        random_state=seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )
    clusters = tmp.obs["leiden"].to_numpy()
    return {
        "leiden_ari": float(adjusted_rand_score(label, clusters)),
        "leiden_nmi": float(normalized_mutual_info_score(label, clusters)),
        "n_leiden_clusters": len(np.unique(clusters)),
    }


def lisi_scores(
    data: np.ndarray | AnnData,
    batches: ArrayOrKey,
    labels: ArrayOrKey,
    n_neighbors: int = 90,
    use_rep: str | None = "X_scalex",
) -> dict[str, float]:
    """ILISI (batch mixing) and cLISI (cell-type separation), scaled to ``[0, 1]`` by scib-metrics.

    Neighbours are exact (scikit-learn); the scores are scib-metrics' ``ilisi_knn`` and
    ``clisi_knn`` (higher is better for both after scaling).
    """
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults

    embedding = _embedding(data, use_rep)
    batch = _annotation(data, batches, "batches")
    label = _annotation(data, labels, "labels")
    k = min(n_neighbors, len(label) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(embedding).kneighbors(embedding)
    neighbours = NeighborsResults(indices=indices, distances=distances)
    return {
        "ilisi": float(scib_metrics.ilisi_knn(neighbours, batch)),
        "clisi": float(scib_metrics.clisi_knn(neighbours, label)),
    }
