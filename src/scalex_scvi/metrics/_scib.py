"""scib-metrics' benchmark panel, on embeddings rather than on the caller's AnnData."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from ._paper import _type_spans_batches

if TYPE_CHECKING:
    from collections.abc import Mapping

AGGREGATE_COLUMNS = ("Batch correction", "Bio conservation", "Total")


def scib_benchmark(
    embeddings: Mapping[str, np.ndarray],
    batches: np.ndarray | pd.Series,
    labels: np.ndarray | pd.Series,
    pre_integrated: np.ndarray,
    n_jobs: int = 1,
    progress_bar: bool = False,
    save_dir: str | None = None,
) -> pd.DataFrame:
    """Score embeddings with :class:`scib_metrics.benchmark.Benchmarker` (its default panel).

    Runs on a private AnnData built from the arrays, so nothing of the caller's changes.

    Parameters
    ----------
    embeddings
        Name → array of shape ``(n_cells, n_dims)``.
    batches
        Batch of each cell.
    labels
        Cell type of each cell.
    pre_integrated
        Unintegrated embedding (PCA of the preprocessed data) used by the PCR comparison.
    n_jobs
        Parallel jobs of scib-metrics.
    progress_bar
        Show scib-metrics' progress bars.
    save_dir
        If given, scib-metrics' results table figure is written there.

    Returns
    -------
    One row per embedding: every metric, ``Batch correction``, ``Bio conservation`` and
    ``Total`` (0.4 × batch correction + 0.6 × bio conservation), as floats, not min-max scaled.
    """
    from scib_metrics.benchmark import Benchmarker

    n_cells = len(batches)
    adata = AnnData(obs=pd.DataFrame(index=[str(i) for i in range(n_cells)]))
    adata.obs["batch"] = pd.Categorical(np.asarray(batches).astype(str))
    adata.obs["label"] = pd.Categorical(np.asarray(labels).astype(str))
    adata.obsm["X_pre"] = np.asarray(pre_integrated, dtype=np.float32)
    for name, values in embeddings.items():
        if values.shape[0] != n_cells:
            raise ValueError(f"Embedding {name!r} has {values.shape[0]} rows, not {n_cells}.")
        adata.obsm[name] = np.asarray(values, dtype=np.float32)
    extra = {}
    if not _type_spans_batches(adata.obs["label"], adata.obs["batch"]):
        # scib-metrics' batch silhouette (BRAS) fails when no cell type spans two batches
        import warnings

        from scib_metrics.benchmark import BatchCorrection

        warnings.warn(
            "No cell type is shared by two batches; the batch silhouette is left out.",
            UserWarning,
            stacklevel=2,
        )
        extra["batch_correction_metrics"] = BatchCorrection(bras=False)
    bench = Benchmarker(
        adata,
        batch_key="batch",
        label_key="label",
        embedding_obsm_keys=list(embeddings),
        pre_integrated_embedding_obsm_key="X_pre",
        n_jobs=n_jobs,
        progress_bar=progress_bar,
        **extra,
    )
    bench.benchmark()
    results = bench.get_results(min_max_scale=False)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        bench.plot_results_table(min_max_scale=False, show=False, save_dir=save_dir)
    results = results.drop(index="Metric Type").astype(float)
    results.index.name = "embedding"
    return results
