"""A real tiny study: the results the driver receives from Ray hold no artefact and no epoch
list, while the study folder still gets every artefact and epoch row, Ray's storage keeps
no folder of a recorded trial, and a trial's checkpoint never makes Tune rewrite its whole
experiment state (which made a study's rate fall with its size)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

from sweep import names
from sweep.run import store_callback
from sweep.run.runner import run_study
from sweep.spec import load_study
from tests.sweep.studies import write_study

pytestmark = pytest.mark.slow

EPOCHS = 3


@pytest.fixture(scope="module")
def light_study(tmp_path_factory):
    """The study, run once; every result the driver's store callback was handed; after each
    trial checkpoint Tune saw, whether it now owes a forced experiment-state write."""
    folder = tmp_path_factory.mktemp("light")
    spec = load_study(write_study(folder, "light", trials=2, seeds=1, epochs=EPOCHS))
    seen: list[dict] = []
    forced_after_checkpoint: list[bool] = []
    on_checkpoint = _ExperimentCheckpointManager.on_trial_checkpoint
    mixin = store_callback._StoreCallbackMixin
    on_result, on_complete = mixin.on_trial_result, mixin.on_trial_complete

    def spy_result(self, iteration, trials, trial, result, **info):
        seen.append(dict(result))
        return on_result(self, iteration, trials, trial, result, **info)

    def spy_complete(self, iteration, trials, trial, **info):
        seen.append(dict(trial.last_result))
        return on_complete(self, iteration, trials, trial, **info)

    def spy_checkpoint(self, trial):
        on_checkpoint(self, trial)
        forced_after_checkpoint.append(self._should_force_sync_up)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mixin, "on_trial_result", spy_result)
        patch.setattr(mixin, "on_trial_complete", spy_complete)
        patch.setattr(_ExperimentCheckpointManager, "on_trial_checkpoint", spy_checkpoint)
        outcome = run_study(spec, folder / "results" / "light", num_cpus=2)
    return outcome.folder, seen, forced_after_checkpoint


def test_the_driver_receives_no_artefact_and_no_epoch_list(light_study):
    folder, seen, _ = light_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    trained = int(trials[names.COPY_OF].isna().sum())  # a repeated configuration is copied
    finals = [r for r in seen if "trial_status" in r]
    assert len(finals) == 2 * trained  # each trial's final result, on arrival and at completion
    for result in seen:
        ours = {k: v for k, v in result.items() if k != "config"}  # Tune's copy of the config
        assert all(isinstance(v, int | float | str | type(None)) for v in ours.values()), ours
        assert not any("artifact" in key or "epoch_rows" in key for key in ours)


def test_the_study_folder_gets_every_artefact_and_epoch_row(light_study):
    folder, _, _ = light_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    assert len(trials) == 6 and (trials[names.STATUS] == names.COMPLETED).all()
    for trial_id in trials[names.TRIAL_ID]:
        files = {p.name for p in (folder / names.ARTIFACTS_DIR / trial_id).iterdir()}
        assert files == {"latents.npy", "samples.png", "reconstructions.png"}, trial_id
    epochs = pq.read_table(folder / "epochs.parquet").to_pandas()
    per_trial = epochs.groupby(names.TRIAL_ID)[names.EPOCH].apply(sorted).to_dict()
    assert per_trial == {t: list(range(1, EPOCHS + 1)) for t in trials[names.TRIAL_ID]}
    assert epochs["val.elbo"].notna().all()
    assert trials[names.HOST].notna().all() and trials[names.STARTED_AT].notna().all()


def test_ray_storage_keeps_no_file_of_a_recorded_trial(light_study):
    folder, _, _ = light_study
    (experiment,) = [p for p in (folder / names.RAY_DIR).iterdir() if p.is_dir()]
    assert [p for p in experiment.iterdir() if p.is_dir()] == []


def test_a_trials_final_checkpoint_forces_no_experiment_state_write(light_study):
    folder, _, forced_after_checkpoint = light_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    trained = int(trials[names.COPY_OF].isna().sum())
    assert len(forced_after_checkpoint) == trained  # one checkpoint each: EPOCHS < checkpoint_every
    assert not any(forced_after_checkpoint)
