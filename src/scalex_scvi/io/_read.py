"""Readers for the input formats of the original SCALEX command line."""

from __future__ import annotations

import logging
from glob import glob
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

from scalex_scvi._mudata import is_mudata, modality_with_obs

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
_GLOB_CHARS = ("*", "?", "[")


def read(path: str | Path, modality: str | None = None, backed: bool = False) -> ad.AnnData:
    """Read one single-cell dataset into an AnnData (cells × features).

    Supported:

    - ``.h5ad`` (``backed=True`` opens it read-only without loading ``X``);
    - ``.h5mu``, with ``modality=`` or a path such as ``data.h5mu/rna``;
    - 10x ``.h5`` (:func:`scanpy.read_10x_h5`);
    - a folder holding a Matrix Market file (``matrix.mtx``/``count*.mtx``, optionally
      gzipped) with barcode and gene/feature/peak files (10x or the original package's layout);
    - ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``) tables of **features × cells** (first
      column: feature names; header: cell names), as the original package reads them;
    - a glob (``data/*.h5ad``): every match, concatenated with ``obs['sub_batch']`` naming the
      file.

    Parameters
    ----------
    path
        File, folder or glob.
    modality
        Modality of a ``.h5mu`` file.
    backed
        Open ``.h5ad`` files in backed (read-only) mode.

    Returns
    -------
    The AnnData, with unique feature names.
    """
    text = str(path)
    if any(char in text for char in _GLOB_CHARS):
        return _read_glob(text, modality=modality, backed=backed)
    if ".h5mu" in text and not text.endswith(".h5mu"):  # data.h5mu/rna
        text, modality = text.split(".h5mu")[0] + ".h5mu", text.split(".h5mu/")[1]
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_dir():
        adata = read_mtx_folder(path)
    elif text.endswith(".h5ad"):
        adata = ad.read_h5ad(path, backed="r" if backed else None)
    elif text.endswith(".h5mu"):
        adata = _read_h5mu(path, modality)
    elif text.endswith(".h5"):
        adata = sc.read_10x_h5(path)
    elif text.endswith(TEXT_SUFFIXES):
        adata = _read_table(path)
    else:
        raise ValueError(
            f"Cannot read {path}: expected .h5ad, .h5mu, 10x .h5, a Matrix Market folder or a "
            ".csv/.tsv/.txt(.gz) table."
        )
    if not adata.isbacked:
        if not adata.var_names.is_unique:
            adata.var_names_make_unique()
        if not sparse.issparse(adata.X) and adata.X is not None:
            adata.X = sparse.csr_matrix(adata.X)
    return adata


def read_mtx_folder(folder: str | Path) -> ad.AnnData:
    """Read a folder with a Matrix Market file, barcodes and genes/features/peaks.

    10x layouts (``matrix.mtx(.gz)``, ``barcodes.tsv(.gz)``, ``features.tsv(.gz)`` or
    ``genes.tsv``) and the original package's (``count.mtx``, ``barcode.txt``, ``gene.txt``,
    ``peaks.txt``) are recognised. The matrix is features × cells, as 10x writes it.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    matrix_files = [
        p
        for p in files
        if ".mtx" in p.name and any(k in p.name for k in ("matrix", "count", "data"))
    ]
    if not matrix_files:
        raise FileNotFoundError(f"No matrix.mtx/count.mtx file in {folder}.")
    adata = sc.read_mtx(matrix_files[0]).T
    for p in files:
        name = p.name.lower()
        if "barcode" in name:
            adata.obs_names = pd.read_csv(p, sep="\t", header=None).iloc[:, -1].astype(str).values
        elif "feature" in name:
            table = pd.read_csv(p, sep="\t", header=None)
            adata.var_names = table.iloc[:, 1 if table.shape[1] > 1 else 0].astype(str).values
            adata.var["feature_id"] = table.iloc[:, 0].astype(str).values
        elif "gene" in name or "peak" in name:
            table = pd.read_csv(p, sep="\t", header=None)
            adata.var_names = table.iloc[:, -1].astype(str).values
    adata.X = sparse.csr_matrix(adata.X, dtype=np.float32)
    return adata


def _read_table(path: Path) -> ad.AnnData:
    sep = "," if ".csv" in path.name else "\t"
    frame = pd.read_csv(path, sep=sep, index_col=0)
    return ad.AnnData(
        X=sparse.csr_matrix(frame.to_numpy(dtype=np.float32).T),
        obs=pd.DataFrame(index=frame.columns.astype(str)),
        var=pd.DataFrame(index=frame.index.astype(str)),
    )


def _read_h5mu(path: Path, modality: str | None) -> ad.AnnData:
    import mudata

    mdata = mudata.read_h5mu(path)
    if modality is None:
        raise ValueError(
            f"{path} holds modalities {list(mdata.mod)}; choose one with modality= or a path "
            "such as data.h5mu/rna."
        )
    if modality not in mdata.mod:
        raise KeyError(f"{path} has no modality {modality!r}; it has {list(mdata.mod)}.")
    return modality_with_obs(mdata, modality)  # with global annotations (e.g. the batch)


def _read_glob(pattern: str, modality: str | None, backed: bool) -> ad.AnnData:
    paths = sorted(glob(pattern))  # noqa: PTH207 - absolute patterns, as the original
    if not paths:
        raise FileNotFoundError(f"No file matches {pattern}.")
    if len(paths) == 1:
        return read(paths[0], modality=modality, backed=backed)
    parts = {Path(p).name: read(p, modality=modality) for p in paths}
    return ad.concat(parts, label="sub_batch", join="inner", index_unique=None)


def read_many(
    data_list: Sequence[str | Path | ad.AnnData] | str | Path | ad.AnnData,
    batch_categories: Sequence[str] | None = None,
    batch_key: str = "batch",
    join: str = "inner",
    backed: bool = False,
) -> ad.AnnData:
    """Read and concatenate several datasets, each one batch, as the original's ``concat_data``.

    Parameters
    ----------
    data_list
        Paths (see :func:`read`) or AnnData objects; a single one is returned unchanged (not
        copied when it is an AnnData).
    batch_categories
        Name of each dataset's batch (default ``"0"``, ``"1"``, ...).
    batch_key
        Column of ``obs`` receiving the batch names.
    join
        ``"inner"`` (shared features) or ``"outer"`` (all features, zeros where missing).
    backed
        Open a single ``.h5ad`` in backed mode (concatenation needs the data in memory).

    Returns
    -------
    One AnnData; inputs given as AnnData are not modified.
    """
    if isinstance(data_list, str | Path | ad.AnnData) or is_mudata(data_list):
        data_list = [data_list]
    data_list = list(data_list)
    if any(is_mudata(item) for item in data_list):
        raise TypeError(
            "A MuData holds several modalities; pass the one to integrate (mdata['rna']) or a "
            "path such as data.h5mu/rna."
        )
    if not data_list:
        raise ValueError("data_list is empty.")
    if batch_categories is not None and len(batch_categories) != len(data_list):
        raise ValueError(
            f"{len(batch_categories)} batch_categories for {len(data_list)} datasets."
        )
    if len(data_list) == 1:
        item = data_list[0]
        adata = item if isinstance(item, ad.AnnData) else read(item, backed=backed)
        if batch_categories is not None:
            adata = adata.copy() if adata is item else adata
            adata.obs[batch_key] = pd.Categorical([batch_categories[0]] * adata.n_obs)
        return adata
    if backed:
        logger.warning("backed=True applies to a single .h5ad; several inputs are read in memory.")
    parts = [item if isinstance(item, ad.AnnData) else read(item) for item in data_list]
    names = (
        list(batch_categories)
        if batch_categories is not None
        else [str(i) for i in range(len(parts))]
    )
    combined = ad.concat(
        dict(zip(names, parts, strict=True)),
        label=batch_key,
        join=join,
        index_unique=None,
        fill_value=0,
    )
    if not combined.obs_names.is_unique:
        combined.obs_names_make_unique()
    return combined
