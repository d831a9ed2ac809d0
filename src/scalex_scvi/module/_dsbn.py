"""Domain-specific batch normalisation, vectorised over domains."""

from __future__ import annotations

import torch
from torch import nn


class DomainSpecificBatchNorm1d(nn.Module):
    """Batch normalisation with one set of statistics and affine parameters per domain.

    Equivalent to one :class:`~torch.nn.BatchNorm1d` per domain (batch), each applied to the
    cells of its domain, but computed for all domains at once with scatter/gather operations:
    no Python loop over domains and no host synchronisation per step (the original SCALEX loops
    over domains and calls :func:`numpy.where` for each).

    Parameters are stored as stacked tensors of shape ``(n_domains, n_features)`` so that
    scArches-style reference mapping can extend them with new domains along the first axis.

    Parameters
    ----------
    n_features
        Number of features normalised.
    n_domains
        Number of domains (batches).
    eps
        Added to the variance for numerical stability.
    momentum
        Momentum of the running statistics, as in :class:`~torch.nn.BatchNorm1d`.

    Notes
    -----
    In training mode, a domain with at least two cells in the mini-batch is normalised with the
    mini-batch statistics of its cells, and its running statistics are updated. A domain with a
    single cell cannot provide statistics; that cell is normalised with the domain's running
    statistics (the original passes it through unnormalised). In evaluation mode every cell is
    normalised with its domain's running statistics.

    ``frozen_domains`` (an attribute, 0 by default) marks the first domains as fixed: their cells
    are normalised with the running statistics in training mode too, and those statistics are
    not updated (used when only the domains of new batches are fitted, see
    :meth:`scalex_scvi.SCALEX.load_query_data`).
    """

    def __init__(self, n_features: int, n_domains: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.n_features = n_features
        self.n_domains = n_domains
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(n_domains, n_features))
        self.bias = nn.Parameter(torch.zeros(n_domains, n_features))
        self.register_buffer("running_mean", torch.zeros(n_domains, n_features))
        self.register_buffer("running_var", torch.ones(n_domains, n_features))
        self.register_buffer("num_batches_tracked", torch.zeros(n_domains, dtype=torch.long))
        self.frozen_domains = 0

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (cells × features) with the statistics of each cell's domain.

        Parameters
        ----------
        x
            Tensor of shape ``(n_cells, n_features)``.
        domain
            Integer domain index per cell, shape ``(n_cells,)`` or ``(n_cells, 1)``.
        """
        one_hot = nn.functional.one_hot(domain.reshape(-1).long(), self.n_domains).to(x.dtype)
        if self.training:
            mean, var = self._batch_statistics(x, one_hot)
        else:
            mean, var = one_hot @ self.running_mean, one_hot @ self.running_var
        scale = torch.rsqrt(var + self.eps) * (one_hot @ self.weight)
        return (x - mean) * scale + one_hot @ self.bias

    def _batch_statistics(
        self, x: torch.Tensor, one_hot: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell mean and variance to normalise with; updates the running statistics.

        Gathers and scatters between cells and domains are matrix products with the one-hot
        domain matrix, which are faster than indexing on CPU, forward and backward.
        """
        counts = one_hot.sum(0)  # (domains,)
        safe_counts = counts.clamp(min=1).unsqueeze(1)
        domain_mean = one_hot.T @ x / safe_counts
        centred = x - one_hot @ domain_mean
        domain_var = one_hot.T @ centred.square() / safe_counts  # biased, as BatchNorm1d
        has_stats = counts > 1
        if self.frozen_domains:
            has_stats[: self.frozen_domains] = False

        with torch.no_grad():
            unbiased = domain_var * (counts / (counts - 1).clamp(min=1)).unsqueeze(1)
            update = has_stats.unsqueeze(1)
            m = self.momentum
            self.running_mean.copy_(
                torch.where(
                    update, (1 - m) * self.running_mean + m * domain_mean, self.running_mean
                )
            )
            self.running_var.copy_(
                torch.where(update, (1 - m) * self.running_var + m * unbiased, self.running_var)
            )
            self.num_batches_tracked.add_(has_stats.long())

        # Domains with a single cell use their running statistics instead of batch statistics.
        use_batch = has_stats.to(x.dtype).unsqueeze(1)
        mean = one_hot @ (use_batch * domain_mean + (1 - use_batch) * self.running_mean)
        var = one_hot @ (use_batch * domain_var + (1 - use_batch) * self.running_var)
        return mean, var

    def extra_repr(self) -> str:
        return f"{self.n_features}, n_domains={self.n_domains}, eps={self.eps}"
