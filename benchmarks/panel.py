"""The benchmark panel on the shared RNA datasets, with the original package side by side.

For each dataset, one preprocessing for everyone, then in one run:

- SCALEX (this package) with its defaults (<= 30,000 iterations, early stopping) and with
  smaller iteration budgets (1,000 / 2,000 / 4,000 / 8,000, no early stopping), each run timed
  (wall time, peak memory) to find the training time this package needs to reach the
  original's quality, and each model embedded twice: with the running BatchNorm statistics
  (the package default) and with per-batch statistics (the deterministic form of the
  original's inference);
- ``scalex_scvi.benchmark.run_benchmark``: scVI, unintegrated PCA, Harmony, Scanorama; wall
  time and peak memory per method;
- the original ``scalex`` 1.0.4 with its defaults (30,000 iterations, early stopping, own venv
  with the three compat patches) on the same prepared data: iterations run, iterations per
  second, wall time, peak memory;
- every embedding scored with scib-metrics' full panel and the paper's metrics.

Writes benchmarks/results/panel.{md,csv}, panel_totals.png and scib tables per dataset.

    python benchmarks/panel.py [--datasets pbmc_3chem lung_celllines pbmc_ifnb]
        [--reuse pbmc_3chem]   # take that dataset's rows from the existing panel.csv
    python benchmarks/panel.py --datasets pbmc_ifnb --add-budgets 6000
        # further SCALEX budgets on datasets already in panel.csv, rows appended
    python benchmarks/panel.py --add-budgets defaults 1000 2000 4000 8000 --batch-norm per_batch
        # the same with the encoder's BatchNorm statistics taken per batch at inference
    python benchmarks/panel.py --add-budgets 1000 2000 4000 8000 --batch-norm running per_batch \
        --lr 1e-3   # the same budgets with a learning rate 5 times the paper's
    python benchmarks/panel.py --datasets pbmc_3chem --add-peers scVI original --seed 1
        # the peers again with another seed (SCALEX: --add-budgets defaults --seed 1)
    python benchmarks/panel.py --add-budgets defaults 2000 --kl-weight 0.02
        # another weight of the KL term
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import scvi
import torch

import scalex_scvi as sx

from _common import (
    RESULTS,
    SCORE_COLUMNS,
    difference_interval,
    interval_verdict,
    provenance,
    read,
)
from _original import run as run_original
from scaling import DATASETS

mpl.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

BUDGETS = (1000, 2000, 4000, 8000)
CACHE = Path(__file__).resolve().parent / ".cache" / "panel"
ORIGINAL = "original scalex 1.0.4 (defaults)"


PER_BATCH = ", per-batch BatchNorm"  # suffix of rows embedded with per-batch statistics
PER_BATCH_NOTE = (
    "Rows marked per-batch BatchNorm embed the cells with the encoder's BatchNorm statistics "
    'of each whole batch (`get_latent_representation(batch_norm="per_batch")`), the '
    "deterministic form of the original's inference, which keeps BatchNorm in training mode "
    "on 64-cell mini-batches drawn from one batch. The package default, and the rows without "
    "the mark, use the running statistics learnt in training: a cell's embedding then depends "
    "on that cell only. Each per-batch row and its training time come from one model.\n\n"
)

LR_NOTE = (
    "Rows marked lr 0.001 train with Adam's learning rate 1e-3, five times the paper's 2e-4 "
    "(the package default), for a fixed number of iterations without early stopping "
    "(`model.train(lr=1e-3, max_iterations=..., early_stopping=False)`); everything else as "
    "in the other budget rows. They measure how soon the original's quality can be reached; "
    "the package keeps the paper's learning rate.\n\n"
)

KL_NOTE = (
    "Rows marked kl_weight train with that weight of the KL term instead of the package "
    "default (0.5, the paper's, for 2,000 features); everything else as in the rows of the "
    "same budget. They measure what a lighter KL term costs where batches hold the same "
    "cell types; on batches that share few types it over-corrects less "
    "(partial_overlap.md). The package keeps the paper's weight.\n\n"
)


def scalex_name(
    budget: int | None,
    batch_norm: str = "running",
    lr: float | None = None,
    seed: int = 0,
    kl_weight: float | None = None,
    kl_within: float | None = None,
) -> str:
    """Row name of a SCALEX run: its budget (``None``: the package defaults), learning rate
    and KL weight (``None``: the package defaults), weight of the KL within batches
    (``kl_within.py``'s variant; ``None``: the paper's loss), seed (named where not 0, the main
    run's) and encoder BatchNorm statistics at inference (``"running"`` or ``"per_batch"``)."""
    settings = [] if budget is None else [f"{budget} iterations"]
    settings += [] if lr is None else [f"lr {lr:g}"]
    settings += [] if kl_weight is None else [f"kl_weight {kl_weight:g}"]
    settings += [] if kl_within is None else [f"KL within {kl_within:g}"]
    settings += [] if seed == 0 else [f"seed {seed}"]
    name = f"SCALEX ({', '.join(settings)})" if settings else "SCALEX"
    return name + PER_BATCH if batch_norm == "per_batch" else name


def scalex_arm(name: str) -> str:
    """The arm of a SCALEX row for time to quality: BatchNorm statistics, learning rate, KL
    weight, KL within batches and seed (runs of different seeds are different arms)."""
    arm = "per_batch" if name.endswith(PER_BATCH) else "running"
    settings = (r"lr [0-9.e+-]+", r"kl_weight [0-9.e+-]+", r"KL within [0-9.e+-]+", r"seed \d+")
    for setting in settings:
        found = re.search(setting, name)
        arm += f", {found.group(0)}" if found else ""
    return arm


def budget_curve(
    prepared: ad.AnnData,
    seed: int,
    budgets: tuple[int | None, ...] = BUDGETS,
    batch_norms: tuple[str, ...] = ("running",),
    lr: float | None = None,
    kl_weight: float | None = None,
    patch: Callable[[sx.SCALEX], None] | None = None,
) -> tuple[dict, dict]:
    """Train SCALEX once per budget (``None``: package defaults with early stopping, else that
    many iterations without), with learning rate ``lr`` and KL weight ``kl_weight``
    (``None``: the package defaults), after ``patch`` (a benchmark's variant of the model, e.g.
    ``kl_within.patch_loss``; ``None``: none), and embed with each of ``batch_norms``; wall time
    and peak memory are those of training."""
    embeddings, timing = {}, {}
    for budget in budgets:
        scvi.settings.seed = seed
        adata = ad.AnnData(X=prepared.X, obs=prepared.obs[["batch"]].copy(), var=prepared.var[[]])
        sx.SCALEX.setup_anndata(adata, batch_key="batch")
        model = sx.SCALEX(adata, kl_weight=kl_weight)
        if patch is not None:
            patch(model)
        kwargs = {} if budget is None else {"max_iterations": budget, "early_stopping": False}
        if lr is not None:
            kwargs["lr"] = lr
        with sx.benchmark.Resources() as used:
            model.train(enable_progress_bar=False, **kwargs)
        for batch_norm in batch_norms:
            name = scalex_name(budget, batch_norm, lr, seed, kl_weight)
            timing[name] = {
                "wall_s": used.wall_s,
                "peak_mib": used.peak_mib,
                "iterations": model.trainer.global_step,
            }
            embeddings[name] = model.get_latent_representation(batch_norm=batch_norm)
    return embeddings, timing


def with_training(table: pd.DataFrame, timing: dict) -> pd.DataFrame:
    """``table`` (indexed by method) with the training figures of :func:`budget_curve`."""
    for method, info in timing.items():
        table.loc[method, ["wall_s", "peak_mib", "iterations"]] = [
            info["wall_s"],
            info["peak_mib"],
            info["iterations"],
        ]
        table.loc[method, "iterations_per_s"] = info["iterations"] / info["wall_s"]
    return table


def original_defaults(prepared: ad.AnnData, seed: int, name: str) -> tuple[np.ndarray, dict]:
    """The original with its defaults; cached, as it takes the longest of the panel."""
    cached = CACHE / f"{name}_seed{seed}.npz"
    if cached.exists():
        data = np.load(cached, allow_pickle=True)
        if list(data["obs_names"]) == list(prepared.obs_names):
            return data["latent"], json.loads(str(data["report"]))
    latent, report = _run_original_defaults(prepared, seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(
        cached,
        latent=latent,
        obs_names=np.asarray(prepared.obs_names, dtype=str),
        report=json.dumps(report),
    )
    return latent, report


def _run_original_defaults(prepared: ad.AnnData, seed: int) -> tuple[np.ndarray, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ad.AnnData(
            X=prepared.X, obs=prepared.obs[["batch"]].copy(), var=prepared.var[[]]
        ).write_h5ad(tmp / "data.h5ad")
        (tmp / "out").mkdir()
        report = run_original(
            {
                "mode": "train",
                "adata": str(tmp / "data.h5ad"),
                "outdir": str(tmp / "out"),
                "max_iteration": 30_000,
                "seed": seed,
            }
        )
        latent = np.load(tmp / "out" / "latent.npy")
        names = np.load(tmp / "out" / "obs_names.npy")
    order = pd.Index(names).get_indexer(prepared.obs_names)
    return latent[order], report


def run_dataset(name: str, seed: int) -> pd.DataFrame:
    file, min_features = DATASETS[name]
    prepared = sx.pp.preprocess(read(file), batch_key="batch", min_features=min_features)
    original_latent, original = original_defaults(prepared, seed, name)
    print(
        f"{name}: original ran {original['iterations']} iterations in {original['fit_s']:.0f} s",
        flush=True,
    )
    # SCALEX with its defaults trains here with the budgets, so that one model gives both rows
    curve, curve_timing = budget_curve(prepared, seed, (None, *BUDGETS), ("running", "per_batch"))
    table = sx.benchmark.run_benchmark(
        prepared,
        methods=[m for m in sx.benchmark.DEFAULT_METHODS if m != "SCALEX"],
        prepared=True,
        dataset=name,
        seed=seed,
        embeddings={ORIGINAL: original_latent, **curve},
        save_dir=RESULTS / "panel_tables" / name,
    )
    table = table.set_index("method")
    table.loc[ORIGINAL, ["wall_s", "peak_mib", "iterations", "iterations_per_s"]] = [
        original["fit_s"],
        original["peak_rss_mib"],
        original["iterations"],
        original["iterations_per_s"],
    ]
    return with_training(table, curve_timing).reset_index()


def add_budgets(
    name: str,
    seed: int,
    budgets: tuple[int | None, ...],
    batch_norms: tuple[str, ...],
    lr: float | None = None,
    kl_weight: float | None = None,
    patch: Callable[[sx.SCALEX], None] | None = None,
) -> pd.DataFrame:
    """Rows of further SCALEX runs for a dataset already in the panel (``patch``: a
    benchmark's variant of the model, as in :func:`budget_curve`).

    Scores are per embedding (scib-metrics without min-max scaling, the paper's metrics seeded
    per embedding), so embeddings scored in a later run are comparable with the others.
    """
    file, min_features = DATASETS[name]
    prepared = sx.pp.preprocess(read(file), batch_key="batch", min_features=min_features)
    curve, curve_timing = budget_curve(prepared, seed, budgets, batch_norms, lr, kl_weight, patch)
    table = sx.benchmark.run_benchmark(
        prepared, prepared=True, methods=[], dataset=name, seed=seed, embeddings=curve
    ).set_index("method")
    return with_training(table, curve_timing).reset_index()


PEERS = ("scVI", "original")


def seeded(method: str, seed: int) -> str:
    """Row name of a peer's run with another seed than the main run's."""
    return f"{method[:-1]}, seed {seed})" if method.endswith(")") else f"{method} (seed {seed})"


def base_method(name: str) -> tuple[str, int]:
    """The method of a row without its seed, and that seed (0: the main run's)."""
    found = re.search(r"seed (\d+)", name)
    base = re.sub(r" \(seed \d+\)", "", re.sub(r", seed \d+\)", ")", name))
    return base, int(found.group(1)) if found else 0


def add_peers(name: str, seed: int, peers: tuple[str, ...]) -> pd.DataFrame:
    """Rows of scVI and / or the original with its defaults, run again with ``seed``."""
    file, min_features = DATASETS[name]
    prepared = sx.pp.preprocess(read(file), batch_key="batch", min_features=min_features)
    embeddings, original = {}, None
    if "original" in peers:
        embeddings[seeded(ORIGINAL, seed)], original = original_defaults(prepared, seed, name)
    table = sx.benchmark.run_benchmark(
        prepared,
        methods=["scVI"] if "scVI" in peers else [],
        prepared=True,
        dataset=name,
        seed=seed,
        embeddings=embeddings,
    )
    table["method"] = table["method"].replace({"scVI": seeded("scVI", seed)})
    table = table.set_index("method")
    if original is not None:
        table.loc[seeded(ORIGINAL, seed), ["wall_s", "peak_mib", "iterations"]] = [
            original["fit_s"],
            original["peak_rss_mib"],
            original["iterations"],
        ]
        table.loc[seeded(ORIGINAL, seed), "iterations_per_s"] = original["iterations_per_s"]
    return table.reset_index()


SEEDS_NOTE = (
    "## Over seeds\n\n"
    "scib Total of the main rows per seed where a method was run again with another seed "
    "(`--add-budgets defaults --seed N` for SCALEX, `--add-peers scVI original --seed N` for "
    "the peers), and the mean over the seeds run.\n\n"
)


def totals_by_base(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's dataset, method and Total, with its method without the seed and that seed."""
    rows = table[["dataset", "method", "Total"]].copy()
    rows[["base", "seed"]] = rows["method"].apply(lambda m: pd.Series(base_method(m)))
    return rows


def seed_table(table: pd.DataFrame) -> pd.DataFrame:
    """Total per dataset, main method and seed, for the datasets where a main method has
    another seed than the main run's."""
    mains = ["SCALEX", "SCALEX" + PER_BATCH, "scVI", ORIGINAL]
    rows = totals_by_base(table)
    rows = rows[rows["base"].isin(mains)]
    several = rows.groupby("dataset")["seed"].transform("max") > 0
    wide = rows[several].pivot_table(index=["dataset", "base"], columns="seed", values="Total")
    wide.columns = [f"Total seed {seed}" for seed in wide.columns]
    wide["mean"] = wide.mean(axis=1)
    wide["seeds"] = wide.filter(like="Total seed").notna().sum(axis=1)
    wide.index = wide.index.set_names(["dataset", "method"])
    return wide.reset_index()


SEED_DIFFERENCES_NOTE = (
    "SCALEX minus each peer over the seeds above: difference of the mean Totals and Welch's "
    "95% t-interval (seeds are not paired across methods); `over seeds` says whether the "
    "interval lies above zero, below zero or across it ('not distinguishable': these seeds "
    "cannot tell the two apart, which is not evidence that they are equal).\n\n"
)


def seed_differences(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset with several seeds: each SCALEX arm minus scVI and the original."""
    mains = ["SCALEX", "SCALEX" + PER_BATCH]
    rows = totals_by_base(table)
    out = []
    for dataset, group in rows.groupby("dataset"):
        if group["seed"].max() == 0:
            continue
        totals = group.groupby("base")["Total"].apply(list)
        for ours in (m for m in mains if m in totals):
            for peer in (p for p in ("scVI", ORIGINAL) if p in totals):
                difference, low, high = difference_interval(
                    totals[ours], totals[peer], paired=False
                )
                out.append(
                    {
                        "dataset": dataset,
                        "SCALEX arm": ours,
                        "peer": peer,
                        "seeds (SCALEX, peer)": f"{len(totals[ours])}, {len(totals[peer])}",
                        "difference of means": difference,
                        "95% interval": f"[{low:+.4f}, {high:+.4f}]",
                        "over seeds": interval_verdict(low, high),
                    }
                )
    return pd.DataFrame(out)


def time_to_quality(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and arm (encoder BatchNorm at inference, learning rate and seed where not
    the defaults): the cheapest SCALEX run reaching the original's scib Total (its mean over
    the seeds it was run with, against its mean wall time)."""
    rows = []
    for dataset, group in table.groupby("dataset"):
        group = group.set_index("method")
        originals = group[[base_method(m)[0] == ORIGINAL for m in group.index]]
        target, original_s = originals["Total"].mean(), originals["wall_s"].mean()
        scalex = group[group.index.str.startswith("SCALEX")].dropna(subset=["wall_s"])
        for arm, ours in scalex.groupby(scalex.index.map(scalex_arm), sort=False):
            reaching = ours[ours["Total"] >= target].sort_values("wall_s")
            best = reaching.index[0] if len(reaching) else None
            rows.append(
                {
                    "dataset": dataset,
                    "SCALEX arm": arm,
                    "original seeds": len(originals),
                    "original Total": target,
                    "original wall_s": original_s,
                    "cheapest SCALEX run reaching it": best,
                    "its Total": group.loc[best, "Total"] if best else np.nan,
                    "its wall_s": group.loc[best, "wall_s"] if best else np.nan,
                    "speed-up": original_s / group.loc[best, "wall_s"] if best else np.nan,
                }
            )
    return pd.DataFrame(rows)


TTQ_SEEDS_NOTE = (
    "Over seeds: every SCALEX setting (encoder BatchNorm statistics, learning rate, KL weight "
    "and budget) run with at least {min_seeds} seeds, its mean Total and mean training time over "
    "them, against the original's mean over its seeds. `Total - original`: Welch's 95% "
    "interval of the difference of the means. `cheapest reaching`: the setting with the "
    "shortest mean time, per dataset and arm, whose mean Total is at least the original's.\n\n"
)


def scalex_setting(name: str) -> tuple[str, str]:
    """The arm of a SCALEX row without its seed, and its budget (``"defaults"`` where none)."""
    arm = re.sub(r", seed \d+", "", scalex_arm(name))
    found = re.search(r"(\d+) iterations", name)
    return arm, found.group(1) if found else "defaults"


def time_to_quality_over_seeds(table: pd.DataFrame, min_seeds: int = 3) -> pd.DataFrame:
    """Per dataset and SCALEX setting run with at least ``min_seeds`` seeds: mean Total and
    mean training time over the seeds against the original's means over its seeds."""
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
        group = group.set_index("method")
        originals = group[[base_method(m)[0] == ORIGINAL for m in group.index]]
        if originals.empty:
            continue
        target, original_s = originals["Total"].mean(), originals["wall_s"].mean()
        scalex = group[group.index.str.startswith("SCALEX")].dropna(subset=["wall_s"])
        settings = [scalex_setting(name) for name in scalex.index]
        keys = [np.array([arm for arm, _ in settings]), np.array([b for _, b in settings])]
        for (arm, budget), runs in scalex.groupby(keys, sort=False):
            if len(runs) < min_seeds:
                continue
            difference, low, high = difference_interval(
                runs["Total"], originals["Total"], paired=False
            )
            rows.append(
                {
                    "dataset": dataset,
                    "SCALEX arm": arm,
                    "budget": budget,
                    "seeds": len(runs),
                    "mean Total": runs["Total"].mean(),
                    "original Total": target,
                    "Total - original": f"{difference:+.4f} [{low:+.4f}, {high:+.4f}]",
                    "over seeds": interval_verdict(low, high),
                    "mean wall_s": runs["wall_s"].mean(),
                    "speed-up": original_s / runs["wall_s"].mean(),
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    reaching = out[out["mean Total"] >= out["original Total"]]
    cheapest = reaching.loc[reaching.groupby(["dataset", "SCALEX arm"])["mean wall_s"].idxmin()]
    out["cheapest reaching"] = out.index.isin(cheapest.index)
    return out


def plot_totals(table: pd.DataFrame) -> None:
    """Left: scib Total of each method's main run per dataset, the mean over its seeds with
    every seed as a small point. Right, per dataset: Total against training time of each SCALEX
    setting (mean over its seeds per budget, every run as a faint point), with the original
    and scVI as points."""
    datasets = list(pd.unique(table["dataset"]))
    main = table[~table["method"].str.contains("iterations")].copy()
    main["base"] = main["method"].map(lambda name: base_method(name)[0])
    fig, axes = plt.subplots(
        1, 1 + len(datasets), figsize=(5 + 4 * len(datasets), 4.5), squeeze=False
    )
    ax = axes[0, 0]
    means = main.pivot_table(index="base", columns="dataset", values="Total")
    means = means.loc[means.mean(axis=1).sort_values().index]
    position = {base: i for i, base in enumerate(means.index)}
    for offset, dataset in zip((-0.2, 0.0, 0.2), datasets, strict=False):
        (dots,) = ax.plot(means[dataset], np.arange(len(means)) + offset, "o", ms=5, label=dataset)
        runs = main[main["dataset"] == dataset]
        ax.scatter(
            runs["Total"],
            runs["base"].map(position) + offset,
            s=6,
            color=dots.get_color(),
            alpha=0.5,
        )
    ax.set_yticks(np.arange(len(means)), means.index, fontsize=8)
    ax.set_xlabel("scib Total (large: mean over seeds; small: each seed)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7)
    scalex_rows = table[table["method"].str.startswith("SCALEX")]
    arms = list(pd.unique(scalex_rows["method"].map(lambda name: scalex_setting(name)[0])))
    colors = dict(zip(arms, plt.get_cmap("tab10")(np.arange(len(arms)) % 10), strict=True))
    handles = {}
    for ax, dataset in zip(axes[0, 1:], datasets, strict=True):
        part = table[table["dataset"] == dataset].set_index("method")
        scalex = part[part.index.str.startswith("SCALEX")].dropna(subset=["wall_s"]).copy()
        scalex[["arm", "budget"]] = [scalex_setting(name) for name in scalex.index]
        for arm, runs in scalex.groupby("arm", sort=False):
            ax.scatter(runs["wall_s"], runs["Total"], color=colors[arm], s=8, alpha=0.35)
            curve = runs.groupby("budget")[["wall_s", "Total"]].mean().sort_values("wall_s")
            (line,) = ax.plot(curve["wall_s"], curve["Total"], marker="o", ms=4, color=colors[arm])
            handles["SCALEX, " + arm.replace("_", "-")] = line
        peers = part.index.map(lambda name: base_method(name)[0])
        for method, marker, color in ((ORIGINAL, "*", "black"), ("scVI", "s", "tab:red")):
            runs = part[peers == method]
            if len(runs):
                handles[f"{method}, each seed"] = ax.scatter(
                    runs["wall_s"], runs["Total"], color=color, marker=marker, s=70, zorder=3
                )
        originals = part[peers == ORIGINAL]
        if len(originals):
            ax.axhline(originals["Total"].mean(), color="grey", lw=0.8, ls="--")
            ax.axvline(originals["wall_s"].mean() / 5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training wall time (s)")
        ax.set_ylabel("scib Total")
        ax.set_title(dataset)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        fontsize=7,
        title="SCALEX lines: mean over seeds per budget (faint: each run);\n"
        "dashed: the original's mean Total over its seeds;\ndotted: its mean wall time / 5",
        title_fontsize=7,
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "panel_totals.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def write_report(table: pd.DataFrame, seed: int, earlier: str = "") -> None:
    """Write panel.{md,csv} and the plot; ``earlier``: text on rows from an earlier run."""
    table.to_csv(RESULTS / "panel.csv", index=False)
    main = ["dataset", "method", *SCORE_COLUMNS, "iterations_per_s"]
    ttq = time_to_quality(table)
    checks = []
    for dataset, group in table.groupby("dataset"):
        group = group.set_index("method")
        ours = group.loc["SCALEX", "Total"]
        check = {
            "dataset": dataset,
            "SCALEX Total": ours,
            "scVI Total": group.loc["scVI", "Total"],
            "original Total": group.loc[ORIGINAL, "Total"],
            "SCALEX >= scVI": ours >= group.loc["scVI", "Total"],
            "SCALEX >= original": ours >= group.loc[ORIGINAL, "Total"],
        }
        if "SCALEX" + PER_BATCH in group.index:
            per_batch = group.loc["SCALEX" + PER_BATCH, "Total"]
            check["SCALEX per-batch Total"] = per_batch
            check["per-batch >= scVI"] = per_batch >= group.loc["scVI", "Total"]
            check["per-batch >= original"] = per_batch >= group.loc[ORIGINAL, "Total"]
        checks.append(check)
    plot_totals(table)
    with open(RESULTS / "panel.md", "w") as fh:
        fh.write("# Benchmark panel\n\n")
        fh.write(
            f"Seed {seed}. Same preprocessing for every method (`scalex_scvi.pp.preprocess`"
            ", 2,000 HVGs, global MaxAbs). scib-metrics default panel, not min-max scaled. "
            "Paper metrics: batch entropy mixing on shared cell types (1 = perfect), "
            "over-correction (k = 100, lower is better), Leiden ARI/NMI. wall_s: training "
            "(or running) time; peak_mib: peak increase of resident memory (original: peak "
            "RSS of its process).\n\n"
        )
        fh.write(table[[c for c in main if c in table]].round(4).to_markdown(index=False))
        fh.write("\n\n## Targets\n\n")
        fh.write(pd.DataFrame(checks).round(4).to_markdown(index=False) + "\n\n")
        if table["method"].str.endswith(PER_BATCH).any():
            fh.write(PER_BATCH_NOTE)
        if table["method"].str.contains(" lr ").any():
            fh.write(LR_NOTE)
        if table["method"].str.contains("kl_weight ").any():
            fh.write(KL_NOTE)
        seeds = seed_table(table)
        if len(seeds):
            fh.write(SEEDS_NOTE + seeds.round(4).to_markdown(index=False) + "\n\n")
            differences = seed_differences(table)
            fh.write(SEED_DIFFERENCES_NOTE)
            fh.write(differences.round(4).to_markdown(index=False) + "\n\n")
        fh.write("Time to the original's quality:\n\n")
        fh.write(ttq.round(3).to_markdown(index=False) + "\n\n")
        over_seeds = time_to_quality_over_seeds(table)
        if len(over_seeds):
            fh.write(TTQ_SEEDS_NOTE.format(min_seeds=3))
            fh.write(over_seeds.round(4).to_markdown(index=False) + "\n\n")
        fh.write(
            "![scib Total per method; Total against training time of the SCALEX budget "
            "runs](panel_totals.png)\n\n"
        )
        fh.write(earlier)
        fh.write(provenance())


def _budget(text: str) -> int | None:
    return None if text == "defaults" else int(text)


def append_runs(args: argparse.Namespace) -> None:
    """Further SCALEX runs appended to panel.csv; panel.md keeps every run's provenance."""
    previous = pd.read_csv(RESULTS / "panel.csv")
    budgets, batch_norms = tuple(args.add_budgets), tuple(args.batch_norm)
    peers = tuple(args.add_peers)
    if peers and args.seed == 0:
        raise SystemExit("--add-peers needs another --seed than the main run's 0.")
    names = [
        scalex_name(b, n, args.lr, args.seed, args.kl_weight) for b in budgets for n in batch_norms
    ]
    names += [seeded({"original": ORIGINAL}.get(peer, peer), args.seed) for peer in peers]
    present = previous[previous["dataset"].isin(args.datasets) & previous["method"].isin(names)]
    if not present.empty:
        raise SystemExit(
            f"panel.csv already has {sorted(set(present['method']))} on these datasets."
        )
    extra = [
        add_budgets(name, args.seed, budgets, batch_norms, args.lr, args.kl_weight)
        if budgets
        else add_peers(name, args.seed, peers)
        for name in args.datasets
    ]
    table = pd.concat([previous, *extra], ignore_index=True)
    order = {name: i for i, name in enumerate(pd.unique(previous["dataset"]))}
    table = table.sort_values("dataset", key=lambda c: c.map(order), kind="stable")
    note = (
        f"Rows {', '.join(names)} on {', '.join(args.datasets)} come from a later run "
        f"(`{'--add-budgets' if budgets else '--add-peers'}`, provenance at the end).\n\n"
    )
    rewrite_report(table, note, args.seed)


def rewrite_report(table: pd.DataFrame, note: str, seed: int) -> None:
    """Write panel.md for ``table``, keeping every earlier run's provenance, ``note`` first."""
    text = (RESULTS / "panel.md").read_text()
    heading = "## Provenance of the main run" if "of the main run" in text else "## Provenance"
    earlier = text.split(heading, 1)[-1].strip()
    # the previous run's own provenance block becomes that of an earlier appending run
    earlier = earlier.replace("\n## Provenance\n", "\n## Provenance of an earlier appending run\n")
    main_seed = re.search(r"^Seed (\d+)\.", text, flags=re.MULTILINE)
    write_report(
        table.reset_index(drop=True),
        int(main_seed.group(1)) if main_seed else seed,
        "## Provenance of the main run\n\n" + note + earlier + "\n\n",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every method; with --add-budgets, rows of another seed than 0 are named "
        "with it and make arms of their own",
    )
    parser.add_argument(
        "--reuse",
        nargs="+",
        default=[],
        help="datasets whose rows are taken from the existing panel.csv instead of re-run",
    )
    parser.add_argument(
        "--add-budgets",
        nargs="+",
        type=_budget,
        default=[],
        help="train and score only these further SCALEX budgets (iterations, or 'defaults' for "
        "the package defaults) on --datasets, appended to the rows of the existing panel.csv "
        "(which must hold every dataset)",
    )
    parser.add_argument(
        "--add-peers",
        nargs="+",
        choices=PEERS,
        default=[],
        help="run only these peers again (scVI; the original with its defaults) with --seed "
        "on --datasets, appended to the rows of the existing panel.csv",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="rewrite panel.md and the plot from the existing panel.csv, without running",
    )
    parser.add_argument(
        "--batch-norm",
        nargs="+",
        choices=["running", "per_batch"],
        default=["running"],
        help="with --add-budgets: encoder BatchNorm statistics of the embeddings (per_batch: "
        "statistics of each whole batch, the deterministic form of the original's inference)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="with --add-budgets: Adam's learning rate (default: the package's, 2e-4)",
    )
    parser.add_argument(
        "--kl-weight",
        type=float,
        default=None,
        help="with --add-budgets: SCALEX's kl_weight (default: the package's, 0.5 for 2,000 "
        "features)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of this process (the original's process: its OMP_NUM_THREADS)",
    )
    args = parser.parse_args()
    # torch's thread count can drift from OMP_NUM_THREADS after other libraries load; pin it
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if args.report:
        rewrite_report(
            pd.read_csv(RESULTS / "panel.csv"),
            "The tables were last rewritten from panel.csv without new runs (`--report`, "
            "provenance at the end).\n\n",
            args.seed,
        )
        return
    if args.add_budgets and args.add_peers:
        parser.error("--add-budgets and --add-peers are separate runs.")
    if args.add_budgets or args.add_peers:
        append_runs(args)
        return
    partial = RESULTS / "panel_partial.json"
    done = json.loads(partial.read_text()) if partial.exists() else {}
    if args.reuse:
        previous = pd.read_csv(RESULTS / "panel.csv")
        for name in args.reuse:
            rows = previous[previous["dataset"] == name]
            if rows.empty:
                raise ValueError(f"panel.csv has no rows of {name!r} to reuse")
            done.setdefault(name, rows.to_dict(orient="records"))
    for name in args.datasets:
        if name not in done:
            done[name] = run_dataset(name, args.seed).to_dict(orient="records")
            partial.write_text(json.dumps(done, default=float))
    table = pd.concat([pd.DataFrame(done[name]) for name in args.datasets], ignore_index=True)
    write_report(table, args.seed)
    partial.unlink()
    print(table.to_string())


if __name__ == "__main__":
    main()
