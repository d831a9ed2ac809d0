"""BatchNorm statistics of the encoder computed over whole batches of cells."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from scvi import REGISTRY_KEYS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scalex_scvi.module import SCALEXVAE


@torch.inference_mode()
def per_batch_hidden_statistics(
    module: SCALEXVAE, dataloader: Iterable[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance of the encoder's hidden pre-activations for each batch code.

    One pass over ``dataloader``, accumulating sums in float64; the result does not depend on
    how the cells are split into mini-batches.

    Returns
    -------
    ``(mean, var)``, each of shape ``(n_codes, n_hidden)`` where ``n_codes`` is one more than
    the largest batch code seen. Rows of codes without cells hold zeros.
    """
    device = module.device
    sums = torch.zeros(0, module.n_hidden, dtype=torch.float64, device=device)
    squares = torch.zeros_like(sums)
    counts = torch.zeros(0, dtype=torch.float64, device=device)
    for tensors in dataloader:
        x = tensors[REGISTRY_KEYS.X_KEY].to(device)
        codes = tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long().to(device)
        n_codes = int(codes.max()) + 1
        if n_codes > counts.shape[0]:
            grow = n_codes - counts.shape[0]
            sums = torch.cat([sums, sums.new_zeros(grow, sums.shape[1])])
            squares = torch.cat([squares, squares.new_zeros(grow, squares.shape[1])])
            counts = torch.cat([counts, counts.new_zeros(grow)])
        h = module.z_encoder.hidden_preactivation(x).double()
        sums.index_add_(0, codes, h)
        squares.index_add_(0, codes, h.square())
        counts.index_add_(0, codes, torch.ones_like(codes, dtype=torch.float64))
    safe = counts.clamp(min=1).unsqueeze(1)
    mean = sums / safe
    var = (squares / safe - mean.square()).clamp(min=0)
    return mean.float(), var.float()
