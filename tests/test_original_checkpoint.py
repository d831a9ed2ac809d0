"""SCALEX.load_original: checkpoints written in the original package's layout.

The checkpoints here are written by hand under the original's parameter names (those of
``scalex`` 1.0.4's ``VAE``); ``benchmarks/original_checkpoint.py`` checks a model trained by
the original package itself (latents equal to 5e-7).
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException

import scalex_scvi as sx

BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _write_original(model: sx.SCALEX, outdir, n_domain: int = 2, enc=None) -> None:
    """The model's parameters as the original's checkpoint/config.pt and model.pt."""
    ours = model.module.state_dict()
    state = {}
    for theirs, mine in (
        ("encoder.enc.net.0.fc", "z_encoder.fc"),
        ("encoder.mu_enc.net.0.fc", "z_encoder.mean_encoder"),
        ("encoder.var_enc.net.0.fc", "z_encoder.var_encoder"),
        ("decoder.net.0.fc", "decoder.fc"),
    ):
        for name in ("weight", "bias"):
            state[f"{theirs}.{name}"] = ours[f"{mine}.{name}"].clone()
    for name in BATCH_NORM:
        state[f"encoder.enc.net.0.norm.{name}"] = ours[f"z_encoder.norm.{name}"].clone()
        for i in range(n_domain):
            stacked = ours[f"decoder.norm.{name}"][i].clone()
            key = "decoder.net.0.norm." if n_domain == 1 else f"decoder.net.0.norm.bns.{i}."
            state[key + name] = stacked
    n_features = len(model.feature_names)
    config = {
        "n_top_features": pd.Index(model.feature_names),
        "enc": enc or [["fc", model.module.n_hidden, 1, "relu"], ["fc", 10, "", ""]],
        "dec": [["fc", n_features, n_domain, "sigmoid"]],
        "n_domain": n_domain,
    }
    (outdir / "checkpoint").mkdir(parents=True)
    torch.save(config, outdir / "checkpoint" / "config.pt")
    torch.save(state, outdir / "checkpoint" / "model.pt")


def test_load_original_gives_the_same_model(trained, reference, query, tmp_path):
    _write_original(trained, tmp_path)
    reference[:, :5].write_h5ad(tmp_path / "adata.h5ad")  # the original writes its cells there
    loaded = sx.SCALEX.load_original(tmp_path)
    assert list(loaded.batch_categories) == ["3pv2", "5p"]
    assert loaded.feature_names.equals(trained.feature_names)
    assert loaded.adata is None and loaded.is_trained_
    np.testing.assert_array_equal(
        loaded.get_latent_representation(query), trained.get_latent_representation(query)
    )
    np.testing.assert_array_equal(
        loaded.get_normalized_expression(query, transform_batch="5p", return_numpy=True),
        trained.get_normalized_expression(query, transform_batch="5p", return_numpy=True),
    )
    # a saved and loaded converted model stays the same
    loaded.save(tmp_path / "converted")
    again = sx.SCALEX.load(tmp_path / "converted")
    np.testing.assert_array_equal(
        again.get_latent_representation(query), trained.get_latent_representation(query)
    )


def test_original_recipe_prepares_as_the_original(trained, query_raw, tmp_path):
    """The query scaled by its own maxima; genes named ERCC* (ERCC2 here) left out of totals."""
    _write_original(trained, tmp_path / "out")
    loaded = sx.SCALEX.load_original(tmp_path / "out" / "checkpoint", batch_categories=["a", "b"])
    assert list(loaded.batch_categories) == ["a", "b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prepared = loaded.prepare_query(query_raw)
    counts = query_raw.X.toarray()
    names = pd.Index(query_raw.var_names)
    kept = ~names.str.startswith(("ERCC", "MT-", "mt-"))
    assert "ERCC2" in names and not kept[names.get_loc("ERCC2")]
    expected = np.log1p(counts / counts[:, kept].sum(axis=1, keepdims=True) * 1e4)
    expected = expected[:, names.get_indexer(loaded.feature_names)]
    expected /= np.where(expected.max(axis=0) > 0, expected.max(axis=0), 1.0)
    np.testing.assert_allclose(prepared.X.toarray(), expected, rtol=1e-5, atol=1e-6)


def test_one_domain_and_unnamed_batches(trained, query, tmp_path, caplog):
    """One batch: the original's decoder has a plain BatchNorm1d; names default to "0"."""
    _write_original(trained, tmp_path, n_domain=1)
    loaded = sx.SCALEX.load_original(tmp_path)
    assert list(loaded.batch_categories) == ["0"]
    assert "No batch names" in caplog.text
    np.testing.assert_array_equal(
        loaded.get_latent_representation(query), trained.get_latent_representation(query)
    )
    decoder = loaded.module.decoder.norm
    np.testing.assert_array_equal(
        decoder.running_mean[0].cpu().numpy(),
        trained.module.decoder.norm.running_mean[0].cpu().numpy(),
    )


def test_load_original_errors(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.pt"):
        sx.SCALEX.load_original(tmp_path)
    _write_original(trained, tmp_path / "deep", enc=[["fc", 128, 1, "relu"]] * 2 + [["fc", 10]])
    with pytest.raises(ValueError, match="not SCALEX's"):
        sx.SCALEX.load_original(tmp_path / "deep")
    _write_original(trained, tmp_path / "named")
    with pytest.raises(ValueError, match="2 batches; got 3"):
        sx.SCALEX.load_original(tmp_path / "named", batch_categories=["a", "b", "c"])
    with pytest.raises(ValueError, match="profile"):
        sx.SCALEX.load_original(tmp_path / "named", profile="ADT")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_load_original_takes_the_accelerator(trained, tmp_path):
    _write_original(trained, tmp_path)
    assert sx.SCALEX.load_original(tmp_path, accelerator="cpu").device.type == "cpu"
    with pytest.raises(MisconfigurationException, match="gpu"):
        sx.SCALEX.load_original(tmp_path, accelerator="gpu")


def test_integrate_projects_onto_an_original_folder(trained, reference, query_raw, tmp_path):
    """The original's `SCALEX(..., projection=outdir)` workflow, on its output folder."""
    _write_original(trained, tmp_path)
    cells = reference.copy()
    cells.obsm["latent"] = np.zeros((cells.n_obs, 10))  # the original's (train-mode) latents
    cells.write_h5ad(tmp_path / "adata.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = sx.integrate(
            query_raw, projection=tmp_path, ignore_umap=True, show=False, min_features=50
        )
    assert set(result.obs["projection"]) == {"reference", "query"}
    model = sx.SCALEX.load_original(tmp_path)
    in_reference = (result.obs["projection"] == "reference").to_numpy()
    np.testing.assert_allclose(
        result.obsm["latent"][in_reference],
        model.get_latent_representation(reference),
        rtol=1e-5,
        atol=1e-6,
    )
    query = model.prepare_query(query_raw)
    np.testing.assert_allclose(
        result.obsm["latent"][~in_reference],
        model.get_latent_representation(query),
        rtol=1e-5,
        atol=1e-6,
    )


def test_atlas_of_an_original_model(trained, reference, query_raw, tmp_path):
    """getting_started.md, section 8: an original's folder into an atlas that maps raw data."""
    _write_original(trained, tmp_path)
    reference.write_h5ad(tmp_path / "adata.h5ad")
    model = sx.SCALEX.load_original(tmp_path)
    atlas = sx.Atlas.build(model, ad.read_h5ad(tmp_path / "adata.h5ad"), label_key="cell_type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mapped = atlas.map(query_raw, batch_key="batch")
    np.testing.assert_array_equal(
        mapped.obsm["X_scalex"], model.get_latent_representation(model.prepare_query(query_raw))
    )
    assert mapped.obs["cell_type_predicted"].isin([*reference.obs["cell_type"], "Unknown"]).all()
