from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData

import scalex_scvi as sx


def _lattice_twins(n_positions=200):
    """Each lattice position holds one cell of batch A and one of batch B (exact mixing)."""
    positions = np.repeat(np.arange(n_positions, dtype=float), 2)[:, None]
    batches = np.tile(["A", "B"], n_positions)
    return positions, batches


def test_entropy_perfect_mixing_is_one():
    data, batches = _lattice_twins()
    # a cell, its twin and 7 whole shells of 4 neighbours: 15 A + 15 B in every neighbourhood
    # away from the ends; sample the interior only by trimming the ends
    keep = (data[:, 0] >= 10) & (data[:, 0] < 190)
    score = sx.metrics.batch_entropy_mixing_score(
        data[keep], batches[keep], n_neighbors=29, n_pools=5, n_samples_per_pool=50
    )
    # trimming keeps every neighbourhood of interior cells whole except near the new ends
    assert score > 0.999


def test_entropy_no_mixing_is_zero_and_corrects_batch_sizes():
    rng = np.random.default_rng(0)
    separated = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(100, 1, (300, 2))])
    batches = np.array(["A"] * 100 + ["B"] * 300)
    assert sx.metrics.batch_entropy_mixing_score(separated, batches) == pytest.approx(0.0)
    # unequal batch sizes, fully mixed: each neighbourhood holds 1/4 A, 3/4 B = global shares
    mixed = rng.normal(0, 1, (4000, 2))
    batches = rng.choice(["A", "B"], size=4000, p=[0.25, 0.75])
    score = sx.metrics.batch_entropy_mixing_score(mixed, batches, n_neighbors=100)
    assert 0.95 < score <= 1.0  # the original would top out at ln 2 ~ 0.69


def test_entropy_uses_shared_cell_types_only():
    rng = np.random.default_rng(1)
    mixed = rng.normal(0, 1, (400, 2))
    batches = np.array(["A", "B"] * 200)
    labels = np.array(["T"] * 400, dtype=object)
    # a batch-specific type far away: without the label filter it would lower the score
    private = rng.normal(50, 1, (200, 2))
    data = np.vstack([mixed, private])
    batches = np.concatenate([batches, ["A"] * 200])
    labels = np.concatenate([labels, ["Tumour"] * 200])
    with_labels = sx.metrics.batch_entropy_mixing_score(data, batches, labels=labels)
    without = sx.metrics.batch_entropy_mixing_score(data, batches)
    assert with_labels > 0.95 and without < with_labels - 0.2


def test_over_correction_known_values():
    rng = np.random.default_rng(0)
    # two separated clusters, each of one type: no neighbour of another type
    data = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(10, 0.1, (50, 2))])
    labels = np.array(["a"] * 50 + ["b"] * 50)
    assert sx.metrics.over_correction_score(data, labels, n_neighbors=20) == 0.0
    # one cluster holding 50 a + 50 b cells: with k = 99 (all others), a cell has 50 of
    # 99 neighbours of the other type
    merged = rng.normal(0, 0.1, (100, 2))
    score = sx.metrics.over_correction_score(merged, labels, n_neighbors=99)
    assert score == pytest.approx(50 / 99)


def test_over_correction_floor_is_reached_by_separated_types():
    rng = np.random.default_rng(0)
    # types of 30 and 10 cells, k = 20: a cell of the small type has at least 20 - 9 = 11
    # neighbours of the other type; the large type none
    labels = np.array(["a"] * 30 + ["b"] * 10)
    floor = sx.metrics.over_correction_floor(labels, n_neighbors=20)
    assert floor == pytest.approx(10 * 11 / 20 / 40)
    separated = np.vstack([rng.normal(0, 0.1, (30, 2)), rng.normal(10, 0.1, (10, 2))])
    assert sx.metrics.over_correction_score(separated, labels, n_neighbors=20) == pytest.approx(
        floor
    )
    # any other embedding scores at least the floor
    for _ in range(5):
        mixed = rng.normal(0, 1, (40, 2))
        assert sx.metrics.over_correction_score(mixed, labels, n_neighbors=20) >= floor
    # k capped at the number of cells minus one, as in the score: with k = 39 a cell of "a"
    # has 10 and a cell of "b" 30 neighbours of the other type
    assert sx.metrics.over_correction_floor(labels, n_neighbors=500) == pytest.approx(
        (30 * 10 + 10 * 30) / 39 / 40
    )
    assert sx.metrics.over_correction_floor(labels[:20]) == 0.0
    assert np.isnan(sx.metrics.over_correction_floor(["a"]))
    assert sx.metrics.over_correction_floor(["a", "b", "c"]) == 1.0
    with pytest.raises(ValueError, match="missing"):
        sx.metrics.over_correction_floor(np.array(["a", None, "b"], dtype=object))
    with pytest.raises(TypeError, match="column name"):
        sx.metrics.over_correction_floor("cell_type")


def test_anndata_input_and_errors():
    rng = np.random.default_rng(0)
    adata = AnnData(obs={"batch": ["A", "B"] * 50, "ct": ["x"] * 100})
    adata.obsm["X_scalex"] = rng.normal(size=(100, 3))
    score = sx.metrics.batch_entropy_mixing_score(adata, "batch", labels="ct")
    assert 0.8 < score <= 1.0
    assert sx.metrics.over_correction_score(adata, "ct") == 0.0
    with pytest.raises(TypeError):
        sx.metrics.over_correction_score(adata.obsm["X_scalex"], "ct")
    with pytest.raises(ValueError):
        sx.metrics.over_correction_score(adata.obsm["X_scalex"], ["x"] * 3)
    one_batch = sx.metrics.batch_entropy_mixing_score(adata.obsm["X_scalex"], ["A"] * 100)
    assert np.isnan(one_batch)
    unlabelled = adata.copy()
    unlabelled.obs["ct"] = unlabelled.obs["ct"].astype(object)
    unlabelled.obs.iloc[:4, unlabelled.obs.columns.get_loc("ct")] = None
    with pytest.raises(ValueError, match="labels has 4 missing values"):
        sx.metrics.over_correction_score(unlabelled, "ct")  # not scored as a type "None"
    with pytest.raises(ValueError, match="batches has 1 missing values"):
        sx.metrics.batch_entropy_mixing_score(adata, [np.nan] + ["A", "B"] * 49 + ["A"])


def test_clustering_and_lisi_on_separated_types():
    rng = np.random.default_rng(0)
    data = np.vstack([rng.normal(c, 0.3, (60, 4)) for c in (0, 5, 10)])
    labels = np.repeat(["a", "b", "c"], 60)
    batches = np.tile(["A", "B"], 90)
    leiden = sx.metrics.leiden_ari_nmi(data, labels, resolution=0.2, use_rep=None)
    assert leiden["leiden_ari"] == pytest.approx(1.0) and leiden["leiden_nmi"] == pytest.approx(
        1.0
    )
    sil = sx.metrics.silhouette_scores(data, labels, batches)
    assert sil["silhouette_cell_type"] > 0.8 and sil["silhouette_batch"] > 0.8
    lisi = sx.metrics.lisi_scores(data, batches, labels, n_neighbors=30)
    assert lisi["clisi"] > 0.95 and lisi["ilisi"] > 0.8


def test_leiden_from_8192_cells_where_scanpy_searches_with_pynndescent():
    # scanpy 1.11 failed on pynndescent 0.7's csr_array output from 8,192 cells on
    from scalex_scvi._scanpy_compat import PYNNDESCENT_FROM

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=5, size=(4, 10))
    labels = np.repeat(np.arange(4), PYNNDESCENT_FROM // 4 + 50)
    data = centers[labels] + rng.normal(size=(len(labels), 10))
    assert len(labels) >= PYNNDESCENT_FROM
    leiden = sx.metrics.leiden_ari_nmi(data, labels.astype(str), use_rep=None)
    assert leiden["leiden_ari"] == pytest.approx(1.0) and leiden["n_leiden_clusters"] == 4


def test_scib_benchmark_without_shared_cell_types():
    # no cell type in both batches (the partial-overlap series at 0 shared types)
    rng = np.random.default_rng(0)
    batches = np.repeat(["a", "b"], 60)
    labels = np.repeat(["t1", "t2", "t3", "t4"], 30)
    emb = rng.normal(size=(120, 5)) + np.repeat(np.arange(4), 30)[:, None] * 3
    with pytest.warns(UserWarning, match="batch silhouette is left out"):
        scores = sx.metrics.scib_benchmark({"emb": emb}, batches, labels, pre_integrated=emb)
    assert np.isfinite(scores.loc["emb", "Total"])
    assert 0 <= scores.loc["emb", "Bio conservation"] <= 1


def test_silhouette_batch_undefined_without_shared_cell_types():
    rng = np.random.default_rng(0)
    batches = np.repeat(["a", "b"], 60)
    labels = np.repeat(["t1", "t2", "t3", "t4"], 30)
    emb = rng.normal(size=(120, 5)) + np.repeat(np.arange(4), 30)[:, None] * 3
    sil = sx.metrics.silhouette_scores(emb, labels, batches, use_rep=None)
    assert np.isnan(sil["silhouette_batch"])
    assert 0 < sil["silhouette_cell_type"] <= 1
