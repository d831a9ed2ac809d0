"""The SCALEX variational auto-encoder as a scvi-tools module."""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import torch
from scvi import REGISTRY_KEYS
from scvi.module._constants import MODULE_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from ._components import BatchFreeEncoder, DSBNDecoder

if TYPE_CHECKING:
    from typing import Literal

    from torch.distributions import Distribution

LOGITS_KEY = "px_logits"


class SCALEXVAE(BaseModuleClass):
    """Variational auto-encoder of SCALEX :cite:p:`Xiong22`.

    A batch-free encoder (``x → Linear(n_hidden) → BatchNorm → ReLU → (mu, log-var)``) and a
    batch-specific decoder (``z → Linear(n_input) → domain-specific BatchNorm → Sigmoid``).
    The input is expected in ``[0, 1]`` (MaxAbs-scaled log-normalised expression, or binary
    accessibility); the reconstruction loss is the binary cross-entropy summed over features.

    Parameters
    ----------
    n_input
        Number of input features.
    n_batch
        Number of batches; the decoder holds one BatchNorm per batch.
    n_hidden
        Width of the encoder's hidden layer.
    n_latent
        Dimensionality of the latent space.
    kl_weight
        Weight of the KL divergence in the loss (the paper's 0.5). The training plan's own KL
        weight (1 unless a warm-up is requested) multiplies it.
    encoder_norm
        Normalisation of the encoder's hidden layer: ``"batch"`` (the paper's BatchNorm) or
        ``"layer"`` (LayerNorm), see :class:`BatchFreeEncoder`.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 1,
        n_hidden: int = 1024,
        n_latent: int = 10,
        kl_weight: float = 0.5,
        encoder_norm: Literal["batch", "layer"] = "batch",
    ):
        super().__init__()
        self.n_input = n_input
        self.n_batch = max(n_batch, 1)
        self.n_hidden = n_hidden
        self.n_latent = n_latent
        self.kl_weight = kl_weight
        self.encoder_norm = encoder_norm
        self.z_encoder = BatchFreeEncoder(
            n_input, n_hidden=n_hidden, n_latent=n_latent, norm=encoder_norm
        )
        self.decoder = DSBNDecoder(n_latent, n_input, self.n_batch)

    @property
    def n_frozen_batches(self) -> int:
        """Number of leading batches fixed by :meth:`freeze_reference` (0: none)."""
        return self.decoder.norm.frozen_domains

    def freeze_reference(self, n_reference_batches: int) -> None:
        """Fix everything but the decoder BatchNorm of the batches after the first ones.

        Used for a query model (:meth:`scalex_scvi.SCALEX.load_query_data`): the encoder, the
        decoder's linear layer and the first ``n_reference_batches`` domains of the decoder's
        BatchNorm (affine parameters and running statistics) no longer change in training, and
        the encoder stays in evaluation mode (running statistics), so that every cell is encoded
        in training exactly as at inference. Only the new domains' scale and shift are trained,
        and their running statistics updated. The optimiser must not apply weight decay, which
        would move the fixed rows of the affine parameters.

        Parameters
        ----------
        n_reference_batches
            Number of leading batches (domains) to fix.
        """
        norm = self.decoder.norm
        if not 0 < n_reference_batches <= self.n_batch:
            raise ValueError(f"n_reference_batches must lie in 1..{self.n_batch}.")
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for parameter in (norm.weight, norm.bias):
            parameter.requires_grad_(True)
            parameter.register_hook(partial(_zero_leading_rows, n_rows=n_reference_batches))
        norm.frozen_domains = n_reference_batches
        self.train(self.training)

    def train(self, mode: bool = True) -> SCALEXVAE:
        """Set training mode; a frozen encoder (see :meth:`freeze_reference`) stays in eval."""
        super().train(mode)
        if self.n_frozen_batches:
            self.z_encoder.eval()
        return self

    def _get_inference_input(
        self, tensors: dict[str, torch.Tensor], full_forward_pass: bool = True
    ) -> dict[str, torch.Tensor]:
        """The encoder sees the features only, never the batch."""
        return {MODULE_KEYS.X_KEY: tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor | Distribution],
    ) -> dict[str, torch.Tensor]:
        return {
            MODULE_KEYS.Z_KEY: inference_outputs[MODULE_KEYS.Z_KEY],
            MODULE_KEYS.BATCH_INDEX_KEY: tensors[REGISTRY_KEYS.BATCH_KEY],
        }

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        n_samples: int = 1,
        hidden_stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor | Distribution]:
        r"""Encode ``x`` into :math:`q(z \mid x)` and draw ``z`` by reparameterisation.

        Parameters
        ----------
        x
            Input of shape ``(n_cells, n_input)``.
        n_samples
            Number of samples of ``z``; with more than one, ``z`` has a leading sample axis.
        hidden_stats
            Optional statistics per group of cells for the encoder's BatchNorm, see
            :meth:`BatchFreeEncoder.forward`.
        """
        qzm, qzv = self.z_encoder(x, hidden_stats=hidden_stats)
        qz = Normal(qzm, qzv.sqrt())
        z = qz.rsample() if n_samples == 1 else qz.rsample((n_samples,))
        return {
            MODULE_KEYS.Z_KEY: z,
            MODULE_KEYS.QZ_KEY: qz,
            MODULE_KEYS.QZM_KEY: qzm,
            MODULE_KEYS.QZV_KEY: qzv,
        }

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        batch_index: torch.Tensor,
        transform_batch: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode ``z`` through the DSBN of each cell's batch (or of ``transform_batch``).

        Returns the logits and ``px``, the decoded expression in ``[0, 1]``.
        """
        if transform_batch is not None:
            batch_index = torch.full_like(batch_index, transform_batch)
        batch_index = batch_index.reshape(-1)
        if z.dim() == 3:  # (n_samples, n_cells, n_latent)
            n_samples, n_cells, _ = z.shape
            logits = self.decoder(
                z.reshape(n_samples * n_cells, -1), batch_index.repeat(n_samples)
            )
            logits = logits.reshape(n_samples, n_cells, -1)
        else:
            logits = self.decoder(z, batch_index)
        return {LOGITS_KEY: logits, MODULE_KEYS.PX_KEY: torch.sigmoid(logits)}

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor | Distribution],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float | torch.Tensor = 1.0,
    ) -> LossOutput:
        """Binary cross-entropy summed over features plus ``kl_weight`` × KL to N(0, I).

        Both terms are per cell; the loss is their mean over the cells of the mini-batch.
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        reconstruction_loss = F.binary_cross_entropy_with_logits(
            generative_outputs[LOGITS_KEY], x, reduction="none"
        ).sum(-1)
        qz = inference_outputs[MODULE_KEYS.QZ_KEY]
        kl_z = kl_divergence(qz, Normal(torch.zeros_like(qz.loc), torch.ones_like(qz.scale))).sum(
            -1
        )
        loss = torch.mean(reconstruction_loss + self.kl_weight * kl_weight * kl_z)
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            kl_local={MODULE_KEYS.KL_Z_KEY: kl_z},
        )

    @torch.inference_mode()
    def marginal_ll(
        self,
        tensors: dict[str, torch.Tensor],
        n_mc_samples: int,
        return_mean: bool = False,
        n_mc_samples_per_pass: int = 1,
    ) -> torch.Tensor | float:
        r"""Importance-sampled estimate of each cell's :math:`\log p(x)`, as scvi-tools' VAE.

        :math:`\log \frac{1}{K} \sum_k p(x \mid z_k)\, p(z_k) / q(z_k \mid x)` with
        :math:`z_k \sim q(z \mid x)`, where :math:`\log p(x \mid z)` is minus the binary
        cross-entropy summed over features (the reconstruction term of the loss). Used by
        :meth:`~scvi.model.base.VAEMixin.get_marginal_ll`.

        Parameters
        ----------
        tensors
            Mini-batch of the data loader.
        n_mc_samples
            Number of importance samples :math:`K`.
        return_mean
            Return the mean over cells instead of one value per cell.
        n_mc_samples_per_pass
            Samples drawn per forward pass (memory against speed).
        """
        x = tensors[REGISTRY_KEYS.X_KEY].to(self.device)
        batch_index = tensors[REGISTRY_KEYS.BATCH_KEY].to(self.device)
        per_pass = max(1, min(n_mc_samples_per_pass, n_mc_samples))
        terms = []
        for start in range(0, n_mc_samples, per_pass):
            n_samples = min(per_pass, n_mc_samples - start)
            inference = self.inference(x, n_samples=n_samples)
            qz, z = inference[MODULE_KEYS.QZ_KEY], inference[MODULE_KEYS.Z_KEY]
            z = z if n_samples > 1 else z.unsqueeze(0)  # (n_samples, n_cells, n_latent)
            logits = self.generative(z, batch_index)[LOGITS_KEY]
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none"
            ).sum(-1)
            log_pz = Normal(torch.zeros_like(z), torch.ones_like(z)).log_prob(z).sum(-1)
            terms.append(log_px_z + log_pz - qz.log_prob(z).sum(-1))
        log_lkl = torch.logsumexp(torch.cat(terms), dim=0) - math.log(n_mc_samples)
        return log_lkl.mean().item() if return_mean else log_lkl.cpu()

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor], n_samples: int = 1) -> torch.Tensor:
        """Draw binary samples from the Bernoulli likelihood of the reconstruction.

        Returns a tensor of shape ``(n_cells, n_input)``, or ``(n_cells, n_input, n_samples)``
        when ``n_samples > 1``.
        """
        _, generative_outputs = self.forward(
            tensors, inference_kwargs={"n_samples": n_samples}, compute_loss=False
        )
        samples = torch.bernoulli(generative_outputs[MODULE_KEYS.PX_KEY]).cpu()
        return samples.permute(1, 2, 0) if n_samples > 1 else samples


def _zero_leading_rows(grad: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The gradient with its first ``n_rows`` rows set to zero (a fixed parameter's rows)."""
    grad = grad.clone()
    grad[:n_rows] = 0
    return grad
