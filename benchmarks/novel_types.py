"""Cell types absent from the reference: are they called "Unknown" or forced onto a known type?

Of the projection splits (``projection.py``) only lung 5-line → 3-line has query cells of types
the reference lacks, two cell lines, so the Unknown rule's main promise (a new cell type is
not forced onto a reference type) rests on one split, where the share found varied with the
seed. This script makes more such splits: it takes a projection split, removes one cell type
from its reference (every reference batch) and keeps the query whole, so that the query's
cells of that type are new to the reference; the lung 5-line → 3-line split itself is the
last design (nothing removed). The held-out types range from distinct (B cells) to close
relatives of a reference type (CD16 monocytes next to CD14 monocytes, NK cells next to CD8 T
cells).

Per design: SCALEX trained on the reduced reference with the package defaults (as
``projection.py``), the query embedded with running and balanced encoder statistics; scArches
(scVI) with ``projection.py``'s settings; labels by the package defaults (15 neighbours,
uncertainty 0.7, distance quantile 0.99) in each method's space, and with three other
distance cutoffs: calibrated across the reference's batches (``calibration="other_batches"``),
whose effect on new types the projection splits could not settle, the lower quantile 0.95, and
one cutoff per reference type (``per_label_cutoff=True``). Reported: the share of held-out
cells called "Unknown" (and by which rule), the share of known cells called "Unknown", macro-F1
over the known types, how well the distance and the uncertainty rank held-out cells above known
ones (AUROC, whatever the cutoff), and the reference type that held-out cells are given when the
Unknown rule is off (their nearest relative). Writes ``novel_types.{md,csv,png}`` into
``benchmarks/results``, with the hand-written notes of ``novel_types_notes.md`` there.

    python benchmarks/novel_types.py [--designs pbmc_3pv1-B ...] [--seed 0]
    python benchmarks/novel_types.py --seed 1 --add   # add a seed, keep the CSV's other rows
    python benchmarks/novel_types.py --report   # rewrite the report from the CSV only
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

import scalex_scvi as sx

from _common import RESULTS, provenance
from projection import LABEL, SPLITS, Split, run_scalex, run_scarches, scarches_epochs, split_data

mpl.use("Agg")
import matplotlib.pyplot as plt

SCALEX_ARMS = {"SCALEX (running)": "running", "SCALEX (balanced)": "balanced"}
SCARCHES = "scArches (scVI)"
NOTES_FILE = "novel_types_notes.md"  # hand-written reading of the results, kept across runs
RULES = {  # the Unknown rule's distance cutoff: the default, across batches, a lower quantile
    "default (reference, 0.99)": {},
    "other_batches, 0.99": {"calibration": "other_batches"},
    "reference, 0.95": {"distance_quantile": 0.95},
    # the 0.99 quantile taken per reference type, each query cell held to the cutoff of its
    # majority label (types of fewer than 20 cells: the common cutoff); do dense types deserve
    # a tighter cutoff than the diffuse ones that set the common quantile?
    "per label, 0.99": {"per_label_cutoff": True},
}
# rows written before the per-label cutoff was a package option carry the name of the
# benchmark's own version of it, which gave the same cutoffs to the last bit on every small
# projection split's embeddings (label_rules.py's cache, 21 embeddings)
LEGACY_RULES = {"per type (reference, 0.99; not a package option)": "per label, 0.99"}
DESIGNS = {  # name -> (projection split, cell types removed from its reference)
    "pbmc_3pv1-B": ("pbmc_3pv1", ("B",)),
    "pbmc_3pv1-NK": ("pbmc_3pv1", ("NK",)),
    "pbmc_3pv1-Mono_CD16": ("pbmc_3pv1", ("Mono_CD16",)),
    "ifnb-B": ("ifnb_stim_onto_ctrl", ("B cells",)),
    "ifnb-FCGR3A_Mono": ("ifnb_stim_onto_ctrl", ("FCGR3A+ Monocytes",)),
    "lung_3to5-H1975": ("lung_3line_onto_5line", ("H1975",)),
    # the projection split whose reference lacks two lines already (nothing removed)
    "lung_5to3-A549_H838": ("lung_5line_onto_3line", ("A549", "H838")),
}


def design_data(design: str) -> tuple[Split, ad.AnnData, ad.AnnData, tuple[str, ...]]:
    """The split, its reference without the held-out types (prepared), the raw query and the
    held-out types of a design."""
    split_name, held_out = DESIGNS[design]
    split = SPLITS[split_name]
    reference_raw, query_raw = split_data(split)
    if not query_raw.obs[LABEL].isin(held_out).any():
        raise ValueError(f"{design}: the query has no cell of {held_out}.")
    reduced = reference_raw[~reference_raw.obs[LABEL].isin(held_out).to_numpy()].copy()
    reference = sx.pp.preprocess(
        reduced, batch_key="batch", profile=split.profile, min_features=split.min_features
    )
    return split, reference, query_raw, held_out


def run_design(design: str, seed: int) -> list[dict]:
    """Train both methods on a design's reduced reference; score each one's Unknown calls."""
    split, reference, query_raw, held_out = design_data(design)
    _, query, results = run_scalex(reference, query_raw, None, seed, None, SCALEX_ARMS)
    results[SCARCHES] = run_scarches(
        reference, query, seed, scarches_epochs(split, reference), split.query_epochs
    )
    truth = query.obs[LABEL].astype(str).to_numpy()
    novel = np.isin(truth, held_out)
    known_types = pd.unique(reference.obs[LABEL].astype(str))
    rows = []
    for (method, result), (rule, kwargs) in itertools.product(results.items(), RULES.items()):
        classifier = sx.tl.KNNLabelTransfer(**kwargs).fit(
            result["ref_latent"], reference.obs[LABEL], batches=reference.obs["batch"]
        )
        predicted = classifier.predict(result["query_latent"])
        unknown = predicted["label"].to_numpy() == sx.tl.UNKNOWN
        by_distance = (predicted["mean_distance"] > predicted["distance_cutoff"]).to_numpy()
        by_uncertainty = predicted["uncertainty"].to_numpy() > classifier.uncertainty_threshold
        went = predicted["best_label"][novel].value_counts(normalize=True)
        scores = sx.tl.label_transfer_scores(truth, predicted["label"], known_types)
        rows.append(
            {
                "design": design,
                "held_out": ", ".join(held_out),
                "method": method,
                "rule": rule,
                "seed": seed,
                "n_held_out": int(novel.sum()),
                "n_known": int((~novel).sum()),
                "unknown_rate_novel": unknown[novel].mean(),
                "novel_by_distance": by_distance[novel].mean(),
                "novel_by_uncertainty": by_uncertainty[novel].mean(),
                "unknown_rate_known": unknown[~novel].mean(),
                # how well each score ranks held-out above known cells, whatever the cutoff
                "auroc_distance": roc_auc_score(novel, predicted["mean_distance"]),
                "auroc_uncertainty": roc_auc_score(novel, predicted["uncertainty"]),
                "macro_f1": scores["macro_f1"],
                "nearest_type": went.index[0],
                "nearest_type_share": went.iloc[0],
                "train_iterations": result.get("train_iterations", np.nan),
                "train_epochs": result.get("train_epochs", np.nan),
            }
        )
    return rows


def plot(table: pd.DataFrame) -> None:
    designs = list(dict.fromkeys(table["design"]))
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(
        table["rule"].nunique(), 2, figsize=(12, 4 * table["rule"].nunique()), squeeze=False
    )
    width = 0.8 / len(methods)
    x = np.arange(len(designs))
    for row, rule in zip(axes, dict.fromkeys(table["rule"]), strict=True):
        scored = table[table["rule"] == rule]
        for ax, column, title in (
            (row[0], "unknown_rate_novel", "held-out type called Unknown (higher is better)"),
            (row[1], "unknown_rate_known", "known types called Unknown (lower is better)"),
        ):
            for i, method in enumerate(methods):
                values = scored[scored["method"] == method].groupby("design")[column].mean()
                ax.bar(x + i * width, values.reindex(designs).to_numpy(), width, label=method)
            ax.set_xticks(x + width * (len(methods) - 1) / 2, designs, rotation=30, ha="right")
            ax.set_title(f"{title}\ndistance cutoff: {rule}", fontsize=10)
            ax.set_ylim(0, 1)
        row[0].set_ylabel("fraction of query cells")
    axes[0, 0].legend(frameon=False)
    fig.tight_layout()
    fig.savefig(RESULTS / "novel_types.png", dpi=90)
    plt.close(fig)


def write_report(table: pd.DataFrame, run_provenance: str | None = None) -> None:
    """Write the tables, plot and notes; ``run_provenance`` replaces this process's own (for
    a report rewritten from the CSV of an earlier run)."""
    table.to_csv(RESULTS / "novel_types.csv", index=False)
    plot(table)
    means = table.groupby(["rule", "method"], sort=False)[
        [
            "unknown_rate_novel",
            "unknown_rate_known",
            "macro_f1",
            "auroc_distance",
            "auroc_uncertainty",
        ]
    ].mean()
    shown = table.drop(columns=["train_epochs", "train_iterations"]).round(4)
    seeds = sorted(table["seed"].unique())
    lines = [
        "# Cell types absent from the reference: called Unknown, or forced onto a known type?",
        "",
        "Each design removes one cell type from a projection split's reference (all its "
        "batches) and keeps the query whole; `lung_5to3-A549_H838` is the projection split "
        "whose reference lacks two lines already. SCALEX: package defaults, running or balanced "
        "encoder statistics for the query; scArches (scVI): `projection.py`'s settings. Labels: "
        "package defaults (15 neighbours, uncertainty 0.7, distance quantile 0.99) in each "
        "method's space. `unknown_rate_novel`: held-out cells called Unknown, of which "
        "`novel_by_distance` / `novel_by_uncertainty` are the shares past the distance cutoff "
        "and past the uncertainty threshold (a cell can be past both); `auroc_distance` / "
        "`auroc_uncertainty`: how well the mean distance to the 15 neighbours / the uncertainty "
        "ranks held-out cells above known ones whatever the cutoff (1: perfectly, 0.5: no "
        "better than chance); `unknown_rate_known`: "
        "query cells of the reference's types called Unknown; `macro_f1`: over the known types "
        "(Unknown counts as wrong); `rule`: the distance cutoff, the given quantile of each "
        "reference cell's mean distance to its nearest reference cells (`reference`; the "
        "default 0.99, and 0.95) or to its nearest cells of other reference batches "
        "(`other_batches`), or the 0.99 quantile over the reference cells of each type, a "
        "query cell held to that of its majority type (`per label`); `nearest_type`: the "
        "reference type most held-out cells get without the Unknown rule, and its share. "
        f"Seeds: {', '.join(str(seed) for seed in seeds)} (the plot and the summary: means "
        "over designs and seeds).",
        "",
        shown.to_markdown(index=False),
        "",
        "Mean over designs and seeds:",
        "",
        means.round(4).reset_index().to_markdown(index=False),
        "",
        "![held-out and known cells called Unknown per design](novel_types.png)",
        "",
        *([notes.read_text()] if (notes := RESULTS / NOTES_FILE).exists() else []),
        run_provenance or provenance(),
    ]
    (RESULTS / "novel_types.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--add", action="store_true", help="keep the CSV's rows of other seeds and designs"
    )
    parser.add_argument(
        "--report", action="store_true", help="rewrite the report from the CSV, no new runs"
    )
    args = parser.parse_args()
    if args.report:
        report = (RESULTS / "novel_types.md").read_text()
        run_provenance = "\n".join(  # the run's own lines; the rewrite is noted once
            line
            for line in report[report.index("## Provenance") :].rstrip("\n").splitlines()
            if not line.startswith("- report rewritten")
        )
        rewritten = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        write_report(
            pd.read_csv(RESULTS / "novel_types.csv").replace({"rule": LEGACY_RULES}),
            f"{run_provenance}\n- report rewritten from novel_types.csv on {rewritten} "
            "(`--report`, no new runs)\n",
        )
        return
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    earlier, run_provenance = pd.DataFrame(), None
    if args.add:
        earlier = pd.read_csv(RESULTS / "novel_types.csv").replace({"rule": LEGACY_RULES})
        redone = (earlier["seed"] == args.seed) & earlier["design"].isin(args.designs)
        earlier = earlier[~redone]
        report = (RESULTS / "novel_types.md").read_text()
        before = [
            line[2:]
            for line in report[report.index("## Provenance") :].splitlines()
            if line.startswith(("- command", "- date"))
        ]
        run_provenance = provenance({"rows of other seeds or designs": "; ".join(before)})
    rows = []
    for design in args.designs:
        start = time.perf_counter()
        rows += run_design(design, args.seed)
        # an interrupted run keeps its finished designs
        write_report(pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True), run_provenance)
        print(f"{design}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
