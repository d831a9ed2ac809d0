"""Euclidean or cosine neighbours for label transfer? The projection splits, over seeds.

``KNNLabelTransfer`` finds neighbours by Euclidean distance. SCALEX has no library-size factor:
its encoder reads normalised, log-transformed, MaxAbs-scaled values, so a query chemistry with
other depths (fewer detected genes) may move cells along a ray from the origin rather than to
another direction. ``metric="cosine"`` ignores the distance from the origin. This script trains
the jobs of ``label_rules.py`` (SCALEX with the package defaults, running and balanced encoder
statistics; scArches with ``projection.py``'s settings) into its own cache and scores each with
both metrics, the other settings at their defaults (the Unknown rule's distance cutoff is
recomputed in each metric). Every method gets the same metric, so the comparison with scArches
stays fair. The reading rule is in ``results/label_metric_notes.md``, written before the runs.

Reported: means over splits and seeds per method and metric; cosine's macro-F1 against
Euclidean's, paired by split and seed, with its 95% interval; per-split means; and on how many
splits SCALEX's mean is at least scArches' with each metric. Writes
benchmarks/results/label_metric.{md,csv}.

    python benchmarks/label_metric.py --seeds 0 1 [--report]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from label_rules import RESULTS, add_cache_arguments, sweep_table, write_sweep_report
from label_rules import score as score_rules

METRICS = ("euclidean", "cosine")
DEFAULT = "euclidean"
CACHE = RESULTS.parent / ".cache" / "label_metric"


def score(path: Path) -> list[dict]:
    """Label scores of every cached method with each metric."""
    return score_rules(path, {m: {"metric": m} for m in METRICS}, "metric")


def write_report(table: pd.DataFrame, out: Path) -> None:
    texts = {
        "title": "Euclidean or cosine neighbours for label transfer",
        "intro": "SCALEX (package defaults, running and balanced encoder statistics) and "
        "scArches (`projection.py`'s settings), trained once per split and seed as in "
        "`label_rules.py`; labels transferred with each metric "
        "(`KNNLabelTransfer(metric=...)`), the other settings at the package defaults "
        "(15 neighbours, uncertainty 0.7, distance quantile 0.99 of the reference's own mean "
        "distances in that metric).",
        "differences": "Cosine's macro-F1 against Euclidean's, paired by split and seed",
        "against": "Splits where SCALEX's mean macro-F1 is at least scArches' (same metric)",
        "difference_column": "macro_f1_minus_euclidean",
    }
    write_sweep_report(table, out, "label_metric", "metric", DEFAULT, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_cache_arguments(parser)
    parser.set_defaults(cache=CACHE)
    args = parser.parse_args()
    table = sweep_table(args, score, ".metric.csv")
    write_report(table, args.out)
    print(table.groupby(["method", "metric"], sort=False)["macro_f1"].mean().to_string())


if __name__ == "__main__":
    main()
