"""The atlas path of the recommended projection setting: cosine neighbours for both steps.

``label_metric.py`` scored balanced encoder statistics computed from labels transferred with
Euclidean neighbours, then transferred the final labels with cosine neighbours. An atlas built
with ``transfer_kwargs={"metric": "cosine"}`` uses its one classifier for both steps:
``Atlas.map(..., batch_norm="balanced")`` calls ``balanced_latent(model, query,
atlas.classifier, atlas.reference_statistics)``. This script measures that path on the
projection splits: per split and seed it trains SCALEX with the code and seed of the cached
``label_metric.py`` job (``projection.run_scalex``; whether the reference embedding is
bit-identical to the cached one is reported), builds the atlas's classifier (cosine, with the
reference batches) and statistics (per label, unit weights) as ``Atlas.build`` does, embeds the
query with ``balanced_latent`` (from every query cell, and from the draw ``Atlas.map``'s
``balance_cells`` takes: at most ``sx.tl.BALANCE_CELLS`` cells per query batch, labelled by the
classifier refitted on ``sx.tl.BALANCE_REFERENCE_CELLS`` reference cells) and transfers labels
with the same classifier. Where every query batch and the reference are no larger than the draw
(all splits but the protein one), the two are the same computation; jobs cached before the draw
existed are then scored once for both. UMAP is left out:
it touches neither the embedding nor the labels. scArches and the second run's arm are read from
``label_metric.csv`` (the same jobs). The reading rules (7 and 8; 9 for the
draw) are in ``results/label_metric_notes.md``, written before the runs.

Jobs already cached (``benchmarks/.cache/label_atlas/``) are not run again; each is
scored once (``*.atlas.csv`` beside it, ``--rescore`` to redo). Writes
benchmarks/results/label_atlas.{md,csv}.

    python benchmarks/label_atlas.py --seeds 1 2 0 [--report]

Seeds added later to a report whose earlier jobs are not cached here: ``--previous`` (its
table) keeps their rows, ``--peers`` names the ``label_metric.py`` table with the new jobs'
scArches rows, ``--stem`` names the new report (``Makefile``'s ``bench`` target has an example).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import scalex_scvi as sx

from _common import RESULTS, notes_and_provenance
from label_metric import CACHE as METRIC_CACHE
from label_metric import (
    MAX_NOVEL_FALL,
    MAX_UNKNOWN_KNOWN,
    MIN_SPLITS,
    READING_SEEDS,
    splits_at_least,
)
from label_rules import (
    SCARCHES,
    SCORES_NOTE,
    add_cache_arguments,
    paired_differences,
    splits_and_seeds,
    sweep_table,
    transfer_scores,
    with_previous,
)
from projection import LABEL, SPLITS, prepared_split, run_scalex, split_data

CACHE = RESULTS.parent / ".cache" / "label_atlas"
STEM = "label_atlas"
ATLAS = "SCALEX (atlas: balanced, cosine)"
DRAW = "SCALEX (atlas: balanced from a draw, cosine)"
MAX_DRAW_LOSS = 0.01  # rule 9 (c): the draw's protein-split macro-F1 at most this much lower
SECOND_RUN = "SCALEX (balanced)"  # label_metric.py: Euclidean balancing, then the given metric
METRIC = "cosine"
JOB_COLUMNS = ["reference_max_abs_difference", "train_s", "job_s"]


def run_job(split_name: str, seed: int, path: Path, smoke: dict) -> None:
    """Train SCALEX on a split with a seed, embed its query as a cosine atlas with balanced
    statistics does, and cache the embeddings and labels in ``path``. ``smoke``: an
    ``iterations`` budget that overrides the package default (smoke runs)."""
    start = time.perf_counter()
    reference, query_raw = prepared_split(SPLITS[split_name])
    model, query, results = run_scalex(
        reference, query_raw, smoke.get("iterations"), seed, arms={"running": "running"}
    )
    ref_latent = results["running"]["ref_latent"]
    labels = np.asarray(reference.obs[LABEL], dtype=str)
    batches = np.asarray(reference.obs["batch"], dtype=str)
    classifier = sx.tl.KNNLabelTransfer(metric=METRIC).fit(ref_latent, labels, batches=batches)
    statistics = model.get_hidden_statistics(
        reference, groups=labels, cell_weights=np.ones(reference.n_obs)
    )
    query_latent, _ = sx.tl.balanced_latent(model, query, classifier, statistics)
    draw_latent, _ = sx.tl.balanced_latent(
        model,
        query,
        classifier.subsample(sx.tl.BALANCE_REFERENCE_CELLS),
        statistics,
        max_cells=sx.tl.BALANCE_CELLS,
    )
    cached = METRIC_CACHE / path.name
    difference = np.nan
    if cached.exists():
        with np.load(cached) as data:
            difference = float(np.abs(data["ref_latent_0"] - ref_latent).max())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        ref_latent=ref_latent,
        query_latent=query_latent,
        query_latent_draw=draw_latent,
        ref_labels=labels,
        ref_batches=batches,
        query_labels=np.asarray(query.obs[LABEL], dtype=str),
        reference_max_abs_difference=difference,
        train_s=results["running"]["train_s"],
        job_s=time.perf_counter() - start,
    )


def score(path: Path) -> list[dict]:
    """Label scores of a cached job, transferred with the atlas's classifier: one row for
    balanced statistics from every cell, one for those from the draw."""
    split, seed = path.stem.split("__seed")
    with np.load(path) as data:
        job = {key: data[key] for key in data.files}
    latents = {ATLAS: job["query_latent"]}
    same = "query_latent_draw" not in job
    if same and not draw_is_every_cell(split, len(job["ref_labels"])):
        raise ValueError(f"{path.name} lacks the draw's embedding; run its job again.")
    latents[DRAW] = job["query_latent"] if same else job["query_latent_draw"]
    rows = []
    for method, query_latent in latents.items():
        scores = transfer_scores(
            job["ref_latent"],
            job["ref_labels"],
            job["ref_batches"],
            query_latent,
            job["query_labels"],
            metric=METRIC,
        )
        rows.append(
            {
                "split": split,
                "seed": int(seed),
                "method": method,
                "metric": METRIC,
                **scores,
                **{column: float(job[column]) for column in JOB_COLUMNS},
                "draw_is_every_cell": same,
            }
        )
    return rows


def draw_is_every_cell(split: str, n_reference: int) -> bool:
    """Whether the draw takes every query cell and ``subsample`` keeps the classifier: every
    raw query batch (at least as large as the prepared one) and the reference fit in it."""
    _, query_raw = split_data(SPLITS[split])
    largest = query_raw.obs["batch"].value_counts().max()
    return largest <= sx.tl.BALANCE_CELLS and n_reference <= sx.tl.BALANCE_REFERENCE_CELLS


def with_peers(atlas: pd.DataFrame, metric_table: pd.DataFrame) -> pd.DataFrame:
    """The atlas rows beside the same jobs' rows of ``label_metric.csv``."""
    jobs = atlas[["split", "seed"]].drop_duplicates()
    peers = metric_table.merge(jobs, on=["split", "seed"])
    peers = peers[peers["method"].isin([SECOND_RUN, SCARCHES])]
    return pd.concat([atlas.drop(columns=JOB_COLUMNS), peers], ignore_index=True)


def _judged(table: pd.DataFrame, method: str, title: str, noun: str, extra) -> str:
    """A rule for ``method`` judged on :data:`READING_SEEDS` (markdown): (a) at least scArches
    (cosine) on :data:`MIN_SPLITS` splits, (b) known cells called "Unknown", then the
    conditions ``extra(reading, rows)`` returns (name -> met) and the lines it adds after the
    verdict; ``noun`` names what is counted when too few jobs are there."""
    seeds = ", ".join(map(str, READING_SEEDS))
    heading = f"## {title}, judged on seeds {seeds}\n\n"
    reading = table[table["seed"].isin(READING_SEEDS)]
    rows = reading[reading["method"] == method]
    n_splits, needed = len(SPLITS), len(SPLITS) * len(READING_SEEDS)
    if len(rows) < needed:
        return heading + f"Not judged: {len(rows)} of {needed} jobs {noun}.\n\n"
    count = splits_at_least(reading, method)
    known = rows["unknown_rate_known"].mean()
    more, notes = extra(reading, rows)
    conditions = {
        f"(a) at least scArches (cosine) on >= {MIN_SPLITS} of {n_splits} splits "
        f"({count} of {n_splits})": count >= MIN_SPLITS,
        f"(b) known cells called Unknown <= {MAX_UNKNOWN_KNOWN} ({known:.4f})": (
            known <= MAX_UNKNOWN_KNOWN
        ),
        **more,
    }
    rule = title.split(" (")[0]
    lines = [f"- {rule}: {'holds' if all(conditions.values()) else 'fails'}."]
    lines += [f"  - {name}: {'yes' if met else 'no'}" for name, met in conditions.items()]
    return heading + "\n".join(lines + notes) + "\n\n"


def rule_reading(table: pd.DataFrame) -> str:
    """Rule 7 of ``label_metric_notes.md``, judged on :data:`READING_SEEDS` (markdown)."""

    def novel_fall(reading: pd.DataFrame, atlas: pd.DataFrame):
        euclidean = reading[(reading["method"] == SECOND_RUN) & (reading["metric"] == "euclidean")]
        fall = euclidean["unknown_rate_novel"].mean() - atlas["unknown_rate_novel"].mean()
        name = (
            f"(c) novel lung lines called Unknown fall <= {MAX_NOVEL_FALL} against balanced "
            f"statistics with Euclidean neighbours (fall {fall:.4f})"
        )
        seeds = ", ".join(map(str, READING_SEEDS))
        note = (
            f"- Not part of the rule: against scArches with its better metric per split, "
            f"{splits_at_least(reading, ATLAS, best=True)} of {len(SPLITS)} over seeds {seeds}."
        )
        return {name: fall <= MAX_NOVEL_FALL}, [note]

    return _judged(table, ATLAS, "Rule 7", "ran", novel_fall)


def draw_reading(table: pd.DataFrame) -> str:
    """Rule 9 of ``label_metric_notes.md`` (the draw), judged on :data:`READING_SEEDS`."""

    def draw_loss(reading: pd.DataFrame, draw: pd.DataFrame):
        drawn = draw[~draw["draw_is_every_cell"].astype(bool)].set_index(["split", "seed"])
        every = reading[reading["method"] == ATLAS].set_index(["split", "seed"])["macro_f1"]
        change = drawn["macro_f1"] - every.loc[drawn.index]
        by_split = change.groupby(level="split").mean()
        name = (
            f"(c) macro-F1 at most {MAX_DRAW_LOSS} below balanced statistics from every cell "
            "where the draw differs ("
            + ", ".join(f"{k}: {v:+.4f}" for k, v in by_split.items())
            + ")"
        )
        same = sorted(draw.loc[draw["draw_is_every_cell"].astype(bool), "split"].unique())
        note = f"- The draw takes every cell (the same computation) on: {', '.join(same)}."
        return {name: bool((by_split >= -MAX_DRAW_LOSS).all())}, [note]

    return _judged(table, DRAW, "Rule 9 (balanced statistics from a draw)", "scored", draw_loss)


def write_report(atlas: pd.DataFrame, table: pd.DataFrame, out: Path, stem: str = STEM) -> None:
    table.to_csv(out / f"{stem}.csv", index=False)
    columns = ["macro_f1", "accuracy", "unknown_rate_known", "unknown_rate_novel"]
    overall = table.groupby(["method", "metric"], sort=False)[columns].mean().round(4)
    per_split = table.pivot_table(
        index="split", columns=["method", "metric"], values="macro_f1", sort=False
    ).round(4)
    per_split.columns = [f"{method}, {metric}" for method, metric in per_split.columns]
    second = table[(table["method"] == SECOND_RUN) & (table["metric"] == METRIC)]
    paired = pd.concat(
        [second.assign(arm=SECOND_RUN), table[table["method"] == ATLAS].assign(arm=ATLAS)]
    ).assign(method="SCALEX")
    differences = paired_differences(paired, "arm", SECOND_RUN, "macro_f1_minus_second_run")
    splits, seeds = splits_and_seeds(table)
    with open(out / f"{stem}.md", "w") as fh:
        fh.write("# The atlas path: cosine neighbours for both steps of balanced statistics\n\n")
        fh.write(
            f"Splits: {splits}; seeds {seeds}. `{ATLAS}`: SCALEX (package defaults) embedded "
            "and labelled as `Atlas.build(..., transfer_kwargs={'metric': 'cosine'})` with "
            "`map(..., batch_norm='balanced', balance_cells=None)` does (UMAP left out); "
            f"`{DRAW}`: the same with the default `balance_cells` (statistics from at most "
            f"{sx.tl.BALANCE_CELLS} cells per query batch, labelled by the classifier refitted "
            f"on {sx.tl.BALANCE_REFERENCE_CELLS:,} reference cells). `SCALEX (balanced)` and "
            "scArches: the same jobs in `label_metric.csv` (balancing from Euclidean labels, "
            f"then each metric). {SCORES_NOTE}\n\n"
        )
        fh.write("## Mean over splits and seeds\n\n")
        fh.write(overall.reset_index().to_markdown(index=False) + "\n\n")
        fh.write("## The atlas path against the second run's arm (cosine), paired\n\n")
        fh.write(differences.to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 per split (mean over seeds)\n\n")
        fh.write(per_split.reset_index().to_markdown(index=False) + "\n\n")
        fh.write(rule_reading(table))
        fh.write(draw_reading(table))
        fh.write("## Jobs\n\n")
        jobs = atlas.loc[atlas["method"] == ATLAS, ["split", "seed", *JOB_COLUMNS]]
        kept = table[["split", "seed"]].drop_duplicates().shape[0] - len(jobs)
        fh.write(
            "`reference_max_abs_difference`: largest difference between the retrained "
            "reference embedding and the one cached by `label_metric.py` (0: the same model)."
            + (f" The {kept} jobs kept from an earlier table are not listed." if kept else "")
            + "\n\n"
        )
        fh.write(jobs.to_markdown(index=False, floatfmt=".3g") + "\n\n")
        fh.write(notes_and_provenance(out, "label_metric" if stem == STEM else stem))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_cache_arguments(parser)
    parser.set_defaults(cache=CACHE, seeds=[1, 2, 0])
    parser.add_argument("--iterations", type=int, default=None, help="override (smoke runs)")
    parser.add_argument(
        "--peers",
        type=Path,
        default=RESULTS / "label_metric.csv",
        help="the label_metric.py table holding the same jobs' scArches and second-run rows",
    )
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="an earlier label_atlas.csv whose rows of jobs not cached here are kept",
    )
    parser.add_argument("--stem", default=STEM, help="name of the report")
    args = parser.parse_args()
    atlas = sweep_table(args, score, ".atlas.csv", run_job, {"iterations": args.iterations})
    table = with_previous(with_peers(atlas, pd.read_csv(args.peers)), args.previous)
    write_report(atlas, table, args.out, args.stem)
    print(table.groupby(["method", "metric"], sort=False)["macro_f1"].mean().to_string())


if __name__ == "__main__":
    main()
