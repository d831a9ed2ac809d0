"""Full trainings with the package defaults on real data (``make test-slow``; tens of minutes).

The fast suite trains small models for a few dozen steps: it checks behaviour, not that the
method integrates and projects. These tests train with the paper's settings (at most 30,000
iterations, early stopping) and check the quality the benchmarks measured, with slack for
other machines: the figures quoted are those of ``benchmarks/results/`` (seed 0).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scvi

import scalex_scvi as sx

from scalex_testing import read_shared

pytestmark = pytest.mark.slow

LABEL = "cell_type"


def train_defaults(adata: ad.AnnData, seed: int = 0) -> sx.SCALEX:
    """SCALEX set up on ``adata``'s batches and trained with the package defaults."""
    scvi.settings.seed = seed
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    model = sx.SCALEX(adata)
    model.train(enable_progress_bar=False)
    return model


def test_full_training_projects_a_held_out_chemistry():
    # projection.md, pbmc_3pv1: accuracy 0.883 / macro-F1 0.596 with running statistics,
    # 0.921 / 0.728 with balanced statistics, 22,710 iterations
    pbmc = sx.datasets.pbmc_3chemistries()
    in_query = (pbmc.obs["batch"] == "3pv1").to_numpy()
    reference = sx.pp.preprocess(pbmc[~in_query].copy(), batch_key="batch", min_features=50)
    query_raw = pbmc[in_query].copy()
    model = train_defaults(reference)

    assert model.trainer.global_step < 30_000, "early stopping should end the training"
    elbo = model.history["elbo_train"].to_numpy().ravel()
    assert elbo[-1] < 0.8 * elbo[0]

    atlas = sx.Atlas.build(model, reference, label_key=LABEL)
    before = atlas.adata.obsm["X_scalex"].copy()
    known = set(reference.obs[LABEL])
    scores = {}
    for batch_norm in ("running", "balanced"):
        mapped = atlas.map(query_raw, batch_key="batch", batch_norm=batch_norm)
        scores[batch_norm] = sx.tl.label_transfer_scores(
            query_raw.obs[LABEL], mapped.obs[f"{LABEL}_predicted"], known
        )
    atlas.extend(mapped)

    assert scores["running"]["accuracy"] >= 0.8
    assert scores["running"]["macro_f1"] >= 0.5
    assert scores["balanced"]["accuracy"] >= 0.85
    assert scores["balanced"]["macro_f1"] >= 0.65
    assert atlas.adata.n_obs == reference.n_obs + query_raw.n_obs
    np.testing.assert_array_equal(atlas.adata.obsm["X_scalex"][: reference.n_obs], before)


def test_full_training_mixes_lung_batches_without_merging_lines():
    # panel.md, lung cell lines: batch entropy mixing 0.661 (PCA 0.442), over-correction 0.031
    prepared = sx.pp.preprocess(read_shared("cellbench_lung_celllines.h5ad"), batch_key="batch")
    model = train_defaults(prepared.copy())
    latent = model.get_latent_representation()
    pca = sc.pp.pca(np.asarray(prepared.X.toarray()), n_comps=50, random_state=0)
    batches, labels = prepared.obs["batch"], prepared.obs[LABEL]

    mixing = sx.metrics.batch_entropy_mixing_score(latent, batches, labels, use_rep=None)
    unintegrated = sx.metrics.batch_entropy_mixing_score(pca, batches, labels, use_rep=None)
    assert mixing >= unintegrated + 0.1
    assert sx.metrics.over_correction_score(latent, labels, use_rep=None) < 0.1


def test_protein_atlas_projects_held_out_studies():
    # projection.md, adt_holdout_studies: 338,406 reference and 84,276 query cells, accuracy
    # 0.760 and macro-F1 0.720 with running statistics after 30,000 iterations
    raw = read_shared("adtnorm_cite_adt_13studies_422k.h5ad")
    held_out = ["10X_pbmc_10k", "stuart_2019", "witkowski_2020"]
    in_query = raw.obs["study_name"].astype(str).isin(held_out).to_numpy()
    reference = sx.pp.preprocess(
        raw[~in_query].copy(), batch_key="batch", profile="ADT", min_features=0
    )
    query_raw = raw[in_query].copy()
    del raw
    model = train_defaults(reference)

    query = model.prepare_query(query_raw, batch_key="batch")
    reference.obsm["X_scalex"] = model.get_latent_representation()
    query.obsm["X_scalex"] = model.get_latent_representation(query)
    assert query.obsm["X_scalex"].shape == (query_raw.n_obs, 10)
    labels = sx.tl.transfer_labels(reference, query, LABEL)
    scores = sx.tl.label_transfer_scores(
        query_raw.obs[LABEL], labels["label"], set(reference.obs[LABEL])
    )
    assert scores["accuracy"] >= 0.7
    assert scores["macro_f1"] >= 0.65
