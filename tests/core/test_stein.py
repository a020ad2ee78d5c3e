"""Stein variational gradient: the SVGD direction and the kernelized Stein discrepancy against
autograd computations of their definitions, and SVGD steps that carry a sample to N(0, I)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from infovae_core.config import ObjectiveConfig
from infovae_core.divergences import (
    SteinDivergence,
    kernelized_stein_discrepancy,
    median_heuristic_bandwidth,
    mmd_squared,
    svgd_direction,
)
from infovae_core.objective import build_divergence


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation, which stalls on busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sample(n: int, d: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def _k(a: torch.Tensor, b: torch.Tensor, h: float) -> torch.Tensor:
    return torch.exp(-((a - b) ** 2).sum() / h)


def _log_prior(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) up to a constant: its gradient is the score."""
    return -0.5 * (z**2).sum()


def test_median_bandwidth_is_median_pair_distance_over_log_n_plus_one():
    z = _sample(9, 3)
    pairs = [float(((z[i] - z[j]) ** 2).sum()) for i in range(9) for j in range(i + 1, 9)]
    expected = statistics.median_low(pairs) / math.log(10)  # 36 pairs: the lower middle one
    assert float(median_heuristic_bandwidth(z)) == pytest.approx(expected, rel=1e-12)


def test_svgd_direction_matches_definition_by_autograd():
    z = _sample(6, 2, shift=0.7, seed=1)
    h = 1.3
    expected = torch.zeros_like(z)
    for i in range(6):
        for j in range(6):
            zj = z[j].clone().requires_grad_(True)
            score = torch.autograd.grad(_log_prior(zj), zj)[0]
            kernel = _k(zj, z[i], h)
            grad_k = torch.autograd.grad(kernel, zj)[0]
            expected[i] += (kernel.detach() * score + grad_k) / 6
    torch.testing.assert_close(svgd_direction(z, h), expected)


def _stein_kernel(a: torch.Tensor, b: torch.Tensor, h: float) -> float:
    """u(a, b) = s(a).s(b) k + s(a).grad_b k + s(b).grad_a k + tr(grad_a grad_b k), by autograd."""
    a = a.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    s_a = torch.autograd.grad(_log_prior(a), a)[0]
    s_b = torch.autograd.grad(_log_prior(b), b)[0]
    k = _k(a, b, h)
    grad_a, grad_b = torch.autograd.grad(k, (a, b), create_graph=True)
    trace = sum(torch.autograd.grad(grad_b[m], a, retain_graph=True)[0][m] for m in range(len(a)))
    value = (s_a @ s_b) * k + s_a @ grad_b + s_b @ grad_a + trace
    return float(value.detach())


def test_kernelized_stein_discrepancy_matches_stein_kernel_by_autograd():
    z = _sample(5, 3, shift=0.4, seed=2)
    h = 2.1
    u = [[_stein_kernel(z[i], z[j], h) for j in range(5)] for i in range(5)]
    v_statistic = sum(map(sum, u)) / 25
    u_statistic = sum(u[i][j] for i in range(5) for j in range(5) if i != j) / 20
    assert float(kernelized_stein_discrepancy(z, h, unbiased=False)) == pytest.approx(
        v_statistic, rel=1e-10
    )
    assert float(kernelized_stein_discrepancy(z, h)) == pytest.approx(u_statistic, rel=1e-10)


def _phi_at(z: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """phi(y) = (1/n) sum_j [k(z_j, y) (-z_j) + grad_{z_j} k(z_j, y)], differentiable in y."""
    k = torch.exp(-((z - y) ** 2).sum(1) / h)  # [n]
    grad_k = (2.0 / h) * (y - z) * k[:, None]  # d/dz_j exp(-||z_j - y||^2 / h)
    return (k[:, None] * (-z) + grad_k).mean(0)


def test_biased_stein_discrepancy_equals_stein_operator_applied_to_svgd_direction():
    # Stein's identity route: (1/n) sum_i [s(z_i) . phi(z_i) + div phi(z_i)] = (1/n^2) sum_ij u,
    # with the divergence of phi taken by autograd.
    z = _sample(7, 2, shift=0.8, seed=3)
    h = 1.7
    total = 0.0
    for i in range(7):
        y = z[i].clone().requires_grad_(True)
        phi = _phi_at(z, y, h)
        div = sum(torch.autograd.grad(phi[m], y, retain_graph=True)[0][m] for m in range(2))
        total += float((-z[i]) @ phi.detach() + div.detach())
    assert float(kernelized_stein_discrepancy(z, h, unbiased=False)) == pytest.approx(
        total / 7, rel=1e-10
    )


def test_stein_discrepancy_near_zero_for_prior_sample_and_large_for_shifted_one():
    prior = kernelized_stein_discrepancy(_sample(400, 4, seed=3))
    shifted = kernelized_stein_discrepancy(_sample(400, 4, shift=1.5, seed=3))
    assert abs(float(prior)) < 0.01
    assert float(shifted) > 0.2


def test_svgd_steps_move_a_sample_towards_the_prior():
    z = 0.5 * _sample(100, 2, seed=4) + torch.tensor([3.0, -2.0], dtype=torch.float64)
    reference = _sample(500, 2, seed=5)
    before = float(mmd_squared(z, reference))
    for _ in range(300):
        z = z + 0.5 * svgd_direction(z)
    after = float(mmd_squared(z, reference))
    assert after < 0.05 * before
    assert z.mean(0).abs().max() < 0.3
    assert (z.std(0) - 1).abs().max() < 0.3


def test_stein_divergence_gradient_is_minus_svgd_direction_over_n():
    z = _sample(8, 3, shift=1.0, seed=6).requires_grad_(True)
    value = SteinDivergence()(z)
    value.backward()
    torch.testing.assert_close(z.grad, -svgd_direction(z) / 8)


def test_stein_divergence_value_is_the_kernelized_stein_discrepancy():
    z = _sample(8, 3, shift=1.0, seed=7).requires_grad_(True)
    value = SteinDivergence()(z)
    assert value.dim() == 0
    torch.testing.assert_close(value.detach(), kernelized_stein_discrepancy(z))


def test_gradient_step_on_encoder_parameters_moves_codes_along_svgd_direction():
    # z = x W: one small step on W against the Stein term moves z by lr * x x^T phi / n.
    g = torch.Generator().manual_seed(8)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    weight = (torch.randn(4, 2, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
    z = x @ weight
    SteinDivergence()(z).backward()
    phi = svgd_direction(z)
    with torch.no_grad():
        moved = x @ (weight - 1e-3 * weight.grad)
    # Moving along phi: the step has a positive inner product with phi.
    assert float(((moved - z.detach()) * phi).sum()) > 0


def test_build_divergence_gives_stein_for_stein_setting():
    estimator = build_divergence(ObjectiveConfig(divergence="stein", lambda_=10.0), latent_dim=3)
    assert isinstance(estimator, SteinDivergence)
    assert estimator.update(torch.zeros(4, 3)) is None


def test_svgd_needs_two_particles():
    with pytest.raises(ValueError, match="n >= 2"):
        svgd_direction(torch.zeros(1, 3))
