"""Does a KL warm-up keep apart the types that only one batch holds, and still integrate?

``kl_centring.py`` measured that the KL term's pull of each batch's latent mean to the origin is
the main force that integrates SCALEX's batches, and that a weaker pull, for the whole training,
moves along one trade-off (less over-correction where batches share no type, less integration
where they share types). scvi-tools' usual practice weakens it only at first: the KL weight rises
linearly from 0 to its full value over ``n_steps_kl_warmup`` steps (:class:`scvi.train.
TrainingPlan`), so the model learns each batch's structure with little pull and ends with the
paper's loss. Users reach it without code: ``model.train(plan_kwargs={"n_steps_kl_warmup": n})``.

Trained side by side with the paper's settings otherwise (8,000 iterations without early
stopping, seed 0) on ``decoder_scale.py``'s datasets: the partial-overlap designs whose batches
share no type and the panel's datasets. Scored as in the panel. The rows without warm-up are
``decoder_scale.csv``'s paper rows (training is deterministic on this machine). Writes
benchmarks/results/kl_warmup.{md,csv,png}; decision rule in kl_warmup_notes.md.

    python benchmarks/kl_warmup.py [--iterations 8000] [--seed 0] [--warmups 4000 8000]
    python benchmarks/kl_warmup.py --report  # rewrite the report from the CSV (and notes)
"""

from __future__ import annotations

import argparse

import pandas as pd

import scalex_scvi as sx

from decoder_scale import (
    add_selection,
    run_variants,
    training_parser,
    weak_kl_rows,
    write_variant_report,
)

PAPER = "paper (no warm-up)"
COLUMN = "variant"


def main() -> None:
    parser = training_parser(__doc__)
    parser.add_argument(
        "--warmups",
        type=int,
        nargs="+",
        default=[4000, 8000],
        help="numbers of steps over which the KL weight rises from 0 to its full value",
    )
    add_selection(parser, "kl_warmup")
    args = parser.parse_args()
    variants = {
        f"warm-up {steps}": (unchanged, {"plan_kwargs": {"n_steps_kl_warmup": steps}})
        for steps in args.warmups
    }
    run_variants(
        parser,
        args,
        variants,
        write_report,
        column=COLUMN,
        paper=PAPER,
        trains_paper=False,
        paper_hint="run the warm-ups at seed 0",
    )


def unchanged(model: sx.SCALEX) -> None:
    """No patch: the warm-up is a training option."""


def write_report(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """kl_warmup.md: every row, each warm-up minus no warm-up, the plot, the notes."""
    write_variant_report(
        table,
        stem=args.stem,
        notes="kl_warmup",
        column=COLUMN,
        reference=PAPER,
        heading="KL warm-up: the pull to the origin weakened only at first",
        description=(
            f"{args.iterations} iterations without early stopping, seed {args.seed}, otherwise "
            "the package defaults. `warm-up n`: the KL weight rises linearly from 0 to its full "
            "value over the first n steps (`plan_kwargs={'n_steps_kl_warmup': n}`); "
            f"`{PAPER}`: the package defaults (rows from `decoder_scale.csv`)."
        ),
        plot_title=f"KL warm-up: integration against over-correction (seed {args.seed})",
        plot_also=weak_kl_rows(table["dataset"], COLUMN),
    )


if __name__ == "__main__":
    main()
