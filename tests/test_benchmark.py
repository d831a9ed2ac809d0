from __future__ import annotations

import sys

import numpy as np
import pytest

import scalex_scvi as sx

UNIT_SCORES = (
    "Total",
    "Batch correction",
    "Bio conservation",
    "batch_entropy_mixing",
    "over_correction",
    "leiden_nmi",
    "silhouette_cell_type",
)


def test_run_benchmark_scores_every_method(reference, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "harmonypy", None)  # as if harmonypy were not installed
    reference = reference[::2].copy()  # 455 cells keep scib-metrics quick
    before = reference.copy()
    given = np.random.default_rng(0).normal(size=(reference.n_obs, 5))
    with pytest.warns(UserWarning, match="Harmony skipped") as caught:
        table = sx.benchmark.run_benchmark(
            reference,
            methods=["SCALEX", "scVI", "PCA (unintegrated)", "Harmony"],
            prepared=True,
            method_kwargs={"SCALEX": {"max_iterations": 30}, "scVI": {"max_epochs": 1}},
            embeddings={"random": given},
            dataset="pbmc",
            save_dir=tmp_path / "new" / "folder",  # created on demand
        )
    skipped = [w for w in caught if "Harmony skipped" in str(w.message)]
    assert skipped[0].filename == __file__  # the warning points at the caller's line
    expected = ["SCALEX", "scVI", "PCA (unintegrated)", "Harmony", "random"]
    assert list(table["method"]) == expected
    status = table.set_index("method")["status"]
    assert status["Harmony"].startswith("skipped") and status["SCALEX"] == "ok"
    scored = table.set_index("method").drop(index="Harmony")
    for column in UNIT_SCORES:
        assert scored[column].between(0, 1).all(), column
    assert scored["leiden_ari"].between(-0.1, 1).all()  # ~0 by chance, may dip below
    assert (scored.loc[["SCALEX", "scVI"], "wall_s"] > 0).all()
    # a random embedding conserves no biology: every real method beats it
    real = scored.drop(index="random")["Bio conservation"]
    assert (real > scored.loc["random", "Bio conservation"]).all()
    assert (tmp_path / "new" / "folder" / "benchmark_pbmc.csv").exists()
    assert (tmp_path / "new" / "folder" / "scib_results.svg").exists()
    assert reference.obs.equals(before.obs) and set(reference.obsm) == set(before.obsm)


def test_bad_input_fails_before_any_training(reference, monkeypatch):
    from scalex_scvi.benchmark import _methods

    def never(*args, **kwargs):
        raise AssertionError("a method ran")

    monkeypatch.setitem(_methods.METHODS, "SCALEX", never)
    with pytest.raises(ValueError, match="has 3 rows"):
        sx.benchmark.run_benchmark(
            reference, methods=["SCALEX"], prepared=True, embeddings={"x": np.zeros((3, 2))}
        )
    unlabelled = reference.copy()
    unlabelled.obs["cell_type"] = unlabelled.obs["cell_type"].astype(object)
    unlabelled.obs.iloc[:2, unlabelled.obs.columns.get_loc("cell_type")] = None
    with pytest.raises(ValueError, match=r"2 cells have no value in adata.obs\['cell_type'\]"):
        sx.benchmark.run_benchmark(unlabelled, methods=["SCALEX"], prepared=True)


def test_run_benchmark_rejects_unknown_methods(reference):
    with pytest.raises(ValueError, match="Unknown methods"):
        sx.benchmark.run_benchmark(reference, methods=["LIGER"], prepared=True)


def test_harmony_and_scanorama_runners(reference):
    pytest.importorskip("harmonypy")
    pytest.importorskip("scanorama")
    from scalex_scvi.benchmark._methods import harmony, scanorama

    for runner in (harmony, scanorama):
        embedding = runner(reference, "batch")
        assert embedding.shape[0] == reference.n_obs and np.isfinite(embedding).all()


def test_scalex_runner_passes_the_batch_norm_choice(reference):
    from scalex_scvi.benchmark._methods import scalex

    running = scalex(reference, "batch", max_iterations=30)
    per_batch = scalex(reference, "batch", max_iterations=30, batch_norm="per_batch")
    again = scalex(reference, "batch", max_iterations=30)
    assert running.shape == per_batch.shape == (reference.n_obs, 10)
    np.testing.assert_array_equal(running, again)  # seeded: only the statistics differ
    assert np.abs(running - per_batch).mean() > 1e-3
    with pytest.raises(ValueError, match="batch_norm must be"):
        scalex(reference, "batch", max_iterations=1, batch_norm="per_cell")


def test_scalex_runner_passes_model_arguments(reference):
    from scalex_scvi.benchmark._methods import scalex

    weight = sx.model.default_kl_weight(reference.n_vars)
    default = scalex(reference, "batch", max_iterations=30)
    same = scalex(reference, "batch", max_iterations=30, model_kwargs={"kl_weight": weight})
    lighter = scalex(reference, "batch", max_iterations=30, model_kwargs={"kl_weight": 0.02})
    narrower = scalex(reference, "batch", max_iterations=30, model_kwargs={"n_latent": 4})
    np.testing.assert_array_equal(default, same)
    assert np.abs(default - lighter).mean() > 1e-3
    assert narrower.shape == (reference.n_obs, 4)
