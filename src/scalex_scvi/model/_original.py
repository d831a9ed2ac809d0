"""Checkpoints of the original package (``scalex`` 1.0.4), read into this package's module."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from scvi.model.base import BaseModelClass

logger = logging.getLogger(__name__)

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

    ``model.pt`` is a state dict, read as weights only. ``config.pt`` is a pickle (it holds a
    pandas Index), read with ``torch.load(weights_only=False)`` as the original reads it: only
    read checkpoints you trust.
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
    state = torch.load(paths["model"], map_location="cpu", weights_only=True)
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


def original_batch_names(dir_path: str | Path, n_domain: int) -> list[str]:
    """Batch names of an original model, in its domain order.

    ``obs['batch']`` of ``adata.h5ad`` in its output folder (the cells it was trained on), else
    ``"0"``, ``"1"``, ...
    """
    folder = Path(dir_path)
    folder = folder.parent if folder.name == "checkpoint" else folder
    path = folder / "adata.h5ad"
    if path.is_file():
        batches = ad.read_h5ad(path, backed="r").obs.get("batch")
        if batches is not None and hasattr(batches, "cat"):
            categories = [str(name) for name in batches.cat.categories]
            if len(categories) == n_domain:
                return categories
    logger.warning("No batch names with the checkpoint; they are called 0 to %d.", n_domain - 1)
    return [str(i) for i in range(n_domain)]


def registry_of(
    model_cls: type[BaseModelClass], features: np.ndarray, batch_categories: Sequence[str]
) -> dict:
    """A registry of ``model_cls`` for ``features`` and the batches ``batch_categories``.

    Made by registering a stub AnnData of one cell per batch (batch column ``"batch"``), which
    is not kept.
    """
    stub = ad.AnnData(
        X=np.zeros((len(batch_categories), len(features)), dtype=np.float32),
        obs=pd.DataFrame(
            {"batch": pd.Categorical(batch_categories, categories=batch_categories)},
            index=[f"cell{i}" for i in range(len(batch_categories))],
        ),
        var=pd.DataFrame(index=features),
    )
    with warnings.catch_warnings():  # about batches of fewer than 3 cells: nothing trains here
        warnings.filterwarnings("ignore", message=".*fewer than 3 cells", category=UserWarning)
        model_cls.setup_anndata(stub, batch_key="batch")
    manager = model_cls._get_most_recent_anndata_manager(stub, required=True)
    model_cls._setup_adata_manager_store.pop(manager.adata_uuid)
    return manager.registry
