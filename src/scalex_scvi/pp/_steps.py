"""Building blocks of the SCALEX preprocessing recipe, shared by reference and query."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

RECIPE_KEY = "scalex_preprocess"
# ERCC spike-ins are named "ERCC-000nn"; the original's bare "ERCC" also dropped the human genes
# ERCC1 ... ERCC8 (DNA repair).
EXCLUDED_PREFIXES = ("ERCC-", "MT-", "mt-")
_FRACTION_CHECK_VALUES = 100_000  # stored values read for the non-integer (not counts) check


def as_csr(matrix) -> sparse.csr_matrix:
    """A float32 CSR copy of ``matrix`` (never a view of the caller's data)."""
    if sparse.issparse(matrix):
        return sparse.csr_matrix(matrix, dtype=np.float32, copy=True)
    return sparse.csr_matrix(np.asarray(matrix, dtype=np.float32))


def check_counts(matrix: sparse.csr_matrix, what: str, warn_fractional: bool = True) -> None:
    """Raise on negative values, which no count matrix holds; warn on non-integer values.

    Non-integer values are most often data normalised or log-transformed already, which the
    recipe would transform a second time; they are not an error, because estimated counts
    (e.g. after ambient-RNA correction) are not integers either. The check reads the first
    ``_FRACTION_CHECK_VALUES`` stored values, so that it costs little on large data.
    (scvi-tools' ``_check_nonnegative_integers`` draws 20 values with numpy's global random
    state: it would miss normalised values in sparse data and change the caller's random stream.)
    """
    if not matrix.nnz:
        return
    if matrix.data.min() < 0:
        raise ValueError(
            f"{what} holds negative values; preprocessing expects raw counts (pass layer= if the "
            "counts are in a layer)."
        )
    if not warn_fractional:
        return
    values = matrix.data[:_FRACTION_CHECK_VALUES]
    fractional = values[values != np.round(values)]
    if fractional.size:
        warnings.warn(
            f"{what} holds non-integer values (e.g. {fractional[0]:.4g}), so it may not hold raw "
            "counts: preprocessing normalises and log-transforms them as counts. Pass layer= if "
            "the counts are in a layer (e.g. layer='counts'); estimated counts can be used as "
            "they are.",
            UserWarning,
            stacklevel=3,
        )


def check_batch_labels(obs: pd.DataFrame, batch_key: str | None) -> None:
    """Raise when the batch column is missing or leaves cells without a batch."""
    if batch_key is None:
        return
    if batch_key not in obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of obs.")
    missing = int(obs[batch_key].isna().sum())
    if missing:
        raise ValueError(
            f"{missing} cells have no batch (missing values in obs[{batch_key!r}]); give them "
            "a batch of their own (e.g. 'unknown') or leave them out."
        )


def kept_features(
    var_names: pd.Index, keep_mt: bool, prefixes: Sequence[str] = EXCLUDED_PREFIXES
) -> np.ndarray:
    """Boolean mask dropping ERCC spike-ins and mitochondrial genes unless ``keep_mt``.

    ``prefixes`` name them (a recipe of an original model drops every name starting with
    "ERCC", as the original does).
    """
    if keep_mt:
        return np.ones(len(var_names), dtype=bool)
    return ~np.asarray(var_names.astype(str).str.startswith(tuple(prefixes)), dtype=bool)


def column_max(matrix: sparse.csr_matrix) -> np.ndarray:
    """Per-column maximum of a non-negative sparse matrix (0 for empty columns)."""
    if matrix.shape[0] == 0:
        return np.zeros(matrix.shape[1], dtype=np.float32)
    return np.asarray(matrix.max(axis=0).toarray()).ravel().astype(np.float32)


def scale_columns(
    matrix: sparse.csr_matrix, divisor: np.ndarray, copy: bool = True
) -> sparse.csr_matrix:
    """Divide each column by ``divisor`` (columns whose divisor is 0 are left at 0).

    ``copy=False`` scales a float32 CSR ``matrix`` in place (no second matrix in memory).
    """
    safe = np.where(divisor > 0, divisor, 1.0).astype(np.float32)
    if copy:
        return sparse.csr_matrix(matrix.multiply(1.0 / safe[None, :]), dtype=np.float32)
    matrix.data *= (1.0 / safe)[matrix.indices]
    return matrix


def normalize_log(
    matrix: sparse.csr_matrix, totals: np.ndarray, target_sum: float
) -> sparse.csr_matrix:
    """``log1p(x / total * target_sum)`` per cell, in place.

    As ``sc.pp.normalize_total`` + ``sc.pp.log1p`` with ``totals`` taken over every (kept)
    feature of the cell; cells with no counts stay 0.
    """
    matrix = sparse.csr_matrix(matrix)
    factor = target_sum / np.where(totals > 0, totals, 1.0)
    matrix.data *= np.repeat(factor, np.diff(matrix.indptr)).astype(np.float32)
    np.log1p(matrix.data, out=matrix.data)
    return matrix


def maxabs_scale(matrix: sparse.csr_matrix, groups: np.ndarray | None) -> sparse.csr_matrix:
    """MaxAbs scaling to ``[0, 1]``, globally (``groups=None``) or within each group of rows."""
    if groups is None:
        return scale_columns(matrix, column_max(matrix))
    blocks, order = [], []
    for group in pd.unique(groups):
        rows = np.flatnonzero(groups == group)
        block = matrix[rows]
        blocks.append(scale_columns(block, column_max(block)))
        order.append(rows)
    stacked = sparse.vstack(blocks, format="csr")
    inverse = np.empty(matrix.shape[0], dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(matrix.shape[0])
    return stacked[inverse]


def reindex_features(
    matrix: sparse.csr_matrix,
    var_names: pd.Index,
    features: pd.Index,
    min_overlap: float,
    what: str = "the query",
    target: str = "the model's",
    warn: bool = True,
    stacklevel: int = 3,
) -> sparse.csr_matrix:
    """Columns of ``matrix`` in the order of ``features``; zeros for features it lacks.

    ``stacklevel`` of the warning about missing features: 3 names the caller's caller.
    """
    if not var_names.is_unique:
        raise ValueError(f"The feature names of {what} are not unique; make them unique first.")
    positions = var_names.get_indexer(features)
    present = positions >= 0
    fraction = present.mean() if len(features) else 1.0
    if fraction < min_overlap:
        raise ValueError(
            f"{what} has only {present.sum()} of {target} {len(features)} features "
            f"({fraction:.1%}, below min_feature_overlap={min_overlap:.0%}); its feature names "
            f"may use another naming scheme (e.g. {list(var_names[:3])} vs {list(features[:3])})."
        )
    if fraction < 1 and warn:
        warnings.warn(
            f"{what} lacks {(~present).sum()} of {target} {len(features)} features "
            f"({1 - fraction:.1%}); they are set to zero.",
            UserWarning,
            stacklevel=stacklevel,
        )
    selector = sparse.csr_matrix(
        (
            np.ones(present.sum(), dtype=np.float32),
            (positions[present], np.flatnonzero(present)),
        ),
        shape=(matrix.shape[1], len(features)),
    )
    return sparse.csr_matrix(matrix @ selector, dtype=np.float32)
