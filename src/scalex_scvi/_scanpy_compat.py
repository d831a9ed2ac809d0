"""scanpy's kNN graph, working around a break between scanpy 1.11 and pynndescent 0.7.

Imported lazily by its callers: pynndescent compiles with numba on import.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import scanpy as sc
from pynndescent import PyNNDescentTransformer
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData

# From this many cells on, scanpy (euclidean, default transformer) searches with pynndescent
# instead of computing exact distances.
PYNNDESCENT_FROM = 8192


class MatrixPyNNDescent(PyNNDescentTransformer):
    """pynndescent's kNN transformer returning a ``csr_matrix``, as scanpy 1.11 expects."""

    def fit_transform(self, X, y=None, **fit_params):
        return sparse.csr_matrix(super().fit_transform(X, y, **fit_params))

    def transform(self, X, y=None):
        return sparse.csr_matrix(super().transform(X, y))


def neighbors(adata: AnnData, use_rep: str, n_neighbors: int, random_state: int) -> None:
    """:func:`scanpy.pp.neighbors` (euclidean, scanpy's default search) on ``adata.obsm``.

    From 8,192 cells on, scanpy searches with :class:`pynndescent.PyNNDescentTransformer`,
    whose output became a ``csr_array`` in pynndescent 0.7; scanpy 1.11 then fails with
    ``'csr_array' object has no attribute 'getnnz'`` (scanpy supports sparse matrices only).
    Here the same transformer, with the settings scanpy gives it (``n_trees`` and ``n_iters``
    as in scanpy's ``_handle_transformer``), hands scanpy a ``csr_matrix``. Below 8,192 cells
    scanpy runs unchanged (exact distances).
    """
    transformer = None
    if adata.n_obs >= PYNNDESCENT_FROM:
        transformer = MatrixPyNNDescent(
            n_neighbors=n_neighbors,
            metric="euclidean",
            random_state=random_state,
            n_jobs=sc.settings.n_jobs,
            n_trees=min(64, 5 + round(adata.n_obs**0.5 / 20.0)),
            n_iters=max(5, round(math.log2(adata.n_obs))),
        )
    sc.pp.neighbors(
        adata,
        use_rep=use_rep,
        n_neighbors=n_neighbors,
        random_state=random_state,
        transformer=transformer,
    )
