"""Evaluation of transferred labels against known labels (the paper's protocol)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

from ._label_transfer import UNKNOWN

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Literal


def confusion_matrix(
    truth: Iterable,
    predicted: Iterable,
    normalize: Literal["true", "pred"] | None = "true",
) -> pd.DataFrame:
    """Confusion matrix with known labels as rows and predicted labels as columns.

    Parameters
    ----------
    truth
        Known label of each cell.
    predicted
        Predicted label of each cell (may include "Unknown").
    normalize
        ``"true"``: each row sums to 1; ``"pred"``: each column sums to 1; ``None``: counts.
    """
    table = pd.crosstab(
        pd.Series(np.asarray(truth, dtype=str), name="true"),
        pd.Series(np.asarray(predicted, dtype=str), name="predicted"),
    )
    if normalize == "true":
        table = table.div(table.sum(axis=1), axis=0)
    elif normalize == "pred":
        table = table.div(table.sum(axis=0), axis=1)
    elif normalize is not None:
        raise ValueError("normalize must be 'true', 'pred' or None.")
    return table


def label_transfer_scores(
    truth: Iterable,
    predicted: Iterable,
    reference_labels: Iterable | None = None,
    unknown_label: str = UNKNOWN,
) -> dict[str, float]:
    """Scores of transferred labels.

    Parameters
    ----------
    truth
        Known label of each query cell.
    predicted
        Transferred label of each query cell (``unknown_label`` for unassigned cells).
    reference_labels
        Labels the reference holds. Query cells of other types are "novel": they should be
        called ``unknown_label``. ``None`` treats every type as known.
    unknown_label
        Label of unassigned cells.

    Returns
    -------
    ``accuracy`` and ``macro_f1`` over the cells of known types (an "Unknown" call counts as an
    error; F1 averaged over the known types present), ``ari`` and ``nmi`` between known and
    transferred labels over all cells, ``unknown_rate_known`` (cells of known types called
    unknown), ``unknown_rate_novel`` (cells of novel types called unknown; NaN without any)
    and ``n_novel``.
    """
    truth = np.asarray(truth, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    if truth.shape != predicted.shape:
        raise ValueError("truth and predicted must have the same length.")
    known_types = set(truth) if reference_labels is None else set(map(str, reference_labels))
    known = np.isin(truth, list(known_types))
    called_unknown = predicted == unknown_label
    present = sorted(set(truth[known]))
    scores = {
        "accuracy": float((truth[known] == predicted[known]).mean()) if known.any() else np.nan,
        "macro_f1": float(
            f1_score(
                truth[known], predicted[known], labels=present, average="macro", zero_division=0
            )
        )
        if known.any()
        else np.nan,
        "ari": float(adjusted_rand_score(truth, predicted)),
        "nmi": float(normalized_mutual_info_score(truth, predicted)),
        "unknown_rate_known": float(called_unknown[known].mean()) if known.any() else np.nan,
        "unknown_rate_novel": float(called_unknown[~known].mean()) if (~known).any() else np.nan,
        "n_novel": int((~known).sum()),
    }
    return scores


def macro_f1_difference(
    truth: Iterable,
    predicted: Iterable,
    other: Iterable,
    reference_labels: Iterable | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Difference in macro-F1 between two label transfers of the same cells, with its uncertainty.

    On small queries a macro-F1 averages types with a handful of cells each, so one cell can
    move it by a few hundredths. A paired bootstrap over the query cells (the same resampled
    cells score both transfers) says whether a difference is larger than that.

    Parameters
    ----------
    truth
        Known label of each query cell.
    predicted
        Labels of the first transfer (``unknown_label`` "Unknown" counts as an error).
    other
        Labels of the second transfer, same cells and order.
    reference_labels
        Labels the reference holds; cells of other types are left out, as in
        :func:`label_transfer_scores`. ``None`` keeps every cell.
    n_bootstrap
        Resamples of the query cells.
    confidence
        Coverage of the percentile interval.
    seed
        Seed of the resampling.

    Returns
    -------
    ``difference`` (macro-F1 of ``predicted`` minus that of ``other``, each as
    :func:`label_transfer_scores` computes it), ``low`` and ``high`` (percentile bootstrap
    interval; each resample averages F1 over the known types it holds) and ``n_cells``.
    """
    truth = np.asarray(truth, dtype=str)
    predicted = np.asarray(predicted, dtype=str)
    other = np.asarray(other, dtype=str)
    if not truth.shape == predicted.shape == other.shape:
        raise ValueError("truth, predicted and other must have the same length.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, not {confidence}.")
    if reference_labels is not None:
        known = np.isin(truth, [str(label) for label in reference_labels])
        truth, predicted, other = truth[known], predicted[known], other[known]
    if truth.size == 0:
        raise ValueError("No query cell of a known type to score.")
    codes, inverse = np.unique(np.concatenate([truth, predicted, other]), return_inverse=True)
    truth_code, predicted_code, other_code = np.split(inverse, 3)
    n_types = len(codes)

    # per-type counts by bincount: sklearn's f1_score on each of 1,000 resamples of a large
    # query would take minutes; this is the same F1 (2 hits / (support + calls)) in seconds
    def macro_f1(sample: np.ndarray, labels: np.ndarray) -> float:
        t, p = truth_code[sample], labels[sample]
        support = np.bincount(t, minlength=n_types)
        called = np.bincount(p, minlength=n_types)
        hits = np.bincount(t[t == p], minlength=n_types)
        present = support > 0
        return float(np.mean(2 * hits[present] / (support[present] + called[present])))

    every = np.arange(truth.size)
    difference = macro_f1(every, predicted_code) - macro_f1(every, other_code)
    rng = np.random.default_rng(seed)
    resampled = np.empty(n_bootstrap)
    for draw in range(n_bootstrap):
        sample = rng.integers(0, truth.size, truth.size)
        resampled[draw] = macro_f1(sample, predicted_code) - macro_f1(sample, other_code)
    tail = 50 * (1 - confidence)
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return {
        "difference": difference,
        "low": float(low),
        "high": float(high),
        "n_cells": int(truth.size),
    }
