"""Label transfer by distance-weighted k nearest neighbours in the SCALEX space."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors

UNKNOWN = "Unknown"
_CUTOFF_SAMPLE = 20_000


class KNNLabelTransfer(BaseEstimator):
    """Distance-weighted kNN classifier with an "Unknown" call, fitted once on a reference.

    Neighbours are found exactly with scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors`
    (a KD-tree on the low-dimensional embedding). At 10 dimensions an exact tree is fast (a
    million reference cells index in about a second) and deterministic, where an approximate
    index such as pynndescent brings randomness without a speed benefit.

    Each of the ``n_neighbors`` reference neighbours votes with weight ``1 / (distance + 1e-8)``,
    normalised per query cell; a label's probability is its share of the votes and the
    uncertainty is one minus the probability of the predicted label. A query cell is called
    ``unknown_label`` when its uncertainty exceeds ``uncertainty_threshold`` (its neighbours
    disagree) or when its mean distance to its neighbours exceeds the ``distance_quantile``
    quantile of the reference cells' own mean distances to their neighbours (it lies away from
    every reference type, as a cell type absent from the reference does).

    With ``calibration="other_batches"`` that cutoff is instead the quantile of the reference
    cells' mean distances to their nearest reference cells *of other batches* (``batches``
    given to :meth:`fit`). A query is a batch of its own, and cells of known types lie a little
    farther from the reference than reference cells lie from cells of their own batch; the
    distances across reference batches measure that situation, so fewer query cells of known
    types are called unknown, while a cell farther from the reference than cells of one batch
    lie from the other batches still is.

    With ``per_label_cutoff=True`` each reference label gets its own cutoff: the same quantile,
    taken over the reference cells of that label only (labels with fewer than
    ``min_label_cells`` such cells keep the common cutoff), and a query cell is held to the
    cutoff of its majority label. Compact types (B cells, one cell line) then get a tighter
    cutoff than the diffuse types that set the common quantile, so a new type that lands next to
    a compact one is called unknown more often.

    Parameters
    ----------
    n_neighbors
        Reference neighbours per query cell.
    uncertainty_threshold
        Cells with a larger uncertainty are called unknown; ``1`` disables the rule.
    distance_quantile
        Quantile of the reference's neighbour distances beyond which a cell is called unknown;
        ``None`` disables the rule.
    calibration
        Which neighbour distances of the reference set the cutoff: ``"reference"`` (each cell's
        nearest reference cells) or ``"other_batches"`` (each cell's nearest reference cells of
        other batches; needs ``batches`` in :meth:`fit` and at least two batches, else falls
        back to ``"reference"`` with a warning).
    per_label_cutoff
        One distance cutoff per reference label instead of one for all (see above).
    min_label_cells
        With ``per_label_cutoff``, labels with fewer reference cells in the calibration sample
        keep the common cutoff.
    unknown_label
        Label of cells that are not assigned.
    metric
        ``"euclidean"`` (default) or ``"cosine"``: every embedding (reference and query) is
        first scaled to unit length, so that neighbours are those of the smallest angle and
        distances are chord lengths, ``sqrt(2 (1 - cos))`` (the KD-tree and the distance
        cutoff work as for ``"euclidean"``). A cell's distance from the origin then plays no
        part. On the projection splits (``benchmarks/results/label_metric.md``, seeds 0-2) it
        raised SCALEX's macro-F1 by 0.020 (running statistics) and 0.012 (balanced statistics),
        both above zero by the paired 95 % interval; every projection table was scored with the
        Euclidean default, so that stays the default. An atlas with ``"cosine"`` and balanced
        statistics is the setting recommended for label transfer
        (:meth:`scalex_scvi.Atlas.map`, ``benchmarks/results/label_atlas.md``).

    Notes
    -----
    The defaults were chosen on the SCALEX latents of the projection benchmark
    (``benchmarks/label_threshold.py``, ``benchmarks/results/label_threshold.md``): of the
    settings that call at most 5 % of the query cells of known types "Unknown" (on average over
    the splits), uncertainty 0.7 and distance quantile 0.99 maximise macro-F1 plus the fraction of
    cells of types absent from the reference that are called "Unknown" (0.94 on the lung split
    whose query holds two cell lines the reference lacks; the former default of 0.5 lost 6 % of
    known cells to "Unknown" for no gain there). With one cell type held out of the reference
    at a time (``benchmarks/results/novel_types.md``, seven designs, two seeds) the default
    called 12 % of the held-out cells "Unknown" on average, in SCALEX's space as in scArches': a
    type close to a reference type (NK cells next to CD8 T cells, CD16 next to CD14 monocytes)
    is assigned to it, since only the distance rule fires and its 0.99 quantile is lenient.
    Where new types are expected, lower ``distance_quantile``: at 0.95 the share found rose to
    30 %, for 4.1 % of known cells called "Unknown" and a lower macro-F1 on the projection
    splits (by 0.037, ``benchmarks/results/label_rules.md``, three seeds).
    ``per_label_cutoff=True`` is the cheaper way to find more of them: 25 % found, for 1.25 % of
    known cells and macro-F1 lower by 0.007 on the projection splits, so it is not the default
    either. The 15 neighbours were checked on the same splits and seeds
    (``benchmarks/results/label_neighbors.md``): 5 or 10 scored level with 15 (+0.008 and
    +0.006 macro-F1, not distinguishable), 50 lower (by 0.028), for SCALEX and scArches alike.
    """

    def __init__(
        self,
        n_neighbors: int = 15,
        uncertainty_threshold: float = 0.7,
        distance_quantile: float | None = 0.99,
        calibration: Literal["reference", "other_batches"] = "reference",
        per_label_cutoff: bool = False,
        min_label_cells: int = 20,
        unknown_label: str = UNKNOWN,
        metric: Literal["euclidean", "cosine"] = "euclidean",
    ):
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', not {metric!r}.")
        if calibration not in ("reference", "other_batches"):
            raise ValueError(
                f"calibration must be 'reference' or 'other_batches', not {calibration!r}."
            )
        if not 0 <= uncertainty_threshold <= 1:
            raise ValueError("uncertainty_threshold must lie in [0, 1].")
        if distance_quantile is not None and not 0 < distance_quantile <= 1:
            raise ValueError("distance_quantile must lie in (0, 1] or be None.")
        if min_label_cells < 1:
            raise ValueError("min_label_cells must be at least 1.")
        self.n_neighbors = n_neighbors
        self.uncertainty_threshold = uncertainty_threshold
        self.distance_quantile = distance_quantile
        self.calibration = calibration
        self.per_label_cutoff = per_label_cutoff
        self.min_label_cells = min_label_cells
        self.unknown_label = unknown_label
        self.metric = metric

    def _prepared(self, embedding: np.ndarray) -> np.ndarray:
        """``embedding`` as float32, rows scaled to unit length for ``metric="cosine"``."""
        embedding = np.asarray(embedding, dtype=np.float32)
        if self.metric == "cosine" and embedding.ndim == 2:
            norms = np.linalg.norm(embedding, axis=1, keepdims=True)
            embedding = embedding / np.where(norms > 0, norms, 1.0)  # a new array
        return embedding

    def fit(
        self,
        embedding: np.ndarray,
        labels: np.ndarray | pd.Series,
        seed: int = 0,
        distance_cutoff: float | None = None,
        batches: np.ndarray | pd.Series | None = None,
        label_cutoffs: Mapping[str, float] | None = None,
    ) -> KNNLabelTransfer:
        """Index the reference cells; cells with a missing label are left out.

        Parameters
        ----------
        embedding
            Reference embedding, shape ``(n_cells, n_dims)``.
        labels
            Label of each reference cell.
        seed
            Seed of the subsample (20,000 cells) on which the distance cutoff is estimated for
            larger references.
        distance_cutoff
            A cutoff computed before (e.g. by a saved atlas), used instead of estimating it.
        batches
            Batch of each reference cell, for ``calibration="other_batches"``.
        label_cutoffs
            With ``distance_cutoff``: cutoffs per label computed before (``label_cutoffs_`` of
            a fitted classifier); labels not in it keep ``distance_cutoff``.

        Returns
        -------
        The classifier, with ``distance_cutoff_`` (the common cutoff) and ``label_cutoffs_`` (a
        Series of each label's cutoff; all equal to ``distance_cutoff_`` unless
        ``per_label_cutoff``) set.
        """
        if label_cutoffs is not None and distance_cutoff is None:
            raise ValueError("label_cutoffs needs distance_cutoff.")
        labels = pd.Series(np.asarray(labels, dtype=object))
        keep = labels.notna().to_numpy()
        if not keep.any():
            raise ValueError("The reference has no labelled cell.")
        embedding = self._prepared(embedding)[keep]
        self.categories_, self.codes_ = np.unique(labels[keep].astype(str), return_inverse=True)
        self.n_neighbors_ = min(self.n_neighbors, len(self.codes_))
        self.index_ = NearestNeighbors(n_neighbors=self.n_neighbors_).fit(embedding)
        self._embedding = embedding  # for subsample()
        self.label_frequencies_ = pd.Series(
            np.bincount(self.codes_) / len(self.codes_), index=self.categories_
        )
        self.distance_cutoff_ = np.inf
        self.label_cutoffs_ = pd.Series(np.inf, index=self.categories_)
        if distance_cutoff is not None:
            self.distance_cutoff_ = float(distance_cutoff)
            self.label_cutoffs_[:] = self.distance_cutoff_
            if label_cutoffs is not None:
                given = pd.Series(label_cutoffs, dtype=float)
                shared = given.index.intersection(self.label_cutoffs_.index)
                self.label_cutoffs_[shared] = given[shared]
        elif self.distance_quantile is not None and len(self.codes_) > 1:
            rng = np.random.default_rng(seed)
            sample = np.arange(len(embedding))
            if len(embedding) > _CUTOFF_SAMPLE:
                sample = np.sort(rng.choice(len(embedding), _CUTOFF_SAMPLE, replace=False))
            kept = self._batches_for_calibration(batches, keep)
            if kept is not None:
                own = self._distances_to_other_batches(embedding, kept, sample)
            else:
                k = min(self.n_neighbors_ + 1, len(embedding))
                distances, _ = self.index_.kneighbors(embedding[sample], n_neighbors=k)
                own = distances[:, 1:].mean(axis=1)  # the first neighbour is the cell itself
            self.distance_cutoff_ = float(np.quantile(own, self.distance_quantile))
            self.label_cutoffs_[:] = self.distance_cutoff_
            if self.per_label_cutoff:
                self.label_cutoffs_.update(self._cutoffs_per_label(own, self.codes_[sample]))
        return self

    def _cutoffs_per_label(self, own: np.ndarray, codes: np.ndarray) -> pd.Series:
        """The quantile of each label's own distances, for labels with enough sampled cells."""
        grouped = pd.Series(own).groupby(self.categories_[codes])
        sizes = grouped.size()
        cutoffs = grouped.quantile(self.distance_quantile)
        return cutoffs[sizes >= self.min_label_cells]

    def _batches_for_calibration(
        self, batches: np.ndarray | pd.Series | None, keep: np.ndarray
    ) -> np.ndarray | None:
        """Batches of the labelled cells for a cutoff across batches, else ``None``.

        Warns where the labelled cells come from one batch.
        """
        if self.calibration == "reference":
            return None
        if batches is None:
            raise ValueError('calibration="other_batches" needs the batches of the reference.')
        if len(batches) != len(keep):
            raise ValueError(f"Got {len(batches)} batches for {len(keep)} reference cells.")
        kept = pd.Series(np.asarray(batches, dtype=object)[keep]).astype(str).to_numpy()
        if len(np.unique(kept)) < 2:
            warnings.warn(
                'The labelled reference cells come from one batch; calibration="other_batches" '
                'falls back to "reference".',
                UserWarning,
                stacklevel=3,
            )
            return None
        return kept

    def _distances_to_other_batches(
        self, embedding: np.ndarray, batches: np.ndarray, sample: np.ndarray
    ) -> np.ndarray:
        """Mean distance of each sampled cell to its nearest reference cells of other batches."""
        own = np.empty(len(sample))
        for batch in np.unique(batches[sample]):
            inside = batches == batch
            cells = batches[sample] == batch
            others = embedding[~inside]
            k = min(self.n_neighbors_, len(others))
            distances, _ = (
                NearestNeighbors(n_neighbors=k).fit(others).kneighbors(embedding[sample[cells]])
            )
            own[cells] = distances.mean(axis=1)
        return own

    def subsample(self, n_cells: int = 20_000, seed: int = 0) -> KNNLabelTransfer:
        """A classifier with the same settings, fitted on a random draw of the reference cells.

        Finding neighbours among fewer reference cells is faster: on 338,406 protein cells,
        20,000 of them label a query cell about 8 times as fast. The draw keeps the reference's
        type composition (up to sampling) and the distance cutoffs are recalibrated on it from
        the drawn cells' own neighbours (``calibration="reference"``; the neighbours of a
        sparser reference lie farther). :func:`scalex_scvi.tl.balanced_latent` uses it to label
        the cells that set a query batch's statistics.

        Parameters
        ----------
        n_cells
            Reference cells to keep.
        seed
            Seed of the draw and of the calibration sample.

        Returns
        -------
        A new fitted classifier, or this one where the reference has at most ``n_cells``
        labelled cells.
        """
        if not hasattr(self, "index_"):
            raise RuntimeError("Call fit() before subsample().")
        if n_cells < 1:
            raise ValueError("n_cells must be at least 1.")
        if len(self.codes_) <= n_cells:
            return self
        draw = np.sort(
            np.random.default_rng(seed).choice(len(self.codes_), n_cells, replace=False)
        )
        settings = {**self.get_params(), "calibration": "reference"}
        return KNNLabelTransfer(**settings).fit(
            self._embedding[draw], self.categories_[self.codes_[draw]], seed=seed
        )

    def predict(self, embedding: np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
        """Labels of query cells.

        Parameters
        ----------
        embedding
            Query embedding, shape ``(n_cells, n_dims)``.
        index
            Index of the returned DataFrame (e.g. the query's ``obs_names``).

        Returns
        -------
        DataFrame with columns ``label`` (after the unknown calls), ``best_label`` (the
        majority reference label), ``probability``, ``uncertainty``, ``mean_distance`` and
        ``distance_cutoff`` (the cutoff the cell was held to: that of its majority label).
        """
        if not hasattr(self, "index_"):
            raise RuntimeError("Call fit() before predict().")
        embedding = self._prepared(embedding)
        width = self.index_.n_features_in_
        if embedding.ndim != 2 or embedding.shape[1] != width:
            raise ValueError(
                f"The query embedding has shape {embedding.shape}, the reference's {width} "
                "dimensions; embed both with the same model."
            )
        distances, neighbours = self.index_.kneighbors(embedding)
        weights = 1.0 / (distances + 1e-8)
        weights /= weights.sum(axis=1, keepdims=True)
        votes = np.zeros((len(embedding), len(self.categories_)))
        np.add.at(votes, (np.arange(len(embedding))[:, None], self.codes_[neighbours]), weights)
        best = votes.argmax(axis=1)
        probability = np.clip(votes[np.arange(len(best)), best], 0.0, 1.0)
        uncertainty = 1.0 - probability
        mean_distance = distances.mean(axis=1)
        cutoff = self.label_cutoffs_.to_numpy()[best]  # that of each cell's majority label
        unknown = (uncertainty > self.uncertainty_threshold) | (mean_distance > cutoff)
        best_label = self.categories_[best]
        return pd.DataFrame(
            {
                "label": np.where(unknown, self.unknown_label, best_label),
                "best_label": best_label,
                "probability": probability,
                "uncertainty": uncertainty,
                "mean_distance": mean_distance,
                "distance_cutoff": cutoff,
            },
            index=index,
        )


def transfer_labels(
    reference: AnnData,
    query: AnnData,
    label_key: str,
    use_rep: str = "X_scalex",
    n_neighbors: int = 15,
    uncertainty_threshold: float = 0.7,
    distance_quantile: float | None = 0.99,
    calibration: Literal["reference", "other_batches"] = "reference",
    batch_key: str | None = None,
    per_label_cutoff: bool = False,
    unknown_label: str = UNKNOWN,
    metric: Literal["euclidean", "cosine"] = "euclidean",
) -> pd.DataFrame:
    """Transfer reference labels to query cells by distance-weighted kNN.

    See :class:`KNNLabelTransfer` for the method and the choice of defaults. Neither object is
    modified; assign the returned columns to ``query.obs`` if wanted.

    Parameters
    ----------
    reference
        Reference cells with the embedding in ``obsm[use_rep]`` and labels in ``obs[label_key]``.
    query
        Query cells with the embedding in ``obsm[use_rep]``.
    label_key
        Column of ``reference.obs`` with the labels.
    use_rep
        Key of the embedding in ``obsm``.
    n_neighbors
        Number of reference neighbours per query cell.
    uncertainty_threshold
        Cells with a larger uncertainty are called ``unknown_label``; ``1`` disables.
    distance_quantile
        Quantile of the reference's own neighbour distances beyond which a query cell is called
        ``unknown_label``; ``None`` disables.
    calibration
        ``"reference"`` or ``"other_batches"``: see :class:`KNNLabelTransfer`.
    batch_key
        Column of ``reference.obs`` with the batches, for ``calibration="other_batches"``.
    per_label_cutoff
        One distance cutoff per reference label (see :class:`KNNLabelTransfer`).
    unknown_label
        Label given to cells that are not assigned.
    metric
        ``"euclidean"`` or ``"cosine"`` (see :class:`KNNLabelTransfer`).

    Returns
    -------
    DataFrame indexed like ``query.obs`` with columns ``label``, ``best_label``,
    ``probability``, ``uncertainty``, ``mean_distance`` and ``distance_cutoff``.
    """
    if label_key not in reference.obs:
        raise KeyError(f"{label_key!r} is not a column of reference.obs.")
    for name, data in (("reference", reference), ("query", query)):
        if use_rep not in data.obsm:
            raise KeyError(f"{name}.obsm has no {use_rep!r}; embed it first.")
    if batch_key is not None and batch_key not in reference.obs:
        raise KeyError(f"{batch_key!r} is not a column of reference.obs.")
    classifier = KNNLabelTransfer(
        n_neighbors=n_neighbors,
        uncertainty_threshold=uncertainty_threshold,
        distance_quantile=distance_quantile,
        calibration=calibration,
        per_label_cutoff=per_label_cutoff,
        unknown_label=unknown_label,
        metric=metric,
    ).fit(
        reference.obsm[use_rep],
        reference.obs[label_key],
        batches=None if batch_key is None else reference.obs[batch_key],
    )
    return classifier.predict(query.obsm[use_rep], index=query.obs_names.copy())
