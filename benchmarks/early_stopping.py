"""Early stopping on the training loss (the paper) vs on a held-out validation ELBO.

For each shared RNA dataset: SCALEX with its defaults (at most 30,000 iterations, patience 10),
once monitoring the epoch-mean training loss on all cells (train_size=1.0) and once monitoring
the validation ELBO of a 10 % hold-out (train_size=0.9). Reports iterations run and scib
scores. Writes benchmarks/results/early_stopping.{md,csv}.

    python benchmarks/early_stopping.py [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd
import scvi

import scalex_scvi as sx

from _common import RESULTS, pca_of_lognorm, provenance, read
from scaling import DATASETS

SETTINGS = {
    "training loss, all cells": {"train_size": 1.0},
    "validation ELBO, 10% held out": {"train_size": 0.9},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    rows = []
    for name, (file, min_features) in DATASETS.items():
        prepared = sx.pp.preprocess(read(file), batch_key="batch", min_features=min_features)
        sx.SCALEX.setup_anndata(prepared, batch_key="batch")
        embeddings, runs = {}, {}
        for setting, kwargs in SETTINGS.items():
            scvi.settings.seed = args.seed
            model = sx.SCALEX(prepared)
            start = time.perf_counter()
            model.train(enable_progress_bar=False, **kwargs)
            runs[setting] = {
                "iterations": model.trainer.global_step,
                "epochs": model.trainer.current_epoch,
                "wall_s": time.perf_counter() - start,
            }
            embeddings[setting] = model.get_latent_representation()
        scores = sx.metrics.scib_benchmark(
            embeddings,
            prepared.obs["batch"],
            prepared.obs["cell_type"],
            pre_integrated=pca_of_lognorm(prepared),
        )
        for setting in SETTINGS:
            rows.append(
                {
                    "dataset": name,
                    "monitor": setting,
                    **runs[setting],
                    **scores.loc[setting, ["Batch correction", "Bio conservation", "Total"]],
                }
            )
        print(pd.DataFrame(rows).tail(2).to_string(), flush=True)

    table = pd.DataFrame(rows)
    table.to_csv(RESULTS / "early_stopping.csv", index=False)
    mean = table.groupby("monitor")[["iterations", "Total"]].mean()
    with open(RESULTS / "early_stopping.md", "w") as fh:
        fh.write("# Early stopping: training loss vs validation ELBO\n\n")
        fh.write(
            "SCALEX defaults (≤ 30,000 iterations, patience 10 epochs), seed "
            f"{args.seed}; scib-metrics default panel. Wall times were taken on a shared "
            "machine and are indicative only.\n\n"
        )
        fh.write(table.round(4).to_markdown(index=False) + "\n\n")
        fh.write("Mean over datasets:\n\n" + mean.round(4).to_markdown() + "\n\n")
        fh.write(provenance())
    print(mean)


if __name__ == "__main__":
    main()
