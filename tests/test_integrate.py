"""The one-call workflow, and regression tests for each known bug of the original package."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest

import scalex_scvi as sx
from scalex_scvi.model import SCALEX

from scalex_testing import assert_adata_equal

FAST = {"min_features": 50, "n_top_features": 300, "max_iteration": 30, "seed": 0}


def _run(data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return sx.integrate(data, **{**FAST, **kwargs})


def test_single_anndata_and_one_element_list(pbmc):
    # original bug: SCALEX([adata]) crashed
    before = pbmc.copy()
    out = _run(pbmc, ignore_umap=True)
    out_list = _run([pbmc], ignore_umap=True)
    assert out.obsm["latent"].shape == (pbmc.n_obs, 10)
    np.testing.assert_array_equal(out.obsm["latent"], out_list.obsm["latent"])
    assert_adata_equal(pbmc, before)


def test_outputs_umap_leiden_and_files(pbmc, tmp_path):
    out = _run(pbmc, outdir=tmp_path / "out", assess=True)
    assert out.obsm["X_scalex_umap"].shape == (pbmc.n_obs, 2)
    assert "leiden" in out.obs
    for name in ("adata.h5ad", "umap.png", "log.txt", "model/model.pt"):
        assert (tmp_path / "out" / name).exists(), name
    log = (tmp_path / "out" / "log.txt").read_text()
    assert '"max_iteration": 30' in log and '"scvi-tools"' in log and "torch" in log
    assert 0 <= out.uns["batch_entropy_mixing_score"] <= 1


def test_outdir_none_survives_early_stopping(pbmc, tmp_path, monkeypatch):
    # original bug: with outdir=None, early stopping loaded a checkpoint from None and crashed
    monkeypatch.chdir(tmp_path)
    out = _run(
        pbmc,
        outdir=None,
        max_iteration=2000,
        ignore_umap=True,
        train_kwargs={"early_stopping_patience": 1},
    )
    assert out.obsm["latent"].shape[0] == pbmc.n_obs
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_assess_with_ignore_umap(pbmc):
    # original bug: assess read X_umap, so ignore_umap=True raised a KeyError
    out = _run(pbmc, ignore_umap=True, assess=True)
    assert "X_scalex_umap" not in out.obsm
    assert 0 <= out.uns["batch_entropy_mixing_score"] <= 1
    assert 0 <= out.uns["silhouette_score"] <= 1


def test_caller_batch_column_is_not_overwritten(pbmc, tmp_path):
    # original bug: batch_name != 'batch' overwrote the caller's obs['batch']
    data = pbmc.copy()
    data.obs["batch"] = "untouched"
    data.obs["chemistry"] = pbmc.obs["batch"].to_numpy()
    before = data.copy()
    out = _run(data, batch_name="chemistry", outdir=tmp_path / "o", ignore_umap=True)
    assert_adata_equal(data, before)
    assert (out.obs["batch"] == "untouched").all()
    model = SCALEX.load(tmp_path / "o" / "model")
    assert sorted(model.batch_categories) == ["3pv1", "3pv2", "5p"]


def test_list_with_other_batch_key_is_corrected_per_dataset(pbmc, tmp_path):
    # original bug: a list concatenated under batch_key != 'batch' trained as one batch
    parts = [pbmc[pbmc.obs["batch"] == b].copy() for b in ("3pv2", "5p")]
    for part in parts:
        del part.obs["batch"]
    _run(
        parts,
        batch_categories=["x", "y"],
        batch_key="sample",
        outdir=tmp_path / "o",
        ignore_umap=True,
    )
    model = SCALEX.load(tmp_path / "o" / "model")
    assert sorted(model.batch_categories) == ["x", "y"]


def test_backed_is_honoured(pbmc, tmp_path):
    # original bug: backed was ignored (the file was read into memory)
    data = sx.pp.preprocess(pbmc, batch_key="batch", min_features=50, n_top_features=300)
    path = tmp_path / "prepared.h5ad"
    ad.AnnData(X=data.X, obs=data.obs[["batch"]], var=data.var[[]]).write_h5ad(path)
    out = _run(str(path), processed=True, backed=True, ignore_umap=True)
    assert out.isbacked and out.obsm["latent"].shape == (data.n_obs, 10)
    # the backed path embeds exactly like the in-memory one for the same weights
    SCALEX.setup_anndata(out, batch_key="batch")
    model = SCALEX(out, n_hidden=32)
    model.train(max_iterations=5, enable_progress_bar=False)
    memory = ad.read_h5ad(path)
    np.testing.assert_array_equal(
        model.get_latent_representation(out), model.get_latent_representation(memory)
    )


def test_projection_repeat_false_and_true(pbmc, tmp_path):
    # original bugs: projection failed on torch >= 2.6 (torch.load) and with repeat=False
    reference = pbmc[pbmc.obs["batch"] != "3pv1"].copy()
    query = pbmc[pbmc.obs["batch"] == "3pv1"].copy()
    _run(reference, outdir=tmp_path / "ref", ignore_umap=True)
    together = _run(query, projection=tmp_path / "ref", repeat=False, ignore_umap=True)
    assert together.n_obs == pbmc.n_obs
    assert together.obs["projection"].value_counts().to_dict() == {"reference": 910, "query": 290}
    alone = _run(query, projection=tmp_path / "ref", repeat=True, ignore_umap=True)
    assert alone.n_obs == query.n_obs
    model = SCALEX.load(tmp_path / "ref" / "model")
    np.testing.assert_allclose(
        alone.obsm["latent"],
        model.get_latent_representation(model.prepare_query(query, batch_key="batch")),
        rtol=1e-5,
        atol=1e-6,
    )


def test_impute_uses_the_right_batch(pbmc, tmp_path):
    # original bug: impute mapped every cell to batch 0 (and unknown names silently too)
    out = _run(pbmc, impute=True, outdir=tmp_path / "o", ignore_umap=True)
    model = SCALEX.load(tmp_path / "o" / "model")
    in_5p = (out.obs["batch"] == "5p").to_numpy()
    as_5p = model.get_normalized_expression(
        out[in_5p].copy(), transform_batch="5p", return_numpy=True
    )
    np.testing.assert_allclose(out.layers["impute"][in_5p], as_5p, rtol=1e-5, atol=1e-6)
    first = model.batch_categories[0]
    assert first != "5p"
    as_first = model.get_normalized_expression(
        out[in_5p].copy(), transform_batch=first, return_numpy=True
    )
    assert np.abs(out.layers["impute"][in_5p] - as_first).max() > 1e-4
    named = _run(pbmc, impute="3pv1", ignore_umap=True)
    assert named.layers["impute"].shape == (pbmc.n_obs, 300)
    with pytest.raises(ValueError, match="Unknown batch"):
        _run(pbmc, impute="no-such-batch", ignore_umap=True)
