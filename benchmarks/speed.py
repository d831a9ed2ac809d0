"""Training speed: time per iteration at batch size 64 with 2,000 features, side by side.

Same preprocessed data (lung cell lines, 2,000 highly variable genes, 1,021 cells) for this
package and the original ``scalex`` 1.0.4 (own venv, three compat patches, 0 loader workers:
its default of 4 is slower on 2 cores), same iteration budget, run one after the other on the
same machine. Writes benchmarks/results/speed.{md,json}.

    python benchmarks/speed.py [--iterations 1500] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import scvi
import torch

import scalex_scvi as sx

from _common import RESULTS, provenance, read
from _original import run as run_original


def ours(prepared, iterations: int, **train_kwargs) -> dict:
    """Iterations per second of ``model.train()``; ``train_kwargs`` go to it (e.g. accelerator)."""
    scvi.settings.seed = 0
    adata = prepared.copy()
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    model = sx.SCALEX(adata)
    start = time.perf_counter()
    model.train(
        max_iterations=iterations, early_stopping=False, enable_progress_bar=False, **train_kwargs
    )
    wall = time.perf_counter() - start
    steps = model.trainer.global_step
    return {"wall_s": wall, "iterations": steps, "iterations_per_s": steps / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    raw = read("cellbench_lung_celllines.h5ad")
    prepared = sx.pp.preprocess(raw, batch_key="batch", n_top_features=2000)
    assert prepared.n_vars == 2000
    rows = {"this package": [], "original scalex 1.0.4": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prepared.h5ad"
        prepared.write_h5ad(path)
        for repeat in range(args.repeats):
            rows["this package"].append(ours(prepared, args.iterations))
            outdir = Path(tmp) / f"original{repeat}"
            outdir.mkdir()
            rows["original scalex 1.0.4"].append(
                run_original(
                    {
                        "mode": "train",
                        "adata": str(path),
                        "outdir": str(outdir),
                        "max_iteration": args.iterations,
                        "threads": torch.get_num_threads(),
                    }
                )
            )
            print({k: v[-1]["iterations_per_s"] for k, v in rows.items()}, flush=True)

    summary = {
        name: {
            "iterations_per_s": float(np.median([r["iterations_per_s"] for r in runs])),
            "ms_per_iteration": float(1000 / np.median([r["iterations_per_s"] for r in runs])),
            "runs": runs,
        }
        for name, runs in rows.items()
    }
    ratio = (
        summary["this package"]["iterations_per_s"]
        / summary["original scalex 1.0.4"]["iterations_per_s"]
    )
    (RESULTS / "speed.json").write_text(json.dumps(summary, indent=2))
    with open(RESULTS / "speed.md", "w") as fh:
        fh.write("# Training speed, batch size 64, 2,000 features\n\n")
        fh.write(
            f"Lung cell lines ({prepared.n_obs} cells × {prepared.n_vars} HVGs), "
            f"{args.iterations} iterations per run, {args.repeats} runs each, alternating; "
            f"{torch.get_num_threads()} torch threads; median.\n\n"
        )
        fh.write("| implementation | iterations/s | ms/iteration |\n|---|---|---|\n")
        for name, s in summary.items():
            fh.write(f"| {name} | {s['iterations_per_s']:.1f} | {s['ms_per_iteration']:.1f} |\n")
        fh.write(f"\nSpeed-up: **{ratio:.2f}×** iterations per second.\n\n")
        fh.write(
            "The original's time is its `fit` loop (data loading included); ours is "
            "`model.train()` (Lightning set-up included).\n\n"
        )
        fh.write(provenance())
    print(json.dumps({k: v["iterations_per_s"] for k, v in summary.items()}), f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
