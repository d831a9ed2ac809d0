"""The main job on the shipped data: integrate, project without retraining, transfer labels."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import accuracy_score, f1_score

from scalex_scvi import datasets, metrics, pp, tl
from scalex_scvi.model import SCALEX

logger = logging.getLogger(__name__)

REFERENCE_BATCHES = ("3pv2", "5p")
QUERY_BATCH = "3pv1"
LATENT_KEY = "X_scalex"


def run_demo(
    outdir: str | Path = "demo_output",
    max_iterations: int = 3000,
    seed: int = 0,
    progress_bar: bool = True,
) -> pd.Series:
    """Train on chemistries 3' v2 + 5', project 3' v1 without retraining, transfer labels.

    Prints integration figures (scib-metrics, reference and query together, against an
    unintegrated PCA) and label-transfer figures, and writes ``adata.h5ad``, the saved model
    (``model/``), ``umap.png`` and ``metrics.csv`` to ``outdir``.

    Parameters
    ----------
    outdir
        Output folder (created).
    max_iterations
        Training budget; 3,000 steps take about a minute on two CPU cores.
    seed
        Random seed (scvi-tools' ``settings.seed``).
    progress_bar
        Show the training progress bar.

    Returns
    -------
    The figures printed.
    """
    import scvi

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    scvi.settings.seed = seed
    timings = {}

    raw = datasets.pbmc_3chemistries()
    reference_raw = raw[raw.obs["batch"].isin(REFERENCE_BATCHES)].copy()
    query_raw = raw[raw.obs["batch"] == QUERY_BATCH].copy()
    print(
        f"Reference: {reference_raw.n_obs} cells ({', '.join(REFERENCE_BATCHES)}); "
        f"query: {query_raw.n_obs} cells ({QUERY_BATCH})."
    )

    # The shipped file holds 1,767 genes only, so cells have few detected genes: min_features 50.
    reference = pp.preprocess(reference_raw, batch_key="batch", min_features=50)
    SCALEX.setup_anndata(reference, batch_key="batch")
    model = SCALEX(reference)
    start = time.perf_counter()
    model.train(max_iterations=max_iterations, enable_progress_bar=progress_bar)
    timings["training_s"] = time.perf_counter() - start
    reference.obsm[LATENT_KEY] = model.get_latent_representation()

    start = time.perf_counter()
    query = model.prepare_query(query_raw, batch_key="batch", keep_raw=True)  # genes to plot
    query.obsm[LATENT_KEY] = model.get_latent_representation(query)
    timings["projection_s"] = time.perf_counter() - start

    transfer = tl.transfer_labels(reference, query, label_key="cell_type", use_rep=LATENT_KEY)
    query.obs["predicted_cell_type"] = transfer["label"].to_numpy()
    query.obs["prediction_uncertainty"] = transfer["uncertainty"].to_numpy()

    combined = ad.concat(
        {"reference": reference, "query": query}, label="source", join="inner", merge="same"
    )
    for column in ("predicted_cell_type", "prediction_uncertainty"):
        combined.obs[column] = query.obs[column].reindex(combined.obs_names)
    figures = _figures(combined, query, transfer, timings)
    _umap(combined, outdir / "umap.png")

    model.save(outdir / "model", overwrite=True)
    combined.write_h5ad(outdir / "adata.h5ad")
    figures.to_csv(outdir / "metrics.csv", header=["value"])
    print("\n" + _format(figures))
    print(
        f"\nWrote {outdir / 'adata.h5ad'}, {outdir / 'model'}, {outdir / 'umap.png'}, "
        f"{outdir / 'metrics.csv'}."
    )
    return figures


def _figures(
    combined: ad.AnnData, query: ad.AnnData, transfer: pd.DataFrame, timings: dict
) -> pd.Series:
    lognorm = combined.layers["counts"].copy()
    tmp = ad.AnnData(lognorm)
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    sc.pp.pca(tmp, n_comps=30, random_state=0)
    scores = metrics.scib_benchmark(
        {"SCALEX": combined.obsm[LATENT_KEY], "PCA (unintegrated)": tmp.obsm["X_pca"]},
        combined.obs["batch"],
        combined.obs["cell_type"],
        pre_integrated=tmp.obsm["X_pca"],
    )
    truth = query.obs["cell_type"].astype(str).to_numpy()
    best = transfer["best_label"].to_numpy()
    called = transfer["label"].to_numpy()
    assigned = called != tl.UNKNOWN
    figures = {
        "scib Total (SCALEX)": scores.loc["SCALEX", "Total"],
        "scib Batch correction (SCALEX)": scores.loc["SCALEX", "Batch correction"],
        "scib Bio conservation (SCALEX)": scores.loc["SCALEX", "Bio conservation"],
        "scib Total (unintegrated PCA)": scores.loc["PCA (unintegrated)", "Total"],
        "label transfer accuracy": accuracy_score(truth, best),
        "label transfer macro-F1": f1_score(truth, best, average="macro"),
        "fraction called Unknown": 1 - assigned.mean(),
        "accuracy of assigned cells": accuracy_score(truth[assigned], called[assigned])
        if assigned.any()
        else np.nan,
        "training time (s)": timings["training_s"],
        "query preparation + projection time (s)": timings["projection_s"],
    }
    return pd.Series(figures, name="value")


def _umap(combined: ad.AnnData, path: Path) -> None:
    import matplotlib as mpl

    from scalex_scvi._scanpy_compat import neighbors

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    neighbors(combined, use_rep=LATENT_KEY, n_neighbors=30, random_state=0)
    sc.tl.umap(combined, min_dist=0.1, random_state=0)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    sc.pl.umap(combined, color="batch", ax=axes[0], show=False, title="batch (chemistry)")
    sc.pl.umap(combined, color="cell_type", ax=axes[1], show=False, title="cell type")
    is_query = (combined.obs["source"] == "query").to_numpy()
    palette = dict(
        zip(
            combined.obs["cell_type"].cat.categories, combined.uns["cell_type_colors"], strict=True
        )
    )
    palette[tl.UNKNOWN] = "black"
    axes[2].scatter(*combined.obsm["X_umap"][~is_query].T, s=4, c="lightgrey", label="reference")
    predicted = combined.obs.loc[is_query, "predicted_cell_type"].astype("category")
    for label in predicted.cat.categories:
        points = combined.obsm["X_umap"][is_query][(predicted == label).to_numpy()]
        axes[2].scatter(*points.T, s=8, label=label, color=palette.get(label, "black"))
    axes[2].set_title("query (3' v1) by transferred label")
    axes[2].legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _format(figures: pd.Series) -> str:
    width = max(len(k) for k in figures.index)
    return "\n".join(f"{k:<{width}}  {v:8.3f}" for k, v in figures.items())
