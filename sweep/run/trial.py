"""One trial as it crosses Ray Tune: its bookkeeping, the settings it trains, and its result.

The searcher hands Tune each trial's config: the sampled parameters plus the runner's
bookkeeping (:class:`TrialMeta`: arm, store trial id, seed, phase, a confirm trial's source);
:func:`trial_config` turns that config and the study's :class:`TrialContext` into the trial's
:class:`~infovae_core.config.TrialConfig`, wherever it is needed (the trainable, the store
callback, the duplicate index, the trackers).

What travels how:

- Ray's results (``ray.tune.report``) carry only what the searcher, the scheduler, the
  trackers and the live view read: an epoch's terms (:func:`epoch_report`) and, at the end,
  one :class:`TrialResult` (status, error, metrics, timings, host). Tune keeps every trial's
  last result in its experiment state, which it rewrites (and uploads, with a storage URI)
  at each experiment checkpoint, so a result's size is paid once per trial per rewrite.
- The trial's epoch rows and artefacts travel as files (:func:`write_trial_files`) in the
  checkpoint reported with that result: Ray Tune copies a reported checkpoint to the run's
  storage path, which every node reaches (a bucket or a shared mount), and the driver reads
  it back (:func:`read_trial_files`) when it records the trial. Each training checkpoint
  holds the epoch rows up to its epoch as well, so a retried trial carries its earlier
  epochs on, and a trial that Ray failed still records them.

This module alone knows the keys of Tune's config and results and the names of those files;
every other module reads them back through :meth:`TrialMeta.of`,
:meth:`TrialResult.from_report`, :func:`reported_epochs` and :func:`read_trial_files`.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infovae_core.config import TrialConfig
from sweep import names
from sweep.space import decode_params

#: The key of the runner's bookkeeping in a trial's Tune config (never a TrialConfig setting).
TRIAL_KEY = "_trial"
_STATUS_KEY = "trial_status"
_ERROR_KEY = "trial_error"
#: The files of a checkpoint that carry the trial's epoch rows (JSON, oldest first) and its
#: artefacts (the names they have in the study folder's ``artifacts/<trial_id>/``).
EPOCHS_FILE = "epochs.json"
#: The file of a final checkpoint with the trial's times, host and device (JSON).
DETAILS_FILE = "trial.json"
#: :class:`TrialResult`'s fields that travel in :data:`DETAILS_FILE`, not in Ray's results.
_DETAILS = ("device", "host", "node_id", "started_at", "ended_at")
LATENTS_FILE, SAMPLES_FILE, RECONSTRUCTIONS_FILE = (
    "latents.npy",
    "samples.png",
    "reconstructions.png",
)
#: Ray Tune's own keys of every result, read when the trial reported no host of its own.
_RAY_HOST, _RAY_NODE = "hostname", "node_ip"


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one Tuner shares: each arm's dotted settings (data + defaults +
    fixed), the default phase, and torch threads per trial. A trial's own arm, id, seed, phase
    (when it is not the default) and (confirm phase) parameters travel in its config as its
    :class:`TrialMeta`."""

    study: str
    phase: str
    settings: dict[str, dict[str, Any]]
    threads: int
    data_key: str
    #: Least seconds between two reports of epochs (0: a report every epoch). Each report costs
    #: milliseconds in the trial and a result for the driver, which add up over many short
    #: epochs; epochs between reports travel together (:func:`epoch_report`). ASHA, which
    #: counts reports as its time, and the trackers, which log each report, need every epoch.
    epoch_report_seconds: float = 0.0


@dataclass(frozen=True)
class TrialMeta:
    """The runner's bookkeeping of one trial, carried in its Tune config."""

    arm: str
    #: The store's trial id (``<arm>-0003``, ``<arm>-confirm1-seed1000``).
    trial_id: str | None = None
    seed: int | None = None
    #: ``confirm`` for a confirm trial; None: the context's phase (search).
    phase: str | None = None
    #: A confirm trial's settings: the searched keys of the search trial it confirms.
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The store's trial id of the search trial a confirm trial confirms.
    source: str | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> TrialMeta:
        """The bookkeeping in a trial's Tune config."""
        meta = config[TRIAL_KEY]
        return cls(
            arm=meta["arm"],
            trial_id=meta.get(names.TRIAL_ID),
            seed=meta.get(names.SEED),
            phase=meta.get(names.PHASE),
            params=dict(meta.get("params") or {}),
            source=meta.get("source"),
        )

    def to_config(self, sampled: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A Tune config: ``sampled`` (Optuna's parameters) plus this bookkeeping."""
        meta: dict[str, Any] = {"arm": self.arm, names.TRIAL_ID: self.trial_id}
        meta[names.SEED] = self.seed
        if self.params:
            meta["params"] = dict(self.params)
        if self.source is not None:
            meta["source"] = self.source
        if self.phase is not None:
            meta[names.PHASE] = self.phase
        return {**(sampled or {}), TRIAL_KEY: meta}


def sampled_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampled parameters of a trial's Tune config (Optuna's names and encoding)."""
    return {k: v for k, v in config.items() if k != TRIAL_KEY}


def trial_phase(context: TrialContext, config: Mapping[str, Any]) -> str:
    """The phase of one trial (``search`` or ``confirm``): search and confirm trials share one
    Tuner, so a confirm trial names its phase in its bookkeeping."""
    if TRIAL_KEY not in config:
        return context.phase
    return TrialMeta.of(config).phase or context.phase


def trial_config(context: TrialContext, config: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of one trial: arm settings + sampled params + the trial's seed."""
    meta = TrialMeta.of(config)
    settings = dict(context.settings[meta.arm])
    settings.update(decode_params(sampled_params(config)))
    settings.update(meta.params)
    if meta.seed is not None:
        settings["train.seed"] = meta.seed
    return TrialConfig.from_dict(settings)


# --------------------------------------------------------------------------------------------
# Results


def epoch_report(epochs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``ray.tune.report`` carries for epoch rows reported together, oldest first: the
    last one's terms, where ASHA and the trackers read an epoch's values. The rows themselves
    travel in the trial's checkpoints (:func:`write_trial_files`)."""
    return dict(epochs[-1])


def is_final_report(result: Mapping[str, Any]) -> bool:
    """Whether a Ray result is a trial's :class:`TrialResult` (else an epoch report)."""
    return _STATUS_KEY in result


def reported_epochs(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The epoch row a Ray result carries: an epoch report's own (none in a final result)."""
    return [result] if names.EPOCH in result and not is_final_report(result) else []


@dataclass(frozen=True)
class TrialArtifacts:
    """What the report shows of one trained model: some latent codes and two image grids."""

    latents: np.ndarray | None = None
    samples_png: bytes | None = None
    reconstructions_png: bytes | None = None

    def files(self) -> dict[str, bytes]:
        """The artefacts as the files that hold them, by name (those present)."""
        out: dict[str, bytes] = {}
        if self.latents is not None and len(self.latents):
            buffer = io.BytesIO()
            np.save(buffer, self.latents.astype(np.float32), allow_pickle=False)
            out[LATENTS_FILE] = buffer.getvalue()
        if self.samples_png:
            out[SAMPLES_FILE] = self.samples_png
        if self.reconstructions_png:
            out[RECONSTRUCTIONS_FILE] = self.reconstructions_png
        return out

    @classmethod
    def read(cls, directory: Path) -> TrialArtifacts | None:
        """The artefacts in ``directory`` (None when it holds none)."""
        paths = {name: Path(directory) / name for name in _ARTIFACT_FILES}
        found = {name: path for name, path in paths.items() if path.is_file()}
        if not found:
            return None
        latents = None
        if LATENTS_FILE in found:
            latents = np.load(found[LATENTS_FILE], allow_pickle=False).astype(np.float32)
        return cls(
            latents=latents,
            samples_png=found[SAMPLES_FILE].read_bytes() if SAMPLES_FILE in found else None,
            reconstructions_png=(
                found[RECONSTRUCTIONS_FILE].read_bytes()
                if RECONSTRUCTIONS_FILE in found
                else None
            ),
        )


_ARTIFACT_FILES = (LATENTS_FILE, SAMPLES_FILE, RECONSTRUCTIONS_FILE)


def write_trial_files(
    directory: Path,
    epochs: Sequence[Mapping[str, Any]],
    result: TrialResult | None = None,
) -> None:
    """Write a trial's epoch rows (all of them so far, oldest first) and, with its final
    ``result``, its artefacts and the details no searcher needs (times, host, device) into a
    checkpoint directory about to be reported."""
    directory = Path(directory)
    (directory / EPOCHS_FILE).write_text(json.dumps([dict(row) for row in epochs]))
    if result is None:
        return
    (directory / DETAILS_FILE).write_text(json.dumps(result._details()))
    for name, data in (result.artifacts or TrialArtifacts()).files().items():
        (directory / name).write_bytes(data)


def read_trial_files(directory: Path, result: TrialResult) -> TrialResult:
    """``result`` (read from Ray's result) completed with what a checkpoint directory holds:
    the trial's epoch rows, artefacts and details."""
    directory = Path(directory)
    epochs = directory / EPOCHS_FILE
    details = directory / DETAILS_FILE
    return dataclasses.replace(
        result,
        **(json.loads(details.read_text()) if details.is_file() else {}),
        epochs=tuple(json.loads(epochs.read_text())) if epochs.is_file() else (),
        artifacts=TrialArtifacts.read(directory),
    )


@dataclass(frozen=True)
class TrialResult:
    """A trial's outcome, from the trainable to the store and Optuna."""

    #: ``completed`` or ``failed``; None when the trial never reported its end (stopped early
    #: by the scheduler, or its worker died).
    status: str | None
    #: Why a failed trial failed (the exception and the end of its traceback).
    error: str | None = None
    #: The evaluation metrics, by their store column (``metric.mmd``, ...).
    metrics: Mapping[str, float] = field(default_factory=dict)
    train_seconds: float | None = None
    eval_seconds: float | None = None
    device: str | None = None
    host: str | None = None
    node_id: str | None = None
    #: ISO 8601 times (UTC) of the trial's start and end.
    started_at: str | None = None
    ended_at: str | None = None
    #: The epoch of the checkpoint this attempt started from (0: a fresh start).
    resumed_from_epoch: int = 0
    #: The trial's epoch rows and artefacts: never in Ray's results (nor are the fields from
    #: ``device`` to ``ended_at``); read from its last checkpoint by the driver
    #: (:func:`read_trial_files`).
    epochs: tuple[Mapping[str, Any], ...] = ()
    artifacts: TrialArtifacts | None = None

    def to_report(self) -> dict[str, Any]:
        """The flat result ``ray.tune.report`` carries: status, error, metrics, timings (the
        trackers log them) and the epoch resumed from (None fields left out). The rest travels
        as files (:func:`write_trial_files`)."""
        out: dict[str, Any] = {_STATUS_KEY: self.status}
        fields = (
            (_ERROR_KEY, self.error),
            (names.TRAIN_SECONDS, self.train_seconds),
            (names.EVAL_SECONDS, self.eval_seconds),
        )
        out.update({k: v for k, v in fields if v is not None})
        out.update(self.metrics)
        out[names.RESUMED_FROM_EPOCH] = self.resumed_from_epoch
        return out

    def _details(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _DETAILS if getattr(self, key) is not None}

    @classmethod
    def from_report(cls, result: Mapping[str, Any] | None) -> TrialResult:
        """A trial's last Ray result read back; an epoch report (the trial never reported its
        end) gives status None and no metrics. The host is Ray's own (its checkpoint's
        details, :func:`read_trial_files`, hold the trial's own, with its times)."""
        result = result or {}
        return cls(
            status=result.get(_STATUS_KEY),
            error=result.get(_ERROR_KEY),
            metrics={k: v for k, v in result.items() if k.startswith(names.METRIC)},
            train_seconds=result.get(names.TRAIN_SECONDS),
            eval_seconds=result.get(names.EVAL_SECONDS),
            host=result.get(_RAY_HOST),
            node_id=result.get(_RAY_NODE),
            resumed_from_epoch=int(result.get(names.RESUMED_FROM_EPOCH) or 0),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrialResult:
        """The outcome a store row (``trials.parquet`` columns) records: status, error and
        metrics, as the trial reported them."""
        error = row.get(names.ERROR)
        return cls(
            status=row.get(names.STATUS),
            error=error if isinstance(error, str) else None,
            metrics={k: v for k, v in row.items() if k.startswith(names.METRIC)},
        )
