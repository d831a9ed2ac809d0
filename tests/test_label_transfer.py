from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scalex_scvi as sx


def _blobs(seed=0, n=60):
    rng = np.random.default_rng(seed)
    centres = {"A": [0, 0], "B": [10, 0], "C": [0, 10]}
    emb, labels = [], []
    for label, centre in centres.items():
        emb.append(rng.normal(centre, 0.5, size=(n, 2)))
        labels += [label] * n
    return np.vstack(emb).astype(np.float32), np.array(labels)


def test_knn_transfer_recovers_clusters_and_calls_far_cells_unknown():
    emb, labels = _blobs()
    ref = AnnData(obs=pd.DataFrame({"ct": labels}, index=[f"r{i}" for i in range(len(labels))]))
    ref.obsm["X_scalex"] = emb
    query_emb = np.array(
        [[0.1, -0.2], [9.8, 0.3], [0.2, 9.9], [30.0, 30.0], [5.0, 0.0]], dtype=np.float32
    )
    query = AnnData(obs=pd.DataFrame(index=[f"q{i}" for i in range(5)]))
    query.obsm["X_scalex"] = query_emb
    before = query.copy()
    result = sx.tl.transfer_labels(ref, query, "ct")
    assert list(result.index) == list(query.obs_names)
    assert list(result["label"][:3]) == ["A", "B", "C"]
    np.testing.assert_allclose(result["probability"][:3], 1.0)
    np.testing.assert_allclose(result["uncertainty"][:3], 0.0, atol=1e-12)
    assert result["label"].iloc[3] == "Unknown"  # far from every reference cell
    assert result["best_label"].iloc[3] in {"A", "B", "C"}
    assert result["label"].iloc[4] == "Unknown"  # half-way between A and B: too far as well
    assert list(query.obs.columns) == list(before.obs.columns)  # query not modified


def test_uncertainty_threshold_calls_mixed_neighbourhoods_unknown():
    emb = np.array([[0, 0], [0, 0.1], [0.1, 0], [0.1, 0.1]], dtype=np.float32)
    clf = sx.tl.KNNLabelTransfer(n_neighbors=4, uncertainty_threshold=0.3, distance_quantile=None)
    clf.fit(emb, ["A", "A", "B", "B"])
    out = clf.predict(np.array([[0.05, 0.05]], dtype=np.float32))
    assert out["uncertainty"].iloc[0] == pytest.approx(0.5, abs=1e-6)
    assert out["label"].iloc[0] == "Unknown"
    # a distance-weighted vote: the nearer neighbour's label wins
    out = clf.predict(np.array([[0.0, 0.02]], dtype=np.float32))
    assert out["best_label"].iloc[0] == "A"


def test_missing_labels_are_ignored_and_errors():
    emb, labels = _blobs(n=10)
    labels = labels.astype(object)
    labels[:10] = None
    clf = sx.tl.KNNLabelTransfer().fit(emb, labels)
    assert set(clf.categories_) == {"B", "C"}
    with pytest.raises(RuntimeError):
        sx.tl.KNNLabelTransfer().predict(emb)
    with pytest.raises(ValueError):
        sx.tl.KNNLabelTransfer(uncertainty_threshold=2)


def test_confusion_matrix_and_scores_on_a_hand_case():
    truth = ["A", "A", "B", "B", "N"]
    pred = ["A", "B", "B", "B", "Unknown"]
    cm = sx.tl.confusion_matrix(truth, pred, normalize=None)
    assert cm.loc["A", "A"] == 1 and cm.loc["A", "B"] == 1 and cm.loc["N", "Unknown"] == 1
    norm = sx.tl.confusion_matrix(truth, pred)
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)
    scores = sx.tl.label_transfer_scores(truth, pred, reference_labels=["A", "B"])
    assert scores["accuracy"] == pytest.approx(3 / 4)
    # F1(A) = 2*1*0.5/(1.5) = 2/3 ; F1(B) = 2*(2/3)*1/(5/3) = 0.8
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores["unknown_rate_novel"] == 1.0 and scores["unknown_rate_known"] == 0.0
    assert scores["n_novel"] == 1
    perfect = sx.tl.label_transfer_scores(["A", "B"], ["A", "B"])
    assert (
        perfect["ari"] == 1.0 and perfect["nmi"] == 1.0 and np.isnan(perfect["unknown_rate_novel"])
    )


def test_plots_draw(tmp_path):
    import matplotlib as mpl

    mpl.use("Agg")
    emb, labels = _blobs(n=5)
    ax = sx.pl.projection(emb, emb[:4] + 0.1, ["A", "Unknown", "B", "A"], title="t")
    assert len(ax.collections) == 4  # reference + 3 query groups
    ax = sx.pl.confusion_matrix(sx.tl.confusion_matrix(labels, labels))
    ax.figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0
