"""The benchmark panel on scATAC-seq: the shared bone-marrow data, two donors.

The paper integrates scATAC-seq with the same model (binary accessibility, the decoder's
sigmoid read as the probability that a peak is open). This script runs
``scalex_scvi.benchmark.run_benchmark`` on ``granja2019_bmmc_scatac_10kpeaks.h5ad`` (14,125
bone-marrow cells of 2 donors, 10,000 peaks, 16 cell types) prepared with the ATAC profile
(``sx.pp.preprocess(profile="ATAC")``: binarised, cells with fewer than 100 open peaks and
peaks open in fewer than 3 cells removed, every remaining peak kept) and scores SCALEX, scVI,
the unintegrated PCA, Harmony and Scanorama with scib-metrics and the paper's metrics.

Budgets (set so that the run fits in about half an hour on 2 CPU cores; every other setting
is the package's or scvi-tools'): SCALEX ``--iterations`` (default 8,000, no early stopping;
about 14 iterations per second with ~10,000 peaks here), scVI ``--scvi-epochs`` (default 100,
negative binomial on the binary peaks as on counts, the settings of ``run_benchmark``;
scvi-tools' heuristic would give 400 epochs, about 48 minutes). The original package is not
run here (its default budget, 30,000 iterations, would take over an hour on this machine).

``--add-budgets`` appends SCALEX rows from a later run (scores are per embedding, so they are
comparable): ``defaults`` trains with the package's settings (early stopping, up to 30,000
iterations), a number that many iterations without early stopping; ``--peaks normalised``
prepares the peaks as the original package 1.0.4 does (normalised and log-transformed, not
binarised; ``preprocess(..., binarize=False)``).

Writes benchmarks/results/atac.{md,csv} and scib-metrics' table in results/panel_tables/atac.

    python benchmarks/atac.py [--iterations 8000] [--scvi-epochs 100] [--cells N]
    python benchmarks/atac.py --add-budgets defaults   # SCALEX rows appended (package training)
    python benchmarks/atac.py --add-budgets 8000 --peaks normalised   # peaks not binarised
"""

from __future__ import annotations

import argparse
import logging

import anndata as ad
import numpy as np
import pandas as pd
import torch

import scalex_scvi as sx

from _common import RESULTS, SCORE_COLUMNS, provenance, read
from panel import budget_curve, scalex_name, with_training

FILE = "granja2019_bmmc_scatac_10kpeaks.h5ad"
COLUMNS = ["method", "status", *SCORE_COLUMNS]


INTRO_END = "\n\n| method"
NORMALISED = ", log-normalised peaks"
LEGEND = (
    "SCALEX rows: `SCALEX` alone trains with the package's settings (early stopping, at most "
    "30,000 iterations), `(N iterations)` that many without early stopping; "
    f"`{NORMALISED[2:]}`: peaks prepared with `preprocess(..., binarize=False)` (normalised and "
    "log-transformed, the original package 1.0.4's ATAC recipe), binarised otherwise. Wall times "
    "of rows from different runs are those of their runs (iterations per second varied between "
    "runs on this machine).\n\n"
)


def main_run(args: argparse.Namespace) -> None:
    """Every method on the ATAC data; writes atac.{md,csv}."""
    raw, prepared = prepare(args)
    table = sx.benchmark.run_benchmark(
        prepared,
        prepared=True,
        dataset="bmmc_atac",
        seed=args.seed,
        method_kwargs={
            "SCALEX": {"max_iterations": args.iterations, "early_stopping": False},
            "scVI": {"max_epochs": args.scvi_epochs},
        },
        save_dir=RESULTS / "panel_tables" / "atac",
        progress_bar=False,
    )
    # named as panel.py names SCALEX runs: "SCALEX" alone is the package's training
    table["method"] = table["method"].replace({"SCALEX": scalex_name(args.iterations)})
    intro = (
        f"{raw.n_obs:,} cells × {raw.n_vars:,} peaks read; the ATAC profile kept "
        f"{prepared.n_obs:,} cells × {prepared.n_vars:,} peaks "
        f"({prepared.obs['cell_type'].nunique()} cell types; cells per donor: "
        f"{prepared.obs['batch'].value_counts().to_dict()}). SCALEX "
        f"{args.iterations:,} iterations without early stopping (package defaults "
        f"otherwise), scVI {args.scvi_epochs} epochs; seed {args.seed}. scib-metrics "
        "default panel, not min-max scaled; paper metrics as in panel.md (batch entropy "
        "mixing on shared cell types, over-correction with k = 100, Leiden ARI/NMI). "
        "wall_s: training (or running) time; peak_mib: peak increase of resident memory."
    )
    write_report(table, intro, provenance())


def append_runs(args: argparse.Namespace) -> None:
    """Further SCALEX rows (budgets, KL weights, seeds, peak recipes) appended to atac.{md,csv}.

    Scores are per embedding (scib-metrics without min-max scaling, the paper's metrics seeded
    per embedding), so rows scored in a later run are comparable with the main run's.
    """
    previous = pd.read_csv(RESULTS / "atac.csv")
    budgets = tuple(None if b == "defaults" else int(b) for b in args.add_budgets)
    suffix = "" if args.peaks == "binary" else NORMALISED
    names = [scalex_name(b, seed=args.seed, kl_weight=args.kl_weight) + suffix for b in budgets]
    if previous["method"].isin(names).any():
        raise SystemExit(f"atac.csv already has {names}.")
    _, prepared = prepare(args)
    embeddings, timing = budget_curve(prepared, args.seed, budgets, kl_weight=args.kl_weight)
    embeddings = {name + suffix: value for name, value in embeddings.items()}
    timing = {name + suffix: value for name, value in timing.items()}
    extra = sx.benchmark.run_benchmark(
        prepared,
        prepared=True,
        methods=[],
        dataset="bmmc_atac",
        seed=args.seed,
        embeddings=embeddings,
        progress_bar=False,
    ).set_index("method")
    extra = with_training(extra, timing).reset_index()
    table = pd.concat([previous, extra], ignore_index=True)
    text = (RESULTS / "atac.md").read_text()
    intro = text.split("\n\n", 1)[1].split(INTRO_END, 1)[0]
    # what followed the summary line: notes and the provenance of the earlier runs
    earlier = text.split("Lowest over-correction", 1)[1].split("\n\n", 1)[1]
    earlier = earlier.replace("## Provenance\n", "## Provenance of an earlier run\n")
    trained = ", ".join(f"{name}: {info['iterations']:,}" for name, info in timing.items())
    note = (
        f"Rows {', '.join(names)} come from a later run (iterations trained: {trained}; "
        "provenance below, the earlier runs' after it).\n\n"
    )
    write_report(table, intro, note + provenance() + "\n" + earlier)


def prepare(args: argparse.Namespace) -> tuple[ad.AnnData, ad.AnnData]:
    """The raw data (a random subset with ``--cells``) and its ATAC-profile preparation.

    ``--peaks``: binarised (the default) or normalised and log-transformed.
    """
    raw = read(FILE)
    if args.cells is not None:
        keep = np.random.default_rng(args.seed).choice(raw.n_obs, args.cells, replace=False)
        raw = raw[np.sort(keep)].copy()
    binarize = args.peaks == "binary"
    return raw, sx.pp.preprocess(raw, batch_key="batch", profile="ATAC", binarize=binarize)


def write_report(table: pd.DataFrame, intro: str, tail: str) -> None:
    """atac.csv and atac.md: ``intro``, the table, the summary line, then ``tail``."""
    table = table[[c for c in COLUMNS if c in table]]
    table.to_csv(RESULTS / "atac.csv", index=False)
    scored = table.dropna(subset=["Total"]).set_index("method")
    with open(RESULTS / "atac.md", "w") as fh:
        fh.write("# Benchmark panel on scATAC-seq (bone marrow, 2 donors)\n\n")
        fh.write(intro + "\n\n")
        fh.write(table.round(4).to_markdown(index=False) + "\n\n")
        fh.write(LEGEND)
        compared = recipe_comparison(scored)
        if not compared.empty:
            fh.write(
                "Binarised against log-normalised peaks, same training and seed (difference: "
                "normalised minus binarised):\n\n"
                + compared.round(4).to_markdown(index=False)
                + "\n\n"
            )
        if not scored.empty:
            best = scored["Total"].idxmax()
            shown = [m for m in scored.index if m.startswith("SCALEX") or m == "scVI"]
            fh.write(
                f"Highest scib Total: **{best}** ({scored.loc[best, 'Total']:.4f}); "
                + ", ".join(f"{m} {scored.loc[m, 'Total']:.4f}" for m in shown)
                + ". Lowest over-correction: "
                f"**{scored['over_correction'].idxmin()}** "
                f"({scored['over_correction'].min():.4f}).\n\n"
            )
        fh.write(tail)
    print(pd.read_csv(RESULTS / "atac.csv").to_string())


def recipe_comparison(scored: pd.DataFrame) -> pd.DataFrame:
    """Each SCALEX row with log-normalised peaks next to the binarised row of the same name."""
    rows = []
    for name in scored.index[scored.index.str.endswith(NORMALISED)]:
        base = name[: -len(NORMALISED)]
        if base not in scored.index:
            continue
        row = {"SCALEX run": base}
        for column in ("Total", "Batch correction", "Bio conservation"):
            binary, normalised = scored.loc[base, column], scored.loc[name, column]
            row[f"{column} binarised"] = binary
            row[f"{column} normalised"] = normalised
            row[f"{column} difference"] = normalised - binary
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=8000, help="SCALEX budget")
    parser.add_argument("--scvi-epochs", type=int, default=100)
    parser.add_argument("--cells", type=int, default=None, help="random subset (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--add-budgets",
        nargs="+",
        default=None,
        help="further SCALEX rows appended to atac.{md,csv}: 'defaults' (the package's "
        "training, early stopping) or a number of iterations without early stopping",
    )
    parser.add_argument(
        "--kl-weight", type=float, default=None, help="with --add-budgets: SCALEX's kl_weight"
    )
    parser.add_argument(
        "--peaks",
        choices=["binary", "normalised"],
        default="binary",
        help="the ATAC profile's peak values: binarised (the package default) or normalised "
        "and log-transformed (binarize=False, the original package's recipe)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.add_budgets:
        append_runs(args)
    elif args.peaks != "binary":
        parser.error("the main run uses binarised peaks; --peaks goes with --add-budgets.")
    else:
        main_run(args)


if __name__ == "__main__":
    main()
