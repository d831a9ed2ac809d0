"""One call: every method on the same data, scib-metrics' panel and the paper's metrics."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scalex_scvi import metrics
from scalex_scvi._report import progress_steps
from scalex_scvi.pp import preprocess

from ._methods import METHODS, MethodUnavailable, unintegrated_pca
from ._resources import Resources

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)

DEFAULT_METHODS = ("SCALEX", "scVI", "PCA (unintegrated)", "Harmony", "Scanorama")


def run_benchmark(
    adata: AnnData,
    batch_key: str = "batch",
    label_key: str = "cell_type",
    methods: Sequence[str] = DEFAULT_METHODS,
    prepared: bool = False,
    preprocess_kwargs: dict | None = None,
    method_kwargs: dict[str, dict] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
    dataset: str = "dataset",
    seed: int = 0,
    save_dir: str | Path | None = None,
    n_jobs: int = 1,
    progress_bar: bool = True,
) -> pd.DataFrame:
    """Integrate with several methods and score them all the same way.

    The data are preprocessed once (:func:`scalex_scvi.pp.preprocess`) and every method runs on
    the same cells and features: SCALEX (this package, defaults), scVI (scvi-tools, on the raw
    counts of the same features, with the settings of scib-metrics' tutorial: two layers, 30
    latent dimensions, negative binomial), the unintegrated PCA, Harmony and Scanorama
    (skipped with a warning when their packages are missing). Wall time and peak memory are
    recorded per method. Every embedding is scored with scib-metrics'
    :class:`~scib_metrics.benchmark.Benchmarker` (all its bio-conservation and
    batch-correction metrics) and with the paper's metrics: batch entropy mixing (shared cell
    types), over-correction, ARI/NMI of Leiden clusters, silhouettes.

    Parameters
    ----------
    adata
        Raw counts with batches and labels in ``obs`` (or preprocessed data, see ``prepared``).
        Not modified.
    batch_key
        Column of ``adata.obs`` with the batches.
    label_key
        Column of ``adata.obs`` with the cell types.
    methods
        Names among ``"SCALEX"``, ``"scVI"``, ``"PCA (unintegrated)"``, ``"Harmony"``,
        ``"Scanorama"``.
    prepared
        ``adata`` is already the output of :func:`~scalex_scvi.pp.preprocess`.
    preprocess_kwargs
        Keyword arguments of :func:`~scalex_scvi.pp.preprocess`.
    method_kwargs
        Per method, keyword arguments of its runner (e.g. ``{"SCALEX": {"max_iterations":
        4000}, "scVI": {"max_epochs": 100}}``). SCALEX also takes ``batch_norm``, the encoder's
        BatchNorm statistics of the embedding: ``"running"`` (default) or ``"per_batch"``.
    embeddings
        Embeddings computed elsewhere (name → array, one row per preprocessed cell) to score
        alongside, e.g. the original SCALEX package's.
    dataset
        Name recorded in the ``dataset`` column and in file names.
    seed
        Seed of every method.
    save_dir
        If given, ``benchmark_<dataset>.csv`` and scib-metrics' results table figure are
        written there.
    n_jobs
        Parallel jobs of scib-metrics.
    progress_bar
        Show a progress bar over the methods and the scoring.

    Returns
    -------
    One row per method: ``dataset``, ``method``, ``status``, ``wall_s``, ``peak_mib``, every
    scib-metrics score with ``Batch correction``, ``Bio conservation`` and ``Total``, and the
    paper's metrics.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; choose from {list(METHODS)}.")
    for key in (batch_key, label_key):
        if key not in adata.obs:
            raise KeyError(f"{key!r} is not a column of adata.obs.")
        missing = int(adata.obs[key].isna().sum())
        if missing:  # checked before any training: the scores need a value for every cell
            raise ValueError(
                f"{missing} cells have no value in adata.obs[{key!r}]; benchmark the cells "
                f"that have one (adata[adata.obs[{key!r}].notna()])."
            )
    data = (
        adata if prepared else preprocess(adata, batch_key=batch_key, **(preprocess_kwargs or {}))
    )
    method_kwargs = method_kwargs or {}
    for name, embedding in (embeddings or {}).items():  # checked before any training
        if len(embedding) != data.n_obs:
            raise ValueError(f"Embedding {name!r} has {len(embedding)} rows, not {data.n_obs}.")

    with progress_steps([*methods, "scoring"], enabled=progress_bar) as step:
        found, rows = _run_methods(data, batch_key, methods, method_kwargs, seed, dataset, step)
        step("scoring")
        return _score(
            data, batch_key, label_key, found, rows, embeddings, dataset, seed, save_dir, n_jobs
        )


def _run_methods(
    data: AnnData,
    batch_key: str,
    methods: Sequence[str],
    method_kwargs: dict[str, dict],
    seed: int,
    dataset: str,
    step: Callable[[str], None],
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Each method's embedding (name → array) and its status, wall time and peak memory."""
    rows, found = [], {}
    for name in methods:
        step(f"running {name}")
        logger.info("Running %s on %s", name, dataset)
        try:
            with Resources() as used:
                embedding = METHODS[name](
                    data, batch_key, seed=seed, **method_kwargs.get(name, {})
                )
        except MethodUnavailable as err:
            warnings.warn(f"{name} skipped: {err}", UserWarning, stacklevel=3)  # the caller
            rows.append({"method": name, "status": f"skipped: {err}"})
            continue
        found[name] = np.asarray(embedding, dtype=np.float32)
        rows.append(
            {"method": name, "status": "ok", "wall_s": used.wall_s, "peak_mib": used.peak_mib}
        )
    return found, rows


def _score(
    data: AnnData,
    batch_key: str,
    label_key: str,
    found: dict[str, np.ndarray],
    rows: list[dict],
    embeddings: dict[str, np.ndarray] | None,
    dataset: str,
    seed: int,
    save_dir: str | Path | None,
    n_jobs: int,
) -> pd.DataFrame:
    """Score every embedding (scib-metrics and the paper's metrics) into one tidy table."""
    for name, embedding in (embeddings or {}).items():
        found[name] = np.asarray(embedding, dtype=np.float32)
        rows.append({"method": name, "status": "ok (given)"})

    table = pd.DataFrame(rows).set_index("method")
    if found:
        batches = data.obs[batch_key].astype(str).to_numpy()
        labels = data.obs[label_key].astype(str).to_numpy()
        pca = found.get("PCA (unintegrated)")
        if pca is None:
            pca = unintegrated_pca(data, batch_key, seed)
        scores = metrics.scib_benchmark(
            found,
            batches,
            labels,
            pre_integrated=pca,
            n_jobs=n_jobs,
            save_dir=str(save_dir) if save_dir is not None else None,
        )
        paper = pd.DataFrame(
            {name: _paper_metrics(emb, batches, labels, seed) for name, emb in found.items()}
        ).T
        table = table.join(scores).join(paper)
    table.insert(0, "dataset", dataset)
    table = table.reset_index()
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(save_dir) / f"benchmark_{dataset}.csv", index=False)
    return table


def _paper_metrics(
    embedding: np.ndarray, batches: np.ndarray, labels: np.ndarray, seed: int
) -> dict[str, float]:
    scores = {
        "batch_entropy_mixing": metrics.batch_entropy_mixing_score(
            embedding, batches, labels=labels, seed=seed
        ),
        "over_correction": metrics.over_correction_score(embedding, labels),
        **metrics.leiden_ari_nmi(embedding, labels, seed=seed),
        **metrics.silhouette_scores(embedding, labels, batches),
    }
    return scores
