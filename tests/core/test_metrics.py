"""Evaluation metrics against closed forms and independent direct computations."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from infovae_core.divergences import mmd_squared
from infovae_core.metrics import (
    active_units,
    gaussian_log_density,
    linear_probe_accuracy,
    log_det_cov,
    mmd,
    mutual_information,
    nll_iwae,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- mmd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_chunked_mmd_equals_unchunked_with_tiny_chunks(kernel, unbiased) -> None:
    # 17 and 11 rows in chunks of 3: ragged last blocks and off-diagonal block doubling.
    g = _gen(0)
    x = torch.randn(17, 3, generator=g, dtype=torch.float64)
    y = 0.3 + torch.randn(11, 3, generator=g, dtype=torch.float64)
    scales = (0.5, 2.0)
    want = mmd_squared(x, y, kernel, scales, unbiased=unbiased).item()
    got = mmd(x, y, kernel, scales, unbiased=unbiased, chunk_size=3)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-14)


def test_mmd_accepts_numpy_arrays() -> None:
    g = _gen(1)
    x, y = torch.randn(20, 2, generator=g), torch.randn(15, 2, generator=g)
    assert mmd(x.numpy(), y.numpy(), chunk_size=4) == pytest.approx(mmd(x, y), rel=1e-6)


def test_unbiased_mmd_between_independent_samples_of_one_distribution_is_near_zero() -> None:
    g = _gen(2)
    x, y = torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g)
    # Standard error of the U-statistic under the null is O(1/n).
    assert abs(mmd(x, y, chunk_size=512)) < 2e-3


def test_float32_chunked_mmd_matches_rbf_closed_form_for_shifted_gaussians() -> None:
    # MMD^2(N(0, I), N(m, I)) = 2 (g / (g + 2))^(d/2) (1 - exp(-||m||^2 / (2 (g + 2)))),
    # g = d s^2 (see tests/core/test_divergences.py for the derivation).
    d, n = 4, 3000
    mean = torch.tensor([1.0, -0.5, 0.0, 0.5])
    gamma = float(d)
    want = 2 * (gamma / (gamma + 2)) ** (d / 2) * (1 - math.exp(-1.5 / (2 * (gamma + 2))))
    g = _gen(3)
    x = torch.randn(n, d, generator=g)
    y = mean + torch.randn(n, d, generator=g)
    # want ~0.104; standard error at n = 3000 is ~0.0045 (measured over 8 seeds): 3 s.e.
    assert mmd(x, y, "rbf", (1.0,), unbiased=True, chunk_size=700) == pytest.approx(want, abs=0.014)


def test_mmd_rejects_a_non_positive_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        mmd(torch.zeros(3, 2), torch.zeros(3, 2), chunk_size=0)


# --- log_det_cov -----------------------------------------------------------------------------


def test_log_det_cov_of_samples_from_a_known_covariance() -> None:
    chol = torch.tensor([[1.5, 0.0, 0.0], [0.4, 0.7, 0.0], [-0.3, 0.2, 0.3]], dtype=torch.float64)
    want = 2 * float(torch.log(torch.diagonal(chol)).sum())  # log det(L L^T)
    z = torch.randn(50_000, 3, generator=_gen(4), dtype=torch.float64) @ chol.T + 5.0
    # sd of the sample log det is ~sqrt(2 d / N) ~ 0.011.
    assert log_det_cov(z) == pytest.approx(want, abs=0.04)


def test_log_det_cov_of_standard_normal_samples_is_near_zero() -> None:
    z = torch.randn(50_000, 4, generator=_gen(5))
    assert abs(log_det_cov(z)) < 0.05


def test_log_det_cov_of_a_degenerate_sample_is_minus_infinity() -> None:
    z = torch.randn(100, 2, generator=_gen(6), dtype=torch.float64)
    z = torch.cat([z, z[:, :1]], dim=1)  # third column copies the first
    assert log_det_cov(z) == float("-inf")


# --- mutual_information ----------------------------------------------------------------------


def test_mutual_information_of_a_linear_gaussian_encoder_matches_closed_form() -> None:
    # x ~ N(0, I_d), q(z|x) = N(a x, s^2 I): I(x; z) = d/2 log(1 + a^2 / s^2) = 1.768 nats,
    # well below log N = 8.29. Over seeds the estimate scatters by ~0.02 nats.
    d, a, s, n = 3, 1.5, 1.0, 4000
    x = torch.randn(n, d, generator=_gen(7), dtype=torch.float64)
    logvar = torch.full((n, d), 2 * math.log(s), dtype=torch.float64)
    got = mutual_information(a * x, logvar, generator=_gen(8))
    assert got == pytest.approx(d / 2 * math.log(1 + a**2 / s**2), abs=0.08)


def test_mutual_information_is_zero_when_every_posterior_is_the_same() -> None:
    n = 300
    mu = torch.full((n, 2), 0.7)
    logvar = torch.full((n, 2), -1.0)
    assert mutual_information(mu, logvar, generator=_gen(9)) == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_reaches_log_n_for_well_separated_posteriors() -> None:
    n = 200
    # Means 10 apart, standard deviations 0.37: every other component is ~27 sd away.
    mu = 10.0 * (torch.arange(n, dtype=torch.float64).unsqueeze(1) - n / 2)
    logvar = torch.full((n, 1), -2.0, dtype=torch.float64)
    assert mutual_information(mu, logvar, generator=_gen(10)) == pytest.approx(
        math.log(n), abs=1e-6
    )


def test_mutual_information_matches_a_direct_full_table_computation() -> None:
    # Documented sampling: z = mu + exp(logvar / 2) * randn(N, d, float64, generator).
    n, d = 60, 3
    g = _gen(11)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) - 1.0
    eps = torch.randn(n, d, generator=_gen(12), dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    table = (
        Normal(mu.unsqueeze(0), torch.exp(0.5 * logvar).unsqueeze(0))
        .log_prob(z.unsqueeze(1))
        .sum(-1)
    )  # [i, j] = log q(z_i | x_j)
    want = float((torch.diagonal(table) - (torch.logsumexp(table, dim=1) - math.log(n))).mean())
    got = mutual_information(mu, logvar, generator=_gen(12), chunk_size=7)
    assert got == pytest.approx(want, rel=1e-10)


def test_mutual_information_is_reproducible_with_a_seeded_generator() -> None:
    g = _gen(13)
    mu, logvar = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g)
    first = mutual_information(mu, logvar, generator=_gen(1))
    assert mutual_information(mu, logvar, generator=_gen(1)) == first
    assert mutual_information(mu, logvar, generator=_gen(2)) != first


# --- active_units ----------------------------------------------------------------------------


def test_active_units_counts_dimensions_whose_mean_varies_above_threshold() -> None:
    v = torch.randn(500, generator=_gen(14), dtype=torch.float64)
    v = (v - v.mean()) / v.std()  # sample variance exactly 1
    # variances 1, 0.02, 0.011, 0.009, 0: the threshold 0.01 keeps the first three.
    mu = torch.stack(
        [v, math.sqrt(0.02) * v, math.sqrt(0.011) * v, math.sqrt(0.009) * v, 0 * v + 3.0], 1
    )
    assert active_units(mu) == 3
    assert active_units(mu, threshold=0.5) == 1


# --- linear_probe_accuracy -------------------------------------------------------------------


def _clusters(n_per_class: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 20.0 * rng.standard_normal((n_classes, 5))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.standard_normal((labels.size, 5)), labels


def test_probe_on_separable_clusters_is_near_perfect() -> None:
    x_train, y_train = _clusters(100, 10, seed=0)
    x_test, y_test = _clusters(50, 10, seed=0)
    rng = np.random.default_rng(1)
    x_test = x_test + 0.1 * rng.standard_normal(x_test.shape)
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test, 100, seed=0) >= 0.98


def test_probe_selection_is_stratified_so_one_label_per_class_suffices() -> None:
    # A plain draw of 10 out of 10 classes x 100 misses some class with probability ~0.9996.
    x_train, y_train = _clusters(100, 10, seed=2)
    x_test, y_test = _clusters(30, 10, seed=2)
    for seed in range(3):
        assert linear_probe_accuracy(x_train, y_train, x_test, y_test, 10, seed=seed) >= 0.98


def test_probe_on_random_labels_is_at_chance() -> None:
    rng = np.random.default_rng(3)
    x_train, x_test = rng.standard_normal((2000, 5)), rng.standard_normal((2000, 5))
    y_train, y_test = rng.integers(0, 10, 2000), rng.integers(0, 10, 2000)
    accuracy = linear_probe_accuracy(x_train, y_train, x_test, y_test, 1000, seed=0)
    assert abs(accuracy - 0.1) < 0.035  # chance 0.1, sd ~0.007 over 2000 test points


def test_probe_accepts_torch_tensors() -> None:
    x_train, y_train = _clusters(20, 3, seed=4)
    accuracy = linear_probe_accuracy(
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        30,
        seed=0,
    )
    assert accuracy >= 0.98


def test_probe_rejects_more_labels_than_training_points() -> None:
    x, y = _clusters(5, 2, seed=5)
    with pytest.raises(ValueError, match="n_labels"):
        linear_probe_accuracy(x, y, x, y, 11, seed=0)


# --- gaussian_log_density --------------------------------------------------------------------


def test_gaussian_log_density_matches_torch_normal_summed_over_dims() -> None:
    g = _gen(15)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    z = torch.randn(6, 4, 3, generator=g)  # broadcasts over a leading sample dimension
    want = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), want)


# --- nll_iwae --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Posterior:
    mu: torch.Tensor
    logvar: torch.Tensor


class _LinearGaussianModel(torch.nn.Module):
    """p(z) = N(0, I_2), p(x|z) = N(W z + b, sigma^2 I_5); x is shaped [B, 1, 1, 5].

    W has orthogonal columns, so the exact posterior N(M^-1 W^T (x - b) / sigma^2, M^-1) with
    M = I + W^T W / sigma^2 is diagonal. ``mean_shift``/``logvar_shift`` spoil the encoder.
    """

    latent_dim = 2

    def __init__(self, mean_shift: float = 0.0, logvar_shift: float = 0.0) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(5, 2, generator=_gen(16), dtype=torch.float64))
        self.weight = torch.nn.Parameter(q * torch.tensor([2.0, 0.7], dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        self.sigma = 0.5
        self.mean_shift, self.logvar_shift = mean_shift, logvar_shift

    def precision(self) -> torch.Tensor:
        return 1.0 + (self.weight**2).sum(0) / self.sigma**2  # diagonal of M

    def encode(self, x: torch.Tensor) -> _Posterior:
        flat = x.reshape(x.shape[0], -1)
        mu = (flat - self.bias) @ self.weight / self.sigma**2 / self.precision()
        logvar = -torch.log(self.precision()).expand_as(mu)
        return _Posterior(mu + self.mean_shift, logvar + self.logvar_shift)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.weight.T + self.bias
        return Normal(mean, self.sigma).log_prob(x.reshape(x.shape[0], -1)).sum(-1)

    def sample_x(self, n: int, seed: int) -> torch.Tensor:
        g = _gen(seed)
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        noise = self.sigma * torch.randn(n, 5, generator=g, dtype=torch.float64)
        return (z @ self.weight.T + self.bias + noise).detach().reshape(n, 1, 1, 5)

    def true_nll(self, x: torch.Tensor) -> float:
        cov = self.weight @ self.weight.T + self.sigma**2 * torch.eye(5, dtype=torch.float64)
        marginal = MultivariateNormal(self.bias, covariance_matrix=cov)
        with torch.no_grad():
            return float(-marginal.log_prob(x.reshape(x.shape[0], -1)).mean())


@pytest.mark.parametrize(("k", "batch_size"), [(1, 4096), (5, 3), (20, 7)])
def test_iwae_with_the_exact_posterior_is_exact_for_any_k(k, batch_size) -> None:
    # log p(x, z) - log p(z|x) = log p(x) for every z; small batch sizes split images and samples.
    model = _LinearGaussianModel()
    x = model.sample_x(50, seed=17)
    got = nll_iwae(model, x, k, batch_size=batch_size, generator=_gen(18))
    assert got == pytest.approx(model.true_nll(x), rel=1e-9)


def test_iwae_with_a_poor_posterior_is_an_upper_bound_that_tightens_with_k() -> None:
    # The bound holds in expectation; over 1,000 images the k = 200 estimate scatters by a few
    # thousandths of a nat around its (tiny) gap, hence the 0.005 slack below the true value.
    model = _LinearGaussianModel(mean_shift=0.15, logvar_shift=0.5)
    x = model.sample_x(1000, seed=19)
    true = model.true_nll(x)
    values = [nll_iwae(model, x, k, generator=_gen(20)) for k in (1, 10, 200)]
    assert values[0] > values[1] > values[2] > true - 0.005
    assert values[0] - true > 0.2  # the spoilt encoder gives a visibly loose ELBO (k = 1)
    assert values[2] - true < 0.02


def test_iwae_restores_the_training_flag_and_needs_no_gradients() -> None:
    model = _LinearGaussianModel()
    model.train()
    nll_iwae(model, model.sample_x(4, seed=21), 3, generator=_gen(22))
    assert model.training
    assert model.weight.grad is None


# --- memory: no N x N matrix -----------------------------------------------------------------

_MEMORY_SCRIPT = """
import json, resource, sys, time
import torch
from infovae_core.metrics import mmd, mutual_information
n, d = int(sys.argv[1]), int(sys.argv[2])
g = torch.Generator().manual_seed(0)
x, y = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
logvar = torch.randn(n, d, generator=g) - 1.0
mmd(x[:64], y[:64]); mutual_information(x[:64], logvar[:64], generator=g)  # warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter(); mmd(x, y); t1 = time.perf_counter()
mid = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
mutual_information(x, logvar, generator=g); t2 = time.perf_counter()
end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mmd_mb": (mid - base) / 1024, "mi_mb": (end - mid) / 1024,
                  "mmd_s": t1 - t0, "mi_s": t2 - t1}))
"""


def _peak_growth(n: int, d: int) -> dict[str, float]:
    """Peak-RSS growth (MB; ru_maxrss is KiB on Linux) in a fresh interpreter.

    One thread: memory does not depend on it, and many small parallel regions crawl on a busy
    two-core machine.
    """
    root = str(Path(__file__).resolve().parents[2])  # the repository, importable as-is
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(d)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ")
def test_mmd_and_mi_never_hold_an_n_by_n_matrix() -> None:
    # 8,000 points: one N x N float32 matrix alone would add 256 MB (float64: 512 MB); the
    # chunked versions add a few 1024 x 1024 blocks.
    growth = _peak_growth(8_000, 2)
    assert growth["mmd_mb"] < 150, growth
    assert growth["mi_mb"] < 150, growth


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss units differ")
def test_sixty_thousand_latents_of_dimension_64_stay_well_under_2_gb() -> None:
    growth = _peak_growth(60_000, 64)
    assert growth["mmd_mb"] < 1000, growth
    assert growth["mi_mb"] < 1000, growth


@pytest.mark.parametrize("logvar", [-40.0, -20.0])
def test_mutual_information_of_near_deterministic_distinct_codes_is_log_n(logvar: float) -> None:
    # No KL term (alpha = 1) drives posterior variances towards 0: the codes of distinct
    # images are then far apart in units of their spread, so I(x; z) = log N exactly. The
    # expanded quadratic form cancels terms of size mu^2 / v ~ 1e18 here and must not be used
    # for the entries that matter (issue: an MNIST trial reported -920 nats).
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(500, 16, generator=g) * 3.0
    estimate = mutual_information(
        mu, torch.full_like(mu, logvar), generator=torch.Generator().manual_seed(1)
    )
    assert estimate == pytest.approx(math.log(500), abs=1e-6)


def test_mutual_information_sees_near_duplicate_codes_as_one() -> None:
    # Two copies of every code (tiny variance): q(z) has N / 2 distinct components, so
    # I(x; z) = log(N / 2), which the expansion alone gets wrong for the duplicate pairs.
    g = torch.Generator().manual_seed(0)
    half = torch.randn(250, 16, generator=g) * 3.0
    mu = torch.cat([half, half])
    estimate = mutual_information(
        mu, torch.full_like(mu, -40.0), generator=torch.Generator().manual_seed(1)
    )
    assert estimate == pytest.approx(math.log(250), abs=1e-6)
