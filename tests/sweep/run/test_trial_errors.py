"""A trial that Ray fails (its worker died) is recorded with Ray's own error text, clipped."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from sweep import names
from sweep.run.events import ArmProgress, StudyEvents
from sweep.run.store_callback import ERROR_CHARS, StoreCallback, clip_error, ray_trial_error
from sweep.run.trial import TrialContext, TrialMeta
from sweep.store import ResultsStore


def test_clip_error_keeps_the_last_lines_within_the_limit():
    text = "\n".join(f"line {i}: " + "x" * 50 for i in range(200)) + "\nRuntimeError: the end"
    clipped = clip_error(text)
    assert len(clipped) <= ERROR_CHARS
    assert clipped.startswith("...\nline ")  # cut at a line start, marked as cut
    assert clipped.endswith("RuntimeError: the end")


def test_clip_error_leaves_a_short_text_whole():
    assert clip_error("  RayActorError: the actor died\n") == "RayActorError: the actor died"


def test_ray_trial_error_reads_the_trials_error_file_keeping_the_last_failure(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text(
        "Failure # 1 (occurred at 2026-12-02)\nfirst failure\n"
        + "trace\n" * 500
        + "Failure # 2 (occurred at 2026-12-02)\nray.exceptions.ActorDiedError: node lost\n"
    )
    text = ray_trial_error(SimpleNamespace(error_file=str(error_file)))
    assert text.endswith("ray.exceptions.ActorDiedError: node lost")
    assert "Failure # 2" in text and len(text) <= ERROR_CHARS


def _dies(config):
    os._exit(3)  # the worker process dies: an infrastructure failure, as when a node is lost


@pytest.mark.slow
def test_trial_whose_worker_died_is_recorded_with_rays_error_text(tmp_path):
    import ray
    from ray import tune

    from sweep.run.ray_environment import tune_environment

    store = ResultsStore.create(tmp_path / "errors", "name: errors\n")
    context = TrialContext(
        study="errors", phase=names.SEARCH, settings={"arm": {}}, threads=1, data_key=""
    )
    events = StudyEvents(spec=None, arms={"arm": ArmProgress(planned=1)})
    callback = StoreCallback(store, context, events, "metric.mmd", "minimize")
    with tune_environment():
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        try:
            tune.Tuner(
                _dies,
                param_space=TrialMeta("arm", "arm-0000", 0).to_config(),
                run_config=tune.RunConfig(
                    storage_path=str(tmp_path / "ray"),
                    callbacks=[callback],
                    failure_config=tune.FailureConfig(max_failures=0),
                    verbose=0,
                ),
            ).fit()
        finally:
            ray.shutdown()
    row = store.trials().iloc[0]
    assert row[names.STATUS] == names.FAILED
    assert "the trial's worker failed" not in row[names.ERROR]
    assert "Failure # 1" in row[names.ERROR]
    assert "ActorDiedError" in row[names.ERROR] or "actor died" in row[names.ERROR].lower()
    assert len(row[names.ERROR]) <= ERROR_CHARS
