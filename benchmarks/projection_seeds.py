"""Label transfer over several seeds: SCALEX projection against scArches, split by split.

The projection benchmark (``projection.py``) trains each method once, with seed 0. On the PBMC
splits a query holds about 400 cells and its rarest types a handful (3 megakaryocytes, a few
stem cells), so one cell more or less moves macro-F1 by several hundredths and one seed
decides little. This script repeats the SCALEX and scArches arms of that benchmark (the same
functions: ``projection.run_scalex``, ``run_scarches``, ``evaluate``; the same label transfer
defaults) for several seeds, each (split, seed) in its own worker process, and reports the mean
and standard deviation of the label scores per split and method, and on how many splits
SCALEX's mean macro-F1 is at least scArches'. The original package is left out (it is not part
of that comparison; ``projection.py`` has it).

Writes ``projection_seeds.{md,csv}`` into ``--out`` (default ``benchmarks/results``), with the
hand-written notes of ``projection_seeds_notes.md`` there (how the rows came about); the CSV
is rewritten after every finished job, so an interrupted run keeps what it finished, and a
later run resumes from it (the (split, seed) jobs already there are skipped; ``--fresh`` starts
over). Each row records where it ran (``device``).

    python benchmarks/projection_seeds.py [--splits pbmc_3pv1 ...] [--seeds 0 1 2] [--jobs 1]
        [--kl-weight 0.02]   # add SCALEX arms trained with that KL weight (scArches rows reused)
        [--n-latent 30]      # ... with that latent dimension (alone or with --kl-weight)
    python benchmarks/projection_seeds.py --report   # rewrite the tables from the CSV only

Run one job at a time on a 2-core machine (two torch trainings side by side slow each other
down many times over); ``--jobs`` is for machines with more cores.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd

from _common import RESULTS, difference_interval, interval_verdict, provenance
from projection import SCALEX_ARMS, forced_label_summary

SCARCHES = "scArches (scVI)"
NOTES_FILE = "projection_seeds_notes.md"
SMALL_SPLITS = [
    "pbmc_3pv1",
    "pbmc_3pv2",
    "pbmc_5p",
    "ifnb_stim_onto_ctrl",
    "lung_3line_onto_5line",
    "lung_5line_onto_3line",
]


def scalex_arms(model_kwargs: dict[str, float] | None = None) -> dict[str, str]:
    """SCALEX method names -> encoder BatchNorm statistics; model arguments other than the
    package defaults are named in the method (``", kl_weight 0.02"``, ``", n_latent 30"``)."""
    suffix = "".join(f", {key} {value:g}" for key, value in (model_kwargs or {}).items())
    return {f"{name}{suffix}": stats for name, stats in SCALEX_ARMS.items()}


def model_kwargs_from(args: argparse.Namespace) -> dict[str, float]:
    """The ``SCALEX(...)`` arguments given: ``--kl-weight``, ``--n-latent``."""
    given = {"kl_weight": args.kl_weight, "n_latent": args.n_latent}
    return {key: value for key, value in given.items() if value is not None}


def _base_arm(method: str) -> tuple[int, str]:
    """Position in ``SCALEX_ARMS`` of a SCALEX method's arm, and the rest of its name."""
    for position, name in enumerate(SCALEX_ARMS):
        if method.startswith(name):
            return position, method[len(name) :]
    raise KeyError(method)


def arm_statistics(method: str) -> str:
    """The short name of a SCALEX arm: its statistics, and its KL weight where not the default."""
    position, rest = _base_arm(method)
    return list(SCALEX_ARMS.values())[position] + rest


def run_one(
    split_name: str,
    seed: int,
    threads: int,
    iterations: int | None = None,
    scvi_epochs: int | None = None,
    query_epochs: int | None = None,
    with_scarches: bool = True,
    model_kwargs: dict[str, float] | None = None,
) -> list[dict]:
    """Train SCALEX (and scArches) on one split with one seed; label scores of every arm."""
    import torch
    from scvi.model._utils import get_max_epochs_heuristic

    import scalex_scvi as sx

    from projection import SPLITS, evaluate, run_scalex, run_scarches, split_data

    torch.set_num_threads(threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    split = SPLITS[split_name]
    start = time.perf_counter()
    reference_raw, query_raw = split_data(split)
    reference = sx.pp.preprocess(
        reference_raw, batch_key="batch", profile=split.profile, min_features=split.min_features
    )
    model, query, results = run_scalex(
        reference, query_raw, iterations, seed, model_kwargs, scalex_arms(model_kwargs)
    )
    if with_scarches:
        epochs = scvi_epochs or split.scvi_epochs or get_max_epochs_heuristic(reference.n_obs)
        results[SCARCHES] = run_scarches(
            reference, query, seed, epochs, query_epochs or split.query_epochs
        )
    device = _device()
    rows = []
    for name, result in results.items():
        row, _ = evaluate(name, result, reference, query, split_name)
        if name != SCARCHES:
            row["scalex_kl_weight"] = model.module.kl_weight
            row["scalex_n_latent"] = model.module.n_latent
        rows.append({**row, "seed": seed, "device": device, "job_s": time.perf_counter() - start})
    return rows


def arms_in(table: pd.DataFrame) -> list[str]:
    """The SCALEX methods of a table: the default arms first, then those with another weight."""
    methods = (m for m in table["method"].unique() if m != SCARCHES)
    return sorted(methods, key=lambda m: _base_arm(m)[::-1])


def summarise(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and standard deviation per split and method; each SCALEX arm against scArches."""
    scores = ["macro_f1", "accuracy", "ari", "nmi", "unknown_rate_known", "unknown_rate_novel"]
    scores = [s for s in scores if s in table]
    grouped = table.groupby(["split", "method"], sort=False)
    summary = grouped[scores].agg(["mean", "std"])
    summary.columns = [f"{score}_{stat}" for score, stat in summary.columns]
    summary.insert(0, "n_seeds", grouped.size())
    summary = summary.reset_index()
    f1 = table.pivot_table(index=["split", "seed"], columns="method", values="macro_f1")
    rows = []
    for split, group in f1.groupby(level="split", sort=False):
        for arm in arms_in(table):
            if arm not in group or SCARCHES not in group:
                continue
            paired = group[[arm, SCARCHES]].dropna()
            if paired.empty:
                continue
            _, low, high = difference_interval(paired[arm], paired[SCARCHES], paired=True)
            rows.append(
                {
                    "split": split,
                    "SCALEX arm": arm,
                    "seeds": len(paired),
                    "macro-F1 SCALEX (mean)": paired[arm].mean(),
                    "macro-F1 scArches (mean)": paired[SCARCHES].mean(),
                    "difference (mean)": (paired[arm] - paired[SCARCHES]).mean(),
                    "difference 95% interval": f"[{low:+.4f}, {high:+.4f}]",
                    "over seeds": interval_verdict(low, high),
                    "seeds where SCALEX >= scArches": int((paired[arm] >= paired[SCARCHES]).sum()),
                    "SCALEX >= scArches (mean)": paired[arm].mean() >= paired[SCARCHES].mean(),
                    "ran on": ", ".join(
                        sorted(table.loc[table["split"] == split, "device"].unique())
                    ),
                }
            )
    return summary, pd.DataFrame(rows)


INTERVAL_NOTE = (
    "The 95% interval is a t-interval over seeds of the paired difference (SCALEX minus "
    "scArches on the same split and seed); `over seeds` says whether it lies above zero, below "
    "zero or across it. With 3 to 5 seeds the intervals are wide: 'not distinguishable' means "
    "that these seeds cannot tell the two apart, not that they are equal.\n\n"
)

MODEL_ARGS_NOTE = (
    "Methods named with a `kl_weight` train SCALEX with that weight of the KL term "
    "(`SCALEX(adata, kl_weight=...)`, the package defaults otherwise; the default is the "
    "paper's 0.5), those named with an `n_latent` with that latent dimension (the default is "
    "the paper's 10), on the same (split, seed), and are compared with the same scArches "
    "rows.\n\n"
)

FORCED_NOTE = (
    "Mean macro-F1 over seeds without the Unknown rule (every query cell given its majority "
    "reference label), which separates the kNN assignment from the Unknown calls:\n\n"
)


def write_report(table: pd.DataFrame, out: Path, args: argparse.Namespace) -> None:
    kept_provenance = ""
    if args.report:  # the provenance of the last run, up to any earlier rewrite note
        previous = (out / "projection_seeds.md").read_text()
        kept_provenance = previous[previous.index("## Provenance") :]
        kept_provenance = kept_provenance.split("\nThe tables were last rewritten")[0]
    else:
        table.to_csv(out / "projection_seeds.csv", index=False)
    summary, versus = summarise(table)
    with open(out / "projection_seeds.md", "w") as fh:
        fh.write("# Label transfer over seeds: SCALEX projection against scArches\n\n")
        seeds = ", ".join(map(str, sorted(table["seed"].unique())))
        fh.write(
            f"Seeds {seeds}; every (split, seed) trains both methods "
            "from scratch with the settings of `projection.py` for its split (SCALEX: package "
            "defaults, early stopping; scArches: scvi-tools' epoch heuristic and 200 query "
            "epochs, on the ADT split 10 and 20) and "
            "transfers labels with the package defaults (15 neighbours, Unknown rule). "
            "macro-F1 and accuracy over query cells of types the reference has (Unknown counts "
            "as wrong).\n\n"
        )
        if any(m not in SCALEX_ARMS for m in arms_in(table)):
            fh.write(MODEL_ARGS_NOTE)
        if len(versus):
            for arm, rows in versus.groupby("SCALEX arm", sort=False):
                met = int(rows["SCALEX >= scArches (mean)"].sum())
                counts = rows["over seeds"].value_counts()
                fh.write(
                    f"- {arm} ({arm_statistics(arm)}): mean macro-F1 at least "
                    f"scArches' on **{met} of {len(rows)}** splits; over seeds above on "
                    f"{counts.get('above', 0)}, below on {counts.get('below', 0)}, not "
                    f"distinguishable on {counts.get('not distinguishable', 0)}.\n"
                )
            fh.write("\n" + versus.round(4).to_markdown(index=False) + "\n\n")
            fh.write(INTERVAL_NOTE)
        notes = out / NOTES_FILE  # hand-written notes on how the rows came about
        if notes.exists():
            fh.write(notes.read_text() + "\n")
        if "macro_f1_no_unknown" in table:
            arms = {arm: arm_statistics(arm) for arm in arms_in(table)}
            forced, lines = forced_label_summary(table, score="mean macro-F1", arms=arms)
            fh.write(FORCED_NOTE + forced.round(4).to_markdown() + "\n\n")
            fh.write("\n".join(lines) + "\n\n")
        fh.write("Mean and standard deviation over seeds:\n\n")
        fh.write(summary.round(4).to_markdown(index=False) + "\n\n")
        if args.report:  # keep the provenance of the runs; say when the tables were rewritten
            fh.write(kept_provenance)
            fh.write(
                "\nThe tables were last rewritten from projection_seeds.csv without new runs:\n\n"
            )
            fh.write(provenance().replace("## Provenance", "### Rewrite"))
        else:
            fh.write(provenance({"device": f"{_device()}, {args.jobs} worker processes"}))


def _device() -> str:
    """Where training runs: ``"cuda: <GPU name>"`` or ``"cpu"``."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", nargs="+", default=SMALL_SPLITS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--iterations", type=int, default=None, help="SCALEX budget (smoke)")
    parser.add_argument("--scvi-epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--query-epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=None,
        help="add SCALEX arms trained with this KL weight (scArches rows kept where present)",
    )
    parser.add_argument(
        "--n-latent",
        type=int,
        default=None,
        help="add SCALEX arms with this latent dimension (scArches rows kept where present)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--fresh", action="store_true", help="ignore the rows of an existing projection_seeds.csv"
    )
    parser.add_argument(
        "--report", action="store_true", help="rewrite the report from the CSV, run nothing"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        table = pd.read_csv(args.out / "projection_seeds.csv")
        write_report(table.sort_values(["split", "method", "seed"]), args.out, args)
        return
    rows: list[dict] = []
    have: dict[tuple[str, int], set[str]] = defaultdict(set)
    previous = args.out / "projection_seeds.csv"
    if previous.exists() and not args.fresh:  # resume: keep the methods finished per job
        rows = pd.read_csv(previous).to_dict(orient="records")
        for row in rows:
            have[(row["split"], int(row["seed"]))].add(row["method"])
    model_kwargs = model_kwargs_from(args)
    jobs = {}  # (split, seed) -> whether scArches still has to run
    for seed in args.seeds:
        for split in args.splits:
            missing = ({*scalex_arms(model_kwargs), SCARCHES}) - have[(split, seed)]
            if missing:  # SCALEX arms are recomputed together (one training)
                jobs[(split, seed)] = SCARCHES in missing
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(
                run_one,
                split,
                seed,
                args.threads,
                args.iterations,
                args.scvi_epochs,
                args.query_epochs,
                with_scarches,
                model_kwargs,
            ): (split, seed)
            for (split, seed), with_scarches in jobs.items()
        }
        for future in as_completed(futures):
            split, seed = futures[future]
            try:
                new_rows = future.result()
            except Exception as error:  # one failed job must not lose the others
                print(f"{split} seed {seed} failed: {error!r}", flush=True)
                continue
            replaced = {(split, seed, row["method"]) for row in new_rows}
            rows = [r for r in rows if (r["split"], int(r["seed"]), r["method"]) not in replaced]
            rows.extend(new_rows)
            print(f"done {split} seed {seed} ({len(rows)} rows)", flush=True)
            table = pd.DataFrame(rows).sort_values(["split", "method", "seed"])
            write_report(table, args.out, args)
    print(pd.read_csv(args.out / "projection_seeds.csv")[["split", "method", "seed", "macro_f1"]])


if __name__ == "__main__":
    main()
