"""The SCALEX preprocessing recipe, for reference data and for new (query) data."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from scalex_scvi._mudata import is_mudata, modality_with_obs, replace_modality

from ._steps import (
    EXCLUDED_PREFIXES,
    RECIPE_KEY,
    as_csr,
    check_batch_labels,
    check_counts,
    column_max,
    kept_features,
    maxabs_scale,
    normalize_log,
    reindex_features,
    scale_columns,
)

if TYPE_CHECKING:
    from typing import Literal

    from mudata import MuData

logger = logging.getLogger(__name__)

PROFILES = ("RNA", "ATAC", "ADT")
_DEFAULT_MIN_FEATURES = {"RNA": 600, "ATAC": 100, "ADT": 0}
_DEFAULT_TOP_FEATURES = {"RNA": 2000, "ATAC": 30_000, "ADT": 0}
_BACKED_BLOCK_ROWS = 10_000  # cells read at a time from a backed query


def preprocess(
    adata: AnnData | MuData,
    batch_key: str | None = "batch",
    profile: Literal["RNA", "ATAC", "ADT"] = "RNA",
    min_features: int | None = None,
    min_cells: int = 3,
    target_sum: float = 1e4,
    n_top_features: int | Sequence[str] | None = None,
    scale: Literal["batch", "global"] = "global",
    keep_mt: bool = False,
    layer: str | None = None,
    keep_raw: bool = True,
    binarize: bool | None = None,
    modality: str | None = None,
) -> AnnData | MuData:
    """Prepare raw counts for SCALEX, as in :cite:p:`Xiong22`.

    RNA: drop ERCC spike-ins and mitochondrial genes (unless ``keep_mt``), drop cells with fewer
    than ``min_features`` detected genes and genes detected in fewer than ``min_cells`` cells,
    normalise each cell to ``target_sum``, log1p, keep ``n_top_features`` highly variable genes
    (:func:`scanpy.pp.highly_variable_genes`, Seurat flavour, per batch) or a given gene list,
    and MaxAbs-scale to ``[0, 1]``.

    ATAC: binarise, filter cells and peaks the same way, keep the ``n_top_features`` most
    frequently accessible peaks. Binary values need no scaling. With ``binarize=False`` the peak
    counts are instead normalised to ``target_sum`` per cell, log-transformed and MaxAbs-scaled
    to ``[0, 1]`` as RNA (the same peak selection), as the original package 1.0.4 does; neither
    was better at every training budget on the shared bone-marrow data
    (``benchmarks/results/atac.md``).

    ADT (proteins): centred log-ratio per cell (non-negative, as Seurat's CLR), keep all
    proteins, MaxAbs-scale to ``[0, 1]``.

    Parameters
    ----------
    adata
        Raw counts (cells × features), or a MuData whose ``modality`` holds them. Not modified.
    batch_key
        Column of ``adata.obs`` with the batches (for a MuData: of the modality's ``obs`` or of
        ``adata.obs``); ``None`` for one batch.
    profile
        ``"RNA"``, ``"ATAC"`` or ``"ADT"``.
    min_features
        Minimum number of detected features per cell (default 600 for RNA, 100 for ATAC, 0 for
        ADT). Lower it for data restricted to few genes.
    min_cells
        Minimum number of cells in which a feature is detected.
    target_sum
        Total per cell after normalisation (RNA).
    n_top_features
        Number of features to keep (default 2,000 for RNA, 30,000 for ATAC, all for ADT), ``0``
        for all, or a list of feature names (features absent from the data are zero).
    scale
        MaxAbs scaling to ``[0, 1]``: ``"global"`` (default) divides each feature by its
        maximum over all cells, as the original package does since 2023; ``"batch"`` divides
        by its maximum within each batch, as the paper describes. Global is the default because
        it scored at least as well on the shared benchmark data (scib Total 0.762 vs 0.761 on
        average, higher in 4 of 6 paired runs; ``benchmarks/results/scaling.md``) and because
        it prepares a query with the reference's maxima, so a query cell's values do not depend
        on the other query cells (within-batch scaling is degenerate for a query of one cell).
    keep_mt
        Keep mitochondrial genes and ERCC spike-ins.
    layer
        Layer holding the raw counts; ``None`` uses ``X``.
    keep_raw
        Store the log-normalised values of all genes that passed filtering in ``.raw``, for
        plotting and differential expression (as the original package does).
    binarize
        ATAC only: binarise the peak counts (``None``, the default, means ``True``) or, with
        ``False``, normalise and log-transform them (see above).
    modality
        For a MuData: the modality to prepare (e.g. ``"rna"``).

    Returns
    -------
    A new AnnData with the scaled values in ``X``, the raw counts of the kept features in
    ``layers['counts']``, and the recipe in ``uns['scalex_preprocess']`` so that new data can be
    prepared the same way (:func:`prepare_query`). For a MuData, a new MuData: the prepared
    modality (its ``obs`` completed with the columns of ``adata.obs`` it lacks), every other
    modality restricted to the cells kept, ``adata.obs``'s own columns and ``adata.uns``
    carried over; ready for :meth:`scalex_scvi.SCALEX.setup_mudata`.
    """
    if is_mudata(adata):
        prepared = preprocess(
            modality_with_obs(adata, modality),
            batch_key=batch_key,
            profile=profile,
            min_features=min_features,
            min_cells=min_cells,
            target_sum=target_sum,
            n_top_features=n_top_features,
            scale=scale,
            keep_mt=keep_mt,
            layer=layer,
            keep_raw=keep_raw,
            binarize=binarize,
        )
        return replace_modality(adata, modality, prepared)
    if modality is not None:
        raise ValueError("modality applies to a MuData; adata is an AnnData.")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}.")
    if scale not in ("batch", "global"):
        raise ValueError(f"scale must be 'batch' or 'global', not {scale!r}.")
    check_batch_labels(adata.obs, batch_key)
    if binarize is not None and profile != "ATAC":
        raise ValueError(f"binarize applies to the ATAC profile, not to {profile!r}.")
    binarize = profile == "ATAC" and binarize is not False
    if min_features is None:
        min_features = _DEFAULT_MIN_FEATURES[profile]
    if n_top_features is None:
        n_top_features = _DEFAULT_TOP_FEATURES[profile]

    work = _counts_copy(adata, layer)
    if profile == "RNA":
        work = work[:, kept_features(work.var_names, keep_mt)].copy()
    if binarize:
        work.X.data[:] = 1.0
    _filter(work, min_features=min_features, min_cells=min_cells, batch_key=batch_key)
    work.layers["counts"] = work.X.copy()

    groups = _groups(work, batch_key)
    _transform(work, profile, target_sum, binarize)
    if keep_raw:
        work.raw = work

    work = _select_features(work, n_top_features, profile, batch_key, groups)
    feature_max = column_max(work.X)
    if not binarize:
        work.X = maxabs_scale(work.X, groups if scale == "batch" else None)

    work.uns[RECIPE_KEY] = {
        "profile": profile,
        "batch_key": batch_key if batch_key is not None else "",
        "min_features": int(min_features),
        "min_cells": int(min_cells),
        "target_sum": float(target_sum),
        "scale": "binary" if binarize else scale,
        "binarize": binarize,
        "keep_mt": bool(keep_mt),
        "features": np.asarray(work.var_names, dtype=str),
        "feature_max": feature_max,
    }
    logger.info("Preprocessed: %d cells × %d features.", *work.shape)
    return work


def prepare_query(
    adata: AnnData,
    recipe: dict,
    batch_key: str | None = None,
    min_feature_overlap: float = 0.25,
    model_batch_key: str | None = None,
    layer: str | None = None,
    keep_raw: bool = False,
) -> AnnData:
    """Prepare raw counts of new cells with the recipe recorded by :func:`preprocess`.

    No cell is filtered out (every query cell gets an embedding). The counts are normalised and
    log-transformed as in training (ATAC: binarised, unless the recipe has ``binarize=False``),
    reindexed to the recipe's features with zeros for features the query lacks, and scaled: with
    ``scale="batch"`` each query batch by its own maxima (``batch_key``; the whole query when
    ``None``), with ``scale="global"`` by the reference's maxima, clipped to 1 (the recipe of a
    model of the original package, :meth:`~scalex_scvi.SCALEX.load_original`, scales the whole
    query by its own maxima, as the original).

    Parameters
    ----------
    adata
        Raw counts of the new cells. Not modified. May be backed
        (``anndata.read_h5ad(path, backed="r")``): ``X`` is then read 10,000 cells at a time
        and only the recipe's features are kept, so a query larger than memory can be
        prepared (the ADT profile and ``keep_raw`` hold every feature of the query).
    recipe
        ``uns['scalex_preprocess']`` of the preprocessed reference (or a model's
        ``preprocess_recipe_``).
    batch_key
        Column of ``adata.obs`` with the query's batches.
    min_feature_overlap
        Raise when the query has a smaller fraction of the recipe's features than this.
    model_batch_key
        The model's batch column; the query's batches are copied there when the names differ.
    layer
        Layer holding the raw counts; ``None`` uses ``X``.
    keep_raw
        Also store the query's values of all its features in ``.raw``, transformed as
        :func:`preprocess` stores the reference's (RNA: normalised and log-transformed, without
        mitochondrial genes and spike-ins unless the recipe kept them; ADT: centred log-ratio;
        ATAC: binarised), so that genes outside the model's features can be plotted or tested
        on the query cells as on the reference. Off by default: it copies the query's whole
        matrix, which at atlas scale is many GiB.

    Returns
    -------
    A new AnnData with the recipe's features.
    """
    check_batch_labels(adata.obs, batch_key)
    profile = str(recipe["profile"])
    features = pd.Index(np.asarray(recipe["features"]).astype(str))
    names = pd.Index(adata.var_names.astype(str))
    if profile == "ADT":  # CLR needs every protein of the query
        work = _counts_copy(adata, layer)
        counts = reindex_features(work.X, names, features, 0.0, warn=False)
        transformed = _clr(work.X)
        values = reindex_features(
            transformed, names, features, min_feature_overlap, what="The query"
        )
    else:
        # Only the recipe's features are copied: at atlas scale the full matrix is many GiB.
        binarized = _binarized(recipe)
        # the genes a cell's total is taken over (ATAC: every peak, none is dropped)
        keep_all = profile == "ATAC" or bool(recipe["keep_mt"])
        kept = kept_features(names, keep_all, _excluded(recipe)).astype(np.float32)
        blocks, totals = [], []
        for i, block in enumerate(_count_blocks(adata, layer)):
            first = i == 0  # the feature check (and its warning) once
            overlap = min_feature_overlap if first else 0.0
            reindexed = reindex_features(block, names, features, overlap, "The query", warn=first)
            blocks.append(reindexed)
            if not binarized:  # binary values need no totals
                totals.append(np.asarray(block @ kept, dtype=np.float64).ravel())
            del block  # one block of the whole query in memory at a time
        counts = blocks[0] if len(blocks) == 1 else sparse.vstack(blocks, format="csr")
        del blocks  # at atlas scale each copy of the prepared matrix is GiBs
        if binarized:
            counts.data[:] = 1.0
        values = counts.copy()
        if not binarized:  # RNA, or ATAC normalised as RNA
            values = normalize_log(values, np.concatenate(totals), float(recipe["target_sum"]))

    groups = adata.obs[batch_key].astype(str).to_numpy() if batch_key is not None else None
    if recipe["scale"] == "batch":
        values = maxabs_scale(values, groups)
    elif recipe["scale"] == "query":  # the original 1.0.4's projection: one scaler per query
        values = maxabs_scale(values, None)
    elif recipe["scale"] == "global":
        feature_max = np.asarray(recipe["feature_max"], dtype=np.float32)
        values = scale_columns(values, feature_max, copy=False)  # values is our own copy
        np.minimum(values.data, 1.0, out=values.data)

    obs = adata.obs.copy()
    if batch_key is not None and model_batch_key and model_batch_key != batch_key:
        obs[model_batch_key] = obs[batch_key]
    query = AnnData(X=values, obs=obs, var=pd.DataFrame(index=features))
    query.layers["counts"] = counts
    query.uns[RECIPE_KEY] = dict(recipe)
    if keep_raw:
        query.raw = _transformed_features(adata, layer, recipe)
    return query


def _transformed_features(adata: AnnData, layer: str | None, recipe: dict) -> AnnData:
    """All of a query's features, transformed as :func:`preprocess` stores the reference's.

    No feature or cell is filtered out: every query cell is kept.
    """
    work = _counts_copy(adata, layer)
    profile = str(recipe["profile"])
    if profile == "RNA":
        excluded = _excluded(recipe)
        work = work[:, kept_features(work.var_names, bool(recipe["keep_mt"]), excluded)].copy()
    binarized = _binarized(recipe)
    if binarized:
        work.X.data[:] = 1.0
    _transform(work, profile, float(recipe["target_sum"]), binarized)
    return work


def _excluded(recipe: dict) -> tuple[str, ...]:
    """Name prefixes of the genes left out of a cell's total (spike-ins, mitochondrial)."""
    return tuple(recipe.get("excluded_prefixes", EXCLUDED_PREFIXES))


def _binarized(recipe: dict) -> bool:
    """Whether the recipe binarises the counts (ATAC recipes from before ``binarize`` do)."""
    return str(recipe["profile"]) == "ATAC" and bool(recipe.get("binarize", True))


def _transform(work: AnnData, profile: str, target_sum: float, binarized: bool) -> None:
    """Transform counts in place as for training.

    RNA and ATAC not binarised: normalise each cell to ``target_sum`` and log1p; ADT: centred
    log-ratio; binarised ATAC: nothing.
    """
    if profile == "RNA" or (profile == "ATAC" and not binarized):
        sc.pp.normalize_total(work, target_sum=target_sum)
        sc.pp.log1p(work)
    elif profile == "ADT":
        work.X = _clr(work.X)


def _count_blocks(adata: AnnData, layer: str | None) -> Iterator[sparse.csr_matrix]:
    """The caller's counts as CSR blocks of rows, each checked.

    In memory: one block, a sparse matrix not copied. Backed (``adata.isbacked``, e.g.
    ``anndata.read_h5ad(path, backed="r")``): blocks of ``_BACKED_BLOCK_ROWS`` cells read from
    the file in turn, so that a query larger than memory can be prepared.
    """
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("adata has no matrix to preprocess (X is None and no layer given).")
    if sparse.issparse(matrix) or isinstance(matrix, np.ndarray):
        block = matrix if sparse.issparse(matrix) else as_csr(matrix)
        check_counts(block, "adata")
        yield block
        return
    for start in range(0, max(adata.n_obs, 1), _BACKED_BLOCK_ROWS):
        block = matrix[start : start + _BACKED_BLOCK_ROWS]  # read from the file, not shared
        block = (
            sparse.csr_matrix(block, dtype=np.float32) if sparse.issparse(block) else as_csr(block)
        )
        check_counts(block, "adata", warn_fractional=start == 0)  # one warning, not one a block
        yield block
        del block  # before reading the next one


def _counts_copy(adata: AnnData, layer: str | None) -> AnnData:
    """A new AnnData with a float32 CSR copy of the counts and copies of obs/var."""
    source = adata.X if layer is None else adata.layers[layer]
    # only the caller's own sparse matrix needs copying; dense input and blocks read from a
    # backed file are converted into new matrices already
    blocks = [as_csr(block) if block is source else block for block in _count_blocks(adata, layer)]
    counts = blocks[0] if len(blocks) == 1 else sparse.vstack(blocks, format="csr")
    work = AnnData(X=counts, obs=adata.obs.copy(), var=adata.var.copy())
    work.obs_names = adata.obs_names.copy()
    work.var_names = adata.var_names.astype(str)
    return work


def _filter(work: AnnData, min_features: int, min_cells: int, batch_key: str | None) -> None:
    n_features = np.diff(work.X.indptr) if work.n_obs else np.array([0])
    if min_features > 0 and (n_features >= min_features).sum() == 0:
        raise ValueError(
            f"No cell has at least min_features={min_features} detected features (the median "
            f"cell has {int(np.median(n_features))}). Lower min_features."
        )
    if min_features > 0:
        _report_removed_cells(work, n_features >= min_features, min_features, batch_key)
        sc.pp.filter_cells(work, min_genes=min_features)
    if min_cells > 0:
        sc.pp.filter_genes(work, min_cells=min_cells)
    if work.n_vars == 0:
        raise ValueError(f"No feature is detected in min_cells={min_cells} cells.")


def _report_removed_cells(
    work: AnnData, kept: np.ndarray, min_features: int, batch_key: str | None
) -> None:
    """Warn when the cell filter removes whole batches or most cells, which is easy to miss.

    The paper's ``min_features=600`` suits whole transcriptomes; on a panel of a few thousand
    genes it can silently drop most cells (1,459 of 1,556 of the 1,267-gene IFN-β PBMC data
    in the benchmarks).
    """
    n_removed = int((~kept).sum())
    if n_removed == 0:
        return
    logger.info("min_features=%d removed %d of %d cells.", min_features, n_removed, kept.size)
    batches = work.obs[batch_key].astype(str) if batch_key is not None else None
    lost = [] if batches is None else sorted(set(batches) - set(batches[kept]))
    if not lost and n_removed <= kept.size / 2:
        return
    median = int(np.median(np.diff(work.X.indptr)))
    message = (
        f"min_features={min_features} removed {n_removed:,} of {kept.size:,} cells "
        f"(the median cell has {median:,} detected features)"
    )
    if lost:
        message += f", all cells of batch(es) {', '.join(lost)}"
    warnings.warn(
        message + ". Lower min_features if these cells should be kept.", UserWarning, stacklevel=4
    )


def _groups(work: AnnData, batch_key: str | None) -> np.ndarray | None:
    if batch_key is None:
        return None
    return work.obs[batch_key].astype(str).to_numpy()


def _select_features(
    work: AnnData,
    n_top_features: int | Sequence[str],
    profile: str,
    batch_key: str | None,
    groups: np.ndarray | None,
) -> AnnData:
    if not isinstance(n_top_features, int | np.integer):
        features = pd.Index(np.asarray(list(n_top_features)).astype(str))
        selected = AnnData(
            X=reindex_features(
                work.X,
                work.var_names,
                features,
                0.0,
                what="The data",
                target="the requested",
                stacklevel=4,  # the caller of preprocess
            ),
            obs=work.obs,
            var=pd.DataFrame(index=features),
        )
        selected.layers["counts"] = reindex_features(
            work.layers["counts"], work.var_names, features, 0.0, warn=False
        )
        selected.raw = work.raw.to_adata() if work.raw is not None else None
        return selected
    if n_top_features <= 0 or n_top_features >= work.n_vars:
        return work
    if profile == "ATAC":
        n_cells = np.diff(work.X.tocsc().indptr)
        keep = np.sort(np.argsort(-n_cells, kind="stable")[:n_top_features])
        return work[:, keep].copy()
    n_batches = len(np.unique(groups)) if groups is not None else 1
    sc.pp.highly_variable_genes(
        work, n_top_genes=int(n_top_features), batch_key=batch_key if n_batches > 1 else None
    )
    return work[:, work.var["highly_variable"].to_numpy()].copy()


def _clr(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Centred log-ratio per cell, ``log1p(x / geometric mean)``, as Seurat's CLR (margin 1)."""
    log_values = matrix.copy()
    log_values.data = np.log1p(log_values.data)
    geometric_mean = np.exp(np.asarray(log_values.sum(axis=1)).ravel() / matrix.shape[1])
    scaled = sparse.csr_matrix(sparse.diags(1.0 / geometric_mean) @ matrix, dtype=np.float32)
    scaled.data = np.log1p(scaled.data)
    return scaled
