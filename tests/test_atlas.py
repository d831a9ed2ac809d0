from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scalex_scvi as sx

from scalex_testing import assert_adata_equal


@pytest.fixture(scope="module")
def atlas(trained, reference):
    return sx.Atlas.build(trained, reference, label_key="cell_type")


def _map_quietly(atlas, adata, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return atlas.map(adata, **kwargs)


def test_build(atlas, reference, trained):
    cells = atlas.adata
    assert cells.n_obs == reference.n_obs == atlas.n_obs
    np.testing.assert_array_equal(cells.obsm["X_scalex"], trained.get_latent_representation())
    assert cells.obsm["X_umap"].shape == (reference.n_obs, 2)
    assert (cells.obs["cell_type"] == reference.obs["cell_type"].astype(str)).all()
    assert set(cells.obs["source"]) == {"reference"}
    assert "reference" in repr(atlas)


def test_build_passes_umap_kwargs(atlas, trained, reference):
    fewer_epochs = sx.Atlas.build(trained, reference, umap_kwargs={"n_epochs": 20})
    assert fewer_epochs.umap.n_epochs == 20 and atlas.umap.n_epochs is None
    assert not np.allclose(fewer_epochs.adata.obsm["X_umap"], atlas.adata.obsm["X_umap"])
    latent = atlas.adata.obsm["X_scalex"]
    np.testing.assert_array_equal(fewer_epochs.adata.obsm["X_scalex"], latent)
    with pytest.raises(ValueError, match="n_neighbors"):
        sx.Atlas.build(trained, reference, umap_kwargs={"n_neighbors": 5})


def test_map_raw_query(atlas, query_raw, trained, query):
    before = query_raw.copy()
    mapped = _map_quietly(atlas, query_raw, batch_key="batch")
    assert_adata_equal(query_raw, before)
    assert mapped.n_obs == query_raw.n_obs
    np.testing.assert_allclose(
        mapped.obsm["X_scalex"], trained.get_latent_representation(query), rtol=1e-5, atol=1e-6
    )
    assert mapped.obsm["X_umap"].shape == (query_raw.n_obs, 2)
    predicted = mapped.obs["cell_type_predicted"]
    assert set(predicted) <= set(atlas.adata.obs["cell_type"]) | {"Unknown"}
    assert (
        (mapped.obs["cell_type_probability"] >= 0) & (mapped.obs["cell_type_probability"] <= 1)
    ).all()
    # on this easy split most labels are right even after a short training
    assert (predicted == query_raw.obs["cell_type"].astype(str)).mean() > 0.5
    per_batch = _map_quietly(atlas, query_raw, batch_key="batch", batch_norm="per_batch")
    np.testing.assert_allclose(
        per_batch.obsm["X_scalex"],
        trained.get_latent_representation(query, batch_norm="per_batch"),
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(per_batch.obsm["X_scalex"], mapped.obsm["X_scalex"], atol=1e-3)
    # keep_raw: every query gene, for plotting; the mapping itself does not change
    assert mapped.raw is None
    with_raw = _map_quietly(atlas, query_raw, batch_key="batch", keep_raw=True)
    assert with_raw.raw.n_vars > mapped.n_vars and "CD3E" in with_raw.raw.var_names
    np.testing.assert_array_equal(with_raw.obsm["X_scalex"], mapped.obsm["X_scalex"])


def test_map_awkward_queries(atlas, query_raw):
    reference_map = _map_quietly(atlas, query_raw, batch_key="batch")
    shuffled = query_raw[:, query_raw.var_names[::-1]].copy()
    features = list(atlas.model.feature_names)
    shuffled = shuffled[:, [g for g in shuffled.var_names if g not in features[:20]]].copy()
    with pytest.warns(UserWarning, match="lacks 20 of the model's"):
        partial = atlas.map(shuffled, batch_key="batch")
    assert partial.n_obs == query_raw.n_obs and np.isfinite(partial.obsm["X_scalex"]).all()
    no_batch = query_raw.copy()
    del no_batch.obs["batch"]
    unbatched = _map_quietly(atlas, no_batch)
    np.testing.assert_allclose(
        unbatched.obsm["X_scalex"], reference_map.obsm["X_scalex"], rtol=1e-5, atol=1e-6
    )
    one = _map_quietly(atlas, query_raw[:1].copy())
    assert one.n_obs == 1 and one.obsm["X_umap"].shape == (1, 2)
    assert one.obs["cell_type_predicted"].iloc[0] in set(atlas.adata.obs["cell_type"]) | {
        "Unknown"
    }


def test_map_backed_query_file(atlas, query_raw, tmp_path):
    in_memory = _map_quietly(atlas, query_raw, batch_key="batch")
    query_raw.write_h5ad(tmp_path / "query.h5ad")
    backed = ad.read_h5ad(tmp_path / "query.h5ad", backed="r")
    mapped = _map_quietly(atlas, backed, batch_key="batch")
    np.testing.assert_array_equal(mapped.obsm["X_scalex"], in_memory.obsm["X_scalex"])
    np.testing.assert_array_equal(mapped.obsm["X_umap"], in_memory.obsm["X_umap"])
    assert (mapped.obs["cell_type_predicted"] == in_memory.obs["cell_type_predicted"]).all()
    backed.file.close()


def test_map_balanced(atlas, trained, reference, query_raw, query):
    before = atlas.adata.obsm["X_scalex"].copy()
    mapped = _map_quietly(atlas, query_raw, batch_key="batch", batch_norm="balanced")
    expected, _ = sx.tl.balanced_latent(
        trained, query, atlas.classifier, atlas.reference_statistics
    )
    np.testing.assert_allclose(mapped.obsm["X_scalex"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(atlas.adata.obsm["X_scalex"], before)
    # a query of one cell keeps the running statistics
    one = _map_quietly(atlas, query_raw[:1].copy(), batch_norm="balanced")
    running = _map_quietly(atlas, query_raw[:1].copy())
    np.testing.assert_allclose(
        one.obsm["X_scalex"], running.obsm["X_scalex"], rtol=1e-5, atol=1e-6
    )
    # a draw of 100 cells of the query's batch; the atlas's classifier labels them (no more
    # than 20,000 reference cells: subsample() keeps it)
    drawn = _map_quietly(
        atlas, query_raw, batch_key="batch", batch_norm="balanced", balance_cells=100
    )
    expected, _ = sx.tl.balanced_latent(
        trained, query, atlas.classifier, atlas.reference_statistics, max_cells=100
    )
    np.testing.assert_allclose(drawn.obsm["X_scalex"], expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(drawn.obsm["X_scalex"], mapped.obsm["X_scalex"])
    whole = _map_quietly(
        atlas, query_raw, batch_key="batch", batch_norm="balanced", balance_cells=None
    )
    np.testing.assert_array_equal(whole.obsm["X_scalex"], mapped.obsm["X_scalex"])
    unlabelled = sx.Atlas.build(trained, reference)
    with pytest.raises(ValueError, match="label_key"):
        _map_quietly(unlabelled, query_raw, batch_norm="balanced")
    with pytest.raises(ValueError, match="batch_norm"):
        _map_quietly(atlas, query_raw, batch_norm="train")


def test_extend_keeps_existing_cells_bit_identical(trained, reference, query_raw):
    atlas = sx.Atlas.build(trained, reference, label_key="cell_type")
    before = atlas.adata.obsm["X_scalex"].copy(), atlas.adata.obsm["X_umap"].copy()
    n_reference = atlas.n_obs
    for i in range(3):
        mapped = _map_quietly(atlas, query_raw[i * 50 : (i + 1) * 50].copy(), source=f"q{i}")
        atlas.extend(mapped)
        cells = atlas.adata
        assert cells.n_obs == n_reference + 50 * (i + 1)
        np.testing.assert_array_equal(cells.obsm["X_scalex"][:n_reference], before[0])
        np.testing.assert_array_equal(cells.obsm["X_umap"][:n_reference], before[1])
        np.testing.assert_array_equal(cells.obsm["X_scalex"][-50:], mapped.obsm["X_scalex"])
    assert set(cells.obs["source"]) == {"reference", "q0", "q1", "q2"}
    assert (cells.obs["label_origin"][n_reference:] == "predicted").all()
    with pytest.raises(KeyError, match=r"Atlas\.map"):
        atlas.extend(reference)
    # the same cells again: refused, unless renamed (barcodes repeat across samples)
    names_before = mapped.obs_names.copy()
    with pytest.raises(ValueError, match="50 of the 50 mapped cells are named like"):
        atlas.extend(mapped)
    assert atlas.n_obs == n_reference + 150
    atlas.extend(mapped, index_unique="-")
    assert atlas.n_obs == n_reference + 200 and atlas.adata.obs_names.is_unique
    assert list(atlas.adata.obs_names[-2:]) == [f"{name}-q2" for name in names_before[-2:]]
    assert (mapped.obs_names == names_before).all()
    np.testing.assert_array_equal(atlas.adata.obsm["X_scalex"][:n_reference], before[0])
    twins = mapped[:2].copy()
    twins.obs_names = ["twin", "twin"]
    with pytest.raises(ValueError, match="not unique"):
        atlas.extend(twins)


def test_save_load_gives_identical_results(atlas, query_raw, tmp_path):
    first = _map_quietly(atlas, query_raw, batch_key="batch")
    atlas.save(tmp_path / "atlas")
    with pytest.raises(FileExistsError):
        atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas")
    second = _map_quietly(loaded, query_raw, batch_key="batch")
    np.testing.assert_array_equal(second.obsm["X_scalex"], first.obsm["X_scalex"])
    np.testing.assert_array_equal(second.obsm["X_umap"], first.obsm["X_umap"])
    assert (second.obs["cell_type_predicted"] == first.obs["cell_type_predicted"]).all()
    np.testing.assert_array_equal(loaded.adata.obsm["X_scalex"], atlas.adata.obsm["X_scalex"])
    assert loaded.classifier.distance_cutoff_ == atlas.classifier.distance_cutoff_
    for cells in (None, 100):  # every query cell, and a draw of 100
        balanced = [
            _map_quietly(
                each, query_raw, batch_key="batch", batch_norm="balanced", balance_cells=cells
            )
            for each in (atlas, loaded)
        ]
        np.testing.assert_array_equal(balanced[1].obsm["X_scalex"], balanced[0].obsm["X_scalex"])


def test_missing_reference_labels_stay_missing_on_save_load(
    trained, reference, query_raw, tmp_path
):
    partly = reference.copy()
    partly.obs["cell_type"] = partly.obs["cell_type"].astype(object)
    partly.obs.loc[partly.obs_names[::3], "cell_type"] = np.nan
    before = partly.copy()
    atlas = sx.Atlas.build(trained, partly, label_key="cell_type")
    assert_adata_equal(partly, before)
    missing = atlas.adata.obs["cell_type"].isna().to_numpy()
    np.testing.assert_array_equal(missing, before.obs["cell_type"].isna().to_numpy())
    assert "nan" not in set(atlas.classifier.categories_)
    atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas")
    np.testing.assert_array_equal(loaded.adata.obs["cell_type"].isna().to_numpy(), missing)
    np.testing.assert_array_equal(loaded.classifier.categories_, atlas.classifier.categories_)
    first, second = (_map_quietly(each, query_raw, batch_key="batch") for each in (atlas, loaded))
    assert (second.obs["cell_type_predicted"] == first.obs["cell_type_predicted"]).all()


def test_cutoff_across_batches_is_kept_on_save_load(trained, reference, tmp_path):
    atlas = sx.Atlas.build(
        trained,
        reference,
        label_key="cell_type",
        transfer_kwargs={"calibration": "other_batches"},
    )
    within = sx.tl.KNNLabelTransfer().fit(atlas.adata.obsm["X_scalex"], reference.obs["cell_type"])
    assert atlas.classifier.distance_cutoff_ != within.distance_cutoff_
    atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas", accelerator="cpu")
    assert loaded.model.device.type == "cpu"
    assert loaded.classifier.calibration == "other_batches"
    assert loaded.classifier.distance_cutoff_ == atlas.classifier.distance_cutoff_
    without_batches = reference.copy()
    del without_batches.obs["batch"]
    with pytest.raises(ValueError, match="batch column"):
        sx.Atlas.build(
            trained,
            without_batches,
            label_key="cell_type",
            transfer_kwargs={"calibration": "other_batches"},
        )


def test_cutoffs_per_label_are_kept_on_save_load(trained, reference, tmp_path):
    atlas = sx.Atlas.build(
        trained, reference, label_key="cell_type", transfer_kwargs={"per_label_cutoff": True}
    )
    cutoffs = atlas.classifier.label_cutoffs_
    assert cutoffs.nunique() > 1  # the reference's types get cutoffs of their own
    atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas", accelerator="cpu")
    assert loaded.classifier.per_label_cutoff
    pd.testing.assert_series_equal(loaded.classifier.label_cutoffs_, cutoffs)
    latent = atlas.adata.obsm["X_scalex"]
    pd.testing.assert_frame_equal(
        loaded.classifier.predict(latent), atlas.classifier.predict(latent)
    )
    # an atlas.json written before the option: one cutoff for every label
    path = tmp_path / "atlas" / "atlas.json"
    settings = json.loads(path.read_text())
    for key in ("per_label_cutoff", "min_label_cells", "label_cutoffs"):
        del settings["classifier"][key]
    path.write_text(json.dumps(settings))
    older = sx.Atlas.load(tmp_path / "atlas", accelerator="cpu").classifier
    assert not older.per_label_cutoff
    assert (older.label_cutoffs_ == atlas.classifier.distance_cutoff_).all()


def test_projection_plot(atlas, query_raw, tmp_path):
    import matplotlib as mpl

    mpl.use("Agg")
    mapped = _map_quietly(atlas, query_raw, batch_key="batch")
    ax = atlas.plot_projection(mapped, title="query")
    ax.figure.savefig(tmp_path / "projection.png")
    assert (tmp_path / "projection.png").stat().st_size > 1000


def test_cosine_metric_is_kept_on_save_load(trained, reference, query_raw, tmp_path):
    atlas = sx.Atlas.build(
        trained,
        reference,
        label_key="cell_type",
        transfer_kwargs={"metric": "cosine"},
        umap_kwargs={"n_epochs": 20},
    )
    assert atlas.classifier.metric == "cosine"
    atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas", accelerator="cpu")
    assert loaded.classifier.metric == "cosine"
    assert loaded.classifier.distance_cutoff_ == atlas.classifier.distance_cutoff_
    first, second = (_map_quietly(each, query_raw[:80].copy()) for each in (atlas, loaded))
    pd.testing.assert_frame_equal(second.obs, first.obs)
    assert atlas.classifier.distance_cutoff_ < 1.0  # chord lengths of unit vectors
