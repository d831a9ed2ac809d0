"""Runs inside the original package's venv (see _original.py). One JSON task in, JSON out.

Tasks:
- ``{"mode": "train", "adata": path, "outdir": dir, "max_iteration": n, "seed": s}``: trains
  on preprocessed data (``processed=True``), writes ``latent.npy``; reports wall time, the
  number of iterations run and iterations per second of the fit loop.
- ``{"mode": "project", "adata": path, "model": dir, "outdir": dir, "eval": bool}``: projects
  with the saved model (``projection=``, ``repeat=True``), writes ``latent.npy``; with
  ``"impute": name`` also the decoded values in ``layers['impute']`` of ``outdir/adata.h5ad``.
- Either with ``"processed": false`` (and optionally ``"min_features"``): the original prepares
  raw counts itself (its preprocessing, its gene list for a projection).
"""

import json
import resource
import sys
import time

import numpy as np
import scanpy as sc
import torch


def main() -> None:
    task = json.loads(sys.argv[1])
    import scalex
    from scalex.net.vae import VAE

    steps = {"n": 0}
    original_fit = VAE.fit

    def counting_fit(self, dataloader, *args, **kwargs):
        start = time.perf_counter()
        out = original_fit(self, dataloader, *args, **kwargs)
        steps["fit_s"] = time.perf_counter() - start
        steps["per_epoch"] = len(dataloader)
        return out

    VAE.fit = counting_fit
    original_call = torch.optim.Adam.step

    def counting_step(self, *a, **k):
        steps["n"] += 1
        return original_call(self, *a, **k)

    torch.optim.Adam.step = counting_step
    torch.set_num_threads(task.get("threads", torch.get_num_threads()))

    adata = sc.read_h5ad(task["adata"])
    start = time.perf_counter()
    common = dict(
        processed=task.get("processed", True),
        outdir=task["outdir"],
        ignore_umap=True,
        show=False,
        num_workers=0,
        batch_name=task.get("batch_key", "batch"),
    )
    if "min_features" in task:  # raw counts in (processed false): the original's cell filter
        common["min_features"] = task["min_features"]
    if task["mode"] == "train":
        out = scalex.SCALEX(
            adata,
            max_iteration=task["max_iteration"],
            seed=task.get("seed", 124),
            batch_size=task.get("batch_size", 64),
            **common,
        )
    else:
        out = scalex.SCALEX(
            adata,
            projection=task["model"],
            repeat=True,
            eval=task.get("eval", False),
            impute=task.get("impute"),
            **common,
        )
    wall = time.perf_counter() - start
    np.save(f"{task['outdir']}/latent.npy", np.asarray(out.obsm["latent"]))
    np.save(f"{task['outdir']}/obs_names.npy", np.asarray(out.obs_names, dtype=str))
    report = {
        "wall_s": wall,
        "iterations": steps["n"],
        "fit_s": steps.get("fit_s"),
        "iterations_per_s": steps["n"] / steps["fit_s"] if steps.get("fit_s") else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {
            "scalex": scalex.__version__ if hasattr(scalex, "__version__") else "1.0.4",
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
