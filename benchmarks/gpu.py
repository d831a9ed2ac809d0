"""Training speed and embedding throughput on a CUDA GPU, beside the CPU of the same machine.

Lung cell lines (2,000 highly variable genes), batch size 64: iterations per second of
``model.train()`` for SCALEX on the GPU and on the machine's CPU cores, and for scVI (scvi-tools'
defaults, batch size 64) on the GPU. Then a query of ``--n-cells`` cells resampled from the lung
cells (as in throughput.py) is prepared with the model's recipe and embedded by the frozen encoder
on the GPU at several chunk sizes. The original package cannot be installed on a machine without
network access, so it is not in this table (speed.md and throughput.md compare it on 2 CPU cores).
Writes benchmarks/results/gpu.{md,json}, with the hand-written reading of ``gpu_notes.md`` there.

    python benchmarks/gpu.py [--iterations 1500] [--n-cells 200000] [--accelerator gpu]
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import scvi
import torch

import scalex_scvi as sx

from _common import RESULTS, provenance, read
from speed import ours as scalex_speed
from throughput import resample

NOTES_FILE = "gpu_notes.md"  # hand-written reading of the results, kept across runs


def scvi_speed(prepared, counts, iterations: int, accelerator: str) -> dict:
    """Iterations per second of scVI's ``train`` on the counts of the same cells and genes."""
    scvi.settings.seed = 0
    adata = counts[prepared.obs_names, prepared.var_names].copy()
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(adata)
    epochs = int(np.ceil(iterations * 64 / (0.9 * adata.n_obs)))
    start = time.perf_counter()
    model.train(
        max_epochs=epochs, batch_size=64, accelerator=accelerator, enable_progress_bar=False
    )
    wall = time.perf_counter() - start
    steps = model.trainer.global_step
    return {"wall_s": wall, "iterations": steps, "iterations_per_s": steps / wall}


def embedding(model: sx.SCALEX, query_raw, repeats: int) -> dict:
    """Cells per second of ``prepare_query`` and of ``get_latent_representation`` by chunk size."""
    n_cells = query_raw.n_obs
    start = time.perf_counter()
    query = model.prepare_query(query_raw, batch_key="batch")
    found = {"prepare_query_cells_per_s": n_cells / (time.perf_counter() - start)}
    model.get_latent_representation(query[:4096].copy())  # warm-up
    for batch_size in (1024, 4096, 16384, 65536):
        timings = []
        for _ in range(repeats):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            latent = model.get_latent_representation(query, batch_size=batch_size)
            timings.append(time.perf_counter() - start)
        assert latent.shape == (n_cells, model.module.n_latent) and np.isfinite(latent).all()
        found[f"embed_batch_{batch_size}"] = n_cells / float(np.median(timings))
        print(batch_size, found[f"embed_batch_{batch_size}"], flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--n-cells", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="gpu", help="'cpu' for a dry run")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else "none (dry run)"

    raw = read("cellbench_lung_celllines.h5ad")
    prepared = sx.pp.preprocess(raw, batch_key="batch", n_top_features=2000)
    training = {
        "SCALEX, GPU": scalex_speed(prepared, args.iterations, accelerator=args.accelerator),
        f"SCALEX, CPU ({torch.get_num_threads()} threads)": scalex_speed(
            prepared, args.iterations, accelerator="cpu"
        ),
        "scVI, GPU": scvi_speed(prepared, raw, args.iterations, args.accelerator),
    }
    for name, row in training.items():
        print(name, row, flush=True)

    scvi.settings.seed = 0
    reference = prepared.copy()
    sx.SCALEX.setup_anndata(reference, batch_key="batch")
    model = sx.SCALEX(reference)
    model.train(max_iterations=300, accelerator=args.accelerator, enable_progress_bar=False)
    throughput = embedding(model, resample(raw, args.n_cells), args.repeats)

    results = {"device": device, "training": training, "embedding": throughput}
    (RESULTS / "gpu.json").write_text(json.dumps(results, indent=2))
    with open(RESULTS / "gpu.md", "w") as fh:
        fh.write(f"# On a GPU: training speed and embedding throughput ({device})\n\n")
        fh.write(
            f"Lung cell lines ({prepared.n_obs} cells × {prepared.n_vars} HVGs), batch size 64, "
            f"{args.iterations} iterations per training, one run each; `model.train()` "
            "timed whole (Lightning set-up included).\n\n"
        )
        fh.write("| training | iterations/s | wall (s) |\n|---|---|---|\n")
        for name, row in training.items():
            fh.write(f"| {name} | {row['iterations_per_s']:.1f} | {row['wall_s']:.1f} |\n")
        fh.write(
            f"\nEmbedding by the frozen encoder on the GPU: {args.n_cells:,} cells resampled "
            f"from the lung cells, median of {args.repeats} runs.\n\n"
            "| step | cells/s |\n|---|---|\n"
        )
        for key, value in throughput.items():
            step = (
                f"get_latent_representation, batch_size={key.split('_')[-1]}"
                if key.startswith("embed")
                else "prepare_query (CPU: normalise, log, reindex, scale)"
            )
            fh.write(f"| {step} | {value:,.0f} |\n")
        if (notes := RESULTS / NOTES_FILE).exists():
            fh.write("\n" + notes.read_text())
        fh.write("\n" + provenance({"device": device}))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
