"""Helpers shared by the tests (kept out of conftest so test modules can import them)."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scvi

import scalex_scvi as sx

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The shared data directory: $SCALEX_SCVI_DATA_DIR, else ../shared/data beside the repo."""
    return Path(os.environ.get("SCALEX_SCVI_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def shared_path(name: str) -> Path:
    """Path of a shared dataset; skips the test when it is not there."""
    path = data_dir() / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} not available")
    return path


def read_shared(name: str) -> ad.AnnData:
    return ad.read_h5ad(shared_path(name))


def train_small(adata: ad.AnnData, seed: int = 0, iterations: int = 40) -> sx.SCALEX:
    scvi.settings.seed = seed
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    model = sx.SCALEX(adata, n_hidden=128)
    model.train(max_iterations=iterations, enable_progress_bar=False, early_stopping=False)
    return model


def assert_adata_equal(a: ad.AnnData, b: ad.AnnData) -> None:
    """Everything a caller sees is identical: matrix, layers, obs, var, uns keys, obsm keys."""
    assert a.shape == b.shape
    assert (a.obs_names == b.obs_names).all() and (a.var_names == b.var_names).all()
    xa = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    xb = b.X.toarray() if hasattr(b.X, "toarray") else np.asarray(b.X)
    np.testing.assert_array_equal(xa, xb)
    assert a.obs.equals(b.obs), "obs changed"
    assert a.var.equals(b.var), "var changed"
    assert set(a.uns.keys()) == set(b.uns.keys()), "uns keys changed"
    assert set(a.obsm.keys()) == set(b.obsm.keys()), "obsm keys changed"
    assert set(a.layers.keys()) == set(b.layers.keys()), "layers changed"
