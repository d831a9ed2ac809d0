"""BatchNorm statistics of the encoder computed over whole groups of cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scalex_scvi.module import SCALEXVAE


@dataclass(frozen=True)
class HiddenStatistics:
    """Statistics of the encoder's hidden pre-activations (before its BatchNorm), per group.

    Rows follow ``names``; ``mean`` and ``var`` (biased, weighted) have shape
    ``(n_groups, n_hidden)``; ``n_effective`` is the effective number of cells of each group,
    ``(sum w)^2 / sum w^2`` (the number of cells when unweighted).
    """

    names: pd.Index
    mean: np.ndarray
    var: np.ndarray
    n_effective: np.ndarray

    def __post_init__(self):
        n = len(self.names)
        if self.mean.shape != self.var.shape or self.mean.shape[0] != n:
            raise ValueError("mean and var need one row per name, with the same shape.")
        if len(self.n_effective) != n:
            raise ValueError("n_effective needs one value per name.")


@torch.inference_mode()
def grouped_hidden_statistics(
    module: SCALEXVAE,
    dataloader: Iterable[dict[str, torch.Tensor]],
    codes: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, biased variance and effective size of the hidden pre-activations per group code.

    One pass over ``dataloader``, accumulating sums in float64; the result does not depend on
    how the cells are split into mini-batches.

    Parameters
    ----------
    module
        The SCALEX module.
    dataloader
        Mini-batches in a fixed order (no shuffling).
    codes
        Group code of each cell in the order of ``dataloader``; ``None`` uses the batch codes.
    weights
        Non-negative weight of each cell in the order of ``dataloader``; ``None`` weighs every
        cell equally.

    Returns
    -------
    ``(mean, var, n_effective)`` with one row per code up to the largest seen. Rows of codes
    without cells (or without weight) hold zeros.
    """
    device = module.device
    sums = torch.zeros(0, module.n_hidden, dtype=torch.float64, device=device)
    squares = torch.zeros_like(sums)
    totals = torch.zeros(0, dtype=torch.float64, device=device)
    total_squares = torch.zeros_like(totals)
    start = 0
    for tensors in dataloader:
        x = tensors[REGISTRY_KEYS.X_KEY].to(device)
        n = x.shape[0]
        if codes is None:
            group = tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long().to(device)
        else:
            group = codes[start : start + n].long().to(device)
        w = torch.ones(n, dtype=torch.float64, device=device)
        if weights is not None:
            w = weights[start : start + n].to(device=device, dtype=torch.float64)
        start += n
        n_codes = int(group.max()) + 1
        if n_codes > totals.shape[0]:
            grow = n_codes - totals.shape[0]
            sums = torch.cat([sums, sums.new_zeros(grow, sums.shape[1])])
            squares = torch.cat([squares, squares.new_zeros(grow, squares.shape[1])])
            totals = torch.cat([totals, totals.new_zeros(grow)])
            total_squares = torch.cat([total_squares, total_squares.new_zeros(grow)])
        h = module.z_encoder.hidden_preactivation(x).double()
        sums.index_add_(0, group, h * w[:, None])
        squares.index_add_(0, group, h.square() * w[:, None])
        totals.index_add_(0, group, w)
        total_squares.index_add_(0, group, w.square())
    safe = totals.clamp(min=1e-12).unsqueeze(1)
    mean = sums / safe
    var = (squares / safe - mean.square()).clamp(min=0)
    n_effective = totals.square() / total_squares.clamp(min=1e-12)
    return mean, var, n_effective
