"""A model trained by the original package, loaded with ``SCALEX.load_original``.

The original ``scalex`` 1.0.4 (own venv, three compat patches) trains on raw counts of two
chemistries of the shipped PBMC data (its own preprocessing) and projects the third with
BatchNorm in eval mode (``eval=True``, deterministic). This package loads the original's
output folder and prepares and embeds the same raw query. Compared: the prepared query matrix,
the latents on the original's prepared matrix and on this package's, the values decoded
through the first batch's BatchNorm (the original's ``impute``), the batch names.
Writes benchmarks/results/original_checkpoint.{md,json}.

    python benchmarks/original_checkpoint.py [--iterations 1000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

import scalex_scvi as sx

from _common import RESULTS, provenance
from _original import run as run_original

MIN_FEATURES = 50  # the shipped file holds 1,767 genes


def compare(iterations: int, workdir: Path) -> dict:
    raw = sx.datasets.pbmc_3chemistries()
    reference_raw = raw[raw.obs["batch"].isin(["3pv2", "5p"])].copy()
    query_raw = raw[raw.obs["batch"] == "3pv1"].copy()
    for name, data in (("reference", reference_raw), ("query", query_raw)):
        data.write_h5ad(workdir / f"{name}.h5ad")
    trained_dir, projected_dir = workdir / "original_model", workdir / "original_projection"
    common = {"processed": False, "min_features": MIN_FEATURES}
    train = run_original(
        {
            "mode": "train",
            "adata": str(workdir / "reference.h5ad"),
            "outdir": str(trained_dir),
            "max_iteration": iterations,
            "seed": 0,
            **common,
        }
    )
    run_original(
        {
            "mode": "project",
            "adata": str(workdir / "query.h5ad"),
            "model": str(trained_dir),
            "outdir": str(projected_dir),
            "eval": True,
            # decoded through the first training batch's BatchNorm (the original looks a name
            # up among the query's batches and falls back to the first otherwise)
            "impute": "3pv2",
            **common,
        }
    )
    default_dir = workdir / "original_projection_default"
    run_original(  # the original's default: BatchNorm in training mode, 64-cell mini-batches
        {
            "mode": "project",
            "adata": str(workdir / "query.h5ad"),
            "model": str(trained_dir),
            "outdir": str(default_dir),
            "eval": False,
            **common,
        }
    )
    theirs = ad.read_h5ad(projected_dir / "adata.h5ad")
    their_latent = np.load(projected_dir / "latent.npy")
    their_default = np.load(default_dir / "latent.npy")

    model = sx.SCALEX.load_original(trained_dir)
    ours = model.prepare_query(query_raw)  # the whole query scaled together, as the original
    ours = ours[theirs.obs_names].copy()  # the original drops cells under min_features
    ours_x, theirs_x = ours.X.toarray(), theirs[:, model.feature_names].X.toarray()
    on_theirs = model.get_latent_representation(theirs)
    decoded = model.get_normalized_expression(theirs, transform_batch="3pv2", return_numpy=True)
    per_batch = model.get_latent_representation(theirs, batch_norm="per_batch")
    on_ours = model.get_latent_representation(ours)
    reference_batches = list(ad.read_h5ad(trained_dir / "adata.h5ad").obs["batch"].cat.categories)
    return {
        "iterations": iterations,
        "original_iterations_run": train["iterations"],
        "query_cells": int(query_raw.n_obs),
        "query_cells_kept_by_original": int(theirs.n_obs),
        "features": len(model.feature_names),
        "batch_names": list(model.batch_categories),
        "batch_names_match": list(model.batch_categories) == reference_batches,
        "prepared_max_abs_difference": float(np.abs(ours_x - theirs_x).max()),
        "latent_on_original_preparation_max_abs_difference": float(
            np.abs(on_theirs - their_latent).max()
        ),
        "latent_on_own_preparation_max_abs_difference": float(
            np.abs(on_ours - their_latent).max()
        ),
        "latent_scale": float(np.abs(their_latent).max()),
        "decoded_through_3pv2_max_abs_difference": float(
            np.abs(decoded - np.asarray(theirs.layers["impute"])).max()
        ),
        # the original's default projection draws random mini-batches: close, not equal
        "per_batch_vs_original_default_mean_abs_difference": float(
            np.abs(per_batch - their_default).mean()
        ),
        "running_vs_original_default_mean_abs_difference": float(
            np.abs(on_theirs - their_default).mean()
        ),
        "latent_mean_abs": float(np.abs(their_default).mean()),
    }


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "original_checkpoint.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# A model of the original package loaded here (`SCALEX.load_original`)",
        "",
        f"The original `scalex` 1.0.4 trained on raw counts of the shipped PBMC data (3' v2 + 5', "
        f"its own preprocessing, min_features {MIN_FEATURES}, {result['iterations']} iterations) "
        "and projected 3' v1 with BatchNorm in eval mode (`eval=True`). This package loaded its "
        "output folder and prepared (`model.prepare_query(raw)`) and embedded the same raw query.",
        "",
        "| check | value |",
        "|---|---|",
        f"| features | {result['features']} |",
        f"| batch names read from the output folder | {result['batch_names']} "
        f"(match: {result['batch_names_match']}) |",
        f"| query cells (kept by the original's cell filter) | {result['query_cells']} "
        f"({result['query_cells_kept_by_original']}) |",
        f"| prepared query, max abs difference | {result['prepared_max_abs_difference']:.2e} |",
        "| latent on the original's prepared query, max abs difference | "
        f"{result['latent_on_original_preparation_max_abs_difference']:.2e} |",
        "| latent on this package's prepared query, max abs difference | "
        f"{result['latent_on_own_preparation_max_abs_difference']:.2e} |",
        f"| largest latent value (scale) | {result['latent_scale']:.3g} |",
        "| decoded through the 3' v2 BatchNorm (the original's `impute`), max abs difference | "
        f"{result['decoded_through_3pv2_max_abs_difference']:.2e} |",
        "",
        "The original's default projection (`eval=False`: BatchNorm in training mode on random "
        "64-cell mini-batches of one batch) against this package's two deterministic "
        "embeddings, mean absolute difference per latent value (the original's latents average "
        f"{result['latent_mean_abs']:.3f} in absolute value):",
        "",
        "| this package | mean abs difference |",
        "|---|---|",
        '| `batch_norm="per_batch"` (statistics over each whole batch) | '
        f"{result['per_batch_vs_original_default_mean_abs_difference']:.4f} |",
        '| `batch_norm="running"` (default) | '
        f"{result['running_vs_original_default_mean_abs_difference']:.4f} |",
        "",
        provenance({"original": "scalex 1.0.4 (own venv, three compat patches)"}),
    ]
    (RESULTS / "original_checkpoint.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = compare(args.iterations, Path(tmp))
    print(json.dumps(result, indent=2))
    write(result)


if __name__ == "__main__":
    main()
