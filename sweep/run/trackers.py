"""Experiment trackers for a study run, opt-in with ``--log-to``: MLflow, TensorBoard, W&B.

Each tracker is Ray Tune's own logger callback (``MLflowLoggerCallback``,
``TBXLoggerCallback``, ``WandbLoggerCallback``), added to the Tuner's callbacks by the runner.
Tune would hand those callbacks the trial as Tune sees it: a config holding the runner's
bookkeeping (:class:`~sweep.run.trial.TrialMeta`) rather than the trial's settings, and
results holding the report's artefacts beside the numbers.
:func:`tracker_callbacks` therefore wraps each one in a Tune ``Callback`` that calls the
logger's public ``log_trial_*`` methods with

* a view of the trial whose ``config`` (and ``evaluated_params``) is the trial's decoded
  :class:`~infovae_core.config.TrialConfig` settings (``to_flat_dict``: ``objective.alpha``,
  ``model.decoder.width``, ...) plus ``study``, ``arm``, ``phase`` and ``trial_id`` (the
  store's), and whose name is the store's trial id;
* results filtered to the numbers a tracker should plot: the epoch terms (``train.*``,
  ``val.*``, ``epoch``), the final metrics (``metric.*``) and timings, with Tune's
  ``training_iteration`` as the step. Artefacts and strings are never logged.

A trial whose final result says ``failed`` ends as a failed run (MLflow's ``FAILED``).

Values of ``--log-to`` (repeatable):

* ``mlflow`` or ``mlflow:URI``: one MLflow experiment per study (named after it), one run per
  trial; URI is MLflow's tracking URI (default: MLflow's own, ``MLFLOW_TRACKING_URI`` else
  ``sqlite:///mlflow.db``). A ``file:`` URI or plain path selects MLflow's file store, which
  MLflow 3 keeps in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``: the callback sets that
  variable while it logs (unless the user set it).
* ``tensorboard`` or ``tensorboard:DIR``: TensorBoard event files under
  ``DIR/<phase>/<trial_id>/`` (default DIR: the study folder's ``tensorboard/``).
* ``wandb`` or ``wandb:PROJECT``: one W&B run per trial in PROJECT (default: the study's
  name), grouped by ``<study>/<phase>``; ``WANDB_MODE=offline`` keeps the runs on disk.

Importing this module imports neither Ray nor any tracker package.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sweep import names
from sweep.run.trial import TrialContext, TrialMeta, TrialResult, trial_config, trial_phase

__all__ = [
    "TRACKERS",
    "Tracker",
    "TrackerError",
    "check_trackers",
    "loggable_result",
    "parse_tracker",
    "tracker_callbacks",
    "tracker_params",
]

#: Tracker name -> (the module it needs, the pip extra that installs it).
TRACKERS: dict[str, tuple[str, str]] = {
    "mlflow": ("mlflow", "mlflow"),
    "tensorboard": ("tensorboardX", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}
#: What follows the colon of each tracker's ``--log-to`` value, in messages.
_TARGET = {"mlflow": "URI", "tensorboard": "DIR", "wandb": "PROJECT"}
#: Tune's step counter, kept in every logged result (the trackers read their step from it).
_STEP = "training_iteration"
#: Final-result numbers logged besides the ``metric.*``, ``train.*`` and ``val.*`` terms.
_TIMINGS = (names.EPOCH, names.TRAIN_SECONDS, names.EVAL_SECONDS)
_FILE_STORE_VARIABLE = "MLFLOW_ALLOW_FILE_STORE"


class TrackerError(ValueError):
    """A ``--log-to`` value that cannot be served (malformed, or its package missing)."""


@dataclass(frozen=True)
class Tracker:
    """One ``--log-to`` value: the tracker and its optional target (URI, folder, project)."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def parse_tracker(value: str) -> Tracker:
    """``mlflow[:URI]``, ``tensorboard[:DIR]`` or ``wandb[:PROJECT]`` -> :class:`Tracker`.

    Raises :class:`TrackerError` for an unknown tracker, an empty target, or a tracker whose
    package is not installed (checked without importing it)."""
    kind, colon, target = value.strip().partition(":")
    if kind not in TRACKERS:
        raise TrackerError(
            f"--log-to {value!r}: unknown tracker {kind!r}; choose from "
            + ", ".join(f"{name}[:{_TARGET[name]}]" for name in TRACKERS)
        )
    if colon and not target.strip():
        raise TrackerError(
            f"--log-to {value!r}: nothing after the colon; give {kind}:{_TARGET[kind]} or "
            f"just {kind}"
        )
    module, extra = TRACKERS[kind]
    if importlib.util.find_spec(module) is None:
        raise TrackerError(
            f"--log-to {kind}: the {module} package is not installed; install it with "
            f"pip install 'infovae-sweep[{extra}]'"
        )
    return Tracker(kind, target.strip() if colon else None)


def check_trackers(trackers: Sequence[Tracker], study: str) -> None:
    """What can be checked before a run without writing anything: W&B's credentials
    (``WandbLoggerCallback.setup`` refuses to start without an API key unless
    ``WANDB_MODE`` is ``offline`` or ``disabled``). Raises :class:`TrackerError`."""
    for tracker in trackers:
        if tracker.kind == "wandb":
            callback = _logger(tracker, study, names.SEARCH)
            try:
                callback.setup()
            except (ValueError, RuntimeError) as error:
                raise TrackerError(
                    f"--log-to {tracker}: {error} (or set WANDB_MODE=offline to keep the runs "
                    "on disk)"
                ) from None


def tracker_params(context: TrialContext, config: dict[str, Any]) -> dict[str, Any]:
    """The parameters a tracker logs for a trial: its decoded TrialConfig settings (dotted
    keys) plus ``study``, ``arm``, ``phase`` and ``trial_id``. Lists and None are written as
    JSON text so that every tracker takes them (TensorBoard's hparams take scalars only)."""
    meta = TrialMeta.of(config)
    params: dict[str, Any] = {
        names.STUDY: context.study,
        names.ARM: meta.arm,
        names.PHASE: trial_phase(context, config),
        names.TRIAL_ID: meta.trial_id,
    }
    try:
        settings = trial_config(context, config).to_flat_dict()
    except Exception:  # noqa: BLE001 - the trial fails and says why; log what is known
        settings = {}
    params.update(settings)
    return {key: _scalar(value) for key, value in params.items()}


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)


def loggable_result(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a Tune result that trackers log: ``train.*``, ``val.*``, ``metric.*``,
    the epoch and timings, and Tune's step; never artefacts, strings or Tune's own keys."""
    kept = {}
    for key, value in result.items():
        wanted = key.startswith((names.TRAIN, names.VAL, names.METRIC)) or key in _TIMINGS
        if wanted and _number(value):
            kept[key] = value
    if _STEP in result:
        kept[_STEP] = result[_STEP]
    return kept


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TrialView:
    """A Tune trial as a tracker sees it: ``config`` and ``evaluated_params`` are the trial's
    settings (:func:`tracker_params`), its name is the store's trial id and, when
    ``local_path`` is given, its files go there; everything else is the trial's own."""

    def __init__(self, trial: Any, params: dict[str, Any], local_path: Path | None) -> None:
        self._trial = trial
        self.config = params
        self.evaluated_params = params
        self._local_path = local_path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def __str__(self) -> str:
        return str(self.config.get(names.TRIAL_ID) or self._trial)

    @property
    def local_path(self) -> str:
        return str(self._local_path) if self._local_path is not None else self._trial.local_path

    def init_local_path(self) -> None:
        if self._local_path is None:
            self._trial.init_local_path()
        else:
            self._local_path.mkdir(parents=True, exist_ok=True)


class _TrackerCallbackMixin:
    """Forwards Tune's trial events of one phase's trials to a logger callback with
    :class:`TrialView` trials and :func:`loggable_result` results (search and confirm trials
    share one Tuner; each phase has its own logger, tagged or grouped by the phase)."""

    def __init__(
        self,
        logger: Any,
        context: TrialContext,
        log_dir: Path | None = None,
        environment: dict[str, str] | None = None,
        phase: str | None = None,
    ) -> None:
        self.logger = logger
        self.context = context
        self.phase = phase or context.phase
        self.log_dir = log_dir
        self.environment = dict(environment or {})
        self._views: dict[str, TrialView] = {}
        self._saved: dict[str, str | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the run config with its callbacks; the live loggers (open files,
        # clients, actors) are not state to restore: resume builds new ones.
        return {
            "context": self.context,
            "phase": self.phase,
            "log_dir": self.log_dir,
            "environment": {},
        }

    def _mine(self, trial: Any) -> bool:
        return trial_phase(self.context, trial.config) == self.phase

    def _view(self, trial: Any) -> TrialView:
        view = self._views.get(trial.trial_id)
        if view is None:
            params = tracker_params(self.context, trial.config)
            local = None
            if self.log_dir is not None:
                local = self.log_dir / self.phase / str(params[names.TRIAL_ID])
            view = self._views[trial.trial_id] = TrialView(trial, params, local)
        return view

    def setup(self, *args: Any, **kwargs: Any) -> None:
        for name, value in self.environment.items():
            if name not in os.environ:
                self._saved[name] = None
                os.environ[name] = value
        self.logger.setup(*args, **kwargs)

    def on_trial_start(self, iteration, trials, trial, **info):
        if self._mine(trial):
            self.logger.log_trial_start(self._view(trial))

    def on_trial_restore(self, iteration, trials, trial, **info):
        if self._mine(trial):
            self.logger.log_trial_restore(self._view(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self._mine(trial):
            self.logger.log_trial_result(iteration, self._view(trial), loggable_result(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self._mine(trial):
            return
        failed = TrialResult.from_report(trial.last_result).status == names.FAILED
        self.logger.log_trial_end(self._view(trial), failed=failed)
        self._views.pop(trial.trial_id, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self._mine(trial):
            return
        self.logger.log_trial_end(self._view(trial), failed=True)
        self._views.pop(trial.trial_id, None)

    def on_experiment_end(self, trials, **info):
        try:
            self.logger.on_experiment_end(trials=trials, **info)
        finally:
            for name in self._saved:
                os.environ.pop(name, None)
            self._saved.clear()


@functools.cache
def _tracker_callback_class() -> type:
    # Subclass Tune's Callback on first use so importing this module does not import Ray.
    from ray.tune import Callback

    return type("TrackerCallback", (_TrackerCallbackMixin, Callback), {})


def _logger(tracker: Tracker, study: str, phase: str) -> Any:
    """Ray Tune's logger callback for ``tracker`` (its package imported here)."""
    if tracker.kind == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        return MLflowLoggerCallback(
            tracking_uri=tracker.target,
            experiment_name=study,
            tags={names.STUDY: study, names.PHASE: phase},
        )
    if tracker.kind == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback

        return TBXLoggerCallback()
    from ray.air.integrations.wandb import WandbLoggerCallback

    return WandbLoggerCallback(project=tracker.target or study, group=f"{study}/{phase}")


def _is_file_store(uri: str | None) -> bool:
    if uri is None:  # MLflow's default, from its own settings
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        return urlparse(uri).scheme == "file"
    return urlparse(uri).scheme in ("", "file")


def tracker_callbacks(
    trackers: Sequence[Tracker],
    context: TrialContext,
    folder: Path,
    phases: Sequence[str] = (),
) -> list[Any]:
    """One Tune callback per tracker and phase (default: the context's phase) for the study's
    Tuner (``folder``: the study folder)."""
    callbacks = []
    for tracker in trackers:
        for phase in phases or (context.phase,):
            logger = _logger(tracker, context.study, phase)
            log_dir = None
            environment = {}
            if tracker.kind == "tensorboard":
                log_dir = Path(tracker.target or folder / names.TENSORBOARD_DIR).resolve()
            if tracker.kind == "mlflow" and _is_file_store(tracker.target):
                environment[_FILE_STORE_VARIABLE] = "true"
            callbacks.append(
                _tracker_callback_class()(logger, context, log_dir, environment, phase)
            )
    return callbacks
