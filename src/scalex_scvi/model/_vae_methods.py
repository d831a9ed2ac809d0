"""scvi-tools' VAEMixin methods on any AnnData, as SCALEX embeds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from scvi.model.base import VAEMixin

from ._constants import NO_BATCH_CATEGORY

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from anndata import AnnData
    from mudata import MuData


class VAEMethodsMixin(VAEMixin):
    """scvi-tools' evaluation and posterior methods, for SCALEX.

    scvi-tools registers (and so modifies) any AnnData passed to these methods, refuses cells
    of batches it has not seen, and some of its methods fail on this model. Here each method
    runs in evaluation mode on the model's light, registered copy of the AnnData
    (``self._registered``: features in any order, the caller's object untouched), as
    :meth:`get_latent_representation` does.
    """

    @torch.inference_mode()
    def get_elbo(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
        return_mean: bool = True,
        data_loader_kwargs: dict | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Evidence lower bound (higher is better): :meth:`scvi.model.base.VAEMixin.get_elbo`.

        Computed in evaluation mode: BatchNorm uses its running statistics, not those of the
        cells passed (the latent is sampled, so values vary with the random state). ``adata``
        is used as in :meth:`get_latent_representation` (features in any order, not modified,
        not registered) but its cells must belong to batches the model was trained on: the
        decoder normalises each batch with its own BatchNorm, which a new batch does not have.

        Parameters
        ----------
        adata
            AnnData with the model's features, prepared like the training data, of the
            model's batches (e.g. held-out cells). ``None`` uses the training data.
        indices
            Indices of the cells to use. ``None`` uses all.
        batch_size
            Cells per forward pass.
        dataloader
            Mini-batches to use instead of ``adata`` (passed on to scvi-tools as they are).
        return_mean
            Return the mean over cells rather than one value per cell.
        data_loader_kwargs
            Further arguments of the data loader.
        **kwargs
            Further arguments of the module's forward pass.

        Returns
        -------
        The ELBO, minus (binary cross-entropy + KL divergence, unweighted), per cell or its mean.
        """
        return self._evaluate(
            super().get_elbo,
            adata,
            indices,
            batch_size,
            dataloader,
            return_mean,
            data_loader_kwargs,
            **kwargs,
        )

    @torch.inference_mode()
    def get_reconstruction_error(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
        return_mean: bool = True,
        data_loader_kwargs: dict | None = None,
        **kwargs,
    ) -> dict[str, torch.Tensor]:
        """Reconstruction loss: binary cross-entropy summed over features (lower is better).

        As :meth:`scvi.model.base.VAEMixin.get_reconstruction_error` (which, for every
        scvi-tools model, returns the loss itself), with the parameters of :meth:`get_elbo`
        and ``adata`` handled as there: evaluation mode, features in any order, not modified,
        cells of the model's batches only.

        Returns
        -------
        ``{"reconstruction_loss": value}``.
        """
        return self._evaluate(
            super().get_reconstruction_error,
            adata,
            indices,
            batch_size,
            dataloader,
            return_mean,
            data_loader_kwargs,
            **kwargs,
        )

    @torch.inference_mode()
    def get_marginal_ll(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        n_mc_samples: int = 1000,
        batch_size: int | None = None,
        return_mean: bool = True,
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
        data_loader_kwargs: dict | None = None,
        **kwargs,
    ) -> float | torch.Tensor:
        r"""Importance-sampled marginal log-likelihood (higher is better).

        As :meth:`scvi.model.base.VAEMixin.get_marginal_ll` (see
        :meth:`~scalex_scvi.SCALEXVAE.marginal_ll`), with ``adata`` handled as in
        :meth:`get_elbo`. At least the ELBO in expectation, closer to :math:`\log p(x)` with
        more samples.

        Parameters
        ----------
        adata, indices, batch_size, dataloader, return_mean, data_loader_kwargs
            As in :meth:`get_elbo`.
        n_mc_samples
            Importance samples per cell.
        **kwargs
            Further arguments of :meth:`~scalex_scvi.SCALEXVAE.marginal_ll`.

        Returns
        -------
        The mean over cells, or one value per cell.
        """
        return self._evaluate(
            super().get_marginal_ll,
            adata,
            indices,
            batch_size,
            dataloader,
            return_mean,
            data_loader_kwargs,
            n_mc_samples=n_mc_samples,
            **kwargs,
        )

    @torch.inference_mode()
    def get_aggregated_posterior(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        dof: float | None = 3.0,
    ) -> torch.distributions.Distribution:
        """Mixture of the cells' posteriors, as scvi-tools' ``get_aggregated_posterior``.

        See :meth:`scvi.model.base.VAEMixin.get_aggregated_posterior`. ``adata`` is used as
        in :meth:`get_latent_representation` (any batch, features in any order, not
        modified); running statistics. One component per cell, centred on its posterior mean
        (scvi-tools 1.4.2 takes the posterior variance as the components' scale).

        Parameters
        ----------
        adata
            AnnData with the model's features, prepared like the training data. ``None`` uses
            the training data.
        indices
            Indices of the cells to use. ``None`` uses all.
        batch_size
            Cells per forward pass.
        dof
            Degrees of freedom of Student's t components; ``None``: normal components.

        Returns
        -------
        A :class:`torch.distributions.MixtureSameFamily` over the latent space.
        """
        indices = None if indices is None else np.asarray(indices)
        with self._registered(adata) as registered:
            return super().get_aggregated_posterior(
                registered, indices=indices, batch_size=batch_size, dof=dof
            )

    @torch.inference_mode()
    def differential_abundance(
        self,
        adata: AnnData | MuData | None = None,
        sample_key: str | None = None,
        batch_size: int = 128,
        num_cells_posterior: int | None = None,
        dof: float | None = None,
    ) -> pd.DataFrame:
        """Log density of each cell under each sample's aggregated posterior.

        :meth:`scvi.model.base.VAEMixin.differential_abundance` in the SCALEX space, with
        ``adata`` used as in :meth:`get_latent_representation` (any batch, features in any
        order, not modified).

        Parameters
        ----------
        adata
            AnnData with the model's features, prepared like the training data. ``None`` uses
            the training data.
        sample_key
            Column of ``adata.obs`` with the samples to compare.
        batch_size
            Cells per forward pass.
        num_cells_posterior
            At most this many cells per sample (drawn with numpy's global random state) form
            its aggregated posterior.
        dof
            Degrees of freedom of Student's t components; ``None``: normal components.

        Returns
        -------
        DataFrame of cells × samples, also stored in ``adata.obsm["da_log_probs"]`` as
        scvi-tools does (the only change to ``adata``).
        """
        data = self.adata if adata is None else adata
        if data is None:
            raise ValueError("This model was loaded without data; pass adata.")
        if sample_key is None or sample_key not in data.obs:
            raise KeyError(f"sample_key must be a column of adata.obs, not {sample_key!r}.")
        with self._registered(adata, obs_keys=[sample_key]) as registered:
            super().differential_abundance(
                registered,
                sample_key=sample_key,
                batch_size=batch_size,
                num_cells_posterior=num_cells_posterior,
                dof=dof,
            )
            log_probs = registered.obsm["da_log_probs"]
        if registered is not data:  # scvi-tools stored it on the light copy
            data.obsm["da_log_probs"] = log_probs
        return log_probs

    def _evaluate(
        self, metric, adata, indices, batch_size, dataloader, return_mean, loader_kwargs, **kwargs
    ):
        """Run one of scvi-tools' evaluation methods in eval mode on a registered light copy."""
        self._check_if_trained(warn=False)
        self.module.eval()
        options = {"return_mean": return_mean, "data_loader_kwargs": loader_kwargs, **kwargs}
        if dataloader is not None:
            return metric(dataloader=dataloader, **options)
        with self._registered(adata) as registered:
            self._check_trained_batches(registered, indices, "pass cells of the model's batches")
            return metric(registered, indices=indices, batch_size=batch_size, **options)

    def _check_trained_batches(
        self, registered: AnnData, indices: Sequence[int] | None, advice: str
    ) -> None:
        """Raise when cells of ``registered`` belong to batches the model was not trained on."""
        manager = self.get_anndata_manager(registered, required=True)
        codes = np.asarray(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).reshape(-1)
        if indices is not None:
            codes = codes[np.asarray(indices)]
        unseen = np.unique(codes[codes >= self.summary_stats.n_batch])
        if len(unseen) > 0:
            names = [
                "(no batch column)" if name == NO_BATCH_CATEGORY else str(name)
                for name in self._batch_mapping(registered)[unseen]
            ]
            raise ValueError(
                f"Cells of batches the model was not trained on ({names}) have no decoder "
                f"normalisation; {advice} ({list(self.batch_categories)}), or give those "
                "batches one with SCALEX.load_query_data(adata, model)."
            )
