from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from sklearn.neighbors import NearestNeighbors

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


def test_cosine_metric_ignores_the_distance_from_the_origin():
    rng = np.random.default_rng(0)
    directions = {"A": [1.0, 0.0, 0.0], "B": [0.0, 1.0, 0.0], "C": [0.0, 0.0, 1.0]}
    emb, labels = [], []
    for label, direction in directions.items():  # each type a ray: one direction, any length
        lengths = rng.uniform(1.0, 2.0, size=(60, 1))
        emb.append(lengths * np.asarray(direction) + rng.normal(0, 0.02, size=(60, 3)))
        labels += [label] * 60
    emb, labels = np.vstack(emb).astype(np.float32), np.array(labels)
    query = np.array([[0.1, 0.1, 8.0], [8.0, 0.1, 0.0], [0.0, 0.5, 0.0]], dtype=np.float32)
    cosine = sx.tl.KNNLabelTransfer(metric="cosine").fit(emb, labels).predict(query)
    assert list(cosine["label"]) == ["C", "A", "B"]
    rescaled = sx.tl.KNNLabelTransfer(metric="cosine").fit(emb, labels).predict(query * 0.3)
    pd.testing.assert_frame_equal(rescaled, cosine, rtol=1e-5, atol=1e-6)
    euclidean = sx.tl.KNNLabelTransfer().fit(emb, labels).predict(query)
    assert list(euclidean["label"][:2]) == ["Unknown", "Unknown"]  # far out along the rays
    original = emb.copy()
    sx.tl.KNNLabelTransfer(metric="cosine").fit(emb, labels).predict(query)
    np.testing.assert_array_equal(emb, original)  # the caller's arrays are not scaled
    with pytest.raises(ValueError, match="metric"):
        sx.tl.KNNLabelTransfer(metric="manhattan")


def test_subsample_refits_on_a_draw_of_the_reference():
    emb, labels = _blobs(n=200)
    with pytest.raises(RuntimeError, match="fit"):
        sx.tl.KNNLabelTransfer().subsample(10)
    classifier = sx.tl.KNNLabelTransfer(metric="cosine", n_neighbors=5).fit(emb + 20, labels)
    assert classifier.subsample(len(emb)) is classifier  # no smaller: the same classifier
    with pytest.raises(ValueError, match="n_cells"):
        classifier.subsample(0)
    smaller = classifier.subsample(90, seed=1)
    assert smaller is not classifier and len(smaller.codes_) == 90
    assert (smaller.metric, smaller.n_neighbors) == ("cosine", 5)
    assert set(smaller.categories_) == {"A", "B", "C"}
    # drawn cells keep their own labels, and the same seed draws the same cells
    drawn = smaller._embedding
    rows = [
        np.flatnonzero(np.isclose(classifier._embedding, row, atol=1e-6).all(axis=1))[0]
        for row in drawn
    ]
    parent_labels = classifier.categories_[classifier.codes_[rows]]
    assert (parent_labels == smaller.categories_[smaller.codes_]).all()
    np.testing.assert_array_equal(classifier.subsample(90, seed=1)._embedding, drawn)
    assert not np.array_equal(classifier.subsample(90, seed=2)._embedding, drawn)
    # its cutoff is recalibrated: neighbours among fewer cells lie farther
    assert smaller.distance_cutoff_ > classifier.distance_cutoff_
    query = np.array([[20.1, 20.0], [30.0, 20.2], [20.0, 30.1]], dtype=np.float32)
    assert list(smaller.predict(query)["label"]) == list(classifier.predict(query)["label"])


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
    with pytest.raises(ValueError, match=r"shape \(5, 1\), the reference's 2 dimensions"):
        clf.predict(emb[:5, :1])


def _two_batches(seed=0, n=200, shift=1.0):
    """Types A and B at (0, 0) and (10, 0), seen in two batches offset by ``shift`` on y."""
    rng = np.random.default_rng(seed)
    emb, labels, batches = [], [], []
    for batch, offset in (("b1", 0.0), ("b2", shift)):
        for label, centre in (("A", [0.0, 0.0]), ("B", [10.0, 0.0])):
            emb.append(rng.normal([centre[0], centre[1] + offset], 0.1, size=(n, 2)))
            labels += [label] * n
            batches += [batch] * n
    return np.vstack(emb).astype(np.float32), np.array(labels), np.array(batches)


def test_cutoff_calibrated_on_other_batches():
    emb, labels, batches = _two_batches()
    within = sx.tl.KNNLabelTransfer().fit(emb, labels)
    across = sx.tl.KNNLabelTransfer(calibration="other_batches").fit(emb, labels, batches=batches)
    # a cell's nearest cells of the other batch lie about one shift away
    assert across.distance_cutoff_ > 0.8 > 0.3 > within.distance_cutoff_
    # a third batch, shifted like the second: known types, not called Unknown across batches
    query = np.array([[0.0, -1.0], [10.0, -1.0], [0.0, 30.0]], dtype=np.float32)
    assert list(within.predict(query)["label"]) == ["Unknown"] * 3
    assert list(across.predict(query)["label"]) == ["A", "B", "Unknown"]
    # the same calibration through transfer_labels, with the batch column
    names = [f"r{i}" for i in range(len(labels))]
    ref = AnnData(obs=pd.DataFrame({"ct": labels, "batch": batches}, index=names))
    ref.obsm["X_scalex"] = emb
    new = AnnData(obs=pd.DataFrame(index=["q0", "q1", "q2"]))
    new.obsm["X_scalex"] = query
    result = sx.tl.transfer_labels(ref, new, "ct", calibration="other_batches", batch_key="batch")
    assert list(result["label"]) == ["A", "B", "Unknown"]


def test_cutoff_calibration_errors_and_fallback():
    emb, labels, batches = _two_batches(n=20)
    clf = sx.tl.KNNLabelTransfer(calibration="other_batches")
    with pytest.raises(ValueError, match="needs the batches"):
        clf.fit(emb, labels)
    with pytest.raises(ValueError, match="batches for"):
        clf.fit(emb, labels, batches=batches[:-1])
    with pytest.raises(ValueError, match="calibration"):
        sx.tl.KNNLabelTransfer(calibration="batches")
    # labelled cells from one batch only: the reference calibration, with a warning
    labels = labels.astype(object)
    labels[batches == "b2"] = None
    with pytest.warns(UserWarning, match="one batch"):
        clf.fit(emb, labels, batches=batches)
    within = sx.tl.KNNLabelTransfer().fit(emb, labels)
    assert clf.distance_cutoff_ == within.distance_cutoff_


def _compact_and_diffuse(seed=0, n=200):
    """Type A, compact (sd 0.1) at (0, 0), and type B, diffuse (sd 1) at (20, 0)."""
    rng = np.random.default_rng(seed)
    emb = np.vstack([rng.normal([0, 0], 0.1, (n, 2)), rng.normal([20, 0], 1.0, (n, 2))])
    return emb.astype(np.float32), np.array(["A"] * n + ["B"] * n)


def test_cutoff_per_label():
    emb, labels = _compact_and_diffuse()
    common = sx.tl.KNNLabelTransfer().fit(emb, labels)
    per_label = sx.tl.KNNLabelTransfer(per_label_cutoff=True).fit(emb, labels)
    # each label's cutoff is the 0.99 quantile of its own cells' mean distance to their 15
    # nearest reference cells (the cell itself left out), computed here by hand
    distances, _ = NearestNeighbors(n_neighbors=16).fit(emb).kneighbors(emb)
    own = distances[:, 1:].mean(axis=1)
    for label in ("A", "B"):
        expected = np.quantile(own[labels == label], 0.99)
        assert per_label.label_cutoffs_[label] == pytest.approx(expected, rel=1e-6)
    assert per_label.distance_cutoff_ == common.distance_cutoff_
    assert (common.label_cutoffs_ == common.distance_cutoff_).all()
    assert per_label.label_cutoffs_["A"] < common.distance_cutoff_ < per_label.label_cutoffs_["B"]
    # a cell 1.0 from the compact type: within the common cutoff, beyond A's own
    query = np.array([[1.0, 0.0], [0.0, 0.0], [20.0, 0.0]], dtype=np.float32)
    assert list(common.predict(query)["label"]) == ["A", "A", "B"]
    out = per_label.predict(query)
    assert list(out["label"]) == ["Unknown", "A", "B"]
    assert list(out["best_label"]) == ["A", "A", "B"]
    np.testing.assert_array_equal(
        out["distance_cutoff"], per_label.label_cutoffs_[["A", "A", "B"]].to_numpy()
    )
    # labels with fewer cells than min_label_cells keep the common cutoff
    few = sx.tl.KNNLabelTransfer(per_label_cutoff=True, min_label_cells=201).fit(emb, labels)
    assert (few.label_cutoffs_ == few.distance_cutoff_).all()
    # cutoffs computed before give the same calls (how an atlas is loaded)
    again = sx.tl.KNNLabelTransfer(per_label_cutoff=True).fit(
        emb,
        labels,
        distance_cutoff=per_label.distance_cutoff_,
        label_cutoffs=per_label.label_cutoffs_.to_dict(),
    )
    pd.testing.assert_frame_equal(again.predict(query), out)
    # the same rule through transfer_labels
    names = [f"r{i}" for i in range(len(labels))]
    ref = AnnData(obs=pd.DataFrame({"ct": labels}, index=names))
    ref.obsm["X_scalex"] = emb
    new = AnnData(obs=pd.DataFrame(index=["q0", "q1", "q2"]))
    new.obsm["X_scalex"] = query
    result = sx.tl.transfer_labels(ref, new, "ct", per_label_cutoff=True)
    assert list(result["label"]) == ["Unknown", "A", "B"]
    with pytest.raises(ValueError, match="needs distance_cutoff"):
        sx.tl.KNNLabelTransfer().fit(emb, labels, label_cutoffs={"A": 1.0})
    with pytest.raises(ValueError, match="min_label_cells"):
        sx.tl.KNNLabelTransfer(min_label_cells=0)


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


def test_macro_f1_difference_matches_the_scores_and_brackets_them():
    rng = np.random.default_rng(0)
    truth = rng.choice(["A", "B", "C", "N"], size=400, p=[0.5, 0.3, 0.15, 0.05])
    good = truth.copy()
    good[rng.random(400) < 0.1] = "A"
    poor = truth.copy()
    poor[rng.random(400) < 0.4] = "Unknown"
    known = ["A", "B", "C"]
    out = sx.tl.macro_f1_difference(truth, good, poor, reference_labels=known, seed=1)
    expected = (
        sx.tl.label_transfer_scores(truth, good, reference_labels=known)["macro_f1"]
        - sx.tl.label_transfer_scores(truth, poor, reference_labels=known)["macro_f1"]
    )
    assert out["difference"] == pytest.approx(expected)
    assert out["n_cells"] == int(np.isin(truth, known).sum())
    assert 0 < out["low"] < out["difference"] < out["high"]
    # the same labels twice: no difference in any resample
    same = sx.tl.macro_f1_difference(truth, good, good)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "n_cells": 400}
    # one cell of a rare type flipped: a level call, the interval spans 0
    rare = np.array(["A"] * 200 + ["B"] * 2)
    flipped = rare.copy()
    flipped[-1] = "A"
    tiny = sx.tl.macro_f1_difference(rare, rare, flipped)
    assert tiny["difference"] > 0.1 and tiny["low"] <= 0 <= tiny["high"]
    with pytest.raises(ValueError, match="same length"):
        sx.tl.macro_f1_difference(truth, good[:-1], poor)
    with pytest.raises(ValueError, match="known type"):
        sx.tl.macro_f1_difference(["N"], ["A"], ["A"], reference_labels=["A"])


def test_plots_draw(tmp_path):
    import matplotlib as mpl

    mpl.use("Agg")
    emb, labels = _blobs(n=5)
    ax = sx.pl.projection(emb, emb[:4] + 0.1, ["A", "Unknown", "B", "A"], title="t")
    assert len(ax.collections) == 4  # reference + 3 query groups
    ax = sx.pl.confusion_matrix(sx.tl.confusion_matrix(labels, labels))
    ax.figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_composition_weights_hand_computed():
    reference = pd.Series({"A": 0.5, "B": 0.25, "C": 0.25})
    labels = ["A", "A", "A", "B", "Unknown", "D", "A", "C"]
    groups = ["x", "x", "x", "x", "x", "x", "y", "y"]
    weights = sx.tl.composition_weights(labels, reference, groups)
    # group x: A is 3/4 of the counted cells (reference 0.5), B 1/4 (0.25); Unknown and D weigh 0
    # group y: A and C are 1/2 each (0.5 and 0.25)
    np.testing.assert_allclose(weights, [2 / 3, 2 / 3, 2 / 3, 1, 0, 0, 1, 0.5])
    for group in ("x", "y"):
        in_group = np.array(groups) == group
        shares = pd.Series(weights[in_group]).groupby(np.array(labels)[in_group]).sum()
        shares = shares[shares > 0] / shares.sum()
        expected = reference[shares.index] / reference[shares.index].sum()
        np.testing.assert_allclose(shares.to_numpy(), expected.to_numpy())
    np.testing.assert_allclose(
        sx.tl.composition_weights(labels[:4], reference), [2 / 3, 2 / 3, 2 / 3, 1]
    )
    with pytest.raises(ValueError, match="groups"):
        sx.tl.composition_weights(labels, reference, groups[:-1])


def test_balanced_latent(trained, reference, query):
    state = {k: v.clone() for k, v in trained.module.state_dict().items()}
    reference_latent = trained.get_latent_representation(reference)
    classifier = sx.tl.KNNLabelTransfer().fit(reference_latent, reference.obs["cell_type"])
    frequencies = reference.obs["cell_type"].value_counts(normalize=True)
    np.testing.assert_allclose(
        classifier.label_frequencies_[frequencies.index].to_numpy(), frequencies.to_numpy()
    )
    statistics = trained.get_hidden_statistics(reference, groups=reference.obs["cell_type"])
    latent, weights = sx.tl.balanced_latent(trained, query, classifier, statistics)
    assert latent.shape == (query.n_obs, 10) and np.isfinite(latent).all()
    running = trained.get_latent_representation(query)
    unknown = (classifier.predict(running)["label"] == "Unknown").to_numpy()
    assert (weights[unknown] == 0).all() and (weights[~unknown] > 0).all()
    assert np.abs(latent - running).mean() > 1e-3
    # the same from the building block, given the running embedding's labels
    adapted, same_weights = sx.tl.adapted_statistics(
        trained, query, classifier.predict(running)["label"], statistics
    )
    np.testing.assert_array_equal(same_weights, weights)
    np.testing.assert_array_equal(
        trained.get_latent_representation(query, batch_norm=adapted), latent
    )
    with pytest.raises(ValueError, match="labels for"):
        sx.tl.adapted_statistics(trained, query, np.array(["T"]), statistics)
    # the same cells in another order: the same embedding per cell
    order = np.random.default_rng(0).permutation(query.n_obs)
    shuffled, _ = sx.tl.balanced_latent(trained, query[order].copy(), classifier, statistics)
    np.testing.assert_allclose(shuffled, latent[order], rtol=1e-4, atol=1e-5)
    # one cell: too few for statistics, the running embedding
    one, _ = sx.tl.balanced_latent(trained, query[:1].copy(), classifier, statistics)
    np.testing.assert_allclose(one, running[:1], rtol=1e-5, atol=1e-6)
    assert sx.tl.adapted_statistics(trained, query[:1].copy(), ["T"], statistics)[0] is None
    # a draw of each batch's cells: no draw where no batch is larger
    largest = query.obs["batch"].value_counts().max()
    whole, _ = sx.tl.balanced_latent(trained, query, classifier, statistics, max_cells=largest)
    np.testing.assert_array_equal(whole, latent)
    drawn, drawn_weights = sx.tl.balanced_latent(
        trained, query, classifier, statistics, max_cells=100, seed=3
    )
    assert 0 < (drawn_weights > 0).sum() <= 100 and drawn_weights.shape == (query.n_obs,)
    sample = query[drawn_weights > 0].copy()
    adapted_sample, _ = sx.tl.adapted_statistics(
        trained,
        sample,
        classifier.predict(trained.get_latent_representation(sample))["label"],
        statistics,
    )
    np.testing.assert_array_equal(
        trained.get_latent_representation(query, batch_norm=adapted_sample), drawn
    )
    again, _ = sx.tl.balanced_latent(trained, query, classifier, statistics, max_cells=100, seed=3)
    np.testing.assert_array_equal(again, drawn)
    assert not np.array_equal(drawn, latent)
    # close to the embedding from every cell: nearer to it than the running one is
    assert np.abs(drawn - latent).mean() < np.abs(running - latent).mean()
    with pytest.raises(ValueError, match="max_cells"):
        sx.tl.balanced_latent(trained, query, classifier, statistics, max_cells=10)
    # nothing of the model or the reference changes
    np.testing.assert_array_equal(trained.get_latent_representation(reference), reference_latent)
    for key, value in trained.module.state_dict().items():
        assert torch.equal(value, state[key]), key
