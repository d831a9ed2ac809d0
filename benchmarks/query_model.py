"""Decoder normalisations for new batches: ``SCALEX.load_query_data`` on the PBMC chemistries.

Each chemistry of the shipped PBMC data in turn is the query; the reference model trains on the
other two (package defaults, ``--iterations`` at most). The query's reconstruction error
(scvi-tools' ``get_reconstruction_error``: binary cross-entropy summed over features, mean over
cells) is measured when the query is decoded through each reference batch's BatchNorm (the
reference model, the query labelled as that batch), through its own new BatchNorm as
``load_query_data`` initialises it, and after ``train()`` (package defaults: only the new scale
and shift, early stopping). Also checked: the latents of the query model equal the reference's.
Writes benchmarks/results/query_model.{md,csv}.

    python benchmarks/query_model.py [--iterations 30000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scvi

import scalex_scvi as sx

from _common import RESULTS, provenance

CHEMISTRIES = ("3pv1", "3pv2", "5p")
MIN_FEATURES = 50  # the shipped file holds 1,767 genes


def _error(model: sx.SCALEX, adata=None) -> float:
    scvi.settings.seed = 0  # the same latent samples for every measurement
    return float(model.get_reconstruction_error(adata)["reconstruction_loss"])


def _constant_error(x: np.ndarray) -> float:
    """The error of predicting every cell by the mean of each feature (a yardstick)."""
    p = np.clip(x.mean(0), 1e-7, 1 - 1e-7)
    return float(-(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1).mean())


def run_split(raw, query_batch: str, iterations: int) -> dict:
    reference_raw = raw[raw.obs["batch"] != query_batch].copy()
    query_raw = raw[raw.obs["batch"] == query_batch].copy()
    reference = sx.pp.preprocess(reference_raw, batch_key="batch", min_features=MIN_FEATURES)
    scvi.settings.seed = 0
    sx.SCALEX.setup_anndata(reference, batch_key="batch")
    model = sx.SCALEX(reference)
    model.train(max_iterations=iterations, enable_progress_bar=False)
    query = model.prepare_query(query_raw, batch_key="batch")
    row = {"query": query_batch, "query_cells": query.n_obs, "reference_own": _error(model)}
    for name in model.batch_categories:
        labelled = query.copy()
        labelled.obs["batch"] = name
        row[f"through {name}"] = _error(model, labelled)
    row["query gene means"] = _constant_error(query.X.toarray())
    row["through best reference batch"] = min(
        row[f"through {name}"] for name in model.batch_categories
    )
    start = time.perf_counter()
    query_model = sx.SCALEX.load_query_data(query.copy(), model)
    row["load_query_data_s"] = time.perf_counter() - start
    row["own, initialised"] = _error(query_model)
    start = time.perf_counter()
    query_model.train(enable_progress_bar=False)
    row["train_s"] = time.perf_counter() - start
    row["train_epochs"] = len(query_model.history["train_loss"])
    row["own, trained"] = _error(query_model)
    row["latent_max_abs_difference"] = float(
        np.abs(
            query_model.get_latent_representation() - model.get_latent_representation(query)
        ).max()
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30_000)
    args = parser.parse_args()
    raw = sx.datasets.pbmc_3chemistries()
    table = pd.DataFrame([run_split(raw, batch, args.iterations) for batch in CHEMISTRIES])
    through = [f"through {batch}" for batch in CHEMISTRIES]
    order = ["query", "query_cells", "query gene means", "reference_own", *through]
    order.append("through best reference batch")
    table = table[order + [column for column in table if column not in order]]
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / "query_model.csv", index=False)
    lines = [
        "# Decoder normalisations for new batches (`SCALEX.load_query_data`)",
        "",
        "Shipped PBMC data (1,200 cells, three 10x chemistries); each chemistry in turn is the "
        f"query, the reference model trains on the other two (package defaults, at most "
        f"{args.iterations} iterations, seed 0). Reconstruction error: scvi-tools' "
        "`get_reconstruction_error` (binary cross-entropy summed over features, mean over "
        "cells; lower is better), with the same latent samples for every column. `through X`: "
        "the query decoded through reference batch X's BatchNorm (the reference model, the "
        "query labelled X). `own, initialised`: its new BatchNorm as `load_query_data` sets it "
        "(the query's statistics, the reference batches' mean scale and shift). `own, trained`: "
        "after `query_model.train()` with the package defaults (only the new scale and shift, "
        "early stopping). `reference_own`: the reference cells through their own batches. "
        "`query gene means`: every query cell predicted by the query's mean of each feature, "
        "no model (a yardstick). "
        "`latent_max_abs_difference`: query model against reference model on the query.",
        "",
        table.to_markdown(index=False, floatfmt=".4g"),
        "",
        provenance(),
    ]
    (RESULTS / "query_model.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
