from __future__ import annotations

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS
from torch import nn

from scalex_scvi.module import SCALEXVAE, DomainSpecificBatchNorm1d


def _per_domain_reference(x, domain, n_domains, state=None):
    """Per-domain nn.BatchNorm1d loop: what SCALEX's DSBN means."""
    bns = [nn.BatchNorm1d(x.shape[1]) for _ in range(n_domains)]
    if state is not None:
        for i, bn in enumerate(bns):
            bn.weight.data.copy_(state["weight"][i])
            bn.bias.data.copy_(state["bias"][i])
    out = torch.zeros_like(x)
    for i, bn in enumerate(bns):
        rows = torch.nonzero(domain == i).flatten()
        if len(rows) > 1:
            out[rows] = bn(x[rows])
    return out, bns


def test_dsbn_equals_per_domain_loop():
    torch.manual_seed(0)
    n_domains, n_features = 4, 7
    # domain 0: 6 cells, domain 1: 3 cells, domain 2: 1 cell, domain 3: absent
    domain = torch.tensor([0, 1, 0, 0, 2, 1, 0, 0, 1, 0])
    x = torch.randn(len(domain), n_features, requires_grad=True)
    dsbn = DomainSpecificBatchNorm1d(n_features, n_domains)
    with torch.no_grad():
        dsbn.weight.copy_(torch.rand(n_domains, n_features) + 0.5)
        dsbn.bias.copy_(torch.randn(n_domains, n_features))
    out = dsbn(x, domain)
    ref_out, bns = _per_domain_reference(x, domain, n_domains, dsbn.state_dict())

    multi = (domain == 0) | (domain == 1)
    torch.testing.assert_close(out[multi], ref_out[multi], rtol=1e-5, atol=1e-5)
    # running statistics of domains with >1 cell follow nn.BatchNorm1d; others are untouched
    for i in (0, 1):
        torch.testing.assert_close(dsbn.running_mean[i], bns[i].running_mean)
        torch.testing.assert_close(dsbn.running_var[i], bns[i].running_var)
    assert torch.equal(dsbn.running_mean[2:], torch.zeros(2, n_features))
    assert torch.equal(dsbn.running_var[2:], torch.ones(2, n_features))
    assert dsbn.num_batches_tracked.tolist() == [1, 1, 0, 0]

    # the single-cell domain is normalised with its running statistics, without NaN
    single = domain == 2
    scale = dsbn.weight[2] / torch.sqrt(torch.tensor(1 + dsbn.eps))
    expected = x[single] * scale + dsbn.bias[2]
    torch.testing.assert_close(out[single], expected)
    assert torch.isfinite(out).all()

    # gradients agree with the loop for the cells the loop normalises
    weights = torch.randn_like(out)
    (grad_vec,) = torch.autograd.grad((out[multi] * weights[multi]).sum(), x)
    (grad_ref,) = torch.autograd.grad((ref_out[multi] * weights[multi]).sum(), x)
    torch.testing.assert_close(grad_vec, grad_ref, rtol=1e-4, atol=1e-5)


def test_dsbn_eval_uses_running_statistics():
    torch.manual_seed(1)
    dsbn = DomainSpecificBatchNorm1d(5, 3)
    with torch.no_grad():
        dsbn.running_mean.copy_(torch.randn(3, 5))
        dsbn.running_var.copy_(torch.rand(3, 5) + 0.1)
    dsbn.eval()
    x, domain = torch.randn(8, 5), torch.tensor([0, 1, 2, 2, 1, 0, 0, 2])
    expected = (x - dsbn.running_mean[domain]) / torch.sqrt(dsbn.running_var[domain] + dsbn.eps)
    torch.testing.assert_close(dsbn(x, domain), expected)
    # one cell alone gets the same value as in company
    torch.testing.assert_close(dsbn(x[:1], domain[:1]), expected[:1])


def test_dsbn_single_cell_minibatch_is_finite():
    dsbn = DomainSpecificBatchNorm1d(4, 2)
    out = dsbn(torch.randn(1, 4), torch.tensor([1]))
    assert torch.isfinite(out).all()


def _np_sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_module_shapes_and_hand_computed_loss():
    torch.manual_seed(0)
    n_input, n_hidden, n_latent, n_batch = 6, 5, 2, 2
    module = SCALEXVAE(n_input, n_batch=n_batch, n_hidden=n_hidden, n_latent=n_latent)
    module.eval()  # BatchNorm layers use running statistics (0 mean, unit variance)
    x = torch.rand(3, n_input)
    batch = torch.tensor([[0], [1], [1]])
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: batch}

    inference = module.inference(x)
    assert inference["qzm"].shape == (3, n_latent) and inference["z"].shape == (3, n_latent)
    inference["z"] = inference["qzm"]  # evaluate the loss at the mean for a deterministic value
    generative = module.generative(inference["z"], batch)
    assert generative["px"].shape == (3, n_input)
    loss = module.loss(tensors, inference, generative)

    p = {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}
    xn = x.numpy().astype(np.float64)
    eps = 1e-5
    h = xn @ p["z_encoder.fc.weight"].T + p["z_encoder.fc.bias"]
    h = (h - p["z_encoder.norm.running_mean"]) / np.sqrt(p["z_encoder.norm.running_var"] + eps)
    h = np.maximum(h * p["z_encoder.norm.weight"] + p["z_encoder.norm.bias"], 0)
    mu = h @ p["z_encoder.mean_encoder.weight"].T + p["z_encoder.mean_encoder.bias"]
    var = np.exp(h @ p["z_encoder.var_encoder.weight"].T + p["z_encoder.var_encoder.bias"])
    kl = 0.5 * (var + mu**2 - 1 - np.log(var)).sum(1)
    logits = mu @ p["decoder.fc.weight"].T + p["decoder.fc.bias"]
    b = batch.numpy().ravel()
    logits = (logits - p["decoder.norm.running_mean"][b]) / np.sqrt(
        p["decoder.norm.running_var"][b] + eps
    ) * p["decoder.norm.weight"][b] + p["decoder.norm.bias"][b]
    prob = _np_sigmoid(logits)
    bce = -(xn * np.log(prob) + (1 - xn) * np.log(1 - prob)).sum(1)

    np.testing.assert_allclose(inference["qzm"].detach().numpy(), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(generative["px"].detach().numpy(), prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss.reconstruction_loss_sum.item(), bce.sum(), rtol=1e-5)
    np.testing.assert_allclose(loss.kl_local_sum.item(), kl.sum(), rtol=1e-4)
    np.testing.assert_allclose(loss.loss.item(), np.mean(bce + 0.5 * kl), rtol=1e-5)


def test_encoder_ignores_batch():
    module = SCALEXVAE(8, n_batch=3, n_hidden=16, n_latent=4)
    module.eval()
    x = torch.rand(5, 8)
    a = module.forward(
        {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(5, 1)}, compute_loss=False
    )[0]["qzm"]
    b = module.forward(
        {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.full((5, 1), 2)},
        compute_loss=False,
    )[0]["qzm"]
    assert torch.equal(a, b)


def test_layer_norm_encoder_normalises_each_cell_over_its_hidden_units():
    torch.manual_seed(0)
    module = SCALEXVAE(8, n_batch=2, n_hidden=16, n_latent=4, encoder_norm="layer")
    encoder = module.z_encoder
    with torch.no_grad():
        encoder.norm.weight.uniform_(0.5, 1.5)
        encoder.norm.bias.uniform_(-0.5, 0.5)
    x = torch.rand(6, 8)
    h = encoder.fc(x)
    by_hand = (h - h.mean(1, keepdim=True)) / torch.sqrt(
        h.var(1, unbiased=False, keepdim=True) + 1e-5
    )
    h = torch.relu(by_hand * encoder.norm.weight + encoder.norm.bias)
    expected = encoder.mean_encoder(h)
    module.train()  # no statistics of other cells, in training as at inference
    qzm = module.inference(x)["qzm"]
    torch.testing.assert_close(qzm, expected)
    torch.testing.assert_close(module.inference(x[2:3])["qzm"], expected[2:3])
    with pytest.raises(ValueError, match="no BatchNorm statistics"):
        module.inference(x, hidden_stats=(torch.zeros(1, 16), torch.ones(1, 16), torch.zeros(6)))
    with pytest.raises(ValueError, match="'batch' or 'layer'"):
        SCALEXVAE(8, encoder_norm="group")


def test_group_statistics_normalise_each_cell_with_its_group():
    torch.manual_seed(0)
    module = SCALEXVAE(8, n_batch=2, n_hidden=16, n_latent=4)
    encoder = module.z_encoder
    with torch.no_grad():
        encoder.norm.weight.uniform_(0.5, 1.5)
        encoder.norm.bias.uniform_(-0.5, 0.5)
        encoder.norm.running_mean.uniform_(-1.0, 1.0)
        encoder.norm.running_var.uniform_(0.5, 2.0)
    module.eval()
    x = torch.rand(9, 8)
    mean, var = torch.randn(3, 16), torch.rand(3, 16) + 0.1
    groups = torch.tensor([2, 0, 0, 1, 2, 1, 0, 2, 2])  # interleaved
    with torch.no_grad():
        h = encoder.fc(x)
        by_hand = (h - mean[groups]) / torch.sqrt(var[groups] + encoder.norm.eps)
        h = torch.relu(by_hand * encoder.norm.weight + encoder.norm.bias)
        expected = encoder.mean_encoder(h)
        qzm = module.inference(x, hidden_stats=(mean, var, groups))["qzm"]
        torch.testing.assert_close(qzm, expected)
        # a cell's result depends on its group's statistics only, not on the other cells
        order = torch.randperm(9)
        shuffled = module.inference(x[order], hidden_stats=(mean, var, groups[order]))["qzm"]
        assert torch.equal(shuffled, qzm[order])
        # one group holding the running statistics: the running path, bit for bit
        norm = encoder.norm
        one_group = torch.zeros(9, dtype=torch.long)
        running = (norm.running_mean[None], norm.running_var[None], one_group)
        with_running = module.inference(x, hidden_stats=running)["qzm"]
        assert torch.equal(with_running, module.inference(x)["qzm"])
        for bad in ((mean, var, groups[:-1]), (mean[:, :-1], var[:, :-1], groups)):
            with pytest.raises(ValueError, match="one group per cell"):
                module.inference(x, hidden_stats=bad)


def test_training_step_with_one_cell_does_not_crash():
    module = SCALEXVAE(8, n_batch=2, n_hidden=16, n_latent=4)
    module.train()
    tensors = {REGISTRY_KEYS.X_KEY: torch.rand(1, 8), REGISTRY_KEYS.BATCH_KEY: torch.ones(1, 1)}
    _, _, loss = module(tensors)
    assert torch.isfinite(loss.loss)
    loss.loss.backward()


@pytest.mark.parametrize("n_samples", [1, 3])
def test_sample_shapes(n_samples):
    module = SCALEXVAE(8, n_batch=2, n_hidden=16, n_latent=4)
    module.eval()
    tensors = {REGISTRY_KEYS.X_KEY: torch.rand(5, 8), REGISTRY_KEYS.BATCH_KEY: torch.zeros(5, 1)}
    samples = module.sample(tensors, n_samples=n_samples)
    assert samples.shape == ((5, 8) if n_samples == 1 else (5, 8, n_samples))
    assert set(torch.unique(samples).tolist()) <= {0.0, 1.0}


def test_marginal_ll_matches_numerical_integration_over_a_1d_latent():
    torch.manual_seed(0)
    module = SCALEXVAE(6, n_batch=2, n_hidden=8, n_latent=1)
    module.eval()
    x = torch.rand(4, 6)
    batch = torch.tensor([[0], [1], [0], [1]])
    tensors = {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: batch}
    # log p(x) = log ∫ p(x | z) N(z; 0, 1) dz on a fine grid, p(x | z) = exp(-BCE)
    grid = torch.linspace(-8, 8, 8001, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    exact = []
    with torch.no_grad():
        for i in range(len(x)):
            logits = module.generative(grid[:, None].float(), batch[i].repeat(len(grid)))[
                "px_logits"
            ].double()
            log_px_z = -nn.functional.binary_cross_entropy_with_logits(
                logits, x[i].double().expand_as(logits), reduction="none"
            ).sum(-1)
            log_pz = -0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
            exact.append(torch.logsumexp(log_px_z + log_pz, 0) + np.log(step))
    exact = torch.stack(exact).float()

    estimate = module.marginal_ll(tensors, n_mc_samples=20000, n_mc_samples_per_pass=5000)
    assert estimate.shape == (4,)
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    mean = module.marginal_ll(tensors, n_mc_samples=2000, return_mean=True)
    assert isinstance(mean, float) and abs(mean - exact.mean().item()) < 0.05
