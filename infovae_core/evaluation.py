"""Post-training evaluation of one model: every metric of docs/metrics.md, seeded.

:func:`evaluate` returns an :class:`EvaluationResult` whose ``metrics`` keys are the metric
names without the ``metric.`` prefix the results store adds:

========================  =====================================================================
``mmd``                   unbiased MMD^2 (RBF, s = 1) between z_i ~ q(z|x_i) on the evaluation
                          points and as many N(0, I) draws
``log_det_cov``           log det of the sample covariance of those z_i
``mutual_info``           I_q(x; z), exact mixture over the evaluation points, nats
``mutual_info_cap``       log N of those N evaluation points: the most ``mutual_info`` can show
``nll_iwae``              -log p(x), IWAE with ``iwae_samples`` on the first ``iwae_points``
                          test images, nats per image
``recon``                 E_q log p(x|z) with one sample, nats per image (test mean)
``kl``                    KL(q(z|x) || N(0, I)), nats per image (test mean)
``elbo``                  ``recon - kl``
``active_units``          dims with Cov_x(E_q[z_d]) > 0.01 over the test split
``probe_acc_<n>``         linear probe on n labelled training means, accuracy on test means
========================  =====================================================================

The evaluation points are the whole test split, or a seeded random subset of
``config.max_points`` of them. A ``probe_acc_<n>`` with n larger than the training split is
SKIPPED (the key is absent) rather than computed on fewer labels under a misleading name; so
are all the probes when the training or test split has no labels (``labels`` None).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from infovae_core.config import EvalConfig
from infovae_core.divergences import gaussian_kl_to_standard_normal
from infovae_core.metrics import (
    active_units,
    eval_mode,
    linear_probe_accuracy,
    log_det_cov,
    mmd,
    mutual_information,
    nll_iwae,
    sample_standard_normal,
)

__all__ = ["EvaluationResult", "GaussianPosterior", "LatentVariableModel", "SplitLike", "evaluate"]

EVAL_BATCH_SIZE = 512  # images per encoder/decoder call


@runtime_checkable
class GaussianPosterior(Protocol):
    """What ``encode`` returns: a diagonal Gaussian q(z|x) = N(mu, diag(exp(logvar)))."""

    mu: Tensor  # [B, d]
    logvar: Tensor  # [B, d]


class LatentVariableModel(Protocol):
    """The duck type :func:`evaluate` and :func:`infovae_core.metrics.nll_iwae` need.

    A ``torch.nn.Module`` (``eval()``, ``train()``, ``parameters()``) with a prior N(0, I) and:

    - ``latent_dim``: d.
    - ``encode(x [B, C, H, W]) -> posterior`` with ``.mu`` and ``.logvar``, both ``[B, d]``.
    - ``log_likelihood(x [B, C, H, W], z [B, d]) -> [B]``: log p(x|z) in nats, summed over
      pixels.
    """

    latent_dim: int
    training: bool

    def encode(self, x: Tensor) -> GaussianPosterior: ...

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor: ...

    def eval(self) -> LatentVariableModel: ...

    def train(self, mode: bool = True) -> LatentVariableModel: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...


class SplitLike(Protocol):
    """A data split: ``images [N, C, H, W]`` (prepared for the likelihood) and ``labels [N]``
    (None: no labels, hence no probe metrics)."""

    @property
    def images(self) -> Tensor | np.ndarray: ...

    @property
    def labels(self) -> Tensor | np.ndarray | None: ...


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one trained model.

    Attributes:
        metrics: metric name (without ``metric.``) to value; see the module docstring.
        latents: ``[min(N_test, latents_to_keep), d]`` float32 draws z ~ q(z|x) for the first
            test points, for reports.
    """

    metrics: dict[str, float]
    latents: np.ndarray


@dataclass(frozen=True)
class _Encoded:
    mu: Tensor  # [N, d], CPU float32
    logvar: Tensor  # [N, d]


def _images(split: SplitLike, name: str) -> Tensor:
    images = torch.as_tensor(split.images)
    if images.dim() != 4:
        raise ValueError(f"{name}.images: must be [N, C, H, W], got shape {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise ValueError(f"{name}.images: needs at least 2 images, got {images.shape[0]}")
    if not images.is_floating_point():
        images = images.to(torch.float32)
    return images


def _labels(split: SplitLike, name: str, n: int) -> np.ndarray | None:
    labels = split.labels
    if labels is None:
        return None
    labels = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    labels = labels.reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"{name}.labels: {labels.shape[0]} labels for {n} images")
    return labels


def _encode_all(model: LatentVariableModel, images: Tensor, device: torch.device) -> _Encoded:
    mus, logvars = [], []
    for start in range(0, images.shape[0], EVAL_BATCH_SIZE):
        posterior = model.encode(images[start : start + EVAL_BATCH_SIZE].to(device))
        mus.append(posterior.mu.float().cpu())
        logvars.append(posterior.logvar.float().cpu())
    return _Encoded(mu=torch.cat(mus), logvar=torch.cat(logvars))


def evaluate(
    model: LatentVariableModel,
    train: SplitLike,
    test: SplitLike,
    config: EvalConfig,
    device: torch.device | str,
) -> EvaluationResult:
    """Compute every evaluation metric of ``model`` on ``test`` (probes also use ``train``).

    Runs in eval mode under ``torch.no_grad`` (the model's training flag is restored), in
    batches of ``EVAL_BATCH_SIZE`` images, with its own ``torch.Generator`` seeded by
    ``config.seed`` on the CPU (never the global RNG), so results do not depend on the device.
    The model must already be on ``device``; images are moved there batch by batch.

    Args:
        model: see :class:`LatentVariableModel`.
        train: training split (only its encoder means and labels, for the probes).
        test: test split; images already prepared for the likelihood.
        config: evaluation sizes and seed.
        device: where the model runs.

    Returns:
        :class:`EvaluationResult` with the metrics of the module docstring.
    """
    device = torch.device(device)
    test_images = _images(test, "test")
    test_labels = _labels(test, "test", test_images.shape[0])
    train_images = _images(train, "train")
    train_labels = _labels(train, "train", train_images.shape[0])
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    n_test = test_images.shape[0]
    metrics: dict[str, float] = {}

    with eval_mode(model):
        # Test pass: posteriors, one z per image, recon and KL.
        mus, logvars, zs, recon_sum, kl_sum = [], [], [], 0.0, 0.0
        for start in range(0, n_test, EVAL_BATCH_SIZE):
            xb = test_images[start : start + EVAL_BATCH_SIZE].to(device)
            posterior = model.encode(xb)
            mu, logvar = posterior.mu, posterior.logvar
            eps = sample_standard_normal(mu.shape, generator, mu.device, mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
            recon_sum += float(model.log_likelihood(xb, z).double().sum())
            kl_sum += float(gaussian_kl_to_standard_normal(mu, logvar).double().sum())
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
            zs.append(z.float().cpu())
        mu_all, logvar_all, z_all = torch.cat(mus), torch.cat(logvars), torch.cat(zs)
        metrics["recon"] = recon_sum / n_test
        metrics["kl"] = kl_sum / n_test
        metrics["elbo"] = metrics["recon"] - metrics["kl"]
        metrics["active_units"] = float(active_units(mu_all))

        # Aggregate-posterior metrics on the evaluation points.
        if config.max_points is not None and config.max_points < n_test:
            points = torch.randperm(n_test, generator=generator)[: config.max_points]
        else:
            points = torch.arange(n_test)
        z_points = z_all[points]
        # Metrics run where the model runs: chunked blocks are far faster on a GPU.
        prior = sample_standard_normal(z_points.shape, generator, device, torch.float32)
        metrics["mmd"] = mmd(z_points.to(device), prior, kernel="rbf", scales=(1.0,), unbiased=True)
        metrics["log_det_cov"] = log_det_cov(z_points)
        metrics["mutual_info"] = mutual_information(
            mu_all[points].to(device), logvar_all[points].to(device), generator=generator
        )
        # Each term of the estimator is at most log N: models at the cap cannot be told apart.
        metrics["mutual_info_cap"] = math.log(points.numel())

        iwae_images = test_images[: config.iwae_points]
        metrics["nll_iwae"] = nll_iwae(model, iwae_images, config.iwae_samples, generator=generator)

        # Probes on posterior means (docs/metrics.md); n beyond the training split is skipped,
        # and every probe when there are no labels (absent, never a made-up zero).
        has_labels = train_labels is not None and test_labels is not None
        probe_sizes = config.probe_labels if has_labels else ()
        train_mu = _encode_all(model, train_images, device).mu.numpy() if probe_sizes else None
        for n_labels in probe_sizes:
            if n_labels > train_images.shape[0]:
                continue
            metrics[f"probe_acc_{n_labels}"] = linear_probe_accuracy(
                train_mu, train_labels, mu_all.numpy(), test_labels, n_labels, config.seed
            )

    keep = min(n_test, config.latents_to_keep)
    latents = z_all[:keep].numpy().astype(np.float32, copy=True)
    if keep == 0:
        latents = np.zeros((0, mu_all.shape[1]), dtype=np.float32)
    return EvaluationResult(metrics=metrics, latents=latents)
