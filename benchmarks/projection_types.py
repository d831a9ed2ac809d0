"""Where the macro-F1 of label transfer differs: F1 per cell type, SCALEX against scArches.

Reads the embeddings that ``projection.py`` cached for each split (its last run; no training),
transfers labels with the package defaults exactly as ``projection.py`` scores them, and
splits each SCALEX arm's macro-F1 difference from scArches into the contributions of the cell
types (macro-F1 is the mean of the per-type F1 over the known types present in the query, so a
type contributes its F1 difference divided by their number). Also lists, per type, where its
query cells went.

Writes benchmarks/results/projection_types.{md,csv}.

    python benchmarks/projection_types.py [--splits pbmc_3pv1 ...]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from _common import RESULTS, provenance
from projection import CACHE, SCALEX_ARMS, SPLITS, _cache_name, cached_transfer

PEER = "scArches (scVI)"
METHODS = {PEER: "scArches", **SCALEX_ARMS}


def split_types(split: str) -> pd.DataFrame:
    """Per known type of one split: counts, each method's F1 and where its cells went."""
    rows: dict[str, dict] = {}
    for method, short in METHODS.items():
        cached, _, predicted = cached_transfer(split, method)
        truth = np.asarray(cached["query_labels"], dtype=str)
        reference = pd.Series(np.asarray(cached["ref_labels"], dtype=str))
        known = np.isin(truth, reference.unique())
        labels = np.asarray(predicted["label"], dtype=str)
        present = sorted(set(truth[known]))
        f1 = f1_score(truth[known], labels[known], labels=present, average=None, zero_division=0)
        for cell_type, value in zip(present, f1, strict=True):
            row = rows.setdefault(
                cell_type,
                {
                    "split": split,
                    "cell_type": cell_type,
                    "n_reference": int((reference == cell_type).sum()),
                    "n_query": int((truth == cell_type).sum()),
                },
            )
            row[f"f1 {short}"] = float(value)
            row[f"went to ({short})"] = _destinations(labels[truth == cell_type])
    table = pd.DataFrame(list(rows.values()))
    n_types = len(table)
    for statistics in SCALEX_ARMS.values():
        table[f"contribution ({statistics})"] = (
            table[f"f1 {statistics}"] - table["f1 scArches"]
        ) / n_types
    return table


def _destinations(labels: np.ndarray, top: int = 3) -> str:
    counts = pd.Series(labels).value_counts()
    return ", ".join(f"{name} {count}" for name, count in counts.head(top).items())


def gap_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per split and SCALEX arm: macro-F1 difference from scArches, the type that moves it
    most in each direction, and the difference without that most negative type."""
    rows = []
    for split, group in table.groupby("split", sort=False):
        for statistics in SCALEX_ARMS.values():
            contribution = group[f"contribution ({statistics})"]
            worst, best = group.loc[contribution.idxmin()], group.loc[contribution.idxmax()]
            rows.append(
                {
                    "split": split,
                    "statistics": statistics,
                    "macro-F1 difference": contribution.sum(),
                    "most negative type": f"{worst['cell_type']} ({worst['n_query']} query cells)",
                    "its contribution (negative)": contribution.min(),
                    "most positive type": f"{best['cell_type']} ({best['n_query']} query cells)",
                    "its contribution (positive)": contribution.max(),
                    "types below scArches (F1 − 0.01)": int(
                        (group[f"f1 {statistics}"] < group["f1 scArches"] - 0.01).sum()
                    ),
                    "types above scArches (F1 + 0.01)": int(
                        (group[f"f1 {statistics}"] > group["f1 scArches"] + 0.01).sum()
                    ),
                    "types": len(group),
                }
            )
    return pd.DataFrame(rows)


def write_report(table: pd.DataFrame, summary: pd.DataFrame) -> None:
    table.to_csv(RESULTS / "projection_types.csv", index=False)
    f1_columns = [f"f1 {short}" for short in METHODS.values()]
    with open(RESULTS / "projection_types.md", "w") as fh:
        fh.write("# Label transfer per cell type: SCALEX against scArches\n\n")
        fh.write(
            "From the embeddings of `projection.py`'s last run (seed 0; `projection.md`), labels "
            "transferred with the package defaults (15 neighbours, Unknown rule) as that report "
            "scores them. F1 per known type over the query cells of known types; a type's "
            "contribution is its F1 difference from scArches divided by the number of known "
            "types in the query, so the contributions of a split add up to its macro-F1 "
            "difference.\n\n"
        )
        fh.write("## Where the differences come from\n\n")
        fh.write(summary.round(4).to_markdown(index=False) + "\n\n")
        fh.write("## F1 per type\n\n")
        for split, group in table.groupby("split", sort=False):
            fh.write(f"### {split}\n\n")
            columns = ["cell_type", "n_reference", "n_query", *f1_columns]
            fh.write(group[columns].round(3).to_markdown(index=False) + "\n\n")
            moved = group[
                (group[f1_columns[1:]].min(axis=1) < group["f1 scArches"] - 0.05)
                | (group[f1_columns[1:]].max(axis=1) > group["f1 scArches"] + 0.05)
            ]
            if len(moved):
                fh.write("Where the query cells of types differing by more than 0.05 went:\n\n")
                where = ["cell_type", *[f"went to ({short})" for short in METHODS.values()]]
                fh.write(moved[where].to_markdown(index=False) + "\n\n")
        fh.write(provenance())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    args = parser.parse_args()
    missing = [
        split
        for split in args.splits
        for method in METHODS
        if not (CACHE / f"{split}__{_cache_name(method)}.npz").exists()
    ]
    if missing:
        raise SystemExit(
            f"No cached embeddings for {sorted(set(missing))}: run projection.py first."
        )
    table = pd.concat([split_types(split) for split in args.splits], ignore_index=True)
    summary = gap_summary(table)
    write_report(table, summary)
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
