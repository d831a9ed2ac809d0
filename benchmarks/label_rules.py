"""Rules of the "Unknown" call on the projection splits, over seeds: is a cutoff per label safe?

``novel_types.py`` found that a distance cutoff per reference label (the 0.99 quantile of each
label's own neighbour distances, ``KNNLabelTransfer(per_label_cutoff=True)``) calls more cells
of types absent from the reference "Unknown" than the common cutoff (25 % against 14 % of them,
seed 0). Before it can be recommended, its cost on cells of known types has to be measured on
the projection splits themselves, with their whole references, over more than one seed.

Per split and seed this script trains SCALEX (package defaults; running and balanced encoder
statistics) and scArches (``projection.py``'s settings), caches the reference and query
embeddings (``benchmarks/.cache/label_rules/``), and transfers labels under each rule of
``RULES`` from the same embeddings. Reported per split, method and rule (means over seeds):
macro-F1 over query cells of known types ("Unknown" counts as wrong), the share of them called
"Unknown", and, on the lung 5-line → 3-line split (the only one whose query holds types its
reference lacks), the share of those called "Unknown"; then each rule's macro-F1 against the
default's, paired by split and seed, with its 95 % interval.

Jobs already cached are not trained again, and the tables are always rebuilt from the whole
cache, so runs can be added (``--seeds 2``) or the scoring changed (``--report --rescore``)
without retraining. Writes benchmarks/results/label_rules.{md,csv}.

    python benchmarks/label_rules.py [--splits pbmc_3pv1 ...] [--seeds 0 1 2]
    python benchmarks/label_rules.py --report   # score the cached embeddings only
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scvi.model._utils import get_max_epochs_heuristic

import scalex_scvi as sx

from _common import RESULTS, difference_interval, interval_verdict, notes_and_provenance
from projection import LABEL, SPLITS, run_scalex, run_scarches, split_data

CACHE = RESULTS.parent / ".cache" / "label_rules"
ARMS = {"SCALEX (running)": "running", "SCALEX (balanced)": "balanced"}
SCARCHES = "scArches (scVI)"
DEFAULT = "default (0.99)"
RULES = {  # name -> KNNLabelTransfer keyword arguments
    DEFAULT: {},
    "per label (0.99)": {"per_label_cutoff": True},
    "per label, other batches (0.99)": {
        "per_label_cutoff": True,
        "calibration": "other_batches",
    },
    "other batches (0.99)": {"calibration": "other_batches"},
    "quantile 0.95": {"distance_quantile": 0.95},
}


def train(split_name: str, seed: int, path: Path, smoke: dict) -> None:
    """Train both methods on a split with a seed; cache their embeddings and the labels in
    ``path``. ``smoke``: training budgets that override the benchmark's (smoke runs)."""
    split = SPLITS[split_name]
    start = time.perf_counter()
    reference_raw, query_raw = split_data(split)
    reference = sx.pp.preprocess(
        reference_raw, batch_key="batch", profile=split.profile, min_features=split.min_features
    )
    _, query, results = run_scalex(reference, query_raw, smoke.get("iterations"), seed, None, ARMS)
    epochs = (
        smoke.get("scvi_epochs") or split.scvi_epochs or get_max_epochs_heuristic(reference.n_obs)
    )
    query_epochs = smoke.get("query_epochs") or split.query_epochs
    results[SCARCHES] = run_scarches(reference, query, seed, epochs, query_epochs)
    latents = {}
    for i, result in enumerate(results.values()):
        latents[f"ref_latent_{i}"] = result["ref_latent"]
        latents[f"query_latent_{i}"] = result["query_latent"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        methods=np.asarray(list(results), dtype=str),
        ref_labels=np.asarray(reference.obs[LABEL], dtype=str),
        ref_batches=np.asarray(reference.obs["batch"], dtype=str),
        query_labels=np.asarray(query.obs[LABEL], dtype=str),
        job_s=time.perf_counter() - start,
        **latents,
    )


def transfer_scores(
    ref_latent: np.ndarray,
    ref_labels: np.ndarray,
    ref_batches: np.ndarray,
    query_latent: np.ndarray,
    query_labels: np.ndarray,
    **kwargs,
) -> dict:
    """Labels transferred by ``KNNLabelTransfer(**kwargs)`` scored against the query's known
    labels: macro-F1 and accuracy over cells of known types ("Unknown" counts as wrong), and the
    share of cells of known and of novel types called "Unknown"."""
    known = np.unique(ref_labels)
    novel = ~np.isin(query_labels, known)
    classifier = sx.tl.KNNLabelTransfer(**kwargs).fit(ref_latent, ref_labels, batches=ref_batches)
    predicted = classifier.predict(query_latent)["label"]
    unknown = predicted.to_numpy() == sx.tl.UNKNOWN
    scores = sx.tl.label_transfer_scores(query_labels, predicted, reference_labels=known)
    return {
        "n_query": len(query_labels),
        "n_novel": int(novel.sum()),
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
        "unknown_rate_known": unknown[~novel].mean(),
        "unknown_rate_novel": unknown[novel].mean() if novel.any() else np.nan,
    }


def score(path: Path, settings: dict | None = None, column: str = "rule") -> list[dict]:
    """Label scores of every cached method under every setting (name -> keyword arguments of
    ``KNNLabelTransfer``; default ``RULES``), the setting's name in ``column``."""
    split, seed = path.stem.split("__seed")
    with np.load(path) as data:
        cached = {key: data[key] for key in data.files}
    rows = []
    for (i, method), (name, kwargs) in itertools.product(
        enumerate(cached["methods"]), (settings or RULES).items()
    ):
        scores = transfer_scores(
            cached[f"ref_latent_{i}"],
            cached["ref_labels"],
            cached["ref_batches"],
            cached[f"query_latent_{i}"],
            cached["query_labels"],
            **kwargs,
        )
        rows.append(
            {"split": split, "seed": int(seed), "method": str(method), column: name, **scores}
        )
    return rows


def summaries(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Means over splits and seeds, per-split macro-F1 means, and the paired differences."""
    overall = (
        table.groupby(["method", "rule"], sort=False)[
            ["macro_f1", "unknown_rate_known", "unknown_rate_novel"]
        ]
        .mean()
        .round(4)
        .reset_index()
    )
    per_split = (
        table.pivot_table(
            index=["split", "method"], columns="rule", values="macro_f1", sort=False
        )[list(RULES)]
        .round(4)
        .reset_index()
    )
    differences = paired_differences(table, "rule", DEFAULT, "macro_f1_minus_default")
    return overall, per_split, differences


def paired_differences(
    table: pd.DataFrame, by: str, default, column: str, identical: bool = True
) -> pd.DataFrame:
    """Per method and setting (column ``by``): macro-F1 minus that of the ``default`` setting,
    paired by split and seed, with its 95% interval (``identical``: say so where every pair is
    equal)."""
    keys = ["split", "seed", "method"]
    base = table[table[by] == default].set_index(keys)["macro_f1"]
    rows = []
    for (method, setting), group in table.groupby(["method", by], sort=False):
        if setting == default:
            continue
        paired = group.set_index(keys)["macro_f1"].to_numpy()
        matched = base.reindex(group.set_index(keys).index).to_numpy()
        difference, low, high = difference_interval(paired, matched, paired=True)
        same = identical and bool((paired == matched).all())
        rows.append(
            {
                "method": method,
                by: setting,
                "n_pairs": len(paired),
                column: round(difference, 4),
                "low": round(low, 4),
                "high": round(high, 4),
                "verdict": "identical" if same else interval_verdict(low, high),
            }
        )
    return pd.DataFrame(rows)


def scored(
    cache: Path, rescore: bool = False, score_job=score, suffix: str = ".scores.csv"
) -> pd.DataFrame:
    """Scores of every cached job by ``score_job``, kept beside its embeddings (``*<suffix>``)
    so that each job is scored once (the protein split's cutoff across batches takes
    minutes)."""
    tables = []
    for path in sorted(cache.glob("*.npz")):
        kept = path.with_suffix(suffix)
        if rescore or not kept.exists():
            pd.DataFrame(score_job(path)).to_csv(kept, index=False)
        tables.append(pd.read_csv(kept))
    return pd.concat(tables, ignore_index=True)


def against_scarches(table: pd.DataFrame, by: str = "rule") -> pd.DataFrame:
    """Per setting (column ``by``): on how many splits each SCALEX arm's mean macro-F1 over
    seeds is at least scArches' with the same setting."""
    means = table.groupby([by, "split", "method"], sort=False)["macro_f1"].mean()
    means = means.unstack("method")
    counts = {arm: (means[arm] >= means[SCARCHES]).groupby(by, sort=False).sum() for arm in ARMS}
    found = pd.DataFrame(counts).astype(int).astype(str) + f" of {table['split'].nunique()}"
    return found.rename_axis(by).reset_index()


SCORES_NOTE = (
    "macro-F1 and accuracy over query cells of known types ('Unknown' counts as wrong); "
    "unknown_rate_known / _novel: query cells of types the reference has / lacks called "
    "'Unknown' (novel types: lung 5-line → 3-line only)."
)


def sweep_table(
    args: argparse.Namespace, score_job, suffix: str, run_job=None, smoke: dict | None = None
) -> pd.DataFrame:
    """Run the jobs of ``args`` missing from its cache (unless ``--report``) with ``run_job``
    (``(split, seed, path, smoke)``; default :func:`train`), then score every cached job with
    ``score_job`` (kept beside it as ``*<suffix>``)."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    if not args.report:
        for seed, split in itertools.product(args.seeds, args.splits):
            path = args.cache / f"{split}__seed{seed}.npz"
            if not path.exists():
                start = time.perf_counter()
                (run_job or train)(split, seed, path, smoke or {})
                print(f"{split} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return scored(args.cache, args.rescore, score_job, suffix)


def write_sweep_report(
    table: pd.DataFrame,
    out: Path,
    stem: str,
    by: str,
    default,
    texts: dict[str, str],
    extra: str = "",
) -> None:
    """Report of one ``KNNLabelTransfer`` setting swept over the cached jobs (column ``by``,
    ``default`` its package default): ``<stem>.csv`` and ``<stem>.md`` with the means over splits
    and seeds, each value's macro-F1 against the default's paired by split and seed, the count
    of splits where SCALEX is at least scArches, and per-split means. ``texts``: the report's
    ``title``, ``intro`` (after the splits and seeds; :data:`SCORES_NOTE` follows), the
    ``differences`` and ``against`` headings and the ``difference_column`` name; ``extra``:
    markdown written before the notes."""
    table.to_csv(out / f"{stem}.csv", index=False)
    columns = ["macro_f1", "accuracy", "unknown_rate_known", "unknown_rate_novel"]
    overall = table.groupby(["method", by], sort=False)[columns].mean().round(4)
    per_split = table.pivot_table(
        index=["split", "method"], columns=by, values="macro_f1", sort=False
    ).round(4)
    splits, seeds = splits_and_seeds(table)
    differences = paired_differences(
        table, by, default, texts["difference_column"], identical=False
    )
    with open(out / f"{stem}.md", "w") as fh:
        fh.write(f"# {texts['title']}\n\n")
        fh.write(f"Splits: {splits}; seeds {seeds}. {texts['intro']} {SCORES_NOTE}\n\n")
        fh.write("## Mean over splits and seeds\n\n")
        fh.write(overall.reset_index().to_markdown(index=False) + "\n\n")
        fh.write(f"## {texts['differences']}\n\n")
        fh.write(differences.to_markdown(index=False) + "\n\n")
        fh.write(f"## {texts['against']}\n\n")
        fh.write(against_scarches(table, by).to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 per split (mean over seeds)\n\n")
        fh.write(per_split.reset_index().to_markdown(index=False) + "\n\n")
        fh.write(extra)
        fh.write(notes_and_provenance(out, stem))


def with_previous(table: pd.DataFrame, previous: Path | None) -> pd.DataFrame:
    """``table`` and, from an earlier report's table (a CSV at ``previous``), the rows of the
    (split, seed) jobs ``table`` lacks: seeds or splits added to a report whose earlier jobs are
    not cached on this machine."""
    if previous is None:
        return table
    earlier = pd.read_csv(previous)
    scored = pd.MultiIndex.from_frame(table[["split", "seed"]])
    kept = earlier[~pd.MultiIndex.from_frame(earlier[["split", "seed"]]).isin(scored)]
    return pd.concat([kept, table], ignore_index=True)


def splits_and_seeds(table: pd.DataFrame) -> tuple[str, str]:
    """The splits (in table order) and the seeds of a scored table, for a report's header;
    where the splits have different seeds, each set of seeds with the splits it covers."""
    seeds = table.groupby("split", sort=False)["seed"].agg(
        lambda s: ", ".join(map(str, sorted(s.unique())))
    )
    if seeds.nunique() > 1:
        groups = seeds.groupby(seeds, sort=False).groups
        text = "; ".join(f"{each} on {', '.join(splits)}" for each, splits in groups.items())
    else:
        text = seeds.iloc[0]
    return ", ".join(seeds.index), text


def write_report(table: pd.DataFrame, out: Path) -> None:
    table.to_csv(out / "label_rules.csv", index=False)
    overall, per_split, differences = summaries(table)
    splits, seeds = splits_and_seeds(table)
    with open(out / "label_rules.md", "w") as fh:
        fh.write("# Rules of the Unknown call on the projection splits\n\n")
        fh.write(
            f"Splits: {splits}; seeds {seeds}. SCALEX (package defaults, running and balanced "
            "encoder statistics) and scArches (projection.py's settings), trained once per split "
            "and seed; every rule scores the same embeddings (15 neighbours, uncertainty 0.7). "
            "macro-F1 over query cells of known types ('Unknown' counts as wrong); "
            "unknown_rate_known / _novel: query cells of types the reference has / lacks called "
            "'Unknown' (novel types: lung 5-line → 3-line only).\n\n"
        )
        fh.write("## Mean over splits and seeds\n\n")
        fh.write(overall.to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 against the default rule, paired by split and seed\n\n")
        fh.write(differences.to_markdown(index=False) + "\n\n")
        fh.write("## Splits where SCALEX's mean macro-F1 is at least scArches' (same rule)\n\n")
        fh.write(against_scarches(table).to_markdown(index=False) + "\n\n")
        fh.write("## macro-F1 per split (mean over seeds)\n\n")
        fh.write(per_split.to_markdown(index=False) + "\n\n")
        fh.write(notes_and_provenance(out, "label_rules"))


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a script scoring the cached projection embeddings."""
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="score the cache only")
    parser.add_argument("--rescore", action="store_true", help="score every job again")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_cache_arguments(parser)
    for budget in ("iterations", "scvi-epochs", "query-epochs"):
        parser.add_argument(f"--{budget}", type=int, default=None, help="override (smoke runs)")
    args = parser.parse_args()
    smoke = {
        "iterations": args.iterations,
        "scvi_epochs": args.scvi_epochs,
        "query_epochs": args.query_epochs,
    }
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    if not args.report:
        for seed, split in itertools.product(args.seeds, args.splits):
            path = args.cache / f"{split}__seed{seed}.npz"
            if path.exists():
                continue
            start = time.perf_counter()
            train(split, seed, path, smoke)
            print(f"{split} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
            write_report(scored(args.cache), args.out)
    table = scored(args.cache, rescore=args.rescore)
    write_report(table, args.out)
    print(summaries(table)[0].to_string())


if __name__ == "__main__":
    main()
