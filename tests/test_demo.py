from __future__ import annotations

import anndata as ad
import numpy as np

import scalex_scvi as sx
from scalex_scvi._cli import main
from scalex_scvi._demo import run_demo


def test_demo_writes_its_outputs(tmp_path, capsys):
    figures = run_demo(tmp_path, max_iterations=30, progress_bar=False)
    out = capsys.readouterr().out
    assert "label transfer macro-F1" in out and "scib Total (SCALEX)" in out
    for name in ("adata.h5ad", "umap.png", "metrics.csv", "model/model.pt"):
        assert (tmp_path / name).exists(), name
    assert 0 <= figures["label transfer accuracy"] <= 1
    assert 0 <= figures["scib Total (SCALEX)"] <= 1
    adata = ad.read_h5ad(tmp_path / "adata.h5ad")
    assert adata.n_obs == 1200
    assert set(adata.obs["source"]) == {"reference", "query"}
    # reference and query both keep their log-normalised genes in .raw (for plotting)
    assert adata.raw is not None and adata.raw.n_vars >= adata.n_vars
    in_query = (adata.obs["source"] == "query").to_numpy()
    assert adata.raw.X[np.flatnonzero(in_query)].max() > 1  # log values, not the [0, 1] scaling
    # the saved model reproduces the written latents of the query cells
    model = sx.SCALEX.load(tmp_path / "model")
    query = adata[adata.obs["source"] == "query"]
    np.testing.assert_allclose(
        model.get_latent_representation(query[:, list(model.feature_names)].copy()),
        query.obsm["X_scalex"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_cli_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "demo" in capsys.readouterr().out
