"""The Unknown cutoff of label transfer, calibrated within the reference or across its batches.

Reads the reference and query embeddings that ``projection.py`` caches for every SCALEX arm
(``benchmarks/.cache/projection/<split>__SCALEX*.npz``) and transfers labels with the package
defaults (15 neighbours, uncertainty 0.7, distance quantile 0.99) twice:

- ``reference`` (the default): the distance cutoff is the 0.99 quantile of the reference cells'
  mean distances to their nearest reference cells;
- ``other_batches``: the 0.99 quantile of their mean distances to their nearest reference cells
  of *other* batches (``KNNLabelTransfer(calibration="other_batches")``).

scArches (scVI) is scored the same way where its embeddings are in the same cache; with
``--with-scarches`` it is trained here where they are not, with ``projection.py``'s settings
and seed (and cached).

Reported per split and method: macro-F1 over query cells of types the reference has ("Unknown"
counts as wrong), the share of those cells called "Unknown", and the share of query cells of
types the reference lacks called "Unknown". The reference batches are those of the cache, or,
for caches written before ``projection.py`` stored them, of the split's reference prepared
again (the same deterministic preprocessing; the cell count is checked).
Writes benchmarks/results/label_calibration.{md,csv}.

    python benchmarks/label_calibration.py [--with-scarches]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, provenance
from projection import (
    CACHE,
    SCALEX_ARMS,
    SPLITS,
    _cache_name,
    cache_latents,
    prepared_split,
    run_scarches,
    scarches_epochs,
)

CALIBRATIONS = ("reference", "other_batches")
SCARCHES = "scArches (scVI)"


def reference_batches(split: str, cached: np.lib.npyio.NpzFile) -> np.ndarray:
    """Batches of the split's reference cells, in the order of the cached embedding."""
    if "ref_batches" in cached:
        return cached["ref_batches"].astype(str)
    reference, _ = prepared_split(SPLITS[split])
    if reference.n_obs != len(cached["ref_latent"]):
        raise ValueError(f"{split}: the prepared reference does not match the cached embedding.")
    return reference.obs["batch"].astype(str).to_numpy()


def scarches_cache(split: str) -> None:
    """Train scArches on a split as ``projection.py`` does and cache its embeddings."""
    spec = SPLITS[split]
    reference, query_raw = prepared_split(spec)
    query = sx.pp.prepare_query(
        query_raw, reference.uns["scalex_preprocess"], batch_key="batch", model_batch_key="batch"
    )
    result = run_scarches(reference, query, 0, scarches_epochs(spec, reference), spec.query_epochs)
    cache_latents(split, SCARCHES, result, reference, query)


def score_split(split: str, with_scarches: bool = False) -> list[dict]:
    rows, batches = [], None
    methods = {**SCALEX_ARMS, SCARCHES: SCARCHES}  # scArches where cached
    if with_scarches and not (CACHE / f"{split}__{_cache_name(SCARCHES)}.npz").exists():
        print(f"{split}: training scArches", flush=True)
        scarches_cache(split)
    for arm, statistics in methods.items():
        path = CACHE / f"{split}__{_cache_name(arm)}.npz"
        if not path.exists():
            continue
        cached = np.load(path, allow_pickle=True)
        if batches is None:
            batches = reference_batches(split, cached)
        known = pd.unique(cached["ref_labels"])
        for calibration in CALIBRATIONS:
            classifier = sx.tl.KNNLabelTransfer(calibration=calibration).fit(
                cached["ref_latent"], cached["ref_labels"], batches=batches
            )
            predicted = classifier.predict(cached["query_latent"])["label"]
            scores = sx.tl.label_transfer_scores(
                cached["query_labels"], predicted, reference_labels=known
            )
            rows.append(
                {
                    "split": split,
                    "method": statistics,
                    "calibration": calibration,
                    "n_reference_batches": len(np.unique(batches)),
                    "distance_cutoff": classifier.distance_cutoff_,
                    "macro_f1": scores["macro_f1"],
                    "unknown_rate_known": scores["unknown_rate_known"],
                    "unknown_rate_novel": scores["unknown_rate_novel"],
                }
            )
    return rows


def write_report(table: pd.DataFrame) -> pd.DataFrame:
    """Write label_calibration.{csv,md}; returns the table per split, one column per
    calibration."""
    table.to_csv(RESULTS / "label_calibration.csv", index=False)
    wide = table.pivot_table(
        index=["split", "method"],
        columns="calibration",
        values=["macro_f1", "unknown_rate_known", "unknown_rate_novel"],
        sort=False,
    )
    wide.columns = [f"{score} ({calibration})" for score, calibration in wide.columns]
    wide = wide.reset_index()
    means = (
        table.groupby(["method", "calibration"], sort=False)[
            ["macro_f1", "unknown_rate_known", "unknown_rate_novel"]
        ]
        .mean()
        .reset_index()
    )
    with open(RESULTS / "label_calibration.md", "w") as fh:
        fh.write("# Unknown cutoff calibrated within the reference or across its batches\n\n")
        fh.write(
            "SCALEX embeddings cached by the last `projection.py` run (scArches: the same "
            "cache, or trained by this script with `projection.py`'s settings and seed where "
            "that run did not keep them); labels transferred with "
            "the package defaults (15 neighbours, uncertainty 0.7, distance quantile 0.99), the "
            "distance cutoff taken from each reference cell's nearest reference cells "
            "(`reference`, the default) or from its nearest reference cells of other batches "
            '(`other_batches`). macro-F1 over query cells of known types ("Unknown" counts as '
            "wrong); unknown_rate_known / _novel: query cells of types the reference has / "
            'lacks called "Unknown". Only lung 5-line → 3-line has novel types.\n\n'
        )
        fh.write("Mean over splits:\n\n" + means.round(4).to_markdown(index=False) + "\n\n")
        if (table["method"] == SCARCHES).any():
            versus, lines = against_scarches(table)
            fh.write(
                "macro-F1 of each SCALEX arm against scArches under each calibration (scArches "
                "scored with the same calibration):\n\n"
            )
            fh.write(versus.round(4).to_markdown(index=False) + "\n\n" + "\n".join(lines))
            fh.write("\n\n")
        fh.write(wide.round(4).to_markdown(index=False) + "\n\n")
        fh.write(provenance())
    return wide


def against_scarches(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per split and calibration: macro-F1 of scArches and of each SCALEX arm, whether the arm
    is at least scArches, and lines counting those splits."""
    f1 = table.pivot_table(index=["split", "calibration"], columns="method", values="macro_f1")
    f1 = f1.dropna(subset=[SCARCHES])
    versus = pd.DataFrame({SCARCHES: f1[SCARCHES]})
    lines = []
    for statistics in SCALEX_ARMS.values():
        versus[statistics] = f1[statistics]
        versus[f">= scArches ({statistics})"] = f1[statistics] >= f1[SCARCHES]
    versus = versus.reset_index()
    for calibration, group in versus.groupby("calibration", sort=False):
        counts = ", ".join(
            f"{statistics} {int(group[f'>= scArches ({statistics})'].sum())}"
            for statistics in SCALEX_ARMS.values()
        )
        lines.append(
            f"- calibration `{calibration}`: SCALEX ≥ scArches on {counts} of {len(group)} splits"
        )
    position = {name: i for i, name in enumerate((*SPLITS, *CALIBRATIONS))}
    versus = versus.sort_values(
        ["split", "calibration"], key=lambda column: column.map(position), kind="stable"
    )
    return versus, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--with-scarches",
        action="store_true",
        help="train scArches where the cache lacks its embeddings (else it is scored where "
        "cached)",
    )
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = [row for split in SPLITS for row in score_split(split, args.with_scarches)]
    if not rows:
        raise SystemExit(f"No cached SCALEX latents in {CACHE}; run projection.py first.")
    print(write_report(pd.DataFrame(rows)).round(3).to_string())


if __name__ == "__main__":
    main()
