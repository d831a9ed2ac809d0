"""Partial overlap (the paper's Fig. 2 protocol): over-correction against shared cell types.

Two-batch datasets are built from real cells whose batches share 0 … all cell types:

- lung cell lines: batch 1 = the three CEL-seq2 five-line plates, batch 2 = Drop-seq (three
  lines). Of the three lines both hold, ``k`` are kept in both batches and each other line in
  one batch only (chosen at random); A549 and H838 exist in batch 1 only.
- PBMC chemistries: batch 1 = 3' v2, batch 2 = 5'. Of the seven types both hold with enough
  cells (B, DC, Mono_CD14, Mono_CD16, NK, T_CD4, T_CD8), ``k`` are kept in both batches and
  each other type in one batch only (at random).

Every method runs on each dataset (``scalex_scvi.benchmark.run_benchmark``); reported per
method and ``k``: the over-correction score (fraction of a cell's 100 nearest neighbours of
another type; lower is better) and scib bio conservation, mean and spread over the draws.
Writes benchmarks/results/partial_overlap.{md,csv,png}.

    python benchmarks/partial_overlap.py [--draws 2] [--iterations N] [--kl-weight W]
        [--methods ...] [--reuse results/partial_overlap.csv]
    python benchmarks/partial_overlap.py --report --conditions "..."  # rewrite the report
    python benchmarks/partial_overlap.py --seed 1 --output partial_overlap_seed1 ...
        # other random draws, results in partial_overlap_seed1.{md,csv,png}
    python benchmarks/partial_overlap.py --methods original --series lung_celllines \
        --reuse results/partial_overlap.csv --output partial_overlap_original
        # the original scalex 1.0.4 with its defaults (own venv, as in panel.py) beside them
        # (and --series pbmc_3chem --output partial_overlap_original_pbmc)
    python benchmarks/partial_overlap.py --methods SCALEX original --series lung_celllines \
        --seed 1 --draws 1 --reuse results/partial_overlap_seed1.csv \
        --output partial_overlap_original_seed1
        # the original and the package defaults on the first draws of seed 1 (and
        # --series pbmc_3chem --output partial_overlap_original_seed1_pbmc)
    python benchmarks/partial_overlap.py --methods SCALEX --batch-norm running per_batch \
        --reuse results/partial_overlap.csv --output partial_overlap_per_batch
        # one SCALEX model per dataset embedded with running and with per-batch statistics
        # (then --iterations 4000 --lr 1e-3 ... --reuse results/partial_overlap_per_batch.csv
        # --output partial_overlap_per_batch_lr)
    python benchmarks/partial_overlap.py --methods SCALEX --iterations 8000 --kl-within 0.04 \
        --reuse results/partial_overlap_per_batch_lr.csv --output partial_overlap_kl_within
        # kl_within.py's variant on every design (and --seed 1 --reuse
        # results/partial_overlap_seed1_per_batch.csv --output partial_overlap_seed1_kl_within)

SCALEX trains with the package defaults (≤ 30,000 iterations, early stopping) unless
``--iterations`` or ``--kl-weight`` is given (then its rows are labelled with them, e.g.
"SCALEX (2000 iterations, kl_weight 0.02)"). ``--kl-within ω`` trains ``kl_within.py``'s
variant of the loss (the KL within each batch weighted by ω, each batch's pull to the origin
kept whole; rows "SCALEX (8000 iterations, KL within 0.04)"). With ``--batch-norm``, ``--lr``
or ``--kl-within`` it trains as
``panel.py``'s budgets do (``budget_curve``: a given budget runs without early stopping) and
embeds the one model with each of the encoder's BatchNorm statistics named (rows of per-batch
statistics end in ", per-batch BatchNorm"). ``--reuse CSV``
takes the rows of methods not run now from an earlier run's table (same draws: the designs
depend on the seed only). Finished datasets are kept in a partial file, so an interrupted run
picks up where it stopped. Run it alone: two training processes on 2 cores oversubscribe them.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from pathlib import Path

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import torch

import scalex_scvi as sx

from _common import RESULTS, provenance, read
from panel import ORIGINAL, _run_original_defaults, budget_curve, scalex_name

mpl.use("Agg")
import matplotlib.pyplot as plt

SERIES = {
    "lung_celllines": {
        "file": "cellbench_lung_celllines.h5ad",
        "batches": {
            "CEL-seq2": ["CELseq2_5cl_p1", "CELseq2_5cl_p2", "CELseq2_5cl_p3"],
            "Drop-seq": ["Dropseq_3cl"],
        },
        "common": ["H1975", "H2228", "HCC827"],
        "extra": ["A549", "H838"],  # in batch 1 only
        "shared_counts": [0, 1, 2, 3],
        "min_features": 600,
    },
    "pbmc_3chem": {
        "file": "symphony_pbmc_3chem_small.h5ad",
        "batches": {"3pv2": ["3pv2"], "5p": ["5p"]},
        "common": ["B", "DC", "Mono_CD14", "Mono_CD16", "NK", "T_CD4", "T_CD8"],
        "extra": [],  # MK (2 + 2 cells) and HSC (0 + 1) are left out
        "shared_counts": [0, 2, 4, 7],
        "min_features": 50,
    },
}
METHODS = ["SCALEX", "scVI", "PCA (unintegrated)", "Harmony", "Scanorama"]
ORIGINAL_CHOICE = "original"  # --methods name of the original package with its defaults
REUSED_SCALEX_ITERATIONS = 2000  # budget of the first run, whose SCALEX rows carry no label


def reused_rows(path: Path | None, methods: list[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    rows = pd.read_csv(path)
    if "scalex_iterations" not in rows:
        rows["scalex_iterations"] = REUSED_SCALEX_ITERATIONS
    unlabelled = rows["method"] == "SCALEX"
    rows.loc[unlabelled, "method"] = [
        scalex_name(None if pd.isna(n) else int(n))
        for n in rows.loc[unlabelled, "scalex_iterations"]
    ]
    return rows[~rows["method"].isin(methods)]


def build(
    raw: ad.AnnData, spec: dict, k: int, rng: np.random.Generator
) -> tuple[ad.AnnData, dict]:
    names = list(spec["batches"])
    common = list(spec["common"])
    shared = list(rng.choice(common, size=k, replace=False)) if k else []
    private = {name: [] for name in names}
    for cell_type in (t for t in common if t not in shared):
        private[names[rng.integers(0, 2)]].append(cell_type)
    keep = np.zeros(raw.n_obs, dtype=bool)
    batch = np.empty(raw.n_obs, dtype=object)
    for name, members in spec["batches"].items():
        in_batch = raw.obs["batch"].astype(str).isin(members).to_numpy()
        types = raw.obs["cell_type"].astype(str)
        allowed = shared + private[name] + list(spec["extra"])
        chosen = in_batch & types.isin(allowed).to_numpy()
        keep |= chosen
        batch[chosen] = name
    data = raw[keep].copy()
    data.obs["batch"] = pd.Categorical(batch[keep])
    return data, {"shared": shared, "private": private}


def prepared_design(
    raw: ad.AnnData, spec: dict, k: int, draw: int, seed: int
) -> tuple[ad.AnnData, dict]:
    """Draw ``draw`` of the design with ``k`` shared types at draw seed ``seed`` (see
    :func:`build`), preprocessed as every method receives it, and the design."""
    data, design = build(raw, spec, k, np.random.default_rng(1000 * k + draw + seed))
    prepared = sx.pp.preprocess(data, batch_key="batch", min_features=spec["min_features"])
    return prepared, design


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument(
        "--kl-weight", type=float, default=None, help="SCALEX's kl_weight (default: the package's)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="SCALEX's learning rate (default: the package's)"
    )
    parser.add_argument(
        "--kl-within",
        type=float,
        default=None,
        help="SCALEX's KL within each batch weighted by this, each batch's pull to the origin "
        "kept whole (kl_within.py's variant; default: the paper's loss)",
    )
    parser.add_argument(
        "--batch-norm",
        nargs="+",
        default=None,
        choices=["running", "per_batch"],
        help="encoder BatchNorm statistics of SCALEX's embeddings, one model for all",
    )
    parser.add_argument("--scvi-epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=list(SERIES))
    parser.add_argument(
        "--methods", nargs="+", default=METHODS, choices=[*METHODS, ORIGINAL_CHOICE]
    )
    parser.add_argument("--reuse", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--conditions", default="", help="run conditions, written to the report")
    parser.add_argument(
        "--output",
        default="partial_overlap",
        help="name of the result files in benchmarks/results (.csv, .md, .png)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="rewrite partial_overlap.md and the plot from the existing CSV, without running",
    )
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.report:
        write_report(pd.read_csv(RESULTS / f"{args.output}.csv"), args)
        return
    label = scalex_name(args.iterations, lr=args.lr, kl_weight=args.kl_weight)
    curve = any(x is not None for x in (args.batch_norm, args.lr, args.kl_within))
    batch_norms = tuple(args.batch_norm or ["running"])
    labels = [
        scalex_name(
            args.iterations, norm, args.lr, kl_weight=args.kl_weight, kl_within=args.kl_within
        )
        for norm in batch_norms
    ]
    patch = None
    if args.kl_within is not None:
        # imported here: kl_within imports decoder_scale, which imports this module
        from kl_within import patch_loss

        patch = functools.partial(patch_loss, within=args.kl_within)
    names = {ORIGINAL_CHOICE: [ORIGINAL], "SCALEX": labels if curve else [label]}
    reused = reused_rows(args.reuse, [n for m in args.methods for n in names.get(m, [m])])
    partial = RESULTS / f"{args.output}_partial.json"
    done = json.loads(partial.read_text()) if partial.exists() else {}
    for series, spec in ((name, SERIES[name]) for name in args.series):
        raw = read(spec["file"])
        for k in spec["shared_counts"]:
            for draw in range(args.draws):
                key = f"{series}|{k}|{draw}"
                if key in done:
                    continue
                # torch reported more threads than OMP_NUM_THREADS after earlier runs; pin it
                torch.set_num_threads(args.threads)
                prepared, design = prepared_design(raw, spec, k, draw, args.seed)
                scalex_kwargs = (
                    {} if args.iterations is None else {"max_iterations": args.iterations}
                )
                if args.kl_weight is not None:
                    scalex_kwargs["model_kwargs"] = {"kl_weight": args.kl_weight}
                embeddings, original, timing = {}, None, {}
                if ORIGINAL_CHOICE in args.methods:
                    embeddings[ORIGINAL], original = _run_original_defaults(prepared, args.seed)
                if curve and "SCALEX" in args.methods:
                    trained, timing = budget_curve(
                        prepared,
                        args.seed,
                        (args.iterations,),
                        batch_norms,
                        args.lr,
                        args.kl_weight,
                        patch,
                    )
                    # budget_curve names rows with the seed where it is not 0; here the seed
                    # is the draws'
                    embeddings.update(zip(labels, trained.values(), strict=True))
                    timing = dict(zip(labels, timing.values(), strict=True))
                # SCALEX trained above, the original in its own venv: both passed as embeddings
                elsewhere = {ORIGINAL_CHOICE, *(["SCALEX"] if curve else [])}
                table = sx.benchmark.run_benchmark(
                    prepared,
                    methods=[m for m in args.methods if m not in elsewhere],
                    prepared=True,
                    embeddings=embeddings,
                    dataset=f"{series}_k{k}_d{draw}",
                    seed=args.seed,
                    method_kwargs={
                        "SCALEX": scalex_kwargs,
                        "scVI": {"max_epochs": args.scvi_epochs},
                    },
                )
                if original is not None:
                    at = table["method"] == ORIGINAL
                    table.loc[at, ["wall_s", "peak_mib"]] = [
                        original["fit_s"],
                        original["peak_rss_mib"],
                    ]
                    table.loc[at, "original_iterations"] = original["iterations"]
                for name, info in timing.items():
                    at = table["method"] == name
                    table.loc[at, ["wall_s", "peak_mib"]] = [info["wall_s"], info["peak_mib"]]
                    table.loc[at, "scalex_trained_iterations"] = info["iterations"]
                table["method"] = table["method"].replace({"SCALEX": label})
                table["scalex_iterations"] = args.iterations
                table["scalex_kl_weight"] = args.kl_weight
                table["scalex_lr"] = args.lr
                table["scalex_kl_within"] = args.kl_within
                table["series"], table["shared_types"], table["draw"] = series, k, draw
                table["design"] = json.dumps(design)
                if reused is not None:
                    earlier = reused[
                        (reused["series"] == series)
                        & (reused["shared_types"] == k)
                        & (reused["draw"] == draw)
                    ]
                    if not earlier.empty and earlier["design"].iloc[0] != table["design"].iloc[0]:
                        raise RuntimeError(f"{key}: the reused rows come from another design.")
                    table = pd.concat([table, earlier], ignore_index=True)
                done[key] = table.to_dict(orient="records")
                partial.write_text(json.dumps(done, default=float))
                print(
                    key,
                    table[["method", "over_correction", "Bio conservation"]]
                    .round(3)
                    .to_dict("records"),
                    flush=True,
                )
    table = pd.concat([pd.DataFrame(rows) for rows in done.values()], ignore_index=True)
    table.to_csv(RESULTS / f"{args.output}.csv", index=False)
    write_report(table, args)
    partial.unlink()


def write_report(table: pd.DataFrame, args) -> None:
    summary = table.groupby(["series", "shared_types", "method"])[
        ["over_correction", "Bio conservation", "Batch correction", "Total"]
    ].agg(["mean", "std"])
    per_method = table.groupby(["series", "method"])["over_correction"].mean().unstack()
    scib_means = table.groupby(["series", "method"])[["Bio conservation", "Total"]].mean()
    scib_means = scib_means.unstack("series").swaplevel(axis=1).sort_index(axis=1)
    lowest = table.groupby(["series", "shared_types", "method"])["over_correction"].mean()
    winners = lowest.groupby(["series", "shared_types"]).idxmin().map(lambda t: t[2])

    fig, axes = plt.subplots(2, len(args.series), figsize=(6 * len(args.series), 8), squeeze=False)
    for column, series in enumerate(args.series):
        part = table[table["series"] == series]
        for row, metric in enumerate(("over_correction", "Bio conservation")):
            ax = axes[row, column]
            for method, group in part.groupby("method"):
                stats = group.groupby("shared_types")[metric].agg(["mean", "std"])
                ax.errorbar(
                    stats.index,
                    stats["mean"],
                    yerr=stats["std"].fillna(0),
                    marker="o",
                    capsize=3,
                    label=method,
                )
            ax.set_xlabel("cell types shared by the two batches")
            ax.set_ylabel(metric + (" (lower is better)" if row == 0 else ""))
            ax.set_title(series)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.output}.png", dpi=110)
    plt.close(fig)

    with open(RESULTS / f"{args.output}.md", "w") as fh:
        fh.write("# Partial overlap: over-correction against shared cell types\n\n")
        fh.write(
            f"{args.draws} random draws per number of shared types; SCALEX with the package "
            "defaults (≤ 30,000 iterations, early stopping) unless its label says otherwise; "
            f"scVI {args.scvi_epochs} epochs; seed {args.seed}. Over-correction: fraction of "
            "each cell's 100 nearest neighbours of another cell type (lower is better).\n\n"
        )
        if ORIGINAL in set(table["method"]):
            fh.write(
                f"{ORIGINAL}: the original package with its defaults (at most 30,000 "
                "iterations, early stopping; its own venv with the three compat patches, as in "
                "`panel.md`) on the same prepared data, embedded its way; `wall_s` is its "
                "training, `original_iterations` the iterations it ran.\n\n"
            )
        if args.reuse is not None or args.report:
            fh.write(
                "Rows come from several runs of this script on the same draws and designs "
                "(see the run conditions below); SCALEX's labels give its iteration budget, "
                "learning rate, KL weight and KL within batches (`kl_within.py`'s variant) "
                "where they are not the package defaults.\n\n"
            )
        fh.write("Mean over-correction per method (all draws and overlaps):\n\n")
        fh.write(per_method.round(4).to_markdown() + "\n\n")
        fh.write("Mean scib bio conservation and Total per method (all draws and overlaps):\n\n")
        fh.write(scib_means.round(4).to_markdown() + "\n\n")
        fh.write("Lowest over-correction per series and overlap:\n\n")
        fh.write(winners.to_frame("lowest over-correction").to_markdown() + "\n\n")
        fh.write("Mean and standard deviation over draws:\n\n")
        fh.write(summary.round(4).to_markdown() + "\n\n")
        if args.conditions:
            fh.write(f"Run conditions: {args.conditions}\n\n")
        fh.write(f"![over-correction and bio conservation]({args.output}.png)\n\n")
        fh.write(provenance())


if __name__ == "__main__":
    main()
