"""Embedding throughput of the frozen encoder at atlas scale (2,000 features, 2 CPU cores).

A query of 100,000 cells is resampled from the real lung cell-line cells (each a random real
cell with its counts binomially thinned, p = 0.8, so no two are identical), prepared with the
model's recipe and embedded. Reported: cells per second of ``get_latent_representation`` for
several chunk sizes, of ``prepare_query``, and of the original package's projection on the same
prepared cells. Writes benchmarks/results/throughput.{md,json}.

    python benchmarks/throughput.py [--n-cells 100000]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scvi
import torch
from scipy import sparse

import scalex_scvi as sx

from _common import RESULTS, PeakMemory, provenance, read
from _original import run as run_original


def resample(raw: ad.AnnData, n_cells: int, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, raw.n_obs, n_cells)
    counts = sparse.csr_matrix(raw.X[picks], dtype=np.float32)
    counts.data = rng.binomial(counts.data.astype(np.int64), 0.8).astype(np.float32)
    counts.eliminate_zeros()
    obs = raw.obs.iloc[picks][["batch", "cell_type"]].reset_index(drop=True)
    obs.index = [f"cell{i}" for i in range(n_cells)]
    return ad.AnnData(X=counts, obs=obs, var=raw.var[[]].copy())


def lung_model(iterations: int = 300) -> tuple[ad.AnnData, sx.SCALEX]:
    """The real lung cell-line counts and a SCALEX model trained briefly on them (seed 0)."""
    raw = read("cellbench_lung_celllines.h5ad")
    reference = sx.pp.preprocess(raw, batch_key="batch", n_top_features=2000)
    scvi.settings.seed = 0
    sx.SCALEX.setup_anndata(reference, batch_key="batch")
    model = sx.SCALEX(reference)
    model.train(max_iterations=iterations, enable_progress_bar=False)
    return raw, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-cells", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    raw, model = lung_model()
    reference = model.adata  # the prepared lung cells it was trained on

    query_raw = resample(raw, args.n_cells)
    results = {
        "n_cells": args.n_cells,
        "n_features": reference.n_vars,
        "torch_threads": torch.get_num_threads(),
    }
    start = time.perf_counter()
    query = model.prepare_query(query_raw, batch_key="batch")
    results["prepare_query_cells_per_s"] = args.n_cells / (time.perf_counter() - start)
    model.get_latent_representation(query[:2000].copy())  # warm-up
    for batch_size in (128, 1024, 4096, 16384):
        timings = []
        for _ in range(args.repeats):
            with PeakMemory() as memory:
                start = time.perf_counter()
                model.get_latent_representation(query, batch_size=batch_size)
                timings.append(time.perf_counter() - start)
        results[f"embed_batch_{batch_size}"] = {
            "cells_per_s": args.n_cells / float(np.median(timings)),
            "seconds": float(np.median(timings)),
            "peak_mib": memory.peak_mib,
        }
        print(batch_size, results[f"embed_batch_{batch_size}"], flush=True)
    default = model.get_latent_representation(query)
    start = time.perf_counter()
    model.get_latent_representation(query)
    results["embed_default_cells_per_s"] = args.n_cells / (time.perf_counter() - start)
    assert np.isfinite(default).all()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        slim = ad.AnnData(X=reference.X, obs=reference.obs[["batch"]], var=reference.var[[]])
        slim.write_h5ad(tmp / "reference.h5ad")
        ad.AnnData(X=query.X, obs=query.obs[["batch"]], var=query.var[[]]).write_h5ad(
            tmp / "query.h5ad"
        )
        (tmp / "train").mkdir()
        (tmp / "project").mkdir()
        run_original(
            {
                "mode": "train",
                "adata": str(tmp / "reference.h5ad"),
                "outdir": str(tmp / "train"),
                "max_iteration": 300,
            }
        )
        projected = run_original(
            {
                "mode": "project",
                "adata": str(tmp / "query.h5ad"),
                "model": str(tmp / "train"),
                "outdir": str(tmp / "project"),
            }
        )
    results["original_projection_cells_per_s"] = args.n_cells / projected["wall_s"]
    results["original_projection_s"] = projected["wall_s"]

    (RESULTS / "throughput.json").write_text(json.dumps(results, indent=2))
    best = max(v["cells_per_s"] for k, v in results.items() if k.startswith("embed_batch"))
    with open(RESULTS / "throughput.md", "w") as fh:
        fh.write("# Embedding throughput (frozen encoder)\n\n")
        fh.write(
            f"{args.n_cells:,} cells resampled from the lung cell lines (binomial thinning "
            f"p = 0.8) × {reference.n_vars} features, {results['torch_threads']} torch "
            f"threads, median of {args.repeats} runs.\n\n"
        )
        fh.write("| step | cells/s | seconds | peak memory (MiB) |\n|---|---|---|---|\n")
        for key, value in results.items():
            if key.startswith("embed_batch"):
                fh.write(
                    f"| get_latent_representation, batch_size={key.split('_')[-1]} | "
                    f"{value['cells_per_s']:,.0f} | {value['seconds']:.2f} | "
                    f"{value['peak_mib']:.0f} |\n"
                )
        fh.write(
            f"| get_latent_representation, default batch size | "
            f"{results['embed_default_cells_per_s']:,.0f} | | |\n"
        )
        fh.write(
            f"| prepare_query (normalise, log, reindex, scale) | "
            f"{results['prepare_query_cells_per_s']:,.0f} | | |\n"
        )
        fh.write(
            f"| original scalex 1.0.4 projection (whole call) | "
            f"{results['original_projection_cells_per_s']:,.0f} | "
            f"{results['original_projection_s']:.1f} | |\n\n"
        )
        fh.write(f"Best embedding throughput: **{best:,.0f} cells/s** (target: 20,000).\n\n")
        fh.write(provenance())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
