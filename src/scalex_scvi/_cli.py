"""Command line interface: ``scalex-scvi <command>``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "-d",
        "--data_list",
        nargs="+",
        required=required,
        help="input files, folders or globs (.h5ad, .h5mu/<modality>, 10x .h5, "
        "matrix.mtx folders, .csv/.tsv/.txt[.gz] features x cells)",
    )
    parser.add_argument(
        "-b",
        "--batch_categories",
        nargs="+",
        default=None,
        help="batch name of each input (default 0, 1, ...)",
    )
    parser.add_argument(
        "--batch_name",
        default="batch",
        help="obs column with the batches to correct ('a,b' combines two)",
    )
    parser.add_argument(
        "--batch_key",
        default="batch",
        help="obs column receiving the input names when several are given",
    )
    parser.add_argument("--join", default="inner", choices=["inner", "outer"])
    parser.add_argument("--profile", default="RNA", choices=["RNA", "ATAC", "ADT"])
    parser.add_argument(
        "--min_features",
        type=int,
        default=None,
        help="minimum detected features per cell (RNA 600, ATAC 100)",
    )
    parser.add_argument("--min_cells", type=int, default=3)
    parser.add_argument(
        "--n_top_features",
        default=None,
        help="number of features (0: all) or a file with one name per line",
    )
    parser.add_argument("--target_sum", type=float, default=None)
    parser.add_argument("--processed", action="store_true", help="data already prepared")
    parser.add_argument("--fraction", type=float, default=None)
    parser.add_argument("--n_obs", type=int, default=None)
    parser.add_argument("--use_layer", default="X")
    parser.add_argument("--keep_mt", action="store_true")
    parser.add_argument("--backed", action="store_true")
    parser.add_argument("--chunk_size", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=124)
    parser.add_argument("-o", "--outdir", default="output/", help="output folder")
    parser.add_argument(
        "--impute",
        default=None,
        help="batch name whose decoder normalisation fills layers['impute']",
    )
    parser.add_argument("--ignore_umap", action="store_true")
    parser.add_argument("--assess", action="store_true")
    parser.add_argument(
        "--no-eval",
        dest="eval",
        action="store_false",
        help="per-batch BatchNorm statistics when embedding (original default)",
    )
    parser.add_argument(
        "--eval",
        dest="eval",
        action="store_true",
        default=True,
        help="BatchNorm running statistics when embedding (default)",
    )
    parser.add_argument("--cell_type", default="cell_type")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max_iteration", type=int, default=30_000)
    parser.add_argument("-g", "--gpu", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=0)


def _integrate(args: argparse.Namespace) -> int:
    from scalex_scvi._integrate import integrate

    n_top = args.n_top_features
    if n_top is not None and not Path(n_top).is_file():
        n_top = int(n_top)
    integrate(
        args.data_list if len(args.data_list) > 1 else args.data_list[0],
        batch_categories=args.batch_categories,
        profile=args.profile,
        batch_name=args.batch_name,
        batch_key=args.batch_key,
        join=args.join,
        min_features=args.min_features,
        min_cells=args.min_cells,
        n_top_features=n_top,
        target_sum=args.target_sum,
        processed=args.processed,
        fraction=args.fraction,
        n_obs=args.n_obs,
        use_layer=args.use_layer,
        keep_mt=args.keep_mt,
        backed=args.backed,
        batch_size=getattr(args, "batch_size", 64),
        lr=getattr(args, "lr", 2e-4),
        max_iteration=getattr(args, "max_iteration", 30_000),
        seed=args.seed,
        gpu=getattr(args, "gpu", 0),
        outdir=args.outdir,
        projection=getattr(args, "projection", None),
        repeat=getattr(args, "repeat", False),
        impute=args.impute,
        chunk_size=args.chunk_size,
        ignore_umap=args.ignore_umap,
        verbose=not args.quiet,
        assess=args.assess,
        show=False,
        eval=args.eval,
        num_workers=getattr(args, "num_workers", 0),
        cell_type=args.cell_type,
    )
    print(f"Wrote {args.outdir}")
    return 0


def _map(args: argparse.Namespace) -> int:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from scalex_scvi._atlas import Atlas
    from scalex_scvi.io import read_many

    atlas = Atlas.load(args.atlas)
    query = read_many(
        args.data_list, args.batch_categories, batch_key=args.batch_key, backed=args.backed
    )
    batch_key = args.batch_key if args.batch_key in query.obs else None
    mapped = atlas.map(
        query,
        batch_key=batch_key,
        source=args.source,
        batch_norm=args.batch_norm,
        keep_raw=args.keep_raw,
    )
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    mapped.write_h5ad(out / "mapped.h5ad")
    ax = atlas.plot_projection(mapped, title=f"{args.source} on the atlas")
    ax.figure.savefig(out / "projection.png", dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    if args.extend:
        atlas.extend(mapped, index_unique=args.index_unique)
        atlas.save(args.atlas, overwrite=True)
        print(f"Extended {args.atlas}: {atlas.n_obs} cells.")
    print(
        f"Mapped {mapped.n_obs} cells; wrote {out / 'mapped.h5ad'} and {out / 'projection.png'}."
    )
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from scalex_scvi.benchmark import run_benchmark
    from scalex_scvi.io import read_many

    adata = read_many(args.data_list, args.batch_categories, batch_key=args.batch_key)
    kwargs = {}
    if args.min_features is not None:
        kwargs["min_features"] = args.min_features
    table = run_benchmark(
        adata,
        batch_key=args.batch_key,
        label_key=args.label_key,
        methods=args.methods,
        preprocess_kwargs=kwargs,
        dataset=args.name,
        save_dir=args.outdir,
        method_kwargs={"SCALEX": {"max_iterations": args.max_iteration}},
    )
    columns = [
        c
        for c in (
            "method",
            "status",
            "Total",
            "Batch correction",
            "Bio conservation",
            "over_correction",
            "wall_s",
        )
        if c in table
    ]
    print(table[columns].to_string(index=False))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from scalex_scvi._demo import run_demo

    run_demo(
        outdir=args.outdir,
        max_iterations=args.max_iteration,
        seed=args.seed,
        progress_bar=not args.no_progress,
    )
    return 0


def _package_version() -> str:
    import scalex_scvi

    return scalex_scvi.__version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scalex-scvi``."""
    from scalex_scvi.benchmark import DEFAULT_METHODS, METHODS

    parser = argparse.ArgumentParser(
        prog="scalex-scvi",
        description="SCALEX online single-cell data integration (scvi-tools plugin).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    integrate = commands.add_parser(
        "integrate",
        help="integrate datasets (or project with -p), as the original `SCALEX`",
        description="Integrate datasets with a new SCALEX model; writes adata.h5ad, model/, "
        "umap.png and log.txt to --outdir. With -p, project onto a saved model instead.",
    )
    _data_arguments(integrate)
    _training_arguments(integrate)
    integrate.add_argument(
        "-p",
        "--projection",
        default=None,
        help="saved model or atlas folder: project instead of training",
    )
    integrate.add_argument(
        "--repeat", action="store_true", help="with -p: return the query cells only"
    )
    integrate.set_defaults(func=_integrate)

    project = commands.add_parser(
        "project",
        help="project new data onto a saved model without retraining",
        description="Embed new data with a saved model's frozen encoder; by default the "
        "reference cells of the model's folder are returned with the query.",
    )
    _data_arguments(project)
    project.add_argument(
        "-p",
        "--projection",
        required=True,
        help="folder of a saved model (integrate's --outdir) or atlas",
    )
    project.add_argument("--repeat", action="store_true", help="return the query cells only")
    project.set_defaults(func=_integrate)

    mapper = commands.add_parser(
        "map",
        help="map new data onto a saved atlas (labels, 2-D map)",
        description="Prepare, embed, place on the atlas's map and label new cells; writes "
        "mapped.h5ad and projection.png; --extend adds them to the atlas.",
    )
    mapper.add_argument("--atlas", required=True, help="atlas folder (Atlas.save)")
    mapper.add_argument("-d", "--data_list", nargs="+", required=True)
    mapper.add_argument("-b", "--batch_categories", nargs="+", default=None)
    mapper.add_argument("--batch_key", default="batch")
    mapper.add_argument("--source", default="query", help="name of this query in the atlas")
    mapper.add_argument(
        "--batch_norm",
        choices=("running", "per_batch", "balanced"),
        default="running",
        help="encoder BatchNorm statistics: the reference's (default), each query batch's "
        "(the original's behaviour), or each query batch's weighted to the reference's "
        "cell-type composition (atlases with labels)",
    )
    mapper.add_argument("-o", "--outdir", default="mapped/")
    mapper.add_argument("--extend", action="store_true", help="add the cells to the atlas")
    mapper.add_argument(
        "--index_unique",
        default=None,
        help="with --extend: name the added cells NAME<SEP>SOURCE (e.g. '-'), needed when their "
        "names are already in the atlas (10x barcodes repeat across samples)",
    )
    mapper.add_argument(
        "--keep_raw",
        action="store_true",
        help="also write every query gene, transformed as the reference's, in .raw",
    )
    mapper.add_argument(
        "--backed",
        action="store_true",
        help="read a single .h5ad query from disk 10,000 cells at a time, keeping only the "
        "model's features in memory (for queries larger than memory)",
    )
    mapper.set_defaults(func=_map)

    bench = commands.add_parser(
        "benchmark",
        help="score SCALEX and other methods on one dataset",
        description="Run SCALEX, scVI, PCA, Harmony and Scanorama on the same preprocessed "
        "data; score with scib-metrics and the paper's metrics; write a CSV and the table.",
    )
    bench.add_argument("-d", "--data_list", nargs="+", required=True)
    bench.add_argument("-b", "--batch_categories", nargs="+", default=None)
    bench.add_argument("--batch_key", default="batch")
    bench.add_argument("--label_key", default="cell_type")
    bench.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS)
    )
    bench.add_argument("--min_features", type=int, default=None)
    bench.add_argument("--max_iteration", type=int, default=30_000)
    bench.add_argument("--name", default="dataset")
    bench.add_argument("-o", "--outdir", default="benchmark/")
    bench.set_defaults(func=_benchmark)

    demo = commands.add_parser(
        "demo",
        help="integrate the shipped PBMC data, project a held-out chemistry",
        description="Train on 10x chemistries 3' v2 + 5', project 3' v1 without retraining, "
        "transfer cell-type labels, print the figures and write the outputs.",
    )
    demo.add_argument("-o", "--outdir", default="demo_output", help="output folder")
    demo.add_argument("--max_iteration", type=int, default=3000, help="training iterations")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)
    return parser


# Errors of the user's input (a missing file, a bad column, data that do not fit the model):
# their message says what to do, so the command prints it, not a traceback. Other errors keep
# their traceback; SCALEX_SCVI_TRACEBACK=1 shows it for these too.
INPUT_ERRORS = (OSError, KeyError, ValueError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalex-scvi`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except INPUT_ERRORS as error:
        if os.environ.get("SCALEX_SCVI_TRACEBACK"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        parser.exit(1, f"scalex-scvi {args.command}: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
