"""MaxAbs scaling within each batch (the paper) vs over all cells (the original since 2023).

Trains SCALEX on each shared RNA dataset prepared both ways (same seeds, same iteration budget)
and scores the embeddings with scib-metrics. Writes benchmarks/results/scaling.{md,csv}.

    python benchmarks/scaling.py [--iterations 4000] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
import scvi

import scalex_scvi as sx

from _common import RESULTS, pca_of_lognorm, provenance, read

DATASETS = {
    # name: (file, min_features)  -- the small files hold few genes per cell
    "pbmc_3chem": ("symphony_pbmc_3chem_small.h5ad", 50),
    "lung_celllines": ("cellbench_lung_celllines.h5ad", 600),
    "pbmc_ifnb": ("muscat_kang_pbmc_ifnb_small.h5ad", 100),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite scaling.md from scaling.csv"
    )
    args = parser.parse_args()
    if args.report_only:
        write_report(pd.read_csv(RESULTS / "scaling.csv"), args.iterations, args.seeds, True)
        return
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    rows = []
    for name, (file, min_features) in DATASETS.items():
        raw = read(file)
        for scale in ("batch", "global"):
            prepared = sx.pp.preprocess(
                raw, batch_key="batch", min_features=min_features, scale=scale
            )
            sx.SCALEX.setup_anndata(prepared, batch_key="batch")
            embeddings = {}
            for seed in args.seeds:
                scvi.settings.seed = seed
                model = sx.SCALEX(prepared)
                model.train(
                    max_iterations=args.iterations, early_stopping=False, enable_progress_bar=False
                )
                embeddings[f"seed{seed}"] = model.get_latent_representation()
            scores = sx.metrics.scib_benchmark(
                embeddings,
                prepared.obs["batch"],
                prepared.obs["cell_type"],
                pre_integrated=pca_of_lognorm(prepared),
            )
            for seed_name, row in scores.iterrows():
                rows.append({"dataset": name, "scale": scale, "seed": seed_name, **row.to_dict()})
            print(
                name,
                scale,
                scores[["Batch correction", "Bio conservation", "Total"]]
                .mean()
                .round(4)
                .to_dict(),
                flush=True,
            )

    table = pd.DataFrame(rows)
    table.to_csv(RESULTS / "scaling.csv", index=False)
    write_report(table, args.iterations, args.seeds)


def write_report(
    table: pd.DataFrame, iterations: int, seeds: list[int], from_csv: bool = False
) -> None:
    columns = ["Batch correction", "Bio conservation", "Total"]
    summary = table.groupby(["dataset", "scale"])[columns].mean()
    overall = table.groupby("scale")[columns].mean()
    paired = table.pivot_table(index=["dataset", "seed"], columns="scale", values="Total")
    wins = int((paired["global"] > paired["batch"]).sum())
    with open(RESULTS / "scaling.md", "w") as fh:
        fh.write("# MaxAbs scaling: within batch vs global\n\n")
        fh.write(
            f"SCALEX trained {iterations} iterations (no early stopping), seeds {seeds}; "
            "scib-metrics default panel, not min-max scaled.\n\n"
        )
        fh.write("Mean over seeds:\n\n" + summary.round(4).to_markdown() + "\n\n")
        fh.write("scib Total per dataset and seed:\n\n" + paired.round(4).to_markdown() + "\n\n")
        fh.write("Mean over datasets and seeds:\n\n" + overall.round(4).to_markdown() + "\n\n")
        fh.write(
            f"Global scaling has the higher Total in {wins} of {len(paired)} paired runs and "
            f"the higher mean (**{overall['Total'].idxmax()}**). The differences are small "
            "(about 0.001-0.01). Global scaling is the default: besides scoring at least as "
            "well, it prepares a query with the reference's maxima, so a query cell's values do "
            "not depend on the other query cells (within-batch scaling divides by the query "
            "batch's own maxima, which is degenerate for a query of one or a few cells).\n\n"
        )
        extra = {"numbers": "read from scaling.csv of an earlier full run"} if from_csv else None
        fh.write(provenance(extra))
    print(summary.round(4))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
