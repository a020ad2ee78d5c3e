"""Experiment trackers (``--log-to``): parsing, what is logged, and a real tiny study logged to
MLflow's file store, TensorBoard event files and (when installed) W&B offline."""

from __future__ import annotations

import importlib.util
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sweep import names
from sweep.cli import app
from sweep.run.trackers import (
    Tracker,
    TrackerError,
    check_trackers,
    loggable_result,
    parse_tracker,
    tracker_params,
)
from sweep.run.trial import TRIAL_KEY, TrialArtifacts, TrialContext, TrialMeta, TrialResult
from tests.sweep.studies import write_study

# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mlflow", Tracker("mlflow")),
        ("mlflow:file:///tmp/mlruns", Tracker("mlflow", "file:///tmp/mlruns")),
        ("tensorboard:runs/tb", Tracker("tensorboard", "runs/tb")),
    ],
)
def test_parse_tracker_reads_the_tracker_and_its_target(value: str, expected: Tracker) -> None:
    assert parse_tracker(value) == expected


def test_an_unknown_tracker_is_refused_with_the_choices() -> None:
    with pytest.raises(TrackerError, match=r"unknown tracker 'neptune'.*mlflow\[:URI\]"):
        parse_tracker("neptune")


def test_an_empty_target_is_refused() -> None:
    with pytest.raises(TrackerError, match="nothing after the colon"):
        parse_tracker("tensorboard:")


def test_a_missing_package_is_refused_naming_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(TrackerError, match=r"mlflow package is not installed.*\[mlflow\]"):
        parse_tracker("mlflow:sqlite:///x.db")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_wandb_without_credentials_is_refused_before_the_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TrackerError, match="WANDB_MODE=offline"):
        check_trackers([parse_tracker("wandb")], "tiny")


@pytest.mark.parametrize("command", ["run", "resume"])
def test_cli_refuses_a_malformed_log_to_before_anything_runs(tmp_path: Path, command) -> None:
    study = write_study(tmp_path, "tiny")
    results = tmp_path / "results"
    if command == "run":
        args = ["run", str(study), "--results", str(results), "--log-to", "mlflow:"]
    else:
        folder = results / "tiny"
        folder.mkdir(parents=True)
        (folder / names.STUDY_FILE).write_text(study.read_text())
        args = ["resume", str(folder), "--log-to", "comet"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--log-to" in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------------------------------------
# What a tracker is given


def test_loggable_result_keeps_terms_and_metrics_and_drops_artefacts() -> None:
    final = TrialResult(
        "completed",
        metrics={"metric.mmd": 0.01, "metric.nll_iwae": float("nan")},
        train_seconds=3.5,
        artifacts=TrialArtifacts(latents=np.array([[0.1, 0.2]]), samples_png=b"PNG"),
    )
    result = {
        "epoch": 2,
        "train.loss": 45.1,
        "val.elbo": -44.6,
        **final.to_report(),
        "training_iteration": 3,
        "config": TrialMeta("arm", seed=0).to_config(),
        "time_total_s": 9.0,
        "hostname": "vm",
    }
    assert loggable_result(result) == {
        "epoch": 2,
        "train.loss": 45.1,
        "val.elbo": -44.6,
        "metric.mmd": 0.01,
        "train_seconds": 3.5,
        "training_iteration": 3,
    }


def test_tracker_params_are_the_trials_decoded_settings() -> None:
    context = TrialContext(
        study="tiny",
        phase=names.CONFIRM,
        settings={"infovae": {"objective.alpha": 1.0, "objective.scales": [1.0, 2.0]}},
        threads=1,
        data_key="{}",
    )
    config = TrialMeta(
        "infovae", "infovae-confirm1-seed1000", 1000, params={"objective.lambda": 10.0}
    ).to_config()
    params = tracker_params(context, config)
    assert TRIAL_KEY not in params and not any(k.startswith(TRIAL_KEY) for k in params)
    assert params["study"] == "tiny" and params["phase"] == "confirm"
    assert params["arm"] == "infovae" and params["trial_id"] == "infovae-confirm1-seed1000"
    assert params["objective.alpha"] == 1.0 and params["objective.lambda"] == 10.0
    assert params["train.seed"] == 1000
    assert params["objective.scales"] == "[1.0, 2.0]"  # lists and None as JSON text
    assert params["data.train_size"] == "null"


class _Recorder:
    """A stand-in for a Ray logger callback: records what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_trial_start(self, trial) -> None:
        self.calls.append(("start", str(trial), dict(trial.config)))

    def log_trial_result(self, iteration, trial, result) -> None:
        self.calls.append(("result", str(trial), result))

    def log_trial_end(self, trial, failed=False) -> None:
        self.calls.append(("end", str(trial), failed))


class _Trial:
    def __init__(self, trial_id: str, last_result: dict) -> None:
        self.trial_id = trial_id
        self.config = TrialMeta("elbo", f"elbo-{trial_id}", 3).to_config()
        self.last_result = last_result


@pytest.mark.parametrize(("status", "failed"), [("completed", False), ("failed", True)])
def test_the_logger_sees_settings_and_numbers_and_a_failed_trial_fails(status, failed) -> None:
    from sweep.run.trackers import _tracker_callback_class

    context = TrialContext("tiny", names.SEARCH, {"elbo": {}}, threads=1, data_key="{}")
    logger = _Recorder()
    callback = _tracker_callback_class()(logger, context)
    trial = _Trial("0001", TrialResult(status).to_report())
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"train.loss": 1.0, "hostname": "vm"})
    callback.on_trial_complete(0, [], trial)
    (start, name, config), result, end = logger.calls
    assert name == "elbo-0001" and config["train.seed"] == 3 and TRIAL_KEY not in config
    assert result == ("result", "elbo-0001", {"train.loss": 1.0})
    assert end == ("end", "elbo-0001", failed)


def test_each_phase_logger_sees_only_its_own_phase_trials_in_the_one_tuner() -> None:
    """Search and confirm trials share one Tuner; each phase's logger (tagged or grouped by
    its phase) is handed the trials of that phase only."""
    from sweep.run.trackers import _tracker_callback_class

    context = TrialContext("tiny", names.SEARCH, {"elbo": {}}, threads=1, data_key="{}")
    loggers = {phase: _Recorder() for phase in (names.SEARCH, names.CONFIRM)}
    callbacks = [
        _tracker_callback_class()(logger, context, None, None, phase)
        for phase, logger in loggers.items()
    ]
    search = _Trial("0001", TrialResult("completed").to_report())
    confirm = _Trial("confirm1-seed9", TrialResult("completed").to_report())
    confirm.config = TrialMeta("elbo", "elbo-confirm1-seed9", 3, names.CONFIRM).to_config()
    for callback in callbacks:
        for trial in (search, confirm):
            callback.on_trial_start(0, [], trial)
            callback.on_trial_complete(0, [], trial)
    seen = {phase: {call[1] for call in logger.calls} for phase, logger in loggers.items()}
    assert seen == {names.SEARCH: {"elbo-0001"}, names.CONFIRM: {"elbo-confirm1-seed9"}}
    (start, _, config), _ = loggers[names.CONFIRM].calls
    assert config["phase"] == names.CONFIRM  # the trial's own phase, not the context's


# ---------------------------------------------------------------------------------------------
# A real tiny study, logged


HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None


#: Epochs per trial of the logged study. Not 2: with sub-second trials on an idle machine, Ray's
#: W&B logging actor of the last trial sometimes never finished ``wandb.init`` (wandb 0.31.0,
#: its offline run without a record file); trials of about a second leave it the time.
EPOCHS = 60


@pytest.fixture(scope="module")
def logged_study(tmp_path_factory):
    """A tiny study (2 arms x 1 search trial, 1 confirm seed, EPOCHS epochs) run once through
    `infovae-sweep run` with every tracker installed here."""
    folder = tmp_path_factory.mktemp("trackers")
    study = write_study(folder, "tiny", trials=1, seeds=1, epochs=EPOCHS)
    mlruns = (folder / "mlruns").resolve()
    args = ["run", str(study), "--results", str(folder / "results"), "--log-to", "tensorboard"]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        if HAS_MLFLOW:
            args += ["--log-to", f"mlflow:{mlruns.as_uri()}"]
        if HAS_WANDB:
            args += ["--log-to", "wandb"]
            patch.setenv("WANDB_MODE", "offline")
            patch.setenv("WANDB_SILENT", "true")
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        leaked = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    return folder / "results" / "tiny", mlruns, leaked


TRIAL_IDS = {"elbo-0000", "infovae-0000", "elbo-confirm1-seed1000", "infovae-confirm1-seed1000"}


def _mlflow_runs(mlruns: Path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=mlruns.as_uri())
    experiment = client.get_experiment_by_name("tiny")
    return client, {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


NO_MLFLOW = pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed ('.[mlflow]')")


@pytest.mark.slow
@NO_MLFLOW
def test_mlflow_has_one_run_per_trial_with_settings_epoch_terms_and_metrics(
    logged_study, monkeypatch
):
    _, mlruns, _ = logged_study
    client, runs = _mlflow_runs(mlruns, monkeypatch)
    assert set(runs) == TRIAL_IDS
    run = runs["infovae-confirm1-seed1000"]
    assert run.info.status == "FINISHED"
    assert run.data.params["arm"] == "infovae" and run.data.params["phase"] == "confirm"
    assert run.data.params["train.seed"] == "1000"
    assert float(run.data.params["objective.alpha"]) == 1.0
    history = client.get_metric_history(run.info.run_id, "train.loss")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))  # one point per epoch
    assert "metric.mmd" in run.data.metrics and "val.elbo" in run.data.metrics


@pytest.mark.slow
@NO_MLFLOW
def test_mlflow_logs_neither_artefacts_nor_the_runners_bookkeeping(logged_study, monkeypatch):
    _, mlruns, leaked = logged_study
    _, runs = _mlflow_runs(mlruns, monkeypatch)
    for run in runs.values():
        assert not [k for k in run.data.metrics if k.startswith(("artifact", "config"))]
        assert not [k for k in run.data.params if k.startswith(TRIAL_KEY)]
    assert leaked is None  # the file-store switch is set for the run only


def _tensorboard_events(path: Path):
    """Records of a TensorBoard event file (TFRecord framing: length, its CRC, data, CRC)."""
    from tensorboardX.proto import event_pb2

    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offset += 12
        yield event_pb2.Event.FromString(data[offset : offset + length])
        offset += length + 4


def _tensorboard(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, object]]:
    from tensorboardX.proto import plugin_hparams_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    hparams: dict[str, object] = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in _tensorboard_events(path):
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    content = value.metadata.plugin_data.content
                    info = plugin_hparams_pb2.HParamsPluginData.FromString(content)
                    for key, item in info.session_start_info.hparams.items():
                        hparams[key] = getattr(item, item.WhichOneof("kind"))
                elif not value.tag.startswith("_hparams_"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars, hparams


@pytest.mark.slow
def test_tensorboard_event_files_hold_epoch_terms_metrics_and_settings(logged_study):
    folder, _, _ = logged_study
    root = folder / names.TENSORBOARD_DIR
    found = {p.parent.name for p in root.glob("*/*/events.out.tfevents.*")}
    assert found == TRIAL_IDS
    scalars, hparams = _tensorboard(root / names.SEARCH / "elbo-0000")
    assert [step for step, _ in scalars["ray/tune/train.loss"]] == list(range(1, EPOCHS + 1))
    assert len(scalars["ray/tune/metric.mmd"]) == 1
    assert not [tag for tag in scalars if "artifact" in tag]
    assert hparams["arm"] == "elbo" and hparams["trial_id"] == "elbo-0000"
    assert hparams["objective.alpha"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WANDB, reason="wandb is not installed ('.[wandb]')")
def test_wandb_offline_runs_hold_settings_terms_and_metrics(logged_study):
    folder, _, _ = logged_study
    runs = sorted(folder.glob("ray/*/*/wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == len(TRIAL_IDS)
    # W&B's offline record format has no public reader: look for the logged keys' names.
    records = b"".join(path.read_bytes() for path in runs)
    for key in (b"train.loss", b"val.elbo", b"metric.mmd", b"objective.alpha", b"elbo-0000"):
        assert key in records, key
    assert b"samples_png" not in records and b"artifact.latents" not in records
