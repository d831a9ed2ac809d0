"""How much of the partial-overlap series' over-correction no embedding can avoid.

The over-correction score counts, for each cell, the share of its 100 nearest other cells that
are of another type. A cell of a type with ``n_t`` cells has at least ``100 - (n_t - 1)`` such
neighbours in any embedding, so each design has a floor set by its type sizes alone
(:func:`scalex_scvi.metrics.over_correction_floor`), reached when every type is a cluster of its
own. The series' types are small, so part of every method's score is this floor.

This script trains nothing. It rebuilds every design of ``partial_overlap.py`` at both draw
seeds (same draws, same preprocessing), computes its floor, and checks every partial-overlap
table ``summary.py`` reads against the rebuilt designs: each row's design must be the rebuilt
one (its ``design`` column, and its score × number of cells × 100 an integer) and no row may
score below the floor. Reports the floor per design and each method's mean score above the
mean floor, per series and draw seed (``summary.py``'s means, less the floor). Writes
benchmarks/results/over_correction_floor.{md,csv,png}; notes in over_correction_floor_notes.md.

    python benchmarks/over_correction_floor.py
"""

from __future__ import annotations

import json

import matplotlib as mpl
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, notes_and_provenance, read
from partial_overlap import SERIES, prepared_design
from summary import (
    DEFAULTS,
    FLOOR,
    KL_WITHIN,
    LIGHT_KL,
    ORIGINAL_RUNS,
    OVERLAP_EXTRA,
    OVERLAP_FILES,
    floor_row,
    overlap_means,
)

mpl.use("Agg")
import matplotlib.pyplot as plt

N_NEIGHBORS = 100  # the panel's over-correction score (run_benchmark)
DRAWS = (0, 1)  # partial_overlap.py's default --draws 2, both seeds
KEYS = ["seed", "series", "shared_types", "draw"]
# methods drawn in the plot (seed 0), beside the floor
PLOTTED = (DEFAULTS, KL_WITHIN, LIGHT_KL, "scVI", "Harmony", "Scanorama", "PCA (unintegrated)")


def design_floors() -> pd.DataFrame:
    """One row per design of both draw seeds: its cells, its floor and its design (JSON, as
    ``partial_overlap.py`` writes it)."""
    rows = []
    for series, spec in SERIES.items():
        raw = read(spec["file"])
        for seed in OVERLAP_FILES:
            for k in spec["shared_counts"]:
                for draw in DRAWS:
                    prepared, design = prepared_design(raw, spec, k, draw, seed)
                    labels = prepared.obs["cell_type"]
                    rows.append(
                        {
                            "seed": seed,
                            "series": series,
                            "shared_types": k,
                            "draw": draw,
                            "n_cells": prepared.n_obs,
                            "floor": sx.metrics.over_correction_floor(labels, N_NEIGHBORS),
                            "design": json.dumps(design),
                        }
                    )
    return pd.DataFrame(rows)


def scored_rows() -> pd.DataFrame:
    """Every row of the partial-overlap tables ``summary.py`` reads, with its draw seed and
    file, in ``summary.py``'s order (a method's rows first come from the seed's main file)."""
    files = {**{name: seed for seed, name in OVERLAP_FILES.items()}, **OVERLAP_EXTRA}
    files.update(ORIGINAL_RUNS)
    tables = [
        pd.read_csv(RESULTS / name).assign(seed=seed, file=name) for name, seed in files.items()
    ]
    rows = pd.concat(tables, ignore_index=True)
    return rows[rows["over_correction"].notna()]


def check(rows: pd.DataFrame, floors: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with their design's floor; raises when a row's design is not the rebuilt one or
    a score lies below its floor (see the module doc)."""
    merged = rows.merge(floors, on=KEYS, how="left", suffixes=("", "_rebuilt"))
    if merged["floor"].isna().any():
        raise RuntimeError("rows of designs that were not rebuilt")
    other = merged["design"] != merged["design_rebuilt"]
    if other.any():
        raise RuntimeError(f"{int(other.sum())} rows come from other designs than the rebuilt")
    counts = merged["over_correction"] * merged["n_cells"] * N_NEIGHBORS
    if (counts - counts.round()).abs().max() > 1e-6:
        raise RuntimeError("a score is not a whole number of neighbours of the rebuilt design")
    if (merged["over_correction"] < merged["floor"] - 1e-12).any():
        raise RuntimeError("a score lies below its design's floor")
    return merged


def excess_table() -> pd.DataFrame:
    """Per method (rows) and series × draw seed (columns): ``summary.py``'s mean score minus
    the mean floor (of over_correction_floor.csv); the floor itself in the first row."""
    floor = floor_row()
    return pd.concat([floor, overlap_means().sub(floor.iloc[0], axis=1)])


def plot(merged: pd.DataFrame, floors: pd.DataFrame) -> None:
    """Per series, mean over-correction of seed 0's draws against the number of shared types,
    the floor dashed."""
    fig, axes = plt.subplots(1, len(SERIES), figsize=(6 * len(SERIES), 4.5), squeeze=False)
    seed0 = merged[merged["seed"] == 0].drop_duplicates([*KEYS, "method"])
    for ax, series in zip(axes[0], SERIES, strict=True):
        part = seed0[seed0["series"] == series]
        for method in PLOTTED:
            line = part[part["method"] == method].groupby("shared_types")["over_correction"]
            ax.plot(line.mean(), marker="o", label=method)
        lowest = floors[(floors["seed"] == 0) & (floors["series"] == series)]
        ax.plot(
            lowest.groupby("shared_types")["floor"].mean(),
            "k--",
            label=FLOOR,
        )
        ax.set_xticks(SERIES[series]["shared_counts"])
        ax.set_xlabel("cell types shared by the two batches")
        ax.set_ylabel("over-correction, mean of 2 draws (lower is better)")
        ax.set_title(f"{series}, draw seed 0")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "over_correction_floor.png", dpi=110)
    plt.close(fig)


def main() -> None:
    floors = design_floors()
    merged = check(scored_rows(), floors)
    floors.drop(columns="design").to_csv(RESULTS / "over_correction_floor.csv", index=False)
    excess = excess_table()
    plot(merged, floors)
    per_design = floors.drop(columns="design")
    with open(RESULTS / "over_correction_floor.md", "w") as fh:
        fh.write("# The floor of the over-correction score on the partial-overlap series\n\n")
        fh.write(
            f"Floor: the lowest score any embedding of a design's cells can have with "
            f"{N_NEIGHBORS} neighbours, set by its type sizes "
            "(`sx.metrics.over_correction_floor`). Checked: all "
            f"{len(merged)} scored rows of {merged['file'].nunique()} tables come from the "
            "rebuilt designs and none scores below its floor.\n\n"
        )
        fh.write(
            "Mean over-correction above the mean floor, over the draws and numbers of shared "
            "types (the means of `summary.md` minus the floor; methods that ran on every "
            "design of that series and seed):\n\n"
        )
        fh.write(excess.round(4).to_markdown() + "\n\n")
        fh.write("Floor of each design:\n\n")
        fh.write(per_design.round(4).to_markdown(index=False) + "\n\n")
        fh.write("![over-correction and its floor](over_correction_floor.png)\n\n")
        fh.write(notes_and_provenance(RESULTS, "over_correction_floor"))
    print(excess.round(4).to_string())


if __name__ == "__main__":
    main()
