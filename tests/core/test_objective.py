"""The InfoVAE objective against independent computations of its terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from infovae_core.config import ConfigError, ModelConfig, ObjectiveConfig
from infovae_core.models import build_model
from infovae_core.objective import MMDDivergence, infovae_loss

IMAGE_SHAPE = (1, 8, 8)


@pytest.fixture
def batch():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3), IMAGE_SHAPE)
    x = (torch.rand(16, *IMAGE_SHAPE) > 0.5).float()
    return model, x, model(x)


def _independent_recon_and_kl(model, x, output):
    """E_q log p(x|z) from a hand-written Bernoulli log-likelihood; KL from torch.distributions."""
    logits = model.decoder.net(output.z)
    p = torch.sigmoid(logits)
    log_px = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
    q = Normal(output.posterior.mu, torch.exp(0.5 * output.posterior.logvar))
    kl = kl_divergence(q, Normal(0.0, 1.0)).sum(1)
    return log_px.mean(), kl.mean()


def test_elbo_setting_equals_negative_elbo(batch):
    model, x, output = batch
    recon, kl = _independent_recon_and_kl(model, x, output)
    terms = infovae_loss(output, torch.tensor(123.0), ObjectiveConfig(alpha=0.0, lambda_=1.0))
    assert torch.allclose(terms.total, -(recon - kl), atol=1e-4)
    assert torch.allclose(terms.elbo, recon - kl, atol=1e-4)


def test_general_weights_follow_design_formula(batch):
    model, x, output = batch
    recon, kl = _independent_recon_and_kl(model, x, output)
    divergence = torch.tensor(0.37)
    alpha, lam = 0.25, 40.0
    terms = infovae_loss(output, divergence, ObjectiveConfig(alpha=alpha, lambda_=lam))
    expected = -(recon - (1 - alpha) * kl - (alpha + lam - 1) * divergence)
    assert torch.allclose(terms.total, expected, atol=1e-3)


def test_alpha_one_removes_kl_term(batch):
    _, _, output = batch
    config = ObjectiveConfig(alpha=1.0, lambda_=5.0)
    logvar = output.posterior.logvar
    terms = infovae_loss(output, torch.tensor(0.0), config)
    # Only the reconstruction depends on logvar through z; with the KL gone the total equals -recon.
    assert torch.allclose(terms.total, -terms.recon)
    assert terms.kl.item() > 0 and logvar.requires_grad


def test_beta_vae_is_a_setting():
    beta = 4.0
    config = ObjectiveConfig(alpha=1 - beta, lambda_=beta)
    assert config.kl_weight == pytest.approx(beta)
    assert config.divergence_weight == pytest.approx(0.0)


def test_negative_divergence_weight_is_refused():
    with pytest.raises(ConfigError, match="alpha \\+ lambda - 1"):
        ObjectiveConfig(alpha=0.0, lambda_=0.5)


def test_negative_kl_weight_is_refused():
    with pytest.raises(ConfigError, match="objective.alpha"):
        ObjectiveConfig(alpha=1.5, lambda_=1.0)


def test_mmd_divergence_descends_toward_prior():
    """A gradient step on the MMD divergence pulls a shifted sample toward N(0, I)."""
    torch.manual_seed(1)
    z = (torch.randn(256, 2) + 1.5).requires_grad_()
    divergence = MMDDivergence("rbf", (1.0,), unbiased=False)
    optimizer = torch.optim.SGD([z], lr=1000.0)  # per-point gradients scale as 1/n
    start = z.detach().mean(0).norm().item()
    for _ in range(200):
        optimizer.zero_grad()
        divergence(z).backward()
        optimizer.step()
    assert z.detach().mean(0).norm().item() < 0.3 * start


def test_bernoulli_log_prob_matches_bce(batch):
    model, x, output = batch
    logits = model.decoder.net(output.z)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    assert torch.allclose(output.log_px_z.mean(), expected, atol=1e-4)
