"""Checkpoints of the original package (``scalex`` 1.0.4), read into this package's module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Mapping

# SCALEXVAE's encoder and decoder layer names, and the original VAE's
_ENCODER_KEYS = {
    "z_encoder.fc": "encoder.enc.net.0.fc",
    "z_encoder.norm": "encoder.enc.net.0.norm",
    "z_encoder.mean_encoder": "encoder.mu_enc.net.0.fc",
    "z_encoder.var_encoder": "encoder.var_enc.net.0.fc",
    "decoder.fc": "decoder.net.0.fc",
}
_LINEAR = ("weight", "bias")
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def read_original_checkpoint(dir_path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``config.pt`` and ``model.pt`` of an output folder of the original (or its checkpoint).

    Both are pickles (the configuration holds a pandas Index), read with
    ``torch.load(weights_only=False)`` as the original does: only read checkpoints you trust.
    """
    folder = Path(dir_path)
    if (folder / "checkpoint").is_dir():
        folder = folder / "checkpoint"
    paths = {name: folder / f"{name}.pt" for name in ("config", "model")}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"No checkpoint of the original package in {dir_path}: missing {missing} (expected "
            "the output folder of scalex.SCALEX(..., outdir=...) or its checkpoint/ folder)."
        )
    config = torch.load(paths["config"], map_location="cpu", weights_only=False)
    state = torch.load(paths["model"], map_location="cpu", weights_only=False)
    return config, state


def original_architecture(config: Mapping) -> tuple[np.ndarray, int, int, int]:
    """Features, hidden width, latent size and number of domains of an original model.

    Raises when the configuration is not SCALEX's architecture (``fc → BatchNorm → ReLU``, then
    the latent heads; one ``fc`` with domain-specific BatchNorm and a sigmoid as decoder).
    """
    enc, dec, n_domain = config["enc"], config["dec"], int(config["n_domain"])
    features = np.asarray(config["n_top_features"]).astype(str)
    scalex_like = (
        len(enc) == 2
        and list(enc[0][:1]) + list(enc[0][2:]) == ["fc", 1, "relu"]
        and list(enc[1][:1]) + list(enc[1][2:]) == ["fc", "", ""]
        and len(dec) == 1
        and list(dec[0]) == ["fc", len(features), n_domain, "sigmoid"]
    )
    if not scalex_like:
        raise ValueError(
            f"The checkpoint's architecture (enc={enc}, dec={dec}) is not SCALEX's; only "
            "models trained with the original's default architecture can be converted."
        )
    return features, int(enc[0][1]), int(enc[1][1]), n_domain


def module_state_from_original(
    state: Mapping[str, torch.Tensor], n_domain: int
) -> dict[str, torch.Tensor]:
    """The original VAE's parameters and buffers under :class:`SCALEXVAE`'s names.

    The original keeps one BatchNorm1d per domain (a plain BatchNorm1d with one domain);
    :class:`~scalex_scvi.module.DomainSpecificBatchNorm1d` stacks them by domain.
    """
    out = {}
    for ours, theirs in _ENCODER_KEYS.items():
        names = _BATCH_NORM if ours.endswith(".norm") else _LINEAR
        for name in names:
            out[f"{ours}.{name}"] = state[f"{theirs}.{name}"]
    prefixes = (
        ["decoder.net.0.norm."]
        if n_domain == 1
        else [f"decoder.net.0.norm.bns.{i}." for i in range(n_domain)]
    )
    for name in _BATCH_NORM:
        out[f"decoder.norm.{name}"] = torch.stack([state[prefix + name] for prefix in prefixes])
    return out


def original_recipe(features: np.ndarray, profile: str) -> dict:
    """The preparation the original applies to a query of an original model.

    RNA: genes named "ERCC…", "MT-…" or "mt-…" left out of the totals (the original's
    prefixes: ERCC1 to ERCC8 too, unlike :func:`~scalex_scvi.pp.preprocess`), normalised to
    10,000 per cell, log1p; ATAC: every peak, normalised and log-transformed the same way.
    Both reindexed to the model's features and MaxAbs-scaled by the maxima of the whole query
    (the original fits one new scaler on the query): ``scale="query"``.
    """
    if profile not in ("RNA", "ATAC"):
        raise ValueError(f"profile must be 'RNA' or 'ATAC', not {profile!r}.")
    return {
        "profile": profile,
        "batch_key": "",
        "min_features": 600 if profile == "RNA" else 100,
        "min_cells": 3,
        "target_sum": 1e4,
        "scale": "query",
        "binarize": False,
        "keep_mt": False,
        "excluded_prefixes": ["ERCC", "MT-", "mt-"],
        "features": np.asarray(features, dtype=str),
        "source": "scalex 1.0.4 checkpoint",
    }
