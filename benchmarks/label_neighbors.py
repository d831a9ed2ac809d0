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
from pathlib import Path

import pandas as pd

from label_rules import add_cache_arguments, sweep_table, write_sweep_report
from label_rules import score as score_rules

NEIGHBORS = (5, 10, 15, 30, 50)
DEFAULT = 15


def score(path: Path) -> list[dict]:
    """Label scores of every cached method at every neighbour count."""
    counts = {k: {"n_neighbors": k} for k in NEIGHBORS}
    return score_rules(path, counts, "n_neighbors")


def write_report(table: pd.DataFrame, out: Path) -> None:
    texts = {
        "title": "Neighbours of the label transfer on the projection splits",
        "intro": "The embeddings of `label_rules.py` (SCALEX with the package defaults, running "
        "and balanced encoder statistics; scArches with `projection.py`'s settings), labels "
        "transferred with each neighbour count and the other settings at the package defaults "
        "(uncertainty 0.7, distance quantile 0.99 of the reference's own mean distances at that "
        "count).",
        "differences": "macro-F1 against 15 neighbours (the default), paired by split and seed",
        "against": "Splits where SCALEX's mean macro-F1 is at least scArches' (same count)",
        "difference_column": "macro_f1_minus_15",
    }
    write_sweep_report(table, out, "label_neighbors", "n_neighbors", DEFAULT, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_cache_arguments(parser)
    args = parser.parse_args()
    write_report(sweep_table(args, score, ".neighbors.csv"), args.out)


if __name__ == "__main__":
    main()
