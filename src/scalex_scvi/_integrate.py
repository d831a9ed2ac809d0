"""One-call workflow with the original ``SCALEX()`` function's parameters."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import scanpy as sc

from scalex_scvi import metrics
from scalex_scvi._report import RunLog, progress_steps
from scalex_scvi.io import read_many
from scalex_scvi.model import SCALEX
from scalex_scvi.pp import preprocess
from scalex_scvi.pp._steps import maxabs_scale

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

LATENT_KEY = "latent"
UMAP_KEY = "X_scalex_umap"


def integrate(
    data_list: Sequence[str | Path | ad.AnnData] | str | Path | ad.AnnData,
    batch_categories: Sequence[str] | None = None,
    profile: str = "RNA",
    batch_name: str = "batch",
    min_features: int | None = None,
    min_cells: int = 3,
    target_sum: float | None = None,
    n_top_features: int | str | Sequence[str] | None = None,
    join: str = "inner",
    batch_key: str = "batch",
    processed: bool = False,
    fraction: float | None = None,
    n_obs: int | None = None,
    use_layer: str = "X",
    keep_mt: bool = False,
    backed: bool = False,
    batch_size: int = 64,
    lr: float = 2e-4,
    max_iteration: int = 30_000,
    seed: int = 124,
    gpu: int = 0,
    outdir: str | Path | None = None,
    projection: str | Path | None = None,
    repeat: bool = False,
    impute: str | bool | None = None,
    chunk_size: int = 20_000,
    ignore_umap: bool = False,
    verbose: bool = False,
    assess: bool = False,
    show: bool = True,
    eval: bool = True,
    num_workers: int = 0,
    cell_type: str = "cell_type",
    train_kwargs: dict | None = None,
) -> ad.AnnData:
    """Integrate datasets, or project them onto a saved model, in one call.

    A drop-in for the original package's ``SCALEX()`` function: same parameters, same meaning
    and defaults, except where the default was a bug (see Notes). Inputs are never modified.

    Parameters
    ----------
    data_list
        Paths (any format of :func:`scalex_scvi.io.read`, or globs) or AnnData objects, each one
        batch; or a single path/AnnData.
    batch_categories
        Batch name of each dataset (default ``"0"``, ``"1"``, ...).
    profile
        ``"RNA"``, ``"ATAC"`` or ``"ADT"``.
    batch_name
        Column of ``obs`` with the batches to correct. ``"a,b"`` combines two columns. When it
        is absent but the datasets were concatenated under ``batch_key``, that column is used.
    min_features, min_cells, target_sum, keep_mt
        Preprocessing, see :func:`scalex_scvi.pp.preprocess` (``None``: the profile's default).
    n_top_features
        Features to keep: a number (``0``: all), a list of names, or a file with one name per
        line.
    join
        ``"inner"`` or ``"outer"`` join of the datasets' features.
    batch_key
        Column receiving the dataset names when several datasets are concatenated.
    processed
        The data are already prepared (values in ``[0, 1]`` or to be MaxAbs-scaled); skip
        preprocessing.
    fraction, n_obs
        Train on a random fraction or number of cells (seeded by ``seed``).
    use_layer
        ``"X"`` or a layer holding the data to use.
    backed
        Open a single ``.h5ad`` in backed mode. With ``processed=True`` the model trains and
        embeds from the file without loading ``X`` into memory.
    batch_size, lr, max_iteration
        Training: mini-batch size, learning rate, maximum iterations.
    seed
        Random seed.
    gpu
        Index of the GPU to use when CUDA is available.
    outdir
        Output folder (``adata.h5ad``, ``model/``, ``umap.png``, ``log.txt``); ``None`` writes
        nothing.
    projection
        A saved model or atlas folder, or an output folder of the original package (see
        :meth:`~scalex_scvi.SCALEX.load_original`; its reference cells are embedded again
        with the query's BatchNorm statistics): project the data with it instead of training.
    repeat
        With ``projection``: return the query cells only; otherwise the reference cells
        (from the folder's ``adata.h5ad``, when present) are returned with them.
    impute
        Name of a batch: ``layers['impute']`` holds every cell decoded through that batch's
        normalisation. ``True``: each cell through its own batch.
    chunk_size
        Cells per forward pass when embedding.
    ignore_umap
        Skip the neighbour graph, UMAP and Leiden clustering.
    verbose
        Show progress bars.
    assess
        Compute the batch entropy mixing score and the cell-type silhouette on the latent
        space into ``uns``.
    show
        Show the UMAP figure (when not writing it).
    eval
        Embed with the BatchNorm running statistics (``True``, the default here); ``False``
        normalises each batch with its own statistics (``batch_norm="per_batch"``), the
        deterministic form of the original's default.
    num_workers
        Data loader workers (0 is fastest on few cores).
    cell_type
        Column of ``obs`` with cell types (for plots and ``assess``).
    train_kwargs
        Further keyword arguments of :meth:`SCALEX.train` (e.g. ``early_stopping_patience``).

    Returns
    -------
    AnnData with the latent space in ``obsm['latent']``, the UMAP in ``obsm['X_scalex_umap']``,
    Leiden clusters in ``obs['leiden']``, ``layers['impute']`` when asked, and the run's facts
    (iterations, epochs, batch column) in ``uns['scalex_integrate']``.

    Notes
    -----
    Differences from the original ``SCALEX()``:

    - a single AnnData (or a one-element list) works; the original crashed on ``[adata]``;
    - ``outdir=None`` writes nothing and does not crash at early stopping;
    - the caller's ``obs['batch']`` is never overwritten (the original wrote ``batch_name`` into
      it); the batches are read from ``batch_name`` directly;
    - a list concatenated under ``batch_key != 'batch'`` is corrected for those batches (the
      original silently trained it as one batch);
    - ``backed`` is honoured (the original ignored it);
    - projection works on current torch and with ``repeat=False``;
    - ``impute`` with an unknown batch name is an error (the original used batch 0), and
      ``impute=True`` decodes each cell through its own batch;
    - ``assess`` works with ``ignore_umap`` (it scores the latent space, where the original read
      the UMAP and raised a KeyError) and its entropy score reaches 1 for perfect mixing;
    - ``eval`` defaults to ``True`` (reproducible embeddings); ``num_workers`` to 0.
    """
    settings = {k: v for k, v in locals().items() if k != "data_list"}
    settings["data_list"] = [
        "<AnnData>" if isinstance(d, ad.AnnData) else str(d)
        for d in (data_list if isinstance(data_list, list | tuple) else [data_list])
    ]
    import scvi

    scvi.settings.seed = seed
    out = Path(outdir) if outdir is not None else None
    log = RunLog(out / "log.txt" if out is not None else None, settings)
    steps = ["read", "preprocess", "train" if projection is None else "load model", "embed"]
    with progress_steps(steps, enabled=verbose) as step:
        step("read")
        adata = read_many(
            data_list,
            batch_categories,
            batch_key=batch_key,
            join=join,
            backed=backed and processed,
        )
        log.info(f"Read {adata.n_obs} cells × {adata.n_vars} features.")
        train_batch = _batch_column(adata, batch_name, batch_key, several=_is_many(data_list))
        adata = _subsample(adata, fraction, n_obs, seed)

        step("preprocess")
        if projection is None:
            prepared = _prepare(
                adata,
                processed,
                use_layer,
                train_batch,
                profile,
                min_features,
                min_cells,
                target_sum,
                n_top_features,
                keep_mt,
            )
            log.info(f"Prepared {prepared.n_obs} cells × {prepared.n_vars} features.")

        reference = None  # the cells of the model projected onto, where its folder has them
        if projection is None:
            step("train")
            model = _train(
                prepared,
                train_batch,
                batch_size,
                lr,
                max_iteration,
                gpu,
                num_workers,
                verbose,
                train_kwargs,
            )
            log.info(f"Trained {model.trainer.global_step} iterations.")
            run_info = {
                "iterations": int(model.trainer.global_step),
                "epochs": int(model.trainer.current_epoch),
                "batch_key": train_batch,
                "mode": "integrate",
            }
        else:
            step("load model")
            model, reference = _load_projection(projection, profile)
            prepared = (
                adata.copy() if processed else model.prepare_query(adata, batch_key=train_batch)
            )
            log.info(f"Loaded the model of {projection}.")
            run_info = {"batch_key": train_batch, "mode": "projection", "model": str(projection)}

        step("embed")
        batch_norm = "running" if eval else "per_batch"
        prepared.obsm[LATENT_KEY] = model.get_latent_representation(
            prepared, batch_size=chunk_size, batch_norm=batch_norm
        )
        if reference is not None and LATENT_KEY not in reference.obsm:  # an original's cells
            reference.obsm[LATENT_KEY] = model.get_latent_representation(
                reference, batch_size=chunk_size, batch_norm=batch_norm
            )
        if impute is not None and impute is not False:
            prepared.layers["impute"] = model.get_normalized_expression(
                prepared,
                transform_batch=None if impute is True else str(impute),
                batch_size=chunk_size,
                return_numpy=True,
            )
    result = prepared
    if projection is not None and not repeat and reference is not None:
        result = ad.concat(
            {"reference": reference, "query": prepared},
            label="projection",
            join="outer",
            index_unique=None,
        )
    result.uns["scalex_integrate"] = run_info
    if not ignore_umap:
        _umap_and_leiden(result, seed)
    if assess:
        _assess(result, train_batch, cell_type, log)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if projection is None:
            model.save(out / "model", overwrite=True)
        result.write_h5ad(out / "adata.h5ad")
        if not ignore_umap:
            _plot_umap(result, train_batch, cell_type, out / "umap.png", show=False)
        log.info(f"Wrote {out}.")
    elif not ignore_umap and show:
        _plot_umap(result, train_batch, cell_type, None, show=True)
    log.close()
    return result


def _is_many(data_list) -> bool:
    return isinstance(data_list, list | tuple) and len(data_list) > 1


def _batch_column(adata: ad.AnnData, batch_name: str, batch_key: str, several: bool) -> str:
    """The obs column holding the batches to correct (created on our copy when combined)."""
    if "," in batch_name:
        first, second = batch_name.split(",")[:2]
        column = f"{first}_{second}"
        adata.obs[column] = adata.obs[first].astype(str) + "_" + adata.obs[second].astype(str)
        return column
    if batch_name in adata.obs:
        if several and batch_key != batch_name and batch_key in adata.obs:
            return batch_key  # the datasets were concatenated under batch_key
        return batch_name
    if batch_key in adata.obs:
        return batch_key
    warnings.warn(
        f"No column {batch_name!r}: all cells form one batch.", UserWarning, stacklevel=3
    )
    adata.obs[batch_name] = "batch"
    return batch_name


def _subsample(adata: ad.AnnData, fraction, n_obs, seed) -> ad.AnnData:
    if fraction is None and n_obs is None:
        return adata
    rng = np.random.default_rng(seed)
    n = n_obs if n_obs is not None else round(adata.n_obs * fraction)
    keep = np.sort(rng.choice(adata.n_obs, size=min(n, adata.n_obs), replace=False))
    return adata[keep].to_memory() if adata.isbacked else adata[keep].copy()


def _prepare(
    adata,
    processed,
    use_layer,
    batch,
    profile,
    min_features,
    min_cells,
    target_sum,
    n_top_features,
    keep_mt,
) -> ad.AnnData:
    layer = None if use_layer == "X" else use_layer
    if processed:
        if adata.isbacked:
            return adata  # trained from the file
        matrix = adata.X if layer is None else adata.layers[layer]
        prepared = ad.AnnData(X=matrix, obs=adata.obs.copy(), var=adata.var.copy())
        if _max(prepared.X) > 1:
            prepared.X = maxabs_scale(_csr(prepared.X), None)
        return prepared
    if isinstance(n_top_features, str):
        n_top_features = (
            list(np.loadtxt(n_top_features, dtype=str, ndmin=1))
            if Path(n_top_features).is_file()
            else int(n_top_features)
        )
    kwargs = {"min_cells": min_cells, "keep_mt": keep_mt, "layer": layer}
    if min_features is not None:
        kwargs["min_features"] = min_features
    if target_sum is not None:
        kwargs["target_sum"] = target_sum
    if n_top_features is not None:
        kwargs["n_top_features"] = n_top_features
    return preprocess(adata, batch_key=batch, profile=profile, **kwargs)


def _csr(matrix):
    from scipy import sparse

    return sparse.csr_matrix(matrix, dtype=np.float32)


def _max(matrix) -> float:
    data = matrix.data if hasattr(matrix, "tocsr") else np.asarray(matrix)
    return float(data.max()) if data.size else 0.0


def _train(
    prepared, batch, batch_size, lr, max_iteration, gpu, num_workers, verbose, train_kwargs
) -> SCALEX:
    import torch

    SCALEX.setup_anndata(prepared, batch_key=batch)
    model = SCALEX(prepared)
    accelerator, devices = ("gpu", [gpu]) if torch.cuda.is_available() else ("cpu", "auto")
    kwargs = {"datasplitter_kwargs": {"num_workers": num_workers}, **(train_kwargs or {})}
    model.train(
        max_iterations=max_iteration,
        batch_size=batch_size,
        lr=lr,
        accelerator=accelerator,
        devices=devices,
        enable_progress_bar=verbose,
        **kwargs,
    )
    return model


def _load_projection(path: str | Path, profile: str) -> tuple[SCALEX, ad.AnnData | None]:
    """A saved model and its reference cells, where the folder holds them.

    ``path``: ``model/`` of an output folder, a model folder, an atlas, or an output folder of
    the original package (whose reference cells are then embedded again by the caller, with the
    query's BatchNorm statistics).
    """
    path = Path(path)
    reference = None
    if (path / "checkpoint" / "config.pt").exists():
        model = SCALEX.load_original(path, profile=profile)
        if (path / "adata.h5ad").exists():
            reference = ad.read_h5ad(path / "adata.h5ad")
            reference.obsm.pop(LATENT_KEY, None)  # the original's, BatchNorm in training mode
        return model, reference
    if (path / "atlas.json").exists():
        from scalex_scvi._atlas import Atlas

        atlas = Atlas.load(path)
        reference = atlas.adata.copy()
        reference.obsm[LATENT_KEY] = reference.obsm["X_scalex"]
        return atlas.model, reference
    model_dir = path / "model" if (path / "model" / "model.pt").exists() else path
    if not (model_dir / "model.pt").exists():
        raise FileNotFoundError(f"No saved SCALEX model in {path}.")
    model = SCALEX.load(model_dir)
    if (path / "adata.h5ad").exists():
        reference = ad.read_h5ad(path / "adata.h5ad")
    return model, reference


def _umap_and_leiden(adata: ad.AnnData, seed: int) -> None:
    from scalex_scvi._scanpy_compat import neighbors

    neighbors(adata, use_rep=LATENT_KEY, n_neighbors=30, random_state=seed)
    sc.tl.umap(adata, min_dist=0.1, random_state=seed)
    sc.tl.leiden(adata, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    adata.obsm[UMAP_KEY] = adata.obsm["X_umap"]


def _assess(adata: ad.AnnData, batch: str, cell_type: str, log: RunLog) -> None:
    if batch in adata.obs and adata.obs[batch].nunique() > 1:
        labels = cell_type if cell_type in adata.obs else None
        score = metrics.batch_entropy_mixing_score(adata, batch, labels=labels, use_rep=LATENT_KEY)
        adata.uns["batch_entropy_mixing_score"] = score
        log.info(f"batch_entropy_mixing_score: {score:.3f}")
    if cell_type in adata.obs:
        score = metrics.silhouette_scores(adata, cell_type, use_rep=LATENT_KEY)
        adata.uns["silhouette_score"] = score["silhouette_cell_type"]
        log.info(f"silhouette_score: {score['silhouette_cell_type']:.3f}")


def _plot_umap(adata, batch, cell_type, path, show) -> None:
    import matplotlib.pyplot as plt

    colors = [c for c in (batch, cell_type, "projection") if c in adata.obs]
    colors = colors or ["leiden"]
    fig, axes = plt.subplots(1, len(colors), figsize=(5.5 * len(colors), 4.5), squeeze=False)
    for ax, color in zip(axes[0], colors, strict=True):
        sc.pl.embedding(adata, basis=UMAP_KEY, color=color, ax=ax, show=False, title=color)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    if show:
        plt.show()
    plt.close(fig)
