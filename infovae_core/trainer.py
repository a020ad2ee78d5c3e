"""Train and evaluate one configuration: :func:`fit`.

Seeded and reproducible on a given device: ``train.seed`` seeds parameter initialisation, the
reparameterisation noise, batch order and dynamic binarisation. The per-epoch validation pass
draws its noise from a forked RNG, so the training trajectory does not depend on how (or on how
many images) we validate: the same seed trains the same model as a plain loop over the same
streams (tests/core/test_trainer.py pins both). Each split is one tensor on the
trial's device and batches are index slices of it (no per-sample DataLoader). Loss terms are
accumulated on the device and read once per epoch, so the GPU is never synchronised per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from infovae_core.config import TrainConfig, TrialConfig
from infovae_core.data import DatasetSplits, Split, binarize, load_dataset, static_binarize
from infovae_core.evaluation import evaluate
from infovae_core.models import VAE, build_model
from infovae_core.objective import TERM_NAMES, build_divergence, infovae_loss


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term.

    ``epoch`` (1-based) and ``terms`` say where."""

    def __init__(self, epoch: int, terms: dict[str, float]):
        self.epoch = epoch
        self.terms = dict(terms)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at epoch {epoch}: {shown}")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training terms and validation terms (names in ``TERM_NAMES``, nats per
    image) and the epoch's wall-clock seconds. ``train`` has no ``divergence`` when its weight
    alpha + lambda - 1 is 0: D is then not trained through and is measured on validation only."""

    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    seconds: float


EpochCallback = Callable[[EpochRecord], None]


@dataclass(frozen=True)
class FitResult:
    """What one trial produced: evaluation ``metrics`` (the names of docs/metrics.md
    without the ``metric.`` prefix), the per-epoch ``history``, timings, the device used, and
    small artefacts for reports:
    ``latents`` [n, d] (z ~ q(z|x) on test points), ``samples`` [n, C, H, W] (decoder means of
    prior draws) and ``reconstructions`` [2, n, C, H, W] (test inputs, then their reconstructions).
    """

    metrics: dict[str, float]
    history: list[EpochRecord]
    train_seconds: float
    eval_seconds: float
    device: str
    latents: np.ndarray
    samples: np.ndarray
    reconstructions: np.ndarray
    model: nn.Module = field(repr=False, compare=False)
    notes: tuple[str, ...] = ()


def learning_rate(train: TrainConfig, step: int, total_steps: int) -> float:
    """Adam's rate for gradient step ``step`` (0-based) of ``total_steps``.

    ``constant``: ``train.lr``. ``cosine``: ``lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2``
    with t = ``step`` and T = ``total_steps``: ``lr`` at the first step, falling to just above
    ``lr_min`` at the last. A pure function of the step (no scheduler state to save).
    """
    if train.lr_schedule == "constant" or total_steps <= 0:
        return train.lr
    fraction = min(max(step, 0), total_steps) / total_steps
    return train.lr_min + (train.lr - train.lr_min) * 0.5 * (1.0 + math.cos(math.pi * fraction))


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _prepare(split: Split, mode: str, generator: torch.Generator) -> Split:
    """Images as the likelihood sees them outside training: binarised once (seeded) unless
    ``mode`` is ``none``."""
    if mode == "none":
        return split
    return Split(images=binarize(split.images, generator), labels=split.labels)


def _mean_terms(model: VAE, divergence, images: Tensor, config: TrialConfig) -> dict[str, float]:
    batch_size = config.train.batch_size
    sums = torch.zeros(len(TERM_NAMES), device=images.device)
    count = 0
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size]
            if x.shape[0] < 2:
                continue
            output = model(x)
            terms = infovae_loss(output, divergence(output.z), config.objective)
            sums += terms.stacked() * x.shape[0]
            count += x.shape[0]
    values = (sums / max(count, 1)).tolist()
    return dict(zip(TERM_NAMES, values, strict=True))


def fit(
    config: TrialConfig,
    data: DatasetSplits | None = None,
    callback: EpochCallback | None = None,
) -> FitResult:
    """Train ``config`` and evaluate it on the test split.

    Args:
        config: the whole trial (data, model, objective, training, evaluation).
        data: already-loaded splits (grey levels, any device), as
            ``load_dataset(config.data)`` returns them (``data.train_size`` already applied);
            loaded from ``config.data`` when None. The sweep passes them so that a dataset is
            loaded once per worker.
        callback: called after every epoch with its :class:`EpochRecord` (for logging,
            reporting to a scheduler, or stopping by raising).

    Returns:
        :class:`FitResult` with every evaluation metric of docs/metrics.md.

    Raises:
        NonFiniteLossError: a training or validation term became NaN or infinite.
    """
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    splits = (data if data is not None else load_dataset(config.data)).to(device)
    mode = config.data.binarize
    if mode == "static":
        splits = static_binarize(splits, config.data.seed)
        mode = "none"  # already binary: nothing more to sample

    model = build_model(config.model, splits.image_shape).to(device)
    notes: list[str] = []
    use_amp = config.train.amp and device.type == "cuda"
    train_model: nn.Module = model
    if config.train.compile and device.type == "cuda":
        train_model = torch.compile(model)
    for key, wanted in (("train.amp", config.train.amp), ("train.compile", config.train.compile)):
        if wanted and device.type != "cuda":
            notes.append(f"{key} ignored on {device.type}: it applies to CUDA devices only")
    divergence = build_divergence(config.objective, config.model.latent_dim, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    eval_generator = torch.Generator(device=device).manual_seed(config.eval.seed)
    val_split = _prepare(splits.val, mode, eval_generator)
    val_images = val_split.images
    if config.train.val_points is not None:
        val_images = val_images[: config.train.val_points]

    train_images = splits.train.images
    n_train = train_images.shape[0]
    batch_size = min(config.train.batch_size, n_train)
    epochs = config.planned_epochs(n_train)
    steps_per_epoch = config.batches_per_epoch(n_train)
    total_steps = epochs * steps_per_epoch
    scheduled = config.train.lr_schedule != "constant"
    history: list[EpochRecord] = []
    # With a zero divergence weight (ELBO, beta-VAE) D is only logged, never trained through.
    weighted = config.objective.divergence_weight > 0
    not_trained = torch.zeros((), device=device)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        epoch_images = binarize(train_images, generator) if mode == "dynamic" else train_images
        order = torch.randperm(n_train, generator=generator, device=device)
        sums = torch.zeros(len(TERM_NAMES), device=device)
        seen = 0
        for batch_number, start in enumerate(range(0, n_train, batch_size)):
            index = order[start : start + batch_size]
            if index.shape[0] < 2:  # a batch-level divergence needs at least two codes
                continue
            if scheduled:
                step = (epoch - 1) * steps_per_epoch + batch_number
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config.train, step, total_steps)
            x = epoch_images[index]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                output = train_model(x)
                # With a zero weight (ELBO, beta-VAE) D is not part of training at all: it is
                # measured on the validation split only (train.divergence is left out).
                estimate = divergence(output.z) if weighted else not_trained
                terms = infovae_loss(output, estimate, config.objective)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            if weighted:
                divergence.update(output.z.detach())
            sums += terms.stacked() * x.shape[0]
            seen += x.shape[0]
        train_terms = dict(zip(TERM_NAMES, (sums / max(seen, 1)).tolist(), strict=True))
        if not weighted:
            del train_terms["divergence"]
        if not all(np.isfinite(list(train_terms.values()))):
            raise NonFiniteLossError(epoch, train_terms)
        model.eval()
        # Validation draws its noise from a forked global RNG: how often and on how many images
        # we validate must not change the training trajectory (the same seed trains the same
        # model whatever train.val_points is).
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            val_terms = _mean_terms(model, divergence, val_images, config)
        if not all(np.isfinite(list(val_terms.values()))):
            raise NonFiniteLossError(epoch, {f"val.{k}": v for k, v in val_terms.items()})
        record = EpochRecord(epoch, train_terms, val_terms, time.perf_counter() - epoch_start)
        history.append(record)
        if callback is not None:
            callback(record)
    train_seconds = time.perf_counter() - started

    eval_start = time.perf_counter()
    model.eval()
    test_split = _prepare(splits.test, mode, eval_generator)
    probe_split = _prepare(splits.train, mode, eval_generator)
    evaluation = evaluate(model, probe_split, test_split, config.eval, device)
    n_images = 64
    samples = model.sample(n_images, generator=eval_generator)
    originals = test_split.images[: min(n_images, len(test_split.images))]
    reconstructions = torch.stack([originals, model.reconstruct(originals)])
    eval_seconds = time.perf_counter() - eval_start

    return FitResult(
        metrics=dict(evaluation.metrics),
        history=history,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        device=str(device),
        latents=evaluation.latents,
        samples=samples.float().cpu().numpy(),
        reconstructions=reconstructions.float().cpu().numpy(),
        model=model,
        notes=tuple(notes),
    )
