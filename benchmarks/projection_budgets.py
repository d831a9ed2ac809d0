"""Does a shorter or longer training project better? SCALEX budgets on the small projection
splits.

With the package defaults SCALEX trains until early stopping: up to 24,000 iterations on the
projection splits' references of about a thousand cells or fewer, hundreds of passes over each
cell. Its label transfer trails scArches' on the PBMC splits (``projection_seeds.md``). This
script asks whether that comes from the length of training: per split and seed it trains
SCALEX with each of ``SETTINGS`` (the paper's learning rate; at most 2,000 or 4,000 iterations
with early stopping on, as in ``projection.py``, or the paper's full 30,000 iterations with
early stopping off; the iterations run are recorded) and scores the labels
transferred to the query (package defaults: 15 neighbours, Unknown rule) with running and
balanced encoder statistics, next to the embeddings ``label_rules.py`` cached for the same
split and seed (SCALEX with the package defaults; scArches), which are trained first where
missing. Writes benchmarks/results/projection_budgets.{md,csv}.

    python benchmarks/projection_budgets.py [--splits ...] [--seeds 0 1 2] [--settings ...]
                                            [--report]

Rows already in the CSV are kept; only missing (split, seed, setting) rows are trained.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, difference_interval, interval_verdict, notes_and_provenance
from label_rules import CACHE, SCARCHES, train
from projection import LABEL, SPLITS, prepared_split, run_scalex

SETTINGS = {  # name -> keyword arguments of SCALEX.train
    "2000 iterations": {"max_iterations": 2000},
    "4000 iterations": {"max_iterations": 4000},
    "30000 iterations, no early stopping": {"max_iterations": 30_000, "early_stopping": False},
}
SMALL_SPLITS = [name for name in SPLITS if name != "adt_holdout_studies"]
ARMS = {"running": "running", "balanced": "balanced"}


def macro_f1_of(ref_latent, ref_labels, query_latent, truth) -> float:
    """macro-F1 of labels transferred with the package defaults (known types only)."""
    predicted = sx.tl.KNNLabelTransfer().fit(ref_latent, ref_labels).predict(query_latent)
    known = np.unique(ref_labels)
    return sx.tl.label_transfer_scores(truth, predicted["label"], reference_labels=known)[
        "macro_f1"
    ]


def cached_rows(split: str, seed: int) -> list[dict]:
    """The package defaults and scArches from ``label_rules.py``'s cache."""
    path = CACHE / f"{split}__seed{seed}.npz"
    if not path.exists():
        train(split, seed, path, {})
    with np.load(path) as data:
        cached = {key: data[key] for key in data.files}
    names = {
        "SCALEX (running)": "SCALEX defaults, running",
        "SCALEX (balanced)": "SCALEX defaults, balanced",
        SCARCHES: SCARCHES,
    }
    rows = []
    for i, method in enumerate(cached["methods"]):
        f1 = macro_f1_of(
            cached[f"ref_latent_{i}"],
            cached["ref_labels"],
            cached[f"query_latent_{i}"],
            cached["query_labels"],
        )
        rows.append({"split": split, "seed": seed, "method": names[str(method)], "macro_f1": f1})
    return rows


def budget_rows(split: str, seed: int, settings: list[str]) -> list[dict]:
    """SCALEX trained with each setting, projected with each arm."""
    reference, query_raw = prepared_split(SPLITS[split])
    rows = []
    for setting in settings:
        _, query, results = run_scalex(
            reference.copy(), query_raw, None, seed, None, ARMS, SETTINGS[setting]
        )
        for arm, result in results.items():
            f1 = macro_f1_of(
                result["ref_latent"],
                reference.obs[LABEL].to_numpy(str),
                result["query_latent"],
                query.obs[LABEL].to_numpy(str),
            )
            rows.append(
                {
                    "split": split,
                    "seed": seed,
                    "method": f"SCALEX {setting}, {arm}",
                    "macro_f1": f1,
                    "train_s": result["train_s"],
                    "iterations": result["train_iterations"],
                }
            )
    return rows


def comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """Each SCALEX setting against scArches and against the defaults of the same statistics,
    paired by split and seed."""
    wide = table.pivot_table(index=["split", "seed"], columns="method", values="macro_f1")
    rows = []
    for method in (m for m in wide.columns if m.startswith("SCALEX")):
        arm = method.rsplit(", ", 1)[-1]
        entry = {"method": method, "pairs": int(wide[method].notna().sum())}
        for peer in (SCARCHES, f"SCALEX defaults, {arm}"):
            if peer == method:
                continue
            both = wide[[method, peer]].dropna()
            difference, low, high = difference_interval(both[method], both[peer], paired=True)
            label = "scArches" if peer == SCARCHES else "defaults"
            entry[f"minus {label}"] = f"{difference:+.4f} [{low:+.4f}, {high:+.4f}]"
            entry[f"vs {label}"] = interval_verdict(low, high)
        split_means = wide[[method, SCARCHES]].dropna().groupby("split").mean()  # seeds run
        entry["splits >= scArches (means)"] = (
            f"{int((split_means[method] >= split_means[SCARCHES]).sum())} of {len(split_means)}"
        )
        rows.append(entry)
    return pd.DataFrame(rows)


def write_report(table: pd.DataFrame, out: Path) -> None:
    table.to_csv(out / "projection_budgets.csv", index=False)
    per_split = table.pivot_table(
        index="split", columns="method", values="macro_f1", aggfunc="mean"
    ).round(4)
    seeds = ", ".join(str(s) for s in sorted(table["seed"].unique()))
    with open(out / "projection_budgets.md", "w") as fh:
        fh.write("# Projection after shorter and longer trainings\n\n")
        fh.write(
            f"Small projection splits, seeds {seeds}. SCALEX trained for {'; '.join(SETTINGS)} "
            "(lr 2e-4; early stopping on unless said; iterations run in the CSV) against "
            "SCALEX with the package defaults and scArches from `label_rules.py`'s cache (same "
            "split and seed). macro-F1 of labels transferred with the package defaults over "
            "query cells of known types ('Unknown' counts as wrong). Intervals: 95% t-intervals "
            "of the paired differences over (split, seed).\n\n"
        )
        fh.write("## Paired over splits and seeds\n\n")
        fh.write(comparisons(table).to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 per split (mean over seeds)\n\n")
        fh.write(per_split.T.reset_index().to_markdown(index=False) + "\n\n")
        fh.write(notes_and_provenance(out, "projection_budgets"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", nargs="+", default=SMALL_SPLITS, choices=SMALL_SPLITS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--report", action="store_true", help="rewrite from the CSV only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    kept = args.out / "projection_budgets.csv"
    table = pd.read_csv(kept) if kept.exists() else pd.DataFrame(columns=["split", "seed"])
    if not args.report:
        for seed, split in itertools.product(args.seeds, args.splits):
            here = set(table.loc[(table["split"] == split) & (table["seed"] == seed), "method"])
            missing = [s for s in args.settings if f"SCALEX {s}, running" not in here]
            if not missing:
                continue
            rows = [] if "SCALEX defaults, running" in here else cached_rows(split, seed)
            rows += budget_rows(split, seed, missing)
            table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
            write_report(table, args.out)
            print(f"{split} seed {seed} done", flush=True)
    write_report(table, args.out)


if __name__ == "__main__":
    main()
