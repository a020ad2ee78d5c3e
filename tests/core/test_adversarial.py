"""The adversarial divergence: the Jensen-Shannon estimate against a closed form, a discriminator
that separates different distributions and finds nothing between identical ones, and the
plumbing (own optimiser, gradients to the codes only, settings from the config)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from infovae_core.config import ConfigError, TrialConfig
from infovae_core.divergences import AdversarialDivergence, jensen_shannon_estimate
from infovae_core.objective import build_divergence


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation, which stalls on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _normal(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


def _trained(q_shift: float, steps: int = 300, seed: int = 0) -> AdversarialDivergence:
    torch.manual_seed(seed)
    divergence = AdversarialDivergence(latent_dim=2, width=32, lr=3e-3, steps=1)
    for step in range(steps):
        divergence.update(_normal(128, 2, q_shift, seed=1000 + step))
    return divergence


def test_chance_discriminator_gives_zero():
    zeros = torch.zeros(10)
    assert float(jensen_shannon_estimate(zeros, zeros)) == pytest.approx(0.0, abs=1e-7)


def test_estimate_at_optimal_discriminator_matches_closed_form_jensen_shannon():
    # q = N(mu, 1), p = N(0, 1) in one dimension: T*(z) = log q(z) / p(z) = mu z - mu^2 / 2.
    mu = 1.5

    def integrand(z: float) -> float:
        q, p = norm.pdf(z, mu, 1), norm.pdf(z, 0, 1)
        m = 0.5 * (q + p)
        return 0.5 * q * math.log(q / m) + 0.5 * p * math.log(p / m)

    exact, _ = integrate.quad(integrand, -12, 14)
    z_q = _normal(200_000, 1, mu, seed=1).squeeze(1).double()
    z_p = _normal(200_000, 1, 0.0, seed=2).squeeze(1).double()
    estimate = jensen_shannon_estimate(mu * z_q - mu**2 / 2, mu * z_p - mu**2 / 2)
    assert float(estimate) == pytest.approx(exact, abs=3e-3)


def test_discriminator_separates_clearly_different_distributions():
    divergence = _trained(q_shift=3.0)
    with torch.no_grad():
        logits_q = divergence.logits(_normal(1000, 2, 3.0, seed=5))
        logits_p = divergence.logits(_normal(1000, 2, 0.0, seed=6))
        estimate = divergence(_normal(1000, 2, 3.0, seed=7))
    accuracy = 0.5 * ((logits_q > 0).float().mean() + (logits_p < 0).float().mean())
    assert float(accuracy) > 0.95
    # JS(N((3, 3), I) || N(0, I)) is close to its maximum, log 2 = 0.693.
    assert 0.55 < float(estimate) <= math.log(2)


def test_estimate_is_near_zero_for_identical_distributions():
    divergence = _trained(q_shift=0.0)
    with torch.no_grad():
        logits_q = divergence.logits(_normal(20_000, 2, 0.0, seed=8))
        logits_p = divergence.logits(_normal(20_000, 2, 0.0, seed=9))
    assert abs(float(jensen_shannon_estimate(logits_q, logits_p))) < 0.03


def test_estimate_grows_with_the_gap_between_distributions():
    estimates = []
    for shift in (0.0, 1.0, 3.0):
        divergence = _trained(q_shift=shift, steps=200)
        with torch.no_grad():
            estimates.append(float(divergence(_normal(4000, 2, shift, seed=10))))
    assert estimates[0] < estimates[1] < estimates[2]


def test_gradient_reaches_codes_and_not_the_discriminator():
    torch.manual_seed(0)
    divergence = AdversarialDivergence(latent_dim=3, width=16)
    z = _normal(8, 3, 1.0, seed=11).requires_grad_(True)
    divergence(z).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is None for p in divergence.discriminator.parameters())


def test_descending_the_estimate_moves_codes_towards_the_prior():
    # With the discriminator held fixed, a gradient step on the codes lowers E_q[log D(z)]:
    # the codes become harder to tell from prior draws.
    divergence = _trained(q_shift=2.0, steps=200)
    z = _normal(500, 2, 2.0, seed=12).requires_grad_(True)
    torch.manual_seed(1)
    before = divergence(z)
    before.backward()
    moved = (z - 0.2 * z.grad * 500).detach()
    torch.manual_seed(1)
    assert float(divergence(moved)) < float(before.detach())
    assert float(moved.mean()) < float(z.detach().mean())


def test_update_runs_the_configured_number_of_optimiser_steps():
    torch.manual_seed(0)
    divergence = AdversarialDivergence(latent_dim=2, width=8, steps=3)
    before = [p.detach().clone() for p in divergence.discriminator.parameters()]
    divergence.update(_normal(16, 2, 1.0, seed=13))
    state = divergence.optimizer.state[next(divergence.discriminator.parameters())]
    assert int(state["step"]) == 3
    after = list(divergence.discriminator.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_build_divergence_takes_discriminator_settings_from_the_config():
    config = TrialConfig.from_dict(
        {
            "objective.divergence": "adversarial",
            "objective.lambda": 10,
            "objective.discriminator_lr": 5e-4,
            "objective.discriminator_width": 24,
            "objective.discriminator_steps": 2,
        }
    )
    estimator = build_divergence(config.objective, latent_dim=5, device="cpu")
    assert isinstance(estimator, AdversarialDivergence)
    first = estimator.discriminator[0]
    assert (first.in_features, first.out_features) == (5, 24)
    assert estimator.optimizer.param_groups[0]["lr"] == 5e-4
    assert estimator.steps == 2
    assert all(p.device.type == "cpu" for p in estimator.discriminator.parameters())
    assert config.to_flat_dict()["objective.discriminator_width"] == 24


@pytest.mark.parametrize(
    "key,value",
    [
        ("objective.discriminator_lr", 0.0),
        ("objective.discriminator_lr", float("nan")),
        ("objective.discriminator_width", 1),
        ("objective.discriminator_steps", 0),
    ],
)
def test_bad_discriminator_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        TrialConfig.from_dict({"objective.divergence": "adversarial", key: value})
