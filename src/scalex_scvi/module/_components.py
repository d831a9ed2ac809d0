"""Encoder and decoder networks of SCALEX."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from ._dsbn import DomainSpecificBatchNorm1d


class BatchFreeEncoder(nn.Module):
    """SCALEX encoder: ``x → Linear → BatchNorm → ReLU → (mu, log-variance)``.

    The encoder takes no batch input of any kind, which is what lets it embed cells from batches
    it has never seen.

    Parameters
    ----------
    n_input
        Number of input features.
    n_hidden
        Width of the hidden layer.
    n_latent
        Dimensionality of the latent space.
    norm
        Normalisation of the hidden layer: ``"batch"`` (the paper's BatchNorm) or ``"layer"``
        (a LayerNorm over each cell's hidden units, which uses no statistics of other cells).
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: int = 1024,
        n_latent: int = 10,
        norm: Literal["batch", "layer"] = "batch",
    ):
        super().__init__()
        if norm not in ("batch", "layer"):
            raise ValueError(f"norm must be 'batch' or 'layer', not {norm!r}.")
        self.fc = nn.Linear(n_input, n_hidden)
        self.norm = nn.BatchNorm1d(n_hidden) if norm == "batch" else nn.LayerNorm(n_hidden)
        self.mean_encoder = nn.Linear(n_hidden, n_latent)
        self.var_encoder = nn.Linear(n_hidden, n_latent)

    def hidden_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the first linear layer, before batch normalisation."""
        return self.fc(x)

    def forward(
        self,
        x: torch.Tensor,
        hidden_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Mean and variance of :math:`q(z \mid x)`.

        Parameters
        ----------
        x
            Input of shape ``(n_cells, n_input)``.
        hidden_stats
            Optional ``(mean, var, groups)``: statistics of the hidden pre-activations per
            group of cells, each of shape ``(n_groups, n_hidden)``, and the group of each cell,
            shape ``(n_cells,)``. Each cell is normalised with its group's statistics instead
            of the BatchNorm's (running or mini-batch). This is how statistics computed over a
            whole query batch are applied. Only for a BatchNorm encoder.
        """
        h = self.fc(x)
        if isinstance(self.norm, nn.LayerNorm):
            if hidden_stats is not None:
                raise ValueError("A LayerNorm encoder has no BatchNorm statistics to replace.")
            h = self.norm(h)
        elif hidden_stats is not None:
            h = self._normalise_by_group(h, *hidden_stats)
        else:
            # A training mini-batch of one cell has no statistics: use the running ones.
            use_batch_stats = self.norm.training and h.shape[0] > 1
            h = F.batch_norm(
                h,
                self.norm.running_mean,
                self.norm.running_var,
                self.norm.weight,
                self.norm.bias,
                training=use_batch_stats,
                momentum=self.norm.momentum,
                eps=self.norm.eps,
            )
            if use_batch_stats:
                self.norm.num_batches_tracked.add_(1)
        h = F.relu(h)
        return self.mean_encoder(h), torch.exp(self.var_encoder(h))

    def _normalise_by_group(
        self, h: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        """BatchNorm of each group's cells with that group's statistics (inference form).

        One fused :func:`~torch.nn.functional.batch_norm` call per group present, rather than
        statistics gathered for every cell: the same arithmetic as the running statistics'
        path, so a cell's result depends on its group's statistics only, and on the common
        mini-batch of one group no row is copied.
        """
        groups = groups.reshape(-1).to(h.device)
        width_ok = mean.dim() == 2 and mean.shape[1] == h.shape[1] and mean.shape == var.shape
        if groups.shape[0] != h.shape[0] or not width_ok:
            raise ValueError(
                f"hidden_stats: (mean, var) of shape (n_groups, {h.shape[1]}) and one group per "
                f"cell ({h.shape[0]}); got {tuple(mean.shape)}, {tuple(var.shape)} and "
                f"{tuple(groups.shape)}."
            )

        def normalise(rows: torch.Tensor, group: int) -> torch.Tensor:
            return F.batch_norm(
                rows,
                mean[group],
                var[group],
                self.norm.weight,
                self.norm.bias,
                training=False,
                eps=self.norm.eps,
            )

        present = torch.unique(groups).tolist()
        if len(present) == 1:
            return normalise(h, present[0])
        out = torch.empty_like(h)
        for group in present:
            cells = groups == group
            out[cells] = normalise(h[cells], group)
        return out


class DSBNDecoder(nn.Module):
    """SCALEX decoder: ``z → Linear → domain-specific BatchNorm`` (logits of a Sigmoid).

    Returns logits; the model's expression estimate is ``sigmoid(logits)``. Keeping the logits
    lets the loss use :func:`~torch.nn.functional.binary_cross_entropy_with_logits`, which is
    numerically stable and equals the binary cross-entropy of the sigmoid output.

    Parameters
    ----------
    n_latent
        Dimensionality of the latent space.
    n_output
        Number of output features.
    n_batch
        Number of batches (domains), each with its own BatchNorm.
    """

    def __init__(self, n_latent: int, n_output: int, n_batch: int):
        super().__init__()
        self.fc = nn.Linear(n_latent, n_output)
        self.norm = DomainSpecificBatchNorm1d(n_output, n_batch)

    def forward(self, z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """Logits of the reconstruction, shape ``(n_cells, n_output)``."""
        return self.norm(self.fc(z), batch_index)
