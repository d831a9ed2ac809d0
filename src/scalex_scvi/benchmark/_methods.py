"""Integration methods run on the same preprocessed data, each returning an embedding."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scanpy as sc
from anndata import AnnData

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)


class MethodUnavailable(RuntimeError):
    """A method whose package is not installed."""


def unintegrated_pca(prepared: AnnData, batch_key: str, seed: int = 0, n_comps: int = 50):
    """PCA of the log-normalised values of the selected features (scaled), no integration."""
    lognorm = prepared.raw[:, prepared.var_names].X if prepared.raw is not None else prepared.X
    tmp = AnnData(lognorm.copy())
    sc.pp.scale(tmp, max_value=10)
    sc.tl.pca(tmp, n_comps=min(n_comps, min(tmp.shape) - 1), random_state=seed)
    return tmp.obsm["X_pca"]


def scalex(
    prepared: AnnData,
    batch_key: str,
    seed: int = 0,
    batch_norm: str = "running",
    model_kwargs: dict | None = None,
    **train_kwargs,
) -> np.ndarray:
    """SCALEX (this package) with its defaults; ``train_kwargs`` go to :meth:`SCALEX.train`.

    ``batch_norm`` is the encoder's BatchNorm statistics at inference
    (:meth:`SCALEX.get_latent_representation`): ``"running"`` (the default) or ``"per_batch"``,
    the deterministic form of the original package's inference in training mode.
    ``model_kwargs`` go to :class:`SCALEX` (e.g. ``kl_weight``).
    """
    import scvi

    from scalex_scvi.model import SCALEX

    scvi.settings.seed = seed
    adata = AnnData(X=prepared.X, obs=prepared.obs[[batch_key]].copy(), var=prepared.var[[]])
    SCALEX.setup_anndata(adata, batch_key=batch_key)
    model = SCALEX(adata, **(model_kwargs or {}))
    model.train(enable_progress_bar=False, **train_kwargs)
    return model.get_latent_representation(batch_norm=batch_norm)


def scvi_model(
    prepared: AnnData, batch_key: str, seed: int = 0, max_epochs: int | None = None
) -> np.ndarray:
    """ScVI on the raw counts of the same features.

    Settings of scib-metrics' benchmarking tutorial: ``n_layers=2``, ``n_latent=30``,
    ``gene_likelihood="nb"``; epochs by scvi-tools' default heuristic.
    """
    import scvi

    scvi.settings.seed = seed
    counts = prepared.layers["counts"] if "counts" in prepared.layers else prepared.X
    adata = AnnData(X=counts.copy(), obs=prepared.obs[[batch_key]].copy(), var=prepared.var[[]])
    scvi.model.SCVI.setup_anndata(adata, batch_key=batch_key)
    model = scvi.model.SCVI(adata, n_layers=2, n_latent=30, gene_likelihood="nb")
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    return model.get_latent_representation()


def harmony(prepared: AnnData, batch_key: str, seed: int = 0) -> np.ndarray:
    """Harmony (harmonypy) on the unintegrated PCA."""
    try:
        import harmonypy
    except ImportError as err:
        raise MethodUnavailable(
            "Harmony needs harmonypy: pip install 'scalex-scvi[bench]'"
        ) from err
    pca = unintegrated_pca(prepared, batch_key, seed)
    result = harmonypy.run_harmony(
        pca, prepared.obs[[batch_key]], [batch_key], random_state=seed, verbose=False
    )
    corrected = np.asarray(result.Z_corr)
    return corrected.T if corrected.shape[0] != pca.shape[0] else corrected


def scanorama(prepared: AnnData, batch_key: str, seed: int = 0) -> np.ndarray:
    """Scanorama's integrated embedding of the log-normalised selected features."""
    try:
        import scanorama as scanorama_package
    except ImportError as err:
        raise MethodUnavailable(
            "Scanorama needs scanorama: pip install 'scalex-scvi[bench]'"
        ) from err
    lognorm = prepared.raw[:, prepared.var_names].X if prepared.raw is not None else prepared.X
    batches = prepared.obs[batch_key].astype(str).to_numpy()
    order = [np.flatnonzero(batches == b) for b in np.unique(batches)]
    genes = list(prepared.var_names)
    embedded, _ = scanorama_package.integrate(
        [lognorm[rows] for rows in order],
        [genes] * len(order),
        seed=seed,
        verbose=0,
        dimred=min(100, len(genes) - 1),
    )
    out = np.zeros((prepared.n_obs, embedded[0].shape[1]), dtype=np.float32)
    for rows, values in zip(order, embedded, strict=True):
        out[rows] = values
    return out


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "SCALEX": scalex,
    "scVI": scvi_model,
    "PCA (unintegrated)": unintegrated_pca,
    "Harmony": harmony,
    "Scanorama": scanorama,
}
