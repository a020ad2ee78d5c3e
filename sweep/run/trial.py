"""One trial as it crosses Ray Tune: its bookkeeping, the settings it trains, and its result.

The searcher hands Tune each trial's config: the sampled parameters plus the runner's
bookkeeping (:class:`TrialMeta`: arm, store trial id, seed, phase, a confirm trial's source);
:func:`trial_config` turns that config and the study's :class:`TrialContext` into the trial's
:class:`~infovae_core.config.TrialConfig`, wherever it is needed (the trainable, the store
callback, the duplicate index, the trackers).

The trainable reports its epochs (:func:`epoch_report`) and then one :class:`TrialResult`
(status, error, metrics, timings, host, the epochs not reported yet, artefacts) with
``ray.tune.report``. This module alone knows how each of them travels through Ray (the keys
of Tune's config and results); every other module reads them back through
:meth:`TrialMeta.of`, :meth:`TrialResult.from_report` and :func:`reported_epochs`, so where
the artefacts and epochs travel can change here alone.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infovae_core.config import TrialConfig
from sweep import names
from sweep.space import decode_params

#: The key of the runner's bookkeeping in a trial's Tune config (never a TrialConfig setting).
TRIAL_KEY = "_trial"
_STATUS_KEY = "trial_status"
_ERROR_KEY = "trial_error"
#: Epochs reported together: the earlier epochs of a batched report (its own epoch is at the
#: top level, as in a report of one epoch) or, in the final result, those not reported yet.
_EPOCH_ROWS_KEY = "epoch_rows"
_ARTIFACT_PREFIX = "artifact."
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
    last one's terms at the top level, where ASHA and the trackers read an epoch's values,
    the earlier ones beside them."""
    result = dict(epochs[-1])
    if len(epochs) > 1:
        result[_EPOCH_ROWS_KEY] = list(epochs[:-1])
    return result


def is_final_report(result: Mapping[str, Any]) -> bool:
    """Whether a Ray result is a trial's :class:`TrialResult` (else an epoch report)."""
    return _STATUS_KEY in result


def reported_epochs(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every epoch row a Ray result carries, oldest first: those reported together, then an
    epoch report's own."""
    rows = list(result.get(_EPOCH_ROWS_KEY) or ())
    if names.EPOCH in result and not is_final_report(result):
        rows.append(result)
    return rows


@dataclass(frozen=True)
class TrialArtifacts:
    """What the report shows of one trained model: some latent codes and two image grids."""

    latents: np.ndarray | None = None
    samples_png: bytes | None = None
    reconstructions_png: bytes | None = None

    def _to_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.latents is not None:
            out[_ARTIFACT_PREFIX + "latents"] = self.latents.astype(np.float32).tolist()
        for key in ("samples_png", "reconstructions_png"):
            data = getattr(self, key)
            if data is not None:
                out[_ARTIFACT_PREFIX + key] = base64.b64encode(data).decode("ascii")
        return out

    @classmethod
    def _from_report(cls, result: Mapping[str, Any]) -> TrialArtifacts | None:
        latents = result.get(_ARTIFACT_PREFIX + "latents")
        images = [result.get(_ARTIFACT_PREFIX + k) for k in ("samples_png", "reconstructions_png")]
        if not latents and not any(images):
            return None
        return cls(
            latents=np.asarray(latents, dtype=np.float32) if latents else None,
            samples_png=base64.b64decode(images[0]) if images[0] else None,
            reconstructions_png=base64.b64decode(images[1]) if images[1] else None,
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
    #: Epoch rows not reported before this result, oldest first.
    epochs: tuple[Mapping[str, Any], ...] = ()
    artifacts: TrialArtifacts | None = None

    def to_report(self) -> dict[str, Any]:
        """The flat result ``ray.tune.report`` carries (None fields left out)."""
        out: dict[str, Any] = {_STATUS_KEY: self.status}
        fields = (
            (_ERROR_KEY, self.error),
            (names.TRAIN_SECONDS, self.train_seconds),
            (names.EVAL_SECONDS, self.eval_seconds),
            (names.DEVICE, self.device),
        )
        out.update({k: v for k, v in fields if v is not None})
        out.update(self.metrics)
        if self.artifacts is not None:
            out.update(self.artifacts._to_report())
        where = (
            (names.STARTED_AT, self.started_at),
            (names.HOST, self.host),
            (names.NODE_ID, self.node_id),
        )
        out.update({k: v for k, v in where if v is not None})
        if self.epochs:
            out[_EPOCH_ROWS_KEY] = list(self.epochs)
        out[names.RESUMED_FROM_EPOCH] = self.resumed_from_epoch
        if self.ended_at is not None:
            out[names.ENDED_AT] = self.ended_at
        return out

    @classmethod
    def from_report(cls, result: Mapping[str, Any] | None) -> TrialResult:
        """A trial's last Ray result read back; an epoch report (the trial never reported its
        end) gives status None and no metrics."""
        result = result or {}
        final = is_final_report(result)
        return cls(
            status=result.get(_STATUS_KEY),
            error=result.get(_ERROR_KEY),
            metrics={k: v for k, v in result.items() if k.startswith(names.METRIC)},
            train_seconds=result.get(names.TRAIN_SECONDS),
            eval_seconds=result.get(names.EVAL_SECONDS),
            device=result.get(names.DEVICE),
            host=result.get(names.HOST) or result.get(_RAY_HOST),
            node_id=result.get(names.NODE_ID) or result.get(_RAY_NODE),
            started_at=result.get(names.STARTED_AT),
            ended_at=result.get(names.ENDED_AT),
            resumed_from_epoch=int(result.get(names.RESUMED_FROM_EPOCH) or 0),
            epochs=tuple(result.get(_EPOCH_ROWS_KEY) or ()) if final else (),
            artifacts=TrialArtifacts._from_report(result),
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
