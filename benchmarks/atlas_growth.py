"""Growing an atlas: cost of ``Atlas.map`` + ``Atlas.extend`` against the cells added.

An atlas is built on the lung cell lines (all 1,021 real cells, 2,000 features). Query blocks of
doubling size are resampled from the same real cells (each a random cell with its counts
binomially thinned, p = 0.8) and mapped then added one after the other. For each block:
wall time and peak memory increase of ``map`` (prepare, embed, place on the map, transfer
labels) and of ``extend``; after each block the reference cells' embedding and map coordinates
are compared bit for bit with those before the first block. Writes
benchmarks/results/atlas_growth.{md,csv,png}.

    python benchmarks/atlas_growth.py [--blocks 2500 5000 10000 20000 40000]
"""

from __future__ import annotations

import argparse
import logging
import time

import matplotlib as mpl
import numpy as np
import pandas as pd
import scvi

import scalex_scvi as sx

from _common import RESULTS, PeakMemory, provenance, read
from throughput import resample

mpl.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, nargs="+", default=[2500, 5000, 10000, 20000, 40000])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    raw = read("cellbench_lung_celllines.h5ad")
    reference = sx.pp.preprocess(raw, batch_key="batch")
    scvi.settings.seed = 0
    sx.SCALEX.setup_anndata(reference, batch_key="batch")
    model = sx.SCALEX(reference)
    model.train(max_iterations=args.iterations, enable_progress_bar=False)
    atlas = sx.Atlas.build(model, reference, label_key="cell_type")
    n_reference = atlas.n_obs
    latent0 = atlas.adata.obsm["X_scalex"].copy()
    map0 = atlas.adata.obsm["X_umap"].copy()

    rows = []
    for i, n_cells in enumerate(args.blocks):
        query_raw = resample(raw, n_cells, seed=i + 1)
        query_raw.obs_names = [f"block{i}_{name}" for name in query_raw.obs_names]
        with PeakMemory() as map_memory:
            start = time.perf_counter()
            mapped = atlas.map(query_raw, batch_key="batch", source=f"block{i}")
            map_s = time.perf_counter() - start
        with PeakMemory() as extend_memory:
            start = time.perf_counter()
            atlas.extend(mapped)
            extend_s = time.perf_counter() - start
        cells = atlas.adata
        rows.append(
            {
                "block": i,
                "cells_added": n_cells,
                "atlas_cells": atlas.n_obs,
                "map_s": map_s,
                "map_cells_per_s": n_cells / map_s,
                "map_peak_mib": map_memory.peak_mib,
                "extend_s": extend_s,
                "extend_peak_mib": extend_memory.peak_mib,
                "reference_latent_identical": bool(
                    np.array_equal(cells.obsm["X_scalex"][:n_reference], latent0)
                ),
                "reference_map_identical": bool(
                    np.array_equal(cells.obsm["X_umap"][:n_reference], map0)
                ),
                "label_accuracy": float(
                    (mapped.obs["cell_type_predicted"] == mapped.obs["cell_type"]).mean()
                ),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(RESULTS / "atlas_growth.csv", index=False)
    slope = np.polyfit(table["cells_added"], table["map_s"], 1)
    fit = np.polyval(slope, table["cells_added"])
    residual = ((table["map_s"] - fit) ** 2).sum()
    r2 = 1 - residual / ((table["map_s"] - table["map_s"].mean()) ** 2).sum()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(table["cells_added"], table["map_s"], "o-", label="map")
    axes[0].plot(table["cells_added"], table["extend_s"], "o-", label="extend")
    axes[0].set(xlabel="cells added", ylabel="seconds")
    axes[0].legend()
    axes[1].plot(table["cells_added"], table["map_peak_mib"], "o-", label="map")
    axes[1].plot(table["cells_added"], table["extend_peak_mib"], "o-", label="extend")
    axes[1].set(xlabel="cells added", ylabel="peak memory increase (MiB)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "atlas_growth.png", dpi=100)
    plt.close(fig)

    with open(RESULTS / "atlas_growth.md", "w") as fh:
        fh.write("# Growing an atlas (map + extend)\n\n")
        fh.write(
            f"Reference: {n_reference} lung cell-line cells, {reference.n_vars} features, "
            f"{args.iterations} training iterations. Query blocks resampled from the real cells "
            "(binomial thinning p = 0.8), added one after the other. `map` = prepare + embed + "
            "UMAP transform + label transfer.\n\n"
        )
        fh.write(table.round(4).to_markdown(index=False) + "\n\n")
        fh.write(
            f"Linear fit of map time: {slope[0] * 1e3:.3f} s per 1,000 cells + "
            f"{slope[1]:.2f} s (R² = {r2:.4f}).\n\n"
        )
        fh.write("![time and memory](atlas_growth.png)\n\n")
        fh.write(provenance())
    print(table.to_string())


if __name__ == "__main__":
    main()
