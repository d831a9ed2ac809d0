"""Datasets shipped with the package."""

from __future__ import annotations

from importlib.resources import as_file, files

import anndata


def pbmc_3chemistries() -> anndata.AnnData:
    """PBMC profiled with three 10x chemistries (3' v1, 3' v2, 5'), 1,200 cells × 1,767 genes.

    Raw counts in ``X`` with ``obs['batch']`` (``3pv1``, ``3pv2``, ``5p``) and
    ``obs['cell_type']`` (9 PBMC types; HSC is absent from ``3pv2``). The log-normalised values
    of the source are in ``layers['lognorm_cp10k']``; provenance in ``uns['source']``.

    The file holds only 1,767 variable genes, so cells have few detected genes (median 199):
    preprocess it with ``min_features`` well below the default 600 (the demo uses 50).

    Source: the ``pbmcs_exprs_small`` / ``pbmcs_meta_small`` data of the Symphony R package
    (immunogenomics/symphony, commit bf7aaf9, GPL >= 3), built from 10x Genomics public PBMC data.
    Counts were rebuilt exactly as ``round(expm1(logCP10k) * nUMI / 1e4)``. Shipped under the
    GPL (>= 3) terms of its source; see ``datasets/data/README.md``.
    """
    resource = files("scalex_scvi.datasets") / "data" / "symphony_pbmc_3chem_small.h5ad"
    with as_file(resource) as path:
        return anndata.read_h5ad(path)
