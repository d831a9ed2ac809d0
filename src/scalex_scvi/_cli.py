"""Command line interface: ``scalex-scvi <command>``."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from scalex_scvi._demo import run_demo

    run_demo(
        outdir=args.outdir,
        max_iterations=args.max_iteration,
        seed=args.seed,
        progress_bar=not args.no_progress,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scalex-scvi``."""
    parser = argparse.ArgumentParser(
        prog="scalex-scvi",
        description="SCALEX online single-cell data integration (scvi-tools plugin).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="Integrate the shipped PBMC data, project a held-out chemistry, transfer labels.",
        description="Train on 10x chemistries 3' v2 + 5', project 3' v1 without retraining, "
        "transfer cell-type labels, print the figures and write the outputs.",
    )
    demo.add_argument("-o", "--outdir", default="demo_output", help="output folder")
    demo.add_argument("--max_iteration", type=int, default=3000, help="training iterations")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalex-scvi`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
