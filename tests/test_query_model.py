"""SCALEX.load_query_data: decoder normalisations for new batches, the reference untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scalex_scvi as sx


def _state(model: sx.SCALEX) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.module.state_dict().items()}


def _bce(x: np.ndarray, decoded: np.ndarray) -> float:
    decoded = np.clip(decoded, 1e-7, 1 - 1e-7)
    return float(-(x * np.log(decoded) + (1 - x) * np.log(1 - decoded)).sum(1).mean())


@pytest.fixture(scope="module")
def query_model(trained, query):
    reference_state = _state(trained)
    model = sx.SCALEX.load_query_data(query.copy(), trained)
    for key, value in trained.module.state_dict().items():
        assert torch.equal(value, reference_state[key]), key
    return model


def test_query_model_adds_one_domain_per_new_batch(trained, query_model):
    assert list(query_model.batch_categories) == [*trained.batch_categories, "3pv1"]
    assert query_model.module.decoder.norm.weight.shape[0] == trained.module.n_batch + 1
    recipe = query_model.preprocess_recipe_
    assert recipe.keys() == trained.preprocess_recipe_.keys()
    assert recipe is not trained.preprocess_recipe_
    np.testing.assert_array_equal(recipe["features"], trained.preprocess_recipe_["features"])


def test_query_model_embeds_exactly_as_the_reference(trained, query, query_model):
    np.testing.assert_array_equal(
        query_model.get_latent_representation(), trained.get_latent_representation(query)
    )
    np.testing.assert_array_equal(
        query_model.get_latent_representation(trained.adata), trained.get_latent_representation()
    )


def test_new_domain_starts_from_the_query_statistics(trained, query, query_model):
    module = query_model.module
    with torch.no_grad():
        qzm = torch.as_tensor(trained.get_latent_representation(query), device=module.device)
        decoder_input = module.decoder.fc(qzm).double().cpu()
    norm = module.decoder.norm
    np.testing.assert_allclose(norm.running_mean[-1].cpu(), decoder_input.mean(0), atol=1e-5)
    np.testing.assert_allclose(norm.running_var[-1].cpu(), decoder_input.var(0), rtol=1e-4)
    torch.testing.assert_close(norm.weight[-1], trained.module.decoder.norm.weight.mean(0))


def test_training_fits_only_the_new_domain(trained, query, query_model):
    model = sx.SCALEX.load_query_data(query.copy(), trained)
    x = query.X.toarray()
    before_state = _state(model)
    before = _bce(x, model.get_normalized_expression(return_numpy=True))
    model.train(max_iterations=300, early_stopping=False, lr=1e-2, enable_progress_bar=False)
    after = _bce(x, model.get_normalized_expression(return_numpy=True))
    assert after < before - 1.0
    assert len(model.history["train_loss"]) > 1
    n_reference = trained.module.n_batch
    for key, value in model.module.state_dict().items():
        if key.startswith("decoder.norm.") and key != "decoder.norm.num_batches_tracked":
            assert torch.equal(value[:n_reference], before_state[key][:n_reference]), key
            assert not torch.equal(value[n_reference:], before_state[key][n_reference:]), key
        elif key != "decoder.norm.num_batches_tracked":
            assert torch.equal(value, before_state[key]), key
    np.testing.assert_array_equal(
        model.get_latent_representation(), trained.get_latent_representation(query)
    )


def test_query_model_scores_and_decodes_its_own_batches(trained, query, query_model):
    with pytest.raises(ValueError, match="load_query_data"):
        trained.get_elbo(query)
    elbo = query_model.get_elbo()
    assert np.isfinite(float(elbo))
    decoded = query_model.get_normalized_expression(return_numpy=True)
    assert decoded.shape == query.shape
    assert ((decoded >= 0) & (decoded <= 1)).all()
    # a reference batch decodes as in the reference model
    np.testing.assert_array_equal(
        query_model.get_normalized_expression(transform_batch="5p", return_numpy=True),
        trained.get_normalized_expression(query, transform_batch="5p", return_numpy=True),
    )


def test_query_model_save_load_and_reference_from_directory(tmp_path, trained, query, query_model):
    query_model.save(tmp_path / "query", save_anndata=True)
    loaded = sx.SCALEX.load(tmp_path / "query")
    np.testing.assert_array_equal(
        loaded.get_latent_representation(), query_model.get_latent_representation()
    )
    np.testing.assert_array_equal(
        loaded.get_normalized_expression(return_numpy=True),
        query_model.get_normalized_expression(return_numpy=True),
    )
    trained.save(tmp_path / "reference")
    from_directory = sx.SCALEX.load_query_data(query.copy(), tmp_path / "reference")
    np.testing.assert_array_equal(
        from_directory.get_normalized_expression(return_numpy=True),
        query_model.get_normalized_expression(return_numpy=True),
    )


def test_query_model_errors(trained, query, query_model):
    with pytest.raises(ValueError, match="prepare_query"):
        sx.SCALEX.load_query_data(query[:, ::-1].copy(), trained)
    without_batch = query.copy()
    del without_batch.obs["batch"]
    with pytest.raises(KeyError, match="batch column"):
        sx.SCALEX.load_query_data(without_batch, trained)
    with pytest.raises(ValueError, match="weight decay"):
        query_model.train(max_iterations=1, weight_decay=5e-4, enable_progress_bar=False)
    known = query.copy()
    known.obs["batch"] = "5p"
    with pytest.raises(ValueError, match="nothing to train"):
        sx.SCALEX.load_query_data(known, trained).train(max_iterations=1)


def test_query_model_of_one_cell(trained, query):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scvi-tools: a batch of fewer than 3 cells
        model = sx.SCALEX.load_query_data(query[:1].copy(), trained)
    norm = model.module.decoder.norm
    reference_var = trained.module.decoder.norm.running_var
    torch.testing.assert_close(norm.running_var[-1], reference_var.mean(0))
    decoded = model.get_normalized_expression(return_numpy=True)
    assert decoded.shape == (1, query.n_vars) and np.isfinite(decoded).all()
    np.testing.assert_array_equal(
        model.get_latent_representation(), trained.get_latent_representation(query[:1])
    )
