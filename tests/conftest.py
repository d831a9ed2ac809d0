from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import anndata as ad
import pytest

import scalex_scvi as sx

from scalex_testing import train_small


@pytest.fixture(scope="session")
def pbmc() -> ad.AnnData:
    return sx.datasets.pbmc_3chemistries()


@pytest.fixture(scope="session")
def reference_raw(pbmc) -> ad.AnnData:
    return pbmc[pbmc.obs["batch"].isin(["3pv2", "5p"])].copy()


@pytest.fixture(scope="session")
def query_raw(pbmc) -> ad.AnnData:
    return pbmc[pbmc.obs["batch"] == "3pv1"].copy()


@pytest.fixture(scope="session")
def reference(reference_raw) -> ad.AnnData:
    return sx.pp.preprocess(reference_raw, batch_key="batch", min_features=50, n_top_features=400)


@pytest.fixture(scope="session")
def trained(reference) -> sx.SCALEX:
    return train_small(reference.copy())


@pytest.fixture(scope="session")
def query(trained, query_raw) -> ad.AnnData:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return trained.prepare_query(query_raw, batch_key="batch")
