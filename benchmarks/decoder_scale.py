"""What in the decoder's per-batch normalisation pulls disjoint cell types together?

SCALEX's decoder normalises each feature per batch and then applies that batch's own scale and
shift (``DomainSpecificBatchNorm1d``). When two batches share no cell type, a per-batch scale and
shift for every feature can turn one decoded profile into two different ones, so the model loses
little reconstruction by placing different types of the two batches at the same latent position,
and the KL term rewards doing so. With one scale for all batches (per-batch shift only) the same
latent position can differ between batches by a constant per feature only.

A third decoder, ``shift only``, is a diagnostic: one normalisation over all the mini-batch's
cells (no per-batch statistics), one scale, and a per-batch shift, the least a decoder needs to
model a batch; it tells whether the per-batch statistics or any per-batch term pull the types
together.

The ``mixed`` decoders lie between the paper's and ``shift only``: the paper's per-batch scale
and shift, each cell normalised with a weighted mean of its batch's statistics and the whole
mini-batch's; they tell whether an intermediate leaves the trade-off between integration and
over-correction that the two ends span.

This script trains the decoders, side by side, with the paper's settings otherwise (8,000
iterations without early stopping, the budget of the other variant rows; seed 0), on the
partial-overlap designs whose batches share no type (``partial_overlap.py``'s draws 0 and 1 of
seed 0, both series), where over-correction is largest, and on the benchmark panel's datasets,
where batches share their types. Scored as in the panel. The package has no such option: the
variant replaces the forward of the model's own decoder normalisation (that instance only).
Writes benchmarks/results/decoder_scale.{md,csv,png}; decision rule in decoder_scale_notes.md.

    python benchmarks/decoder_scale.py [--iterations 8000] [--seed 0] [--decoders ...]
    python benchmarks/decoder_scale.py --report  # rewrite the report from the CSV (and notes)
"""

from __future__ import annotations

import argparse
import functools
import logging
import types
from collections.abc import Callable, Collection
from pathlib import Path

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import scvi
import torch
from torch.nn import functional as F

import scalex_scvi as sx

from _common import RESULTS, notes_and_provenance, read
from partial_overlap import SERIES, prepared_design
from scaling import DATASETS

mpl.use("Agg")
import matplotlib.pyplot as plt

MIXED_WEIGHTS = (0.99, 0.95, 0.75, 0.5)
DECODERS = {
    "paper": "per-batch scale and shift (paper, package)",
    "shared scale": "one scale for all batches, per-batch shift",
    "shift only": (
        "one normalisation over all the mini-batch's cells and one scale, per-batch shift "
        "(no per-batch statistics)"
    ),
    **{
        f"mixed {w}": (
            f"per-batch scale and shift; each cell normalised with {w} × its batch's statistics "
            f"+ {1 - w:.2g} × the whole mini-batch's"
        )
        for w in MIXED_WEIGHTS
    },
}
DRAWS = (0, 1)
DATASET_NAMES = [f"{series}_k0_d{draw}" for series in SERIES for draw in DRAWS] + list(DATASETS)
COLUMNS = [
    "dataset",
    "decoder",
    "Total",
    "Batch correction",
    "Bio conservation",
    "over_correction",
    "batch_entropy_mixing",
    "wall_s",
]


def shared_scale_forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """``DomainSpecificBatchNorm1d.forward`` with the first batch's scale used for every batch."""
    one_hot = F.one_hot(domain.reshape(-1).long(), self.n_domains).to(x.dtype)
    if self.training:
        mean, var = self._batch_statistics(x, one_hot)
    else:
        mean, var = one_hot @ self.running_mean, one_hot @ self.running_var
    return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[0] + one_hot @ self.bias


def shift_only_forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
    """One BatchNorm over every cell of the mini-batch (no per-batch statistics), the first
    batch's scale for all, then each batch's shift. Its running statistics are not kept: only
    training uses the decoder here (the embedding is the encoder's)."""
    one_hot = F.one_hot(domain.reshape(-1).long(), self.n_domains).to(x.dtype)
    normalised = F.batch_norm(x, None, None, training=True, eps=self.eps)
    return normalised * self.weight[0] + one_hot @ self.bias


def mixed_forward(
    self, x: torch.Tensor, domain: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """The paper's normalisation with ``weight`` × each cell's batch statistics + (1 − weight) ×
    the whole mini-batch's (mean and variance each mixed so); per-batch scale and shift. Only
    training uses it (the running statistics stay per batch; the embedding is the encoder's)."""
    one_hot = F.one_hot(domain.reshape(-1).long(), self.n_domains).to(x.dtype)
    batch_mean, batch_var = self._batch_statistics(x, one_hot)
    mean = weight * batch_mean + (1 - weight) * x.mean(0)
    var = weight * batch_var + (1 - weight) * x.var(0, unbiased=False)
    scale = torch.rsqrt(var + self.eps) * (one_hot @ self.weight)
    return (x - mean) * scale + one_hot @ self.bias


FORWARDS = {
    "shared scale": shared_scale_forward,
    "shift only": shift_only_forward,
} | {f"mixed {w}": functools.partial(mixed_forward, weight=w) for w in MIXED_WEIGHTS}


def decoder_patch(decoder: str) -> Callable[[sx.SCALEX], None]:
    """The patch (for :func:`train_patched`) that gives a model's decoder normalisation the
    forward of ``decoder`` (that instance only; the paper's needs none)."""

    def patch(model: sx.SCALEX) -> None:
        if decoder in FORWARDS:
            norm = model.module.decoder.norm
            norm.forward = types.MethodType(FORWARDS[decoder], norm)

    return patch


def train_patched(
    prepared: ad.AnnData,
    patch: Callable[[sx.SCALEX], None],
    iterations: int,
    seed: int,
    **train_kwargs,
) -> tuple:
    """Latent means of the training cells and training wall time of a model that ``patch`` has
    changed before training (the package defaults otherwise; ``train_kwargs`` go to
    :meth:`~scalex_scvi.SCALEX.train`)."""
    scvi.settings.seed = seed
    adata = ad.AnnData(X=prepared.X, obs=prepared.obs[["batch"]].copy(), var=prepared.var[[]])
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    model = sx.SCALEX(adata)
    patch(model)
    with sx.benchmark.Resources() as used:
        model.train(
            max_iterations=iterations,
            early_stopping=False,
            enable_progress_bar=False,
            **train_kwargs,
        )
    return model.get_latent_representation(), used.wall_s


def datasets(seed: int, names: Collection[str] | None = None) -> dict[str, ad.AnnData]:
    """The designs with no shared type, then the panel's datasets, preprocessed (only those in
    ``names`` when given; see :data:`DATASET_NAMES`)."""
    wanted = set(DATASET_NAMES if names is None else names)
    found = {}
    for series, spec in SERIES.items():
        draws = [draw for draw in DRAWS if f"{series}_k0_d{draw}" in wanted]
        raw = read(spec["file"]) if draws else None
        for draw in draws:
            found[f"{series}_k0_d{draw}"], _ = prepared_design(raw, spec, 0, draw, seed)
    for name, (file, min_features) in DATASETS.items():
        if name in wanted:
            found[name] = sx.pp.preprocess(
                read(file), batch_key="batch", min_features=min_features
            )
    return found


def training_parser(description: str) -> argparse.ArgumentParser:
    """The options of a variant run: ``--iterations``, ``--seed`` and ``--report``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--iterations", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--report",
        action="store_true",
        help="rewrite the report from the CSV, no training (give the run's --iterations, --seed)",
    )
    return parser


def add_selection(parser: argparse.ArgumentParser, stem: str) -> None:
    """Add ``--datasets`` (some of :func:`datasets`' names) and ``--stem`` (the results' file
    name, default ``stem``; the notes stay <stem>_notes.md) to a variant run's ``parser``."""
    parser.add_argument(
        "--datasets", nargs="+", help="names of decoder_scale.py's datasets to run (default all)"
    )
    parser.add_argument(
        "--stem", default=stem, help=f"results/<stem>.{{csv,md,png}} (notes: {stem}_notes.md)"
    )


def chosen_datasets(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> dict[str, ad.AnnData]:
    """:func:`datasets` at ``args.seed``, only those named by ``--datasets`` when given; an
    unknown name is a parser error."""
    if unknown := set(args.datasets or ()) - set(DATASET_NAMES):
        parser.error(f"unknown --datasets {sorted(unknown)}; known: {DATASET_NAMES}")
    return datasets(args.seed, args.datasets)


def main() -> None:
    parser = training_parser(__doc__)
    parser.add_argument(
        "--decoders",
        nargs="+",
        default=list(DECODERS),
        choices=list(DECODERS),
        help="decoders to train; rows of the others are kept from an existing decoder_scale.csv",
    )
    args = parser.parse_args()
    if args.report:
        write_report(pd.read_csv(RESULTS / "decoder_scale.csv"), args)
        return
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    variants = {decoder: (decoder_patch(decoder), {}) for decoder in args.decoders}
    table = score_variants(datasets(args.seed), variants, args.iterations, args.seed, "decoder")
    earlier = RESULTS / "decoder_scale.csv"
    if earlier.exists() and set(args.decoders) != set(DECODERS):
        kept = pd.read_csv(earlier)
        table = pd.concat([kept[~kept["decoder"].isin(args.decoders)], table])
        order = {
            "dataset": {name: i for i, name in enumerate(dict.fromkeys(kept["dataset"]))},
            "decoder": {name: i for i, name in enumerate(DECODERS)},
        }
        table = table.sort_values(
            ["dataset", "decoder"], key=lambda column: column.map(order[column.name])
        )
    table.to_csv(earlier, index=False)
    write_report(table, args)


def score(
    prepared: ad.AnnData,
    embeddings: dict[str, np.ndarray],
    walls: dict[str, float],
    dataset: str,
    seed: int,
    column: str = "decoder",
) -> pd.DataFrame:
    """The panel's scores of each embedding of ``prepared``, one row per key of ``embeddings``
    (in ``column``), with its training wall time."""
    table = sx.benchmark.run_benchmark(
        prepared,
        methods=[],
        prepared=True,
        embeddings=embeddings,
        dataset=dataset,
        seed=seed,
        progress_bar=False,
    ).rename(columns={"method": column})
    table["wall_s"] = table[column].map(walls)
    return table


def score_variants(
    prepared_sets: dict[str, ad.AnnData],
    variants: dict[str, tuple[Callable[[sx.SCALEX], None], dict]],
    iterations: int,
    seed: int,
    column: str = "variant",
) -> pd.DataFrame:
    """Train every variant, ``name: (patch, train_kwargs)`` (see :func:`train_patched`), on each
    of ``prepared_sets`` and score it; each dataset's rows are printed as they come. Returns
    the rows with ``COLUMNS``, the variant in ``column``."""
    columns = [column if name == "decoder" else name for name in COLUMNS]
    rows = []
    for name, prepared in prepared_sets.items():
        embeddings, walls = {}, {}
        for variant, (patch, train_kwargs) in variants.items():
            embeddings[variant], walls[variant] = train_patched(
                prepared, patch, iterations, seed, **train_kwargs
            )
        rows.append(score(prepared, embeddings, walls, name, seed, column)[columns])
        print(rows[-1].round(4).to_string(index=False), flush=True)
    return pd.concat(rows, ignore_index=True)


def run_variants(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    variants: dict[str, tuple[Callable[[sx.SCALEX], None], dict]],
    write_report: Callable[[pd.DataFrame, argparse.Namespace], None],
    *,
    column: str,
    paper: str,
    trains_paper: bool,
    paper_hint: str,
) -> None:
    """The body of a variant script's ``main``: with ``--report``, rewrite the report from
    <stem>.csv; otherwise train and score ``variants`` (see :func:`score_variants`) on the
    chosen datasets, add decoder_scale.csv's rows of the paper's loss, named ``paper``, unless
    a variant trains it (``trains_paper``), and write <stem>.csv and the report. Those rows are
    seed 0's: at another seed the paper's loss must be trained, and ``paper_hint`` says how."""
    if args.report:
        write_report(pd.read_csv(RESULTS / f"{args.stem}.csv"), args)
        return
    if args.seed != 0 and not trains_paper:
        parser.error(f"the rows of `{paper}` are decoder_scale.csv's, seed 0: {paper_hint}")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    table = score_variants(
        chosen_datasets(parser, args), variants, args.iterations, args.seed, column
    )
    if not trains_paper:
        table = with_paper_rows(table, column, paper)
    table.to_csv(RESULTS / f"{args.stem}.csv", index=False)
    write_report(table, args)


WEAK_FACTOR = 0.02 / 0.5  # kl_weight 0.02 (weak_kl_rows' setting) against the paper's 0.5


def cell_batch_means(mu: torch.Tensor, batch: torch.Tensor, n_batch: int) -> torch.Tensor:
    """For each cell, the mean of ``mu`` over the cells of its batch in the mini-batch (``m_b``
    of the KL's split in ``kl_centring.py`` and ``kl_within.py``)."""
    one_hot = F.one_hot(batch.reshape(-1).long(), n_batch).to(mu.dtype)
    return one_hot @ ((one_hot.T @ mu) / one_hot.sum(0).clamp(min=1)[:, None])


def weak_kl_rows(names: pd.Series, column: str = "variant") -> pd.DataFrame:
    """``kl_weight 0.02`` at 8,000 iterations (a weaker KL all along, earlier runs) on the
    datasets ``names``: the no-shared-type designs from ``partial_overlap.csv`` (seed 0's
    draws), the panel's datasets from ``panel.csv``; for scale in the variants' plots."""
    method = "SCALEX (8000 iterations, kl_weight 0.02)"
    overlap = pd.read_csv(RESULTS / "partial_overlap.csv")
    overlap = overlap[(overlap["method"] == method) & (overlap["shared_types"] == 0)]
    overlap = overlap.assign(dataset=overlap["series"] + "_k0_d" + overlap["draw"].astype(str))
    panel = pd.read_csv(RESULTS / "panel.csv")
    rows = pd.concat([overlap, panel[panel["method"] == method]])
    rows = rows[rows["dataset"].isin(names)].rename(columns={"method": column})
    return rows.assign(**{column: "kl_weight 0.02, for scale"})[
        ["dataset", column, "Total", "over_correction"]
    ]


def with_paper_rows(table: pd.DataFrame, column: str, label: str) -> pd.DataFrame:
    """``table`` after decoder_scale.csv's rows of the paper's decoder (seed 0) on the same
    datasets, named ``label`` in ``column``, each dataset's rows together."""
    paper = pd.read_csv(RESULTS / "decoder_scale.csv")
    paper = paper[(paper["decoder"] == "paper") & paper["dataset"].isin(table["dataset"])]
    paper = paper.rename(columns={"decoder": column}).assign(**{column: label})
    table = pd.concat([paper, table], ignore_index=True)
    order = {name: i for i, name in enumerate(dict.fromkeys(paper["dataset"]))}
    return table.sort_values("dataset", key=lambda names: names.map(order), kind="stable")


def write_variant_report(
    table: pd.DataFrame,
    *,
    stem: str,
    notes: str,
    column: str,
    reference: str,
    heading: str,
    description: str,
    plot_title: str,
    plot_also: pd.DataFrame | None = None,
    plot: bool = True,
) -> None:
    """results/<stem>.md (and .png where a panel dataset is in ``table``): ``heading``,
    ``description``, every row, each variant in ``column`` minus ``reference``, the plot, and
    the decision rules of <notes>_notes.md with the provenance. Rows of ``plot_also`` (same
    columns, from other runs) are plotted beside the variants, for scale. The plot's reference
    lines are seed 0's designs: ``plot=False`` for a run on others."""
    wide = table.pivot(index="dataset", columns=column, values=["over_correction", "Total"])
    wide = wide.reindex(list(dict.fromkeys(table["dataset"])))
    differences = pd.DataFrame(index=wide.index)
    for variant in (v for v in dict.fromkeys(table[column]) if v != reference):
        for metric in ("over_correction", "Total"):
            difference = wide[(metric, variant)] - wide[(metric, reference)]
            differences[f"{variant}: {metric}"] = difference
    plotted = plot and not table["dataset"].str.contains("_k0_").all()  # needs a panel dataset
    text = (
        f"# {heading}\n\n{description} Datasets `*_k0_d*`: partial-overlap designs whose two "
        "batches share no cell type (`partial_overlap.py`); the others: the benchmark panel's "
        "datasets. Over-correction: fraction of a cell's 100 nearest neighbours of another type "
        "(lower is better); Total: scib-metrics, not min-max scaled.\n\n"
        + table.round(4).to_markdown(index=False)
        + f"\n\nEach variant minus `{reference}`:\n\n"
        + differences.round(4).to_markdown()
        + (f"\n\n![{heading.split(':')[0]}]({stem}.png)" if plotted else "")
        + "\n\n"
        + notes_and_provenance(RESULTS, notes)
    )
    (RESULTS / f"{stem}.md").write_text(text)
    if plotted:
        plotted_rows = pd.concat([table, plot_also]) if plot_also is not None else table
        plot_decoders(plotted_rows, RESULTS / f"{stem}.png", plot_title, column=column)


def write_report(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """decoder_scale.md: every row, each variant minus the paper's decoder, the plot, the
    notes."""
    write_variant_report(
        table,
        stem="decoder_scale",
        notes="decoder_scale",
        column="decoder",
        reference="paper",
        heading=(
            "Decoder normalisation: per-batch scale (paper), shared scale, shift only, or mixed "
            "statistics"
        ),
        description=(
            f"{args.iterations} iterations without early stopping, seed {args.seed}, otherwise "
            "the package defaults. Decoders: "
            + "; ".join(f"`{k}`: {v}" for k, v in DECODERS.items())
            + "."
        ),
        plot_title="Decoder normalisation: integration against over-correction (seed 0)",
    )


def plot_decoders(table: pd.DataFrame, path: Path, title: str, column: str = "decoder") -> None:
    """Per series, each variant's (``column``) mean over-correction where the batches share no
    type against its mean Total on the panel, beside the lowest other method's over-correction
    on the same designs (``partial_overlap.csv``); saved to ``path``."""
    no_shared = table[table["dataset"].str.contains("_k0_")]
    panel_total = table[~table["dataset"].str.contains("_k0_")].groupby(column)["Total"].mean()
    others = pd.read_csv(RESULTS / "partial_overlap.csv")
    others = others[
        (others["shared_types"] == 0)
        & others["draw"].isin(DRAWS)
        & ~others["method"].str.startswith("SCALEX")
    ]
    fig, axes = plt.subplots(1, len(SERIES), figsize=(11, 4.5), sharey=True)
    for ax, series in zip(axes, SERIES, strict=True):
        rows = no_shared[no_shared["dataset"].str.startswith(f"{series}_k0_")]
        over = rows.groupby(column)["over_correction"].mean()
        ax.scatter(over, panel_total[over.index], color="tab:blue")
        for i, (variant, value) in enumerate(over.items()):
            ax.annotate(
                variant,
                (value, panel_total[variant]),
                fontsize=8,
                xytext=(4, 3 if i % 2 else -10),  # alternate, so close points stay legible
                textcoords="offset points",
            )
        best = others[others["series"] == series].groupby("method")["over_correction"].mean()
        ax.axvline(
            best.min(), color="grey", ls="--", label=f"lowest other method ({best.idxmin()})"
        )
        ax.set_title(f"{series}: batches sharing no cell type")
        ax.set_xlabel("over-correction, mean of the draws (lower is better)")
        ax.margins(x=0.2, y=0.15)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Total, mean of the panel datasets (batches share types)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
