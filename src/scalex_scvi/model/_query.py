"""A query model's module: the reference's, with decoder normalisations for new batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from scvi import REGISTRY_KEYS
from scvi.module._constants import MODULE_KEYS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scalex_scvi.module import SCALEXVAE

_DSBN_PREFIX = "decoder.norm."


def extended_state(reference: SCALEXVAE, n_batch: int) -> dict[str, torch.Tensor]:
    """The reference module's state with the decoder BatchNorm extended to ``n_batch`` domains.

    Every tensor of the reference is kept as it is. A new domain starts with the mean scale and
    shift of the reference domains, standard running statistics (replaced from the query's cells
    by :func:`set_new_domain_statistics`) and no tracked batches.
    """
    state = {key: value.detach().clone() for key, value in reference.state_dict().items()}
    n_new = n_batch - reference.n_batch
    if n_new <= 0:
        return state
    norm = reference.decoder.norm
    new_rows = {
        "weight": norm.weight.detach().mean(0, keepdim=True).expand(n_new, -1),
        "bias": norm.bias.detach().mean(0, keepdim=True).expand(n_new, -1),
        "running_mean": torch.zeros(n_new, norm.n_features).to(norm.running_mean),
        "running_var": torch.ones(n_new, norm.n_features).to(norm.running_var),
        "num_batches_tracked": torch.zeros(n_new).to(norm.num_batches_tracked),
    }
    for name, rows in new_rows.items():
        key = _DSBN_PREFIX + name
        state[key] = torch.cat([state[key], rows.to(state[key].device)])
    return state


@torch.inference_mode()
def set_new_domain_statistics(
    module: SCALEXVAE, loader: Iterable[dict[str, torch.Tensor]], first_new: int
) -> None:
    """Set the running statistics of the decoder domains from ``first_new`` on from data.

    Each such domain gets the mean and unbiased variance, over its cells in ``loader``, of the
    decoder's input to its BatchNorm, computed from the latent means (the encoder in evaluation
    mode). A domain with one cell gets the reference domains' mean variance.
    """
    norm = module.decoder.norm
    n_domains = norm.n_domains
    sums = torch.zeros(n_domains, norm.n_features, dtype=torch.float64, device=module.device)
    squares = torch.zeros_like(sums)
    counts = torch.zeros(n_domains, dtype=torch.float64, device=module.device)
    for tensors in loader:
        qzm = module.inference(tensors[REGISTRY_KEYS.X_KEY])[MODULE_KEYS.QZM_KEY]
        values = module.decoder.fc(qzm).double()
        codes = tensors[REGISTRY_KEYS.BATCH_KEY].reshape(-1).long().to(module.device)
        sums.index_add_(0, codes, values)
        squares.index_add_(0, codes, values.square())
        counts.index_add_(0, codes, torch.ones_like(codes, dtype=torch.float64))
    new = torch.arange(n_domains, device=module.device) >= first_new
    seen = new & (counts > 0)
    mean = sums / counts.clamp(min=1).unsqueeze(1)
    var = (squares - counts.unsqueeze(1) * mean.square()) / (counts - 1).clamp(min=1).unsqueeze(1)
    var = torch.where(
        (counts > 1).unsqueeze(1), var.clamp(min=0), norm.running_var[:first_new].mean(0).double()
    )
    norm.running_mean[seen] = mean[seen].to(norm.running_mean)
    norm.running_var[seen] = var[seen].to(norm.running_var)
