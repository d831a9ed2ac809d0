"""How many neighbours should label transfer use? A sweep on the projection splits, over seeds.

``KNNLabelTransfer`` defaults to 15 neighbours, a choice never measured here: the Unknown rule's
thresholds were chosen at that count (``label_threshold.md``). This script scores the cached
embeddings of ``label_rules.py`` (seven projection splits, seeds 0-2; SCALEX with running and
balanced encoder statistics and scArches; jobs missing from the cache are trained first, with
that script's settings) with every count of ``NEIGHBORS``, the other settings at their
defaults, so the Unknown rule's distance cutoff is recomputed at each count. Every method gets
the same count, so the comparison with scArches stays fair.

Reported: means over splits and seeds per method and count (macro-F1 over query cells of
known types, "Unknown" counts as wrong; the shares of known and novel cells called
"Unknown"); each count's macro-F1 against 15's, paired by split and seed, with its 95%
interval; per-split means; and on how many splits SCALEX's mean is at least scArches' at each
count. Writes benchmarks/results/label_neighbors.{md,csv}.

    python benchmarks/label_neighbors.py [--report]
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, difference_interval, interval_verdict, provenance
from label_rules import ARMS, CACHE, SCARCHES, train
from projection import SPLITS

NEIGHBORS = (5, 10, 15, 30, 50)
DEFAULT = 15


def score(path: Path) -> list[dict]:
    """Label scores of every cached method at every neighbour count."""
    split, seed = path.stem.split("__seed")
    with np.load(path) as data:
        cached = {key: data[key] for key in data.files}
    known = np.unique(cached["ref_labels"])
    truth = cached["query_labels"]
    novel = ~np.isin(truth, known)
    rows = []
    for (i, method), k in itertools.product(enumerate(cached["methods"]), NEIGHBORS):
        classifier = sx.tl.KNNLabelTransfer(n_neighbors=k).fit(
            cached[f"ref_latent_{i}"], cached["ref_labels"]
        )
        predicted = classifier.predict(cached[f"query_latent_{i}"])
        unknown = predicted["label"].to_numpy() == sx.tl.UNKNOWN
        scores = sx.tl.label_transfer_scores(truth, predicted["label"], reference_labels=known)
        rows.append(
            {
                "split": split,
                "seed": int(seed),
                "method": str(method),
                "n_neighbors": k,
                "macro_f1": scores["macro_f1"],
                "accuracy": scores["accuracy"],
                "unknown_rate_known": unknown[~novel].mean(),
                "unknown_rate_novel": unknown[novel].mean() if novel.any() else np.nan,
            }
        )
    return rows


def scored(cache: Path, rescore: bool = False) -> pd.DataFrame:
    """Scores of every cached job, kept beside its embeddings (``*.neighbors.csv``)."""
    tables = []
    for path in sorted(cache.glob("*.npz")):
        kept = path.with_suffix(".neighbors.csv")
        if rescore or not kept.exists():
            pd.DataFrame(score(path)).to_csv(kept, index=False)
        tables.append(pd.read_csv(kept))
    return pd.concat(tables, ignore_index=True)


def against_default(table: pd.DataFrame) -> pd.DataFrame:
    """Each count's macro-F1 minus 15's per method, paired by split and seed."""
    keys = ["split", "seed", "method"]
    base = table[table["n_neighbors"] == DEFAULT].set_index(keys)["macro_f1"]
    rows = []
    for (method, k), group in table.groupby(["method", "n_neighbors"], sort=False):
        if k == DEFAULT:
            continue
        paired = group.set_index(keys)["macro_f1"]
        difference, low, high = difference_interval(
            paired.to_numpy(), base.reindex(paired.index).to_numpy(), paired=True
        )
        rows.append(
            {
                "method": method,
                "n_neighbors": k,
                "n_pairs": len(paired),
                "macro_f1_minus_15": difference,
                "low": low,
                "high": high,
                "verdict": interval_verdict(low, high),
            }
        )
    return pd.DataFrame(rows).round(4)


def against_scarches(table: pd.DataFrame) -> pd.DataFrame:
    """Per count: on how many splits each SCALEX arm's mean macro-F1 over seeds is at least
    scArches' at the same count."""
    means = table.groupby(["n_neighbors", "split", "method"])["macro_f1"].mean().unstack("method")
    counts = {arm: (means[arm] >= means[SCARCHES]).groupby("n_neighbors").sum() for arm in ARMS}
    found = pd.DataFrame(counts).astype(int).astype(str) + f" of {table['split'].nunique()}"
    return found.reset_index()


def write_report(table: pd.DataFrame, out: Path) -> None:
    table.to_csv(out / "label_neighbors.csv", index=False)
    columns = ["macro_f1", "accuracy", "unknown_rate_known", "unknown_rate_novel"]
    overall = table.groupby(["method", "n_neighbors"], sort=False)[columns].mean().round(4)
    per_split = table.pivot_table(
        index=["split", "method"], columns="n_neighbors", values="macro_f1", sort=False
    ).round(4)
    splits = ", ".join(dict.fromkeys(table["split"]))
    seeds = ", ".join(str(s) for s in sorted(table["seed"].unique()))
    with open(out / "label_neighbors.md", "w") as fh:
        fh.write("# Neighbours of the label transfer on the projection splits\n\n")
        fh.write(
            f"Splits: {splits}; seeds {seeds}. The embeddings of `label_rules.py` (SCALEX with "
            "the package defaults, running and balanced encoder statistics; scArches with "
            "`projection.py`'s settings), labels transferred with each neighbour count and the "
            "other settings at the package defaults (uncertainty 0.7, distance quantile 0.99 of "
            "the reference's own mean distances at that count). macro-F1 and accuracy over "
            "query cells of known types ('Unknown' counts as wrong); unknown_rate_known / "
            "_novel: query cells of types the reference has / lacks called 'Unknown' (novel "
            "types: lung 5-line → 3-line only).\n\n"
        )
        fh.write("## Mean over splits and seeds\n\n")
        fh.write(overall.reset_index().to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 against 15 neighbours (the default), paired by split and seed\n\n")
        fh.write(against_default(table).to_markdown(index=False) + "\n\n")
        fh.write("## Splits where SCALEX's mean macro-F1 is at least scArches' (same count)\n\n")
        fh.write(against_scarches(table).to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 per split (mean over seeds)\n\n")
        fh.write(per_split.reset_index().to_markdown(index=False) + "\n\n")
        if (notes := out / "label_neighbors_notes.md").exists():
            fh.write(notes.read_text() + "\n")
        fh.write(provenance())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="score the cache only")
    parser.add_argument("--rescore", action="store_true", help="score every job again")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    if not args.report:
        for seed, split in itertools.product(args.seeds, args.splits):
            path = args.cache / f"{split}__seed{seed}.npz"
            if not path.exists():
                train(split, seed, path, {})
    write_report(scored(args.cache, rescore=args.rescore), args.out)


if __name__ == "__main__":
    main()
