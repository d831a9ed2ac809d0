"""MuData input: preprocessing one modality, setup_mudata, queries, save/load, atlas."""

from __future__ import annotations

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pytest
import scvi
from scipy import sparse

import scalex_scvi as sx

PREP = {"batch_key": "batch", "min_features": 50, "n_top_features": 400}


def _as_mudata(cells: ad.AnnData) -> md.MuData:
    """RNA as one modality, a protein panel as another, the batch on the MuData only."""
    rna = cells.copy()
    batch = rna.obs.pop("batch").to_numpy()
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, size=(rna.n_obs, 6)).astype(np.float32)
    prot = ad.AnnData(sparse.csr_matrix(counts), obs=rna.obs[[]].copy())
    prot.var_names = [f"protein{i}" for i in range(6)]
    mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs["batch"] = batch
    mdata.uns["note"] = "kept"
    return mdata


@pytest.fixture(scope="module")
def reference_mdata(reference_raw) -> md.MuData:
    return _as_mudata(reference_raw)


@pytest.fixture(scope="module")
def prepared_mdata(reference_mdata) -> md.MuData:
    return sx.pp.preprocess(reference_mdata, modality="rna", **PREP)


@pytest.fixture(scope="module")
def mudata_model(prepared_mdata) -> sx.SCALEX:
    scvi.settings.seed = 0
    sx.SCALEX.setup_mudata(prepared_mdata, batch_key="batch", modalities={"layer": "rna"})
    model = sx.SCALEX(prepared_mdata, n_hidden=128)
    model.train(max_iterations=40, enable_progress_bar=False, early_stopping=False)
    return model


def test_preprocess_prepares_one_modality(reference_mdata, reference, prepared_mdata):
    before_rna = reference_mdata["rna"].X.copy()
    before_obs = reference_mdata.obs.copy()
    prepared = prepared_mdata
    rna = prepared["rna"]
    # the modality is prepared exactly as the AnnData with the MuData's batch column
    assert rna.obs_names.equals(reference.obs_names) and rna.var_names.equals(reference.var_names)
    assert (rna.X != reference.X).nnz == 0
    assert "scalex_preprocess" in rna.uns and "counts" in rna.layers
    # every other modality on the kept cells, values unchanged; annotations carried over
    prot = prepared["prot"]
    assert prot.obs_names.equals(rna.obs_names)
    source = reference_mdata["prot"][rna.obs_names]
    np.testing.assert_array_equal(prot.X.toarray(), source.X.toarray())
    assert (
        prepared.obs["batch"].tolist() == reference_mdata.obs.loc[rna.obs_names, "batch"].tolist()
    )
    assert prepared.uns["note"] == "kept"
    # the caller's MuData is untouched
    assert (reference_mdata["rna"].X != before_rna).nnz == 0
    assert reference_mdata.obs.equals(before_obs)
    assert reference_mdata["rna"].n_vars > rna.n_vars


def test_preprocess_modality_errors(reference_mdata, reference_raw):
    with pytest.raises(ValueError, match="modalities"):
        sx.pp.preprocess(reference_mdata, **PREP)
    with pytest.raises(KeyError, match="atac"):
        sx.pp.preprocess(reference_mdata, modality="atac", **PREP)
    with pytest.raises(ValueError, match="MuData"):
        sx.pp.preprocess(reference_raw, modality="rna", **PREP)


def test_mudata_model_equals_anndata_model(mudata_model, trained, reference, prepared_mdata):
    """Same data and seed through setup_mudata and setup_anndata (train_small): the same model."""
    anndata_model = trained
    latent = mudata_model.get_latent_representation()
    np.testing.assert_array_equal(latent, anndata_model.get_latent_representation())
    assert list(mudata_model.feature_names) == list(reference.var_names)
    assert list(mudata_model.batch_categories) == ["3pv2", "5p"]
    # another MuData object (the light-copy path) and the modality alone give the same latents
    np.testing.assert_array_equal(
        mudata_model.get_latent_representation(prepared_mdata.copy()), latent
    )
    np.testing.assert_array_equal(
        mudata_model.get_latent_representation(prepared_mdata["rna"]), latent
    )
    decoded = mudata_model.get_normalized_expression(prepared_mdata.copy(), return_numpy=True)
    np.testing.assert_array_equal(
        decoded, anndata_model.get_normalized_expression(return_numpy=True)
    )


def test_mudata_query(mudata_model, query_raw, query, trained):
    """A raw MuData query is prepared from its modality with the MuData's batch column."""
    query_mdata = _as_mudata(query_raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prepared = mudata_model.prepare_query(query_mdata, batch_key="batch")
    assert isinstance(prepared, ad.AnnData)
    assert (prepared.X != query.X).nnz == 0 and prepared.obs["batch"].eq("3pv1").all()
    np.testing.assert_array_equal(
        mudata_model.get_latent_representation(prepared),
        trained.get_latent_representation(query),
    )
    with pytest.raises(ValueError, match="setup_anndata"):
        trained.get_latent_representation(_as_mudata(query))


def test_mudata_model_save_load(mudata_model, prepared_mdata, tmp_path):
    latent = mudata_model.get_latent_representation()
    mudata_model.save(tmp_path / "model", save_anndata=True)
    loaded = sx.SCALEX.load(tmp_path / "model")
    assert isinstance(loaded.adata, md.MuData)
    np.testing.assert_array_equal(loaded.get_latent_representation(), latent)
    np.testing.assert_array_equal(
        sx.SCALEX.load(
            tmp_path / "model", adata=prepared_mdata.copy()
        ).get_latent_representation(),
        latent,
    )
    with pytest.raises(ValueError, match="MuData"):
        sx.SCALEX.load(tmp_path / "model", adata=prepared_mdata["rna"].copy())


def test_setup_mudata_errors(prepared_mdata):
    with pytest.raises(ValueError, match="modalities"):
        sx.SCALEX.setup_mudata(prepared_mdata.copy(), batch_key="batch")
    with pytest.raises(ValueError, match="'layer' and 'batch_key'"):
        sx.SCALEX.setup_mudata(
            prepared_mdata.copy(), modalities={"layer": "rna", "labels_key": "rna"}
        )
    partial = md.MuData(
        {"rna": prepared_mdata["rna"][:100].copy(), "prot": prepared_mdata["prot"].copy()}
    )
    with pytest.raises(ValueError, match="same cells"):
        sx.SCALEX.setup_mudata(partial, modalities={"layer": "rna"})


def test_atlas_from_mudata(mudata_model, trained, query_raw):
    """An atlas of a MuData model maps a raw MuData as its AnnData twin maps the AnnData."""
    atlas = sx.Atlas.build(mudata_model, label_key="cell_type")
    twin = sx.Atlas.build(trained, label_key="cell_type")
    np.testing.assert_array_equal(atlas.adata.obsm["X_scalex"], twin.adata.obsm["X_scalex"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mapped = atlas.map(_as_mudata(query_raw), batch_key="batch")
        expected = twin.map(query_raw, batch_key="batch")
    np.testing.assert_array_equal(mapped.obsm["X_scalex"], expected.obsm["X_scalex"])
    assert (
        mapped.obs["cell_type_predicted"].tolist() == expected.obs["cell_type_predicted"].tolist()
    )


def test_prepared_mudata_follows_the_prepared_cells(reference_mdata):
    """Another modality first, in another cell order: the result is ready for setup_mudata."""
    prot, rna = reference_mdata["prot"], reference_mdata["rna"]
    shuffled = md.MuData({"prot": prot[::-1].copy(), "rna": rna.copy()})
    shuffled.obs["batch"] = reference_mdata.obs["batch"].reindex(shuffled.obs_names).to_numpy()
    prepared = sx.pp.preprocess(shuffled, modality="rna", **PREP)
    assert prepared.obs_names.equals(prepared["rna"].obs_names)
    assert prepared["prot"].obs_names.equals(prepared["rna"].obs_names)
    np.testing.assert_array_equal(
        prepared["prot"].X.toarray(), prot[prepared.obs_names].X.toarray()
    )
    sx.SCALEX.setup_mudata(prepared, batch_key="batch", modalities={"layer": "rna"})


def test_mudata_query_model(mudata_model, query, trained):
    """load_query_data with a MuData reference takes a prepared MuData query, as the AnnData."""
    query_mdata = _as_mudata(query)
    query_model = sx.SCALEX.load_query_data(query_mdata, mudata_model)
    anndata_query_model = sx.SCALEX.load_query_data(query.copy(), trained)
    assert list(query_model.batch_categories) == ["3pv2", "5p", "3pv1"]
    np.testing.assert_array_equal(
        query_model.get_normalized_expression(return_numpy=True),
        anndata_query_model.get_normalized_expression(return_numpy=True),
    )
