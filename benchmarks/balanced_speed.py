"""Balanced encoder statistics on a large query: every cell labelled, or a draw of each batch.

``Atlas.map(..., batch_norm="balanced")`` labels query cells with the running statistics to
weigh each query batch to the reference's cell-type composition, then embeds the query again.
Labelling every cell made it the slowest projection on the protein split (84,276 query cells
onto 338,406; ``projection.md``). Its statistics can come from a draw of each batch instead
(``balance_cells``: at most ``sx.tl.BALANCE_CELLS`` cells per batch, labelled by the atlas's
classifier refitted on ``sx.tl.BALANCE_REFERENCE_CELLS`` reference cells). This script times,
side by side in one run on one split and seed:

- SCALEX (package defaults) projected with running statistics, with balanced statistics from
  every cell, and with balanced statistics from the draw; the atlas's classifier is the cosine
  one recommended for label transfer (``Atlas.build(..., transfer_kwargs={"metric":
  "cosine"})``), built outside the timing as an atlas builds it once (the refitted one too);
- scArches: scVI trained on the reference, then ``load_query_data`` + query training, as in
  ``projection.py`` (``run_scarches``).

Each SCALEX projection is timed from the raw query (``prepare_query`` included) as
``projection.py`` does: the median of three calls. Labels are transferred with the same cosine
classifier for every method and scored over query cells of known types. The reading rules
(10, 12 and 14) are in ``results/label_metric_notes.md``, written before the runs. Writes
benchmarks/results/balanced_speed.{md,csv} (``--name`` for another stem).

    python benchmarks/balanced_speed.py [--split adt_holdout_studies ...] [--seed 0]
        [--name balanced_speed]   # writes <name>.{md,csv}; one row block per split
        [--iterations 200 --scvi-epochs 1 --query-epochs 1 --out /tmp/x]   # a smoke run
    python benchmarks/balanced_speed.py --report [--name ...]   # the md again from the csv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, notes_and_provenance
from label_rules import transfer_scores
from projection import (
    LABEL,
    SPLITS,
    prepared_split,
    run_scalex,
    run_scarches,
    scarches_epochs,
)

RUNNING = "SCALEX, running"
EVERY_CELL = "SCALEX, balanced (every cell)"
DRAW = "SCALEX, balanced (draw)"
ARMS = {RUNNING: "running", EVERY_CELL: "balanced", DRAW: "balanced_sampled"}
SCARCHES = "scArches (scVI)"
MIN_SPEEDUP = 100  # issue 3: projection at least 100x faster than scArches' query training
METRIC = "cosine"


def measure(split_name: str, seed: int, iterations, scvi_epochs, query_epochs) -> pd.DataFrame:
    """Time and score every arm and scArches on one split (one row per method)."""
    split = SPLITS[split_name]
    reference, query_raw = prepared_split(split)
    _, query, results = run_scalex(
        reference, query_raw, iterations, seed, arms=ARMS, transfer_kwargs={"metric": METRIC}
    )
    results[SCARCHES] = run_scarches(
        reference,
        query,
        seed,
        scarches_epochs(split, reference, scvi_epochs),
        query_epochs or split.query_epochs,
    )
    labels = np.asarray(reference.obs[LABEL], dtype=str)
    batches = np.asarray(reference.obs["batch"], dtype=str)
    query_labels = np.asarray(query.obs[LABEL], dtype=str)
    every_cell = results[EVERY_CELL]["query_latent"]
    rows = []
    for method, result in results.items():
        scores = transfer_scores(
            result["ref_latent"],
            labels,
            batches,
            result["query_latent"],
            query_labels,
            metric=METRIC,
        )
        rows.append(
            {
                "split": split_name,
                "seed": seed,
                "method": method,
                "n_reference": reference.n_obs,
                **scores,
                "projection_s": result["project_s"],
                "projection_first_s": result.get("project_first_s", np.nan),
                "projection_peak_mib": result["project_mib"],
                "cells_per_s": query.n_obs / result["project_s"],
                "max_abs_difference_from_every_cell": float(
                    np.abs(result["query_latent"] - every_cell).max()
                )
                if method in ARMS
                else np.nan,
                "train_s": result["train_s"],
            }
        )
    table = pd.DataFrame(rows)
    scarches_s = table.loc[table["method"] == SCARCHES, "projection_s"].iloc[0]
    table["speedup_over_scarches"] = scarches_s / table["projection_s"]
    table["query_batches"] = query.obs["batch"].nunique()
    table["largest_query_batch"] = int(query.obs["batch"].value_counts().max())
    return table


def rule_reading(table: pd.DataFrame) -> str:
    """The speed rule of ``label_metric_notes.md`` (rule 10, judged again as rule 12 after the
    fifth run's change, rule 14 on the small splits), split by split (markdown)."""
    draws = table[table["method"] == DRAW]
    lines = [
        f"- `{draw['split']}`: balanced statistics from the draw "
        f"{draw['speedup_over_scarches']:.0f}× faster than scArches' query training (at least "
        f"{MIN_SPEEDUP}×: {'yes' if draw['speedup_over_scarches'] >= MIN_SPEEDUP else 'no'})"
        for _, draw in draws.iterrows()
    ]
    met = int((draws["speedup_over_scarches"] >= MIN_SPEEDUP).sum())
    if len(draws) == 1:
        lines.append(f"- The rule {'holds' if met else 'fails'} in this run.")
    else:
        lines.append(f"- At least {MIN_SPEEDUP}× on {met} of {len(draws)} splits in this run.")
    return "## Speed rule (rules 10, 12 and 14 of `label_metric_notes.md`)\n\n" + (
        "\n".join(lines) + "\n\n"
    )


def write_report(table: pd.DataFrame, out: Path, args) -> None:
    several = table["split"].nunique() > 1
    shown = table[
        ["split"] * several
        + [
            "method",
            "projection_s",
            "projection_first_s",
            "speedup_over_scarches",
            "cells_per_s",
            "projection_peak_mib",
            "macro_f1",
            "accuracy",
            "unknown_rate_known",
            "max_abs_difference_from_every_cell",
        ]
    ]
    splits = "; ".join(
        f"`{row['split']}` ({int(row['n_reference'])} reference cells, {int(row['n_query'])} "
        f"query cells in {int(row['query_batches'])} batch"
        f"{'es' * (int(row['query_batches']) != 1)}, the largest "
        f"{int(row['largest_query_batch'])})"
        for _, row in table.drop_duplicates("split").iterrows()
    )
    seed = int(table["seed"].iloc[0])
    budget = "package defaults" if args.iterations is None else f"{args.iterations} iterations"
    with open(out / f"{args.name}.md", "w") as fh:
        fh.write("# Balanced statistics on a large query: every cell labelled, or a draw\n\n")
        fh.write(
            f"Split{'s' * several} {splits}, seed {seed}, SCALEX "
            f"trained with {budget}. The draw: at most {sx.tl.BALANCE_CELLS} cells per query "
            "batch, labelled by the cosine classifier refitted on "
            f"{sx.tl.BALANCE_REFERENCE_CELLS:,} reference cells (`Atlas.map`'s "
            "`balance_cells`). `projection_s`: SCALEX from the raw query (`prepare_query` "
            "included), the median of three calls (`projection_first_s`: the first); "
            "scArches: `load_query_data` + query training. Labels transferred with cosine "
            "neighbours for every method, scored over query cells of known types; "
            "`max_abs_difference_from_every_cell`: largest difference of an arm's query "
            "embedding from that of balanced statistics from every cell; "
            "`projection_peak_mib`: the largest rise of the process's resident memory during "
            "the first call (memory freed by an earlier arm is reused, so a later arm can show "
            "almost none).\n\n"
        )
        fh.write(shown.to_markdown(index=False, floatfmt=".4g") + "\n\n")
        fh.write(rule_reading(table))
        fh.write(notes_and_provenance(out, args.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--split", nargs="+", default=["adt_holdout_studies"], choices=list(SPLITS)
    )
    parser.add_argument("--name", default="balanced_speed", help="stem of the md and csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=None, help="SCALEX (smoke runs)")
    parser.add_argument("--scvi-epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--query-epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report", action="store_true", help="rewrite the md from the csv in --out, no run"
    )
    args = parser.parse_args()
    if args.report:
        write_report(pd.read_csv(args.out / f"{args.name}.csv"), args.out, args)
        return
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = []
    for split in args.split:  # each split's rows written as soon as it ends
        tables.append(
            measure(split, args.seed, args.iterations, args.scvi_epochs, args.query_epochs)
        )
        table = pd.concat(tables, ignore_index=True)
        table.to_csv(args.out / f"{args.name}.csv", index=False)
    write_report(table, args.out, args)
    print(table.to_string())


if __name__ == "__main__":
    main()
