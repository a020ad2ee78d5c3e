"""The rate E_x KL(q(z|x) || p(z)) bounds the mutual information from above (docs/metrics.md):
checked on a linear Gaussian encoder, whose mutual information, rate and aggregate posterior
have closed forms. Per dimension, x ~ N(0, 1) and q(z|x) = N(a x, s^2), so q(z) = N(0, a^2 + s^2):

    I(x; z) = 1/2 log(1 + a^2 / s^2)
    rate    = E_x KL(N(a x, s^2) || N(0, 1)) = 1/2 (a^2 + s^2 - 1 - log s^2)
    KL(q(z) || p(z)) = 1/2 (a^2 + s^2 - 1 - log(a^2 + s^2))
"""

from __future__ import annotations

import math

import pytest
import torch

from infovae_core.divergences import gaussian_kl_to_standard_normal
from infovae_core.metrics import mutual_information

GAINS = torch.tensor([1.0, 2.0, 0.5])
NOISE_SD = torch.tensor([0.5, 1.0, 0.3])


def _true_mutual_info() -> float:
    return float((0.5 * torch.log1p(GAINS**2 / NOISE_SD**2)).sum())


def _closed_form_rate() -> float:
    a2, s2 = GAINS**2, NOISE_SD**2
    return float((0.5 * (a2 + s2 - 1 - torch.log(s2))).sum())


def _encode(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, len(GAINS), generator=torch.Generator().manual_seed(seed))
    mu = (x * GAINS).double()
    logvar = torch.log(NOISE_SD**2).double().expand(n, -1)
    return mu, logvar


def test_rate_of_the_encoder_matches_its_closed_form() -> None:
    mu, logvar = _encode(200_000, seed=0)
    rate = float(gaussian_kl_to_standard_normal(mu, logvar).mean())
    assert rate == pytest.approx(_closed_form_rate(), rel=0.01)


def test_rate_is_the_mutual_information_plus_the_aggregate_kl() -> None:
    a2, s2 = GAINS**2, NOISE_SD**2
    aggregate_kl = float((0.5 * (a2 + s2 - 1 - torch.log(a2 + s2))).sum())
    assert _closed_form_rate() == pytest.approx(_true_mutual_info() + aggregate_kl, rel=1e-6)
    assert _closed_form_rate() > _true_mutual_info()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_and_rate_bracket_the_true_mutual_information(seed: int) -> None:
    mu, logvar = _encode(3000, seed=seed)
    estimate = mutual_information(mu, logvar, generator=torch.Generator().manual_seed(seed))
    rate = float(gaussian_kl_to_standard_normal(mu, logvar).mean())
    truth = _true_mutual_info()
    assert truth < math.log(3000)  # far from the estimator's cap
    assert estimate <= truth + 0.05  # the N-point mixture estimate, up to Monte Carlo noise
    assert rate >= truth
    assert estimate > 0.8 * truth  # and the interval is informative, not [0, rate]
