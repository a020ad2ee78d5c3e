"""The trainable cuts each trial's data.train_size from the whole splits the runner shares."""

from __future__ import annotations

from pathlib import Path

import pytest

import infovae_core.trainer as trainer
from infovae_core.config import DataConfig
from infovae_core.data import load_dataset
from sweep import trainable
from sweep.run.trial import TrialContext, TrialMeta, TrialResult, read_trial_files
from sweep.trainable import run_trial


@pytest.mark.parametrize("train_size", [None, 40])
def test_a_trial_trains_on_its_own_train_size(monkeypatch, train_size) -> None:
    tune = pytest.importorskip("ray.tune")
    whole = load_dataset(DataConfig(dataset="digits"))
    monkeypatch.setitem(trainable._DATA_CACHE, "key", whole)  # as if fetched from Ray already
    seen: dict[str, object] = {}

    def fake_fit(config, data, callback=None, **options):
        seen["train"], seen["val"], seen["test"] = data.train, data.val, data.test
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer, "fit", fake_fit)
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    settings = {"data.dataset": "digits", "data.train_size": None}
    context = TrialContext("s", "search", {"arm": settings}, threads=1, data_key="key")
    config = TrialMeta("arm", seed=0).to_config({"data.train_size": train_size})
    run_trial(config, context, {})
    assert "stop here" in TrialResult.from_report(reports[-1]).error  # the fake fit was reached
    expected = load_dataset(DataConfig(dataset="digits", train_size=train_size))
    assert len(seen["train"]) == len(expected.train)
    assert bool((seen["train"].images == expected.train.images).all())
    assert seen["val"] is whole.val and seen["test"] is whole.test


def _tiny_trial(monkeypatch, epoch_report_seconds: float = 0.0, checkpoint_every: int = 2):
    whole = load_dataset(DataConfig(dataset="digits"))
    monkeypatch.setitem(trainable._DATA_CACHE, "key", whole)  # as if fetched from Ray already
    settings = {
        "data.dataset": "digits",
        "model.latent_dim": 2,
        "model.encoder": {"width": 16, "depth": 1},
        "model.decoder": {"width": 16, "depth": 1},
        "train.epochs": 4,
        "train.batch_size": 256,
        "train.device": "cpu",
        "train.checkpoint_every": checkpoint_every,
        "train.checkpoint_min_seconds": 0.0,
        "eval.iwae_samples": 2,
        "eval.iwae_points": 20,
        "eval.probe_labels": [50],
    }
    context = TrialContext(
        "s", "search", {"arm": settings}, threads=1, data_key="key",
        epoch_report_seconds=epoch_report_seconds,
    )
    return TrialMeta("arm", seed=0).to_config(), context


def _run(monkeypatch, tmp_path, config, context, checkpoint=None) -> list[tuple[dict, object]]:
    """Run the trial with Ray Tune's report and get_checkpoint replaced: each report with the
    checkpoint it carried, copied (the trial deletes its directory once report returns)."""
    import shutil

    tune = pytest.importorskip("ray.tune")
    reports: list[tuple[dict, object]] = []

    def report(metrics, *, checkpoint=None):
        kept = None
        if checkpoint is not None:
            kept = tune.Checkpoint.from_directory(
                shutil.copytree(checkpoint.path, tmp_path / f"kept{len(reports)}")
            )
        reports.append((metrics, kept))

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: checkpoint)
    run_trial(config, context, {})
    return reports


def test_a_trial_reports_a_checkpoint_every_checkpoint_every_epochs(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch)
    reports = _run(monkeypatch, tmp_path, config, context)
    epochs = [(m["epoch"], c is not None) for m, c in reports if "epoch" in m]
    assert epochs == [(1, False), (2, True), (3, False), (4, True)]
    final = TrialResult.from_report(reports[-1][0])
    assert final.status == "completed" and final.resumed_from_epoch == 0


def test_a_retried_trial_resumes_from_its_checkpoint_with_the_same_metrics(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch)
    whole = _run(monkeypatch, tmp_path / "whole", config, context)
    checkpoint = next(c for m, c in whole if m.get("epoch") == 2)
    resumed = _run(monkeypatch, tmp_path / "resumed", config, context, checkpoint=checkpoint)

    assert [m["epoch"] for m, _ in resumed if "epoch" in m] == [3, 4]
    assert all(m["resumed_from_epoch"] == 2 for m, _ in resumed)
    final, expected = (TrialResult.from_report(r[-1][0]) for r in (resumed, whole))
    assert expected.metrics and final.metrics == expected.metrics


def test_a_trial_called_outside_ray_leaves_no_ray_running(monkeypatch, tmp_path):
    import ray

    assert not ray.is_initialized()
    config, context = _tiny_trial(monkeypatch)
    _run(monkeypatch, tmp_path, config, context)
    assert not ray.is_initialized()


def _files(checkpoint) -> TrialResult:
    """What a reported checkpoint holds besides the trainer's state."""
    return read_trial_files(Path(checkpoint.path), TrialResult(status=None))


def _epochs(checkpoint) -> list[int]:
    return [row["epoch"] for row in _files(checkpoint).epochs]


def test_no_result_carries_an_artefact_or_an_epoch_list(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch, epoch_report_seconds=1e9, checkpoint_every=2)
    reports = _run(monkeypatch, tmp_path, config, context)
    assert TrialResult.from_report(reports[-1][0]).status == "completed"
    for metrics, _ in reports:
        assert all(isinstance(v, int | float | str) for v in metrics.values()), metrics
        assert not any(key.startswith("artifact") for key in metrics)


def test_the_final_checkpoint_holds_every_epoch_the_artefacts_and_the_details(
    monkeypatch, tmp_path
):
    config, context = _tiny_trial(monkeypatch, epoch_report_seconds=1e9, checkpoint_every=0)
    reports = _run(monkeypatch, tmp_path, config, context)
    assert [("epoch" in m, c is not None) for m, c in reports] == [(False, True)]
    final = _files(reports[-1][1])
    assert [row["epoch"] for row in final.epochs] == [1, 2, 3, 4]
    assert all("train.loss" in row and "val.elbo" in row for row in final.epochs)
    assert final.artifacts.latents.shape[1] == 2 and final.artifacts.samples_png
    assert final.started_at and final.ended_at and final.host and final.device == "cpu"


def test_each_checkpoint_holds_the_epochs_up_to_it(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch, epoch_report_seconds=1e9, checkpoint_every=2)
    reports = _run(monkeypatch, tmp_path, config, context)
    assert [m.get("epoch") for m, _ in reports] == [2, 4, None]
    assert [_epochs(c) for _, c in reports] == [[1, 2], [1, 2, 3, 4], [1, 2, 3, 4]]


def test_a_retried_trial_carries_the_epochs_before_its_checkpoint_on(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch)
    whole = _run(monkeypatch, tmp_path / "whole", config, context)
    checkpoint = next(c for m, c in whole if m.get("epoch") == 2)
    resumed = _run(monkeypatch, tmp_path / "resumed", config, context, checkpoint=checkpoint)
    rows = _files(resumed[-1][1]).epochs
    assert [(r["epoch"], r["resumed_from_epoch"]) for r in rows] == [(1, 0), (2, 0), (3, 2), (4, 2)]


def test_batched_epochs_hold_the_same_terms_as_epochs_reported_one_by_one(monkeypatch, tmp_path):
    config, context = _tiny_trial(monkeypatch, epoch_report_seconds=0.0, checkpoint_every=0)
    one_by_one = [m for m, _ in _run(monkeypatch, tmp_path / "a", config, context) if "epoch" in m]
    config, context = _tiny_trial(monkeypatch, epoch_report_seconds=1e9, checkpoint_every=0)
    batched = _files(_run(monkeypatch, tmp_path / "b", config, context)[-1][1])
    assert list(batched.epochs) == one_by_one
