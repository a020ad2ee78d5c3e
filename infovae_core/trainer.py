"""Train and evaluate one configuration: :func:`fit`.

Seeded and reproducible on a given device: ``train.seed`` seeds parameter initialisation, the
reparameterisation noise, batch order and dynamic binarisation. The per-epoch validation pass
draws its noise from a forked RNG, so the training trajectory does not depend on how (or on how
many images) we validate: the same seed trains the same model as a plain loop over the same
streams (tests/core/test_trainer.py pins both). Each split is one tensor on the trial's device
and batches are index slices of it (no per-sample DataLoader). Loss terms are accumulated on the
device and read once per epoch, so the GPU is never synchronised per step.

Checkpoints: every ``train.checkpoint_every`` epochs (once ``train.checkpoint_min_seconds`` of
training have passed since the last one) :func:`fit` hands a :class:`TrainState`
(model, optimisers, every RNG stream, the history so far) to its ``checkpoint`` callback;
``fit(..., resume_from=state)`` continues from it and, on the CPU, ends with exactly the
parameters and metrics of the uninterrupted run (tests/core/test_trainer_checkpoints.py); on a
GPU, as close as two uninterrupted runs are (CUDA kernels are not bitwise deterministic).
:meth:`TrainState.state_dict` is plain tensors and numbers, saved with ``torch.save`` and read
back with ``torch.load(weights_only=True)`` (nothing is unpickled). Where the state is stored
is the caller's business.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
class TrainState:
    """Everything :func:`fit` needs to continue a run after ``epoch`` completed epochs.

    ``model``, ``optimizer`` and ``divergence`` are ``state_dict``s (``divergence`` is empty for
    an estimator without parameters; the adversarial one holds its discriminator and its
    optimiser); ``rng`` the states of every random stream the trainer draws from (torch's
    global CPU and CUDA generators, the trainer's data-order/binarisation generator, the
    evaluation generator, NumPy's and Python's global generators); ``history`` the epochs so
    far; ``train_seconds`` the training time they took.
    """

    epoch: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    divergence: dict[str, Any]
    rng: dict[str, Any]
    history: tuple[EpochRecord, ...]
    train_seconds: float

    def state_dict(self) -> dict[str, Any]:
        """Plain containers of tensors, numbers and strings: ``torch.save`` writes it and
        ``torch.load(..., weights_only=True)`` reads it back."""
        return {
            "version": 1,
            "epoch": self.epoch,
            "model": self.model,
            "optimizer": self.optimizer,
            "divergence": self.divergence,
            "rng": self.rng,
            "history": [
                {"epoch": r.epoch, "train": r.train, "val": r.val, "seconds": r.seconds}
                for r in self.history
            ],
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainState:
        if state.get("version") != 1:
            raise ValueError(f"unknown TrainState version {state.get('version')!r}")
        history = tuple(
            EpochRecord(int(r["epoch"]), dict(r["train"]), dict(r["val"]), float(r["seconds"]))
            for r in state["history"]
        )
        return cls(
            epoch=int(state["epoch"]),
            model=state["model"],
            optimizer=state["optimizer"],
            divergence=state["divergence"],
            rng=state["rng"],
            history=history,
            train_seconds=float(state["train_seconds"]),
        )

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> TrainState:
        """Read a file written by :meth:`save` (``weights_only``: tensors and plain data only)."""
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))


CheckpointCallback = Callable[[TrainState], None]


def _rng_state(device: torch.device, generators: dict[str, torch.Generator]) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    version, mt, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        **{name: g.get_state() for name, g in generators.items()},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(
    state: dict[str, Any], device: torch.device, generators: dict[str, torch.Generator]
) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    for name, generator in generators.items():
        generator.set_state(state[name])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _snapshot(value: Any) -> Any:
    """A CPU copy of a (nested) state: training goes on mutating the live tensors in place."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((k, _snapshot(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_snapshot(v) for v in value)
    return value


def _divergence_state(divergence) -> dict[str, Any]:
    """Parameters and optimiser of an estimator that has them (the adversarial one)."""
    state: dict[str, Any] = {}
    for name in ("discriminator", "optimizer"):
        part = getattr(divergence, name, None)
        if part is not None:
            state[name] = part.state_dict()
    return state


def _load_divergence_state(divergence, state: dict[str, Any]) -> None:
    for name, part_state in state.items():
        getattr(divergence, name).load_state_dict(part_state)


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


@dataclass
class _Training:
    """What every epoch of one run uses: the model (and the module that trains it, compiled or
    not), the divergence estimator, the optimiser and the two random streams."""

    config: TrialConfig
    device: torch.device
    model: VAE
    train_model: nn.Module
    divergence: Any
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    eval_generator: torch.Generator
    #: Binarisation still to apply to each batch (``none`` once a static one is done).
    mode: str
    use_amp: bool

    @property
    def generators(self) -> dict[str, torch.Generator]:
        return {"generator": self.generator, "eval_generator": self.eval_generator}

    @property
    def weighted(self) -> bool:
        """Whether D is trained through: with a zero weight (ELBO, beta-VAE) it is only
        measured on the validation split."""
        return self.config.objective.divergence_weight > 0


def _load_splits(
    config: TrialConfig, data: DatasetSplits | None, device: torch.device
) -> tuple[DatasetSplits, str]:
    """The splits on ``device`` and the binarisation left to do per batch."""
    splits = (data if data is not None else load_dataset(config.data)).to(device)
    mode = config.data.binarize
    if mode == "static":
        splits = static_binarize(splits, config.data.seed)
        mode = "none"  # already binary: nothing more to sample
    return splits, mode


def _build(
    config: TrialConfig,
    splits: DatasetSplits,
    mode: str,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[_Training, list[str]]:
    """The model, divergence and optimiser of a run (drawing their initial parameters from
    torch's global RNG, in this order), and notes on the settings that do not apply."""
    model = build_model(config.model, splits.image_shape).to(device)
    notes: list[str] = []
    train_model: nn.Module = model
    if config.train.compile and device.type == "cuda":
        train_model = torch.compile(model)
    for key, wanted in (("train.amp", config.train.amp), ("train.compile", config.train.compile)):
        if wanted and device.type != "cuda":
            notes.append(f"{key} ignored on {device.type}: it applies to CUDA devices only")
    divergence = build_divergence(config.objective, config.model.latent_dim, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    eval_generator = torch.Generator(device=device).manual_seed(config.eval.seed)
    run = _Training(
        config=config,
        device=device,
        model=model,
        train_model=train_model,
        divergence=divergence,
        optimizer=optimizer,
        generator=generator,
        eval_generator=eval_generator,
        mode=mode,
        use_amp=config.train.amp and device.type == "cuda",
    )
    return run, notes


def _resume(run: _Training, state: TrainState) -> tuple[list[EpochRecord], int, float]:
    """Load ``state`` into the run: its history, the first epoch to train, the seconds spent."""
    run.model.load_state_dict(state.model)
    run.optimizer.load_state_dict(state.optimizer)
    _load_divergence_state(run.divergence, state.divergence)
    _set_rng_state(state.rng, run.device, run.generators)
    return list(state.history), state.epoch + 1, state.train_seconds


def _train_epoch(run: _Training, images: Tensor, epoch: int) -> dict[str, float]:
    """One pass over the training images in a random order; the mean terms per image."""
    config, device, optimizer = run.config, run.device, run.optimizer
    n_train = images.shape[0]
    batch_size = min(config.train.batch_size, n_train)
    steps_per_epoch = config.batches_per_epoch(n_train)
    total_steps = config.planned_epochs(n_train) * steps_per_epoch
    scheduled = config.train.lr_schedule != "constant"
    not_trained = torch.zeros((), device=device)
    run.model.train()
    epoch_images = binarize(images, run.generator) if run.mode == "dynamic" else images
    order = torch.randperm(n_train, generator=run.generator, device=device)
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.use_amp):
            output = run.train_model(x)
            # With a zero weight (ELBO, beta-VAE) D is not part of training at all: it is
            # measured on the validation split only (train.divergence is left out).
            estimate = run.divergence(output.z) if run.weighted else not_trained
            terms = infovae_loss(output, estimate, config.objective)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        if run.weighted:
            run.divergence.update(output.z.detach())
        sums += terms.stacked() * x.shape[0]
        seen += x.shape[0]
    train_terms = dict(zip(TERM_NAMES, (sums / max(seen, 1)).tolist(), strict=True))
    if not run.weighted:
        del train_terms["divergence"]
    if not all(np.isfinite(list(train_terms.values()))):
        raise NonFiniteLossError(epoch, train_terms)
    return train_terms


def _validate(run: _Training, images: Tensor, epoch: int) -> dict[str, float]:
    """The mean terms on the validation images."""
    run.model.eval()
    # Validation draws its noise from a forked global RNG: how often and on how many images
    # we validate must not change the training trajectory (the same seed trains the same
    # model whatever train.val_points is).
    device = run.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        val_terms = _mean_terms(run.model, run.divergence, images, run.config)
    if not all(np.isfinite(list(val_terms.values()))):
        raise NonFiniteLossError(epoch, {f"val.{k}": v for k, v in val_terms.items()})
    return val_terms


def _train_state(
    run: _Training, epoch: int, history: list[EpochRecord], train_seconds: float
) -> TrainState:
    return TrainState(
        epoch=epoch,
        model=_snapshot(run.model.state_dict()),
        optimizer=_snapshot(run.optimizer.state_dict()),
        divergence=_snapshot(_divergence_state(run.divergence)),
        rng=_rng_state(run.device, run.generators),
        history=tuple(history),
        train_seconds=train_seconds,
    )


def _evaluate_run(
    run: _Training, splits: DatasetSplits
) -> tuple[Any, np.ndarray, np.ndarray]:
    """The test metrics (:func:`~infovae_core.evaluation.evaluate`), 64 samples and 64 test
    images beside their reconstructions."""
    run.model.eval()
    test_split = _prepare(splits.test, run.mode, run.eval_generator)
    probe_split = _prepare(splits.train, run.mode, run.eval_generator)
    evaluation = evaluate(run.model, probe_split, test_split, run.config.eval, run.device)
    n_images = 64
    samples = run.model.sample(n_images, generator=run.eval_generator)
    originals = test_split.images[: min(n_images, len(test_split.images))]
    reconstructions = torch.stack([originals, run.model.reconstruct(originals)])
    return (
        evaluation,
        samples.float().cpu().numpy(),
        reconstructions.float().cpu().numpy(),
    )


def fit(
    config: TrialConfig,
    data: DatasetSplits | None = None,
    callback: EpochCallback | None = None,
    *,
    resume_from: TrainState | None = None,
    checkpoint: CheckpointCallback | None = None,
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
        resume_from: a :class:`TrainState` of an earlier run of the same ``config`` and data:
            training continues after its epoch (its history comes first in the result's).
        checkpoint: called with the :class:`TrainState` after every
            ``train.checkpoint_every``-th epoch (never when it is 0) that ends at least
            ``train.checkpoint_min_seconds`` after the start or the last checkpoint, before that
            epoch's ``callback``.

    Returns:
        :class:`FitResult` with every evaluation metric of docs/metrics.md.

    Raises:
        NonFiniteLossError: a training or validation term became NaN or infinite.
    """
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)
    generator = torch.Generator(device=device).manual_seed(config.train.seed)
    splits, mode = _load_splits(config, data, device)
    run, notes = _build(config, splits, mode, device, generator)
    val_images = _prepare(splits.val, mode, run.eval_generator).images
    if config.train.val_points is not None:
        val_images = val_images[: config.train.val_points]

    history: list[EpochRecord] = []
    first_epoch, earlier_seconds = 1, 0.0
    if resume_from is not None:
        history, first_epoch, earlier_seconds = _resume(run, resume_from)
    every = config.train.checkpoint_every
    started = time.perf_counter()
    last_checkpoint = started  # train.checkpoint_min_seconds counts from here
    for epoch in range(first_epoch, config.planned_epochs(splits.train.images.shape[0]) + 1):
        epoch_start = time.perf_counter()
        train_terms = _train_epoch(run, splits.train.images, epoch)
        val_terms = _validate(run, val_images, epoch)
        record = EpochRecord(epoch, train_terms, val_terms, time.perf_counter() - epoch_start)
        history.append(record)
        since_checkpoint = time.perf_counter() - last_checkpoint
        if (
            checkpoint is not None
            and every > 0
            and epoch % every == 0
            and since_checkpoint >= config.train.checkpoint_min_seconds
        ):
            last_checkpoint = time.perf_counter()
            seconds = earlier_seconds + time.perf_counter() - started
            checkpoint(_train_state(run, epoch, history, seconds))
        if callback is not None:
            callback(record)
    train_seconds = earlier_seconds + time.perf_counter() - started

    eval_start = time.perf_counter()
    evaluation, samples, reconstructions = _evaluate_run(run, splits)
    eval_seconds = time.perf_counter() - eval_start

    return FitResult(
        metrics=dict(evaluation.metrics),
        history=history,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        device=str(device),
        latents=evaluation.latents,
        samples=samples,
        reconstructions=reconstructions,
        model=run.model,
        notes=tuple(notes),
    )
