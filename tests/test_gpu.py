"""Training and projection on a CUDA GPU agree with the CPU; skipped without one.

CI has no GPU, so these run only where one is present (``pytest tests/test_gpu.py``).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scvi
import torch

import scalex_scvi as sx

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# float32 sums run in another order on the GPU, so latents agree to a tolerance, not bit for bit
ATOL = 1e-4


@pytest.fixture(scope="module")
def gpu_model(reference) -> sx.SCALEX:
    scvi.settings.seed = 0
    adata = reference.copy()
    sx.SCALEX.setup_anndata(adata, batch_key="batch")
    model = sx.SCALEX(adata, n_hidden=128)
    model.train(
        max_iterations=60, accelerator="gpu", enable_progress_bar=False, early_stopping=False
    )
    return model


@pytest.fixture(scope="module")
def cpu_copy(gpu_model, tmp_path_factory) -> sx.SCALEX:
    """The GPU-trained model, saved and loaded onto the CPU."""
    path = tmp_path_factory.mktemp("gpu_model") / "model"
    gpu_model.save(path)
    return sx.SCALEX.load(path, adata=gpu_model.adata, accelerator="cpu")


def test_model_trains_on_the_gpu(gpu_model):
    assert gpu_model.is_trained
    assert gpu_model.device.type == "cuda"
    assert gpu_model.trainer.global_step == 60
    latent = gpu_model.get_latent_representation()
    assert latent.shape == (gpu_model.adata.n_obs, 10)
    assert np.isfinite(latent).all() and latent.std(axis=0).min() > 0


def test_gpu_latent_matches_cpu_after_save_and_load(gpu_model, cpu_copy):
    on_gpu = gpu_model.get_latent_representation()
    per_batch_gpu = gpu_model.get_latent_representation(batch_norm="per_batch")
    assert cpu_copy.device.type == "cpu"
    np.testing.assert_allclose(cpu_copy.get_latent_representation(), on_gpu, atol=ATOL)
    np.testing.assert_allclose(
        cpu_copy.get_latent_representation(batch_norm="per_batch"), per_batch_gpu, atol=ATOL
    )


def test_gpu_embedding_does_not_depend_on_mini_batch(gpu_model):
    whole = gpu_model.get_latent_representation(batch_size=1024)
    small = gpu_model.get_latent_representation(batch_size=7)
    one = gpu_model.get_latent_representation(indices=[5])
    np.testing.assert_allclose(small, whole, atol=1e-5)
    np.testing.assert_allclose(one[0], whole[5], atol=1e-5)


def test_gpu_projection_arms_match_cpu(gpu_model, cpu_copy, query_raw):
    query = gpu_model.prepare_query(query_raw, batch_key="batch")
    labels = gpu_model.adata.obs["cell_type"]
    classifier = sx.tl.KNNLabelTransfer().fit(gpu_model.get_latent_representation(), labels)
    statistics = gpu_model.get_hidden_statistics(groups=labels)
    gpu = {
        "running": gpu_model.get_latent_representation(query),
        "per_batch": gpu_model.get_latent_representation(query, batch_norm="per_batch"),
        "balanced": sx.tl.balanced_latent(gpu_model, query, classifier, statistics)[0],
    }
    cpu_statistics = cpu_copy.get_hidden_statistics(groups=labels)
    np.testing.assert_allclose(cpu_statistics.mean, statistics.mean, rtol=1e-4, atol=ATOL)
    cpu = {
        "running": cpu_copy.get_latent_representation(query),
        "per_batch": cpu_copy.get_latent_representation(query, batch_norm="per_batch"),
        "balanced": sx.tl.balanced_latent(cpu_copy, query, classifier, cpu_statistics)[0],
    }
    for arm, latent in gpu.items():
        assert latent.shape == (query.n_obs, 10), arm
        np.testing.assert_allclose(cpu[arm], latent, atol=ATOL, err_msg=arm)


def test_gpu_atlas_keeps_reference_and_reloads_on_cpu(gpu_model, query_raw, tmp_path):
    atlas = sx.Atlas.build(gpu_model, gpu_model.adata, label_key="cell_type")
    before = atlas.adata.obsm["X_scalex"].copy()
    mapped = atlas.map(query_raw, batch_key="batch")
    atlas.extend(mapped)
    after = atlas.adata
    np.testing.assert_array_equal(after.obsm["X_scalex"][: len(before)], before)
    assert after.n_obs == len(before) + query_raw.n_obs
    atlas.save(tmp_path / "atlas")
    loaded = sx.Atlas.load(tmp_path / "atlas", accelerator="cpu")
    assert loaded.model.device.type == "cpu"
    again = loaded.map(query_raw, batch_key="batch")
    np.testing.assert_allclose(again.obsm["X_scalex"], mapped.obsm["X_scalex"], atol=ATOL)
    assert isinstance(again, ad.AnnData)


def test_gpu_query_model_trains_only_the_new_domain(gpu_model, query_raw):
    query = gpu_model.prepare_query(query_raw, batch_key="batch")
    model = sx.SCALEX.load_query_data(query, gpu_model)
    assert model.device.type == "cuda"
    before = {key: value.clone() for key, value in model.module.state_dict().items()}
    model.train(
        max_iterations=100,
        lr=1e-2,
        accelerator="gpu",
        early_stopping=False,
        enable_progress_bar=False,
    )
    assert model.trainer.global_step == 100
    n_reference = gpu_model.module.n_batch
    for key, value in model.module.state_dict().items():
        assert value.device.type == "cuda", key
        if key == "decoder.norm.num_batches_tracked":
            continue
        if key.startswith("decoder.norm."):
            assert torch.equal(value[:n_reference], before[key][:n_reference]), key
            assert not torch.equal(value[n_reference:], before[key][n_reference:]), key
        else:
            assert torch.equal(value, before[key]), key
    np.testing.assert_allclose(
        model.get_latent_representation(), gpu_model.get_latent_representation(query), atol=1e-6
    )
    decoded = model.get_normalized_expression(return_numpy=True)
    assert decoded.shape == query.shape and np.isfinite(decoded).all()
