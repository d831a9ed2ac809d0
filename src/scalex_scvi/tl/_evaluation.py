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
