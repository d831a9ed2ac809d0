"""Query scaling: the reference's maxima (this package) against the query's own (the original).

With global MaxAbs scaling, this package scales a query's features by the maxima recorded on
the reference (``prepare_query``), so that a query cell's values depend on that cell only. The
original package (1.0.4) rescales a query by its own maxima instead (docs/differences.md,
item 6), which adapts each feature's range to the new batch, like a per-batch normalisation of
the input, but makes every cell's values depend on the other query cells.

For each split of ``projection.py`` this script trains SCALEX once on the reference (package
defaults, as ``projection.py``), prepares the query both ways (the query's own maxima within
each query batch: the recipe with ``scale="batch"``), embeds it with running and balanced
encoder statistics, and transfers labels with the package defaults. It reports macro-F1 (with
and without the Unknown rule) and the Unknown rate on known types per way of scaling, and the
paired difference (own maxima minus the reference's) with a 95 % bootstrap interval over the
query cells (``sx.tl.macro_f1_difference``). Writes ``query_scaling.{md,csv}`` into
``benchmarks/results``.

    python benchmarks/query_scaling.py [--splits pbmc_3pv1 ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, interval_verdict, provenance
from projection import LABEL, SPLITS, label_scores, prepared_split, run_scalex

ARMS = {"SCALEX (this package)": "running", "SCALEX, balanced BatchNorm": "balanced"}
SCALINGS = {"reference": "reference maxima (package)", "own": "query's own maxima (original)"}
SCORES = ["macro_f1", "macro_f1_no_unknown", "unknown_rate_known", "unknown_rate_novel"]


def run_split(split_name: str, seed: int) -> list[dict]:
    """Train SCALEX on a split's reference; score the query under both scalings and arms."""
    split = SPLITS[split_name]
    reference, query_raw = prepared_split(split)
    start = time.perf_counter()
    model, query, results = run_scalex(reference, query_raw, None, seed, None, ARMS)
    train_s = time.perf_counter() - start
    ref_latent = results[next(iter(ARMS))]["ref_latent"]
    classifier = sx.tl.KNNLabelTransfer().fit(ref_latent, reference.obs[LABEL])
    statistics = model.get_hidden_statistics(groups=reference.obs[LABEL])
    own = sx.pp.prepare_query(
        query_raw,
        dict(model.preprocess_recipe_, scale="batch"),
        batch_key="batch",
        model_batch_key="batch",
    )
    latents = {("reference", stats): results[name]["query_latent"] for name, stats in ARMS.items()}
    latents["own", "running"] = model.get_latent_representation(own)
    latents["own", "balanced"] = sx.tl.balanced_latent(model, own, classifier, statistics)[0]

    known = pd.unique(reference.obs[LABEL].to_numpy())
    rows, predicted = [], {}
    for (scaling, stats), latent in latents.items():
        scores, labels = label_scores(ref_latent, reference.obs[LABEL], latent, query.obs[LABEL])
        predicted[scaling, stats] = labels
        rows.append(
            {
                "split": split_name,
                "seed": seed,
                "statistics": stats,
                "query_scaling": SCALINGS[scaling],
                **{score: scores[score] for score in SCORES},
                "train_iterations": model.trainer.global_step,
                "train_s": train_s,
            }
        )
    for stats in ARMS.values():
        for column, key in (("label", "Unknown rule"), ("best_label", "no Unknown rule")):
            difference = sx.tl.macro_f1_difference(
                query.obs[LABEL],
                predicted["own", stats][column],
                predicted["reference", stats][column],
                reference_labels=known,
            )
            for row in rows:
                if row["statistics"] == stats and row["query_scaling"] == SCALINGS["own"]:
                    row[f"difference ({key})"] = _interval_text(difference)
    return rows


def _interval_text(difference: dict) -> str:
    low, high = difference["low"], difference["high"]
    return (
        f"{difference['difference']:+.3f} [{low:+.3f}, {high:+.3f}] {interval_verdict(low, high)}"
    )


def write_report(table: pd.DataFrame) -> None:
    table.to_csv(RESULTS / "query_scaling.csv", index=False)
    wide = table.pivot_table(
        index=["split", "statistics"], columns="query_scaling", values="macro_f1", sort=False
    )
    wide["own − reference"] = wide[SCALINGS["own"]] - wide[SCALINGS["reference"]]
    own = table[table["query_scaling"] == SCALINGS["own"]].set_index(["split", "statistics"])
    for key in ("Unknown rule", "no Unknown rule"):
        wide[f"paired 95 % interval ({key})"] = own[f"difference ({key})"]
    counts = {
        stats: int((wide.xs(stats, level="statistics")["own − reference"] > 0).sum())
        for stats in ARMS.values()
    }
    n_splits = table["split"].nunique()
    lines = [
        "# Query scaling: the reference's maxima (package) or the query's own (original)",
        "",
        "SCALEX trained once per split with the package defaults (as `projection.py`, seed "
        f"{int(table['seed'].iloc[0])}); the query prepared with the reference's feature maxima "
        "(the package: `prepare_query` with a global recipe) or with its own maxima within each "
        "query batch (the original 1.0.4's projection), embedded with running or balanced "
        "encoder statistics; labels by the package defaults (15 neighbours, Unknown rule). "
        'macro-F1 over query cells of known types ("Unknown" counts as wrong). Intervals: '
        "paired bootstrap over the query cells (`sx.tl.macro_f1_difference`, 1,000 resamples), "
        "own maxima minus the reference's; *above* / *below*: the interval lies above / below "
        "0, *not distinguishable*: it contains 0.",
        "",
        wide.round(4).reset_index().to_markdown(index=False),
        "",
        *(
            f"- {stats} statistics: the query's own maxima score higher on **{n} of {n_splits}** "
            "splits"
            for stats, n in counts.items()
        ),
        "",
        "All scores:",
        "",
        table.drop(columns=[c for c in table if c.startswith("difference")])
        .round(4)
        .to_markdown(index=False),
        "",
        provenance(),
    ]
    (RESULTS / "query_scaling.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    rows = []
    for split_name in args.splits:
        rows += run_split(split_name, args.seed)
        write_report(pd.DataFrame(rows))  # an interrupted run keeps its finished splits
        print(f"{split_name}: done", flush=True)


if __name__ == "__main__":
    main()
