"""evaluate() on a linear Gaussian latent model whose every metric has a closed form.

p(z) = N(0, I_3), p(x|z) = N(W z + b, sigma^2 I_6), images shaped [N, 1, 2, 3]. W has orthogonal
columns with norms (2, 0.7, 0): the exact posterior is diagonal, the third latent is unused. With
the exact posterior as encoder and data drawn from the model:

- the aggregate posterior is the prior: MMD^2 ~ 0 and log det Cov(z) ~ 0;
- I(x; z) = 0.5 log det(I + W^T W / sigma^2);
- IWAE is exact: -log N(x; b, W W^T + sigma^2 I);
- the means vary in two dimensions only: 2 active units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from infovae_core.config import EvalConfig
from infovae_core.evaluation import EvaluationResult, evaluate

_NORMS = (2.0, 0.7, 0.0)
_SIGMA = 0.5


@dataclass(frozen=True)
class _Split:
    images: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class _Posterior:
    mu: torch.Tensor
    logvar: torch.Tensor


class _LinearGaussianModel(torch.nn.Module):
    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=torch.float64))
        self.weight = torch.nn.Parameter(q * torch.tensor(_NORMS, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64))

    def precision(self) -> torch.Tensor:
        return 1.0 + (self.weight**2).sum(0) / _SIGMA**2  # diagonal of I + W^T W / sigma^2

    def encode(self, x: torch.Tensor) -> _Posterior:
        flat = x.reshape(x.shape[0], -1)
        mu = (flat - self.bias) @ self.weight / _SIGMA**2 / self.precision()
        return _Posterior(mu, -torch.log(self.precision()).expand_as(mu))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.weight.T + self.bias
        return Normal(mean, _SIGMA).log_prob(x.reshape(x.shape[0], -1)).sum(-1)

    def sample(self, n: int, seed: int) -> _Split:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(n, 3, generator=g, dtype=torch.float64)
            x = z @ self.weight.T + self.bias
            x = x + _SIGMA * torch.randn(n, 6, generator=g, dtype=torch.float64)
        return _Split(images=x.reshape(n, 1, 2, 3), labels=(z[:, 0] > 0).long())

    def true_nll(self, images: torch.Tensor) -> float:
        with torch.no_grad():
            cov = self.weight @ self.weight.T + _SIGMA**2 * torch.eye(6, dtype=torch.float64)
            marginal = MultivariateNormal(self.bias, covariance_matrix=cov)
            return float(-marginal.log_prob(images.reshape(images.shape[0], -1)).mean())


_CONFIG = EvalConfig(
    max_points=None,
    iwae_samples=5,
    iwae_points=300,
    probe_labels=(20, 200),
    seed=7,
    latents_to_keep=100,
)


@pytest.fixture(scope="module")
def setup() -> tuple[_LinearGaussianModel, _Split, _Split, EvaluationResult]:
    model = _LinearGaussianModel()
    train, test = model.sample(1000, seed=1), model.sample(3000, seed=2)
    return model, train, test, evaluate(model, train, test, _CONFIG, "cpu")


def test_every_metric_is_reported_as_a_float(setup) -> None:
    *_, result = setup
    expected = {
        "mmd",
        "log_det_cov",
        "mutual_info",
        "mutual_info_cap",
        "nll_iwae",
        "elbo",
        "recon",
        "kl",
        "active_units",
        "probe_acc_20",
        "probe_acc_200",
    }
    assert set(result.metrics) == expected
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.metrics.values())


def test_elbo_is_recon_minus_kl(setup) -> None:
    *_, result = setup
    m = result.metrics
    assert m["elbo"] == pytest.approx(m["recon"] - m["kl"], rel=1e-12)


def test_kl_is_the_test_mean_of_the_closed_form_kl(setup) -> None:
    model, _, test, result = setup
    with torch.no_grad():
        post = model.encode(test.images)
        q = Normal(post.mu, torch.exp(0.5 * post.logvar))
        kl = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()
    assert result.metrics["kl"] == pytest.approx(float(kl), rel=1e-9)


def test_elbo_of_the_exact_posterior_is_close_to_the_log_likelihood(setup) -> None:
    model, _, test, result = setup
    # E_q[recon] - KL = log p(x) exactly; the one-sample recon adds ~0.02 nats of noise here.
    assert -result.metrics["elbo"] == pytest.approx(model.true_nll(test.images), abs=0.1)


def test_nll_iwae_of_the_exact_posterior_is_the_exact_nll_of_the_first_points(setup) -> None:
    model, _, test, result = setup
    want = model.true_nll(test.images[: _CONFIG.iwae_points])
    assert result.metrics["nll_iwae"] == pytest.approx(want, rel=1e-9)


def test_mutual_information_matches_the_linear_gaussian_closed_form(setup) -> None:
    model, *_, result = setup
    want = 0.5 * float(torch.log(model.precision().detach()).sum())  # log det(I + W^T W / s^2)
    assert want < math.log(3000) - 4  # far from the log N cap
    assert result.metrics["mutual_info"] == pytest.approx(want, abs=0.1)


def test_aggregate_posterior_equal_to_the_prior_gives_zero_mmd_and_log_det(setup) -> None:
    *_, result = setup
    assert abs(result.metrics["mmd"]) < 2e-3  # unbiased, N = 3000: O(1/N) scatter
    assert abs(result.metrics["log_det_cov"]) < 0.1  # sd ~ sqrt(2 d / N) = 0.045


def test_active_units_ignore_the_unused_latent(setup) -> None:
    *_, result = setup
    assert result.metrics["active_units"] == 2.0


def test_probes_learn_the_sign_of_the_first_latent(setup) -> None:
    *_, result = setup
    # The label is sign(z_1), and the posterior mean of z_1 has correlation ~0.97 with z_1.
    assert result.metrics["probe_acc_200"] > 0.85
    assert result.metrics["probe_acc_20"] > 0.7


def test_latents_are_kept_for_the_first_test_points_as_float32(setup) -> None:
    *_, result = setup
    assert result.latents.shape == (_CONFIG.latents_to_keep, 3)
    assert result.latents.dtype == np.float32
    assert np.all(result.latents[:, 2].std() > 0.5)  # draws z ~ q(z|x), not means (0 there)


def test_no_latents_are_kept_when_latents_to_keep_is_zero() -> None:
    model = _LinearGaussianModel()
    split = model.sample(50, seed=3)
    config = replace(_CONFIG, latents_to_keep=0, probe_labels=(10,), iwae_points=10)
    assert evaluate(model, split, split, config, "cpu").latents.shape == (0, 3)


def test_evaluation_is_reproducible_and_seeded_by_config_seed() -> None:
    model = _LinearGaussianModel()
    train, test = model.sample(200, seed=4), model.sample(300, seed=5)
    config = replace(_CONFIG, probe_labels=(20,), iwae_points=50)
    first = evaluate(model, train, test, config, "cpu")
    torch.manual_seed(123)  # the global RNG must not matter
    again = evaluate(model, train, test, config, "cpu")
    other = evaluate(model, train, test, replace(config, seed=8), "cpu")
    assert first.metrics == again.metrics
    assert np.array_equal(first.latents, again.latents)
    assert other.metrics["mmd"] != first.metrics["mmd"]


def test_max_points_caps_the_aggregate_metrics() -> None:
    # A near-deterministic encoder (sigma tiny) has huge I(x; z); the estimate is capped by
    # log N for the N = max_points evaluation points actually used.
    model = _LinearGaussianModel()
    with torch.no_grad():
        model.weight.mul_(50.0)
    split = model.sample(400, seed=6)
    config = replace(_CONFIG, max_points=40, probe_labels=(10,), iwae_points=10)
    result = evaluate(model, split, split, config, "cpu")
    assert result.metrics["mutual_info"] <= math.log(40) + 1e-9
    assert result.metrics["mutual_info"] > math.log(40) - 0.1
    assert result.metrics["mutual_info_cap"] == pytest.approx(math.log(40))


def test_probe_sizes_beyond_the_training_split_are_skipped() -> None:
    model = _LinearGaussianModel()
    train, test = model.sample(100, seed=7), model.sample(100, seed=8)
    config = replace(_CONFIG, probe_labels=(10, 100, 101), iwae_points=10)
    metrics = evaluate(model, train, test, config, "cpu").metrics
    assert "probe_acc_10" in metrics and "probe_acc_100" in metrics
    assert "probe_acc_101" not in metrics


def test_evaluation_restores_training_mode_and_leaves_no_gradients() -> None:
    model = _LinearGaussianModel()
    model.train()
    split = model.sample(60, seed=9)
    evaluate(model, split, split, replace(_CONFIG, probe_labels=(10,), iwae_points=10), "cpu")
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_evaluation_rejects_labels_that_do_not_match_the_images() -> None:
    model = _LinearGaussianModel()
    split = model.sample(60, seed=10)
    bad = _Split(images=split.images, labels=split.labels[:-1])
    with pytest.raises(ValueError, match=r"test\.labels"):
        evaluate(model, split, bad, _CONFIG, "cpu")
