"""End to end through real Ray Tune (embedded): search and confirm phases, failures, schema."""

from __future__ import annotations

import json

import optuna
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from sweep import names
from sweep.cli import app
from sweep.spec import load_study
from sweep.store import TRIAL_SCHEMA
from tests.sweep.studies import EXPLODING_ARM, UNSEARCHED_ARM, write_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """One tiny study run once through `infovae-sweep run` (embedded Ray, started and stopped
    by the command itself)."""
    folder = tmp_path_factory.mktemp("e2e")
    study = write_study(
        folder,
        "tiny",
        trials=2,
        seeds=2,
        extra_arms=EXPLODING_ARM + UNSEARCHED_ARM,
        seed_policy="per_trial",
    )
    result = CliRunner().invoke(app, ["run", str(study), "--results", str(folder / "results")])
    assert result.exit_code == 0, result.output
    return load_study(study), folder / "results" / "tiny", result.output


def test_every_planned_trial_has_exactly_one_row(finished_study):
    spec, folder, _ = finished_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    assert trials["trial_id"].is_unique
    search = trials[trials["phase"] == "search"]
    assert search.groupby("arm").size().to_dict() == {
        "elbo": 2,
        "infovae": 2,
        "exploding": 2,
        "plain": 2,
    }
    confirm = trials[trials["phase"] == "confirm"]
    # The exploding arm has no completed search trial, so nothing to confirm.
    assert confirm.groupby("arm").size().to_dict() == {"elbo": 2, "infovae": 2, "plain": 2}
    assert sorted(confirm["seed"].unique()) == list(spec.confirm_seeds)


def test_search_and_confirm_run_in_one_tune_experiment(finished_study):
    """One Tuner for the whole study: one experiment folder under the run's Ray storage, and
    every confirm trial started only after its own arm's last search trial ended."""
    _, folder, _ = finished_study
    experiments = [p for p in (folder / names.RAY_DIR).iterdir() if p.is_dir()]
    assert len(experiments) == 1, experiments
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    for arm, group in trials.groupby("arm"):
        search = group[group["phase"] == "search"]
        confirm = group[group["phase"] == "confirm"]
        if len(confirm):
            assert confirm["started_at"].min() >= search["ended_at"].max(), arm


def test_trials_file_has_design_schema(finished_study):
    _, folder, _ = finished_study
    schema = pq.read_schema(folder / "trials.parquet")
    for name in [
        "study",
        "arm",
        "phase",
        "trial_id",
        "seed",
        "status",
        "error",
        "started_at",
        "ended_at",
        "train_seconds",
        "eval_seconds",
        "host",
        "device",
    ]:
        assert name in schema.names
        assert schema.field(name).type == TRIAL_SCHEMA.field(name).type
    for name in [
        "param.objective.lambda",
        "param.objective.alpha",
        "param.model.decoder.width",
        "metric.mmd",
        "metric.log_det_cov",
        "metric.mutual_info",
        "metric.nll_iwae",
        "metric.elbo",
        "metric.recon",
        "metric.kl",
        "metric.active_units",
        "metric.probe_acc_50",
    ]:
        assert name in schema.names, name


def test_epochs_file_has_one_row_per_trial_and_epoch(finished_study):
    _, folder, _ = finished_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    epochs = pq.read_table(folder / "epochs.parquet").to_pandas()
    completed = set(trials.loc[trials["status"] == "completed", "trial_id"])
    counts = epochs.groupby("trial_id").size()
    assert set(counts.index) >= completed
    assert (counts[list(completed)] == 2).all()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert {"train.loss", "train.elbo", "val.loss", "val.kl", "val.divergence"} <= set(epochs)


def test_diverging_trials_are_recorded_failed_with_their_error(finished_study):
    _, folder, _ = finished_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    exploding = trials[trials["arm"] == "exploding"]
    assert (exploding["status"] == "failed").all()
    assert exploding["error"].str.contains("NonFiniteLossError").all()
    others = trials[trials["arm"] != "exploding"]
    assert len(others) == 12
    assert (others["status"] == "completed").all()


def test_optuna_is_told_about_failures_and_keeps_history(finished_study):
    _, folder, _ = finished_study
    storage = f"sqlite:///{folder / 'optuna.db'}"
    exploding = optuna.load_study(study_name="exploding", storage=storage)
    assert [t.state for t in exploding.trials] == [optuna.trial.TrialState.FAIL] * 2
    infovae = optuna.load_study(study_name="infovae", storage=storage)
    assert [t.state for t in infovae.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert {t.user_attrs["trial_id"] for t in infovae.trials} == {"infovae-0000", "infovae-0001"}


def test_optuna_storage_names_the_objectives_of_every_study(finished_study):
    spec, folder, _ = finished_study
    storage = f"sqlite:///{folder / 'optuna.db'}"
    summaries = optuna.get_all_study_summaries(storage)
    assert summaries
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert study.metric_names == list(spec.search.metrics), summary.study_name


def test_optuna_storage_holds_every_trial_of_every_arm_and_phase(finished_study):
    """optuna-dashboard shows every trial: searched arms, arms without a search space (study
    named after the arm) and confirm trials (study <arm>/confirm, with their source's params)."""
    _, folder, _ = finished_study
    storage = f"sqlite:///{folder / 'optuna.db'}"
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    expected = {
        (arm if phase == "search" else f"{arm}/confirm"): set(group["trial_id"])
        for (arm, phase), group in trials.groupby(["arm", "phase"])
    }
    stored = {
        summary.study_name: {
            t.user_attrs["trial_id"]
            for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials
        }
        for summary in optuna.get_all_study_summaries(storage)
    }
    assert stored == expected
    confirm = optuna.load_study(study_name="infovae/confirm", storage=storage)
    row = trials[trials["trial_id"] == "infovae-confirm1-seed1000"].iloc[0]
    (trial,) = [t for t in confirm.trials if t.user_attrs["trial_id"] == row["trial_id"]]
    assert trial.values == [row["metric.mmd"]]
    assert trial.params["objective.lambda"] == row["param.objective.lambda"]
    assert trial.user_attrs["seed"] == 1000


def test_confirm_phase_retrains_the_best_search_configuration(finished_study):
    _, folder, _ = finished_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    search = trials[(trials["arm"] == "infovae") & (trials["phase"] == "search")]
    best = search.sort_values("metric.mmd").iloc[0]
    confirm = trials[(trials["arm"] == "infovae") & (trials["phase"] == "confirm")]
    assert (confirm["param.objective.lambda"] == best["param.objective.lambda"]).all()
    assert (confirm["param.objective.kernel"] == best["param.objective.kernel"]).all()


def test_artifacts_and_report_are_written(finished_study):
    _, folder, output = finished_study
    completed = pq.read_table(folder / "trials.parquet").to_pandas()
    completed = completed[completed["status"] == "completed"]
    for trial_id in completed["trial_id"]:
        assert (folder / "artifacts" / trial_id / "latents.npy").is_file()
        assert (folder / "artifacts" / trial_id / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "report.html").is_file()
    assert "report:" in output


def test_the_driver_writes_its_run_record(finished_study):
    _, folder, _ = finished_study
    (run,) = json.loads((folder / "run.json").read_text())["runs"]
    rows = pq.read_table(folder / "trials.parquet").num_rows
    assert run["status"] == "finished"
    assert run["trials_recorded"] == {"start": 0, "end": rows}
    assert run["command"]  # the driver's argv (here pytest's: the study ran in-process)
    assert run["packages"]["torch"] != "not installed"


def test_rerunning_a_finished_study_runs_nothing_new(finished_study, tmp_path):
    spec, folder, _ = finished_study
    before = pq.read_table(folder / "trials.parquet").num_rows
    result = CliRunner().invoke(app, ["resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(folder / "trials.parquet").num_rows == before


def test_resume_adds_to_optuna_the_recorded_trials_it_lacks(finished_study, tmp_path):
    """A driver killed between recording a trial and adding it to Optuna: here the confirm
    study of an arm and the study of an arm without a search space are lost whole; resuming
    the finished study trains nothing and puts every recorded trial back."""
    import shutil

    _, finished, _ = finished_study
    folder = tmp_path / "tiny"
    shutil.copytree(finished, folder, ignore=shutil.ignore_patterns("ray"))
    storage = f"sqlite:///{folder / 'optuna.db'}"
    for name in ("infovae/confirm", "plain"):
        optuna.delete_study(study_name=name, storage=storage)
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    result = CliRunner().invoke(app, ["resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(folder / "trials.parquet").num_rows == len(trials)
    lost = (("infovae/confirm", "infovae", "confirm"), ("plain", "plain", "search"))
    for name, arm, phase in lost:
        mine = trials[(trials["arm"] == arm) & (trials["phase"] == phase)]
        restored = optuna.load_study(study_name=name, storage=storage).trials
        assert {t.user_attrs["trial_id"] for t in restored} == set(mine["trial_id"])
    (trial,) = [
        t for t in optuna.load_study(study_name="infovae/confirm", storage=storage).trials
        if t.user_attrs["trial_id"] == "infovae-confirm1-seed1000"
    ]
    row = trials[trials["trial_id"] == "infovae-confirm1-seed1000"].iloc[0]
    assert trial.params["objective.lambda"] == row["param.objective.lambda"]


def test_asha_early_stopping_records_stopped_trials_once(tmp_path):
    """ASHA (per arm) on val.elbo: every trial is recorded exactly once, as completed or as
    stopped with fewer epochs than planned; Optuna marks stopped trials pruned."""
    study = write_study(tmp_path, "asha", trials=4, seeds=0, epochs=4)
    text = study.read_text().replace(
        "  objectives:",
        "  early_stopping: {scheduler: asha, metric: val.elbo, mode: max, grace_period: 1,"
        " reduction_factor: 2}\n  objectives:",
    )
    study.write_text(text)
    results = tmp_path / "results"
    result = CliRunner().invoke(
        app, ["run", str(study), "--results", str(results), "--max-concurrent", "1"]
    )
    assert result.exit_code == 0, result.output
    trials = pq.read_table(results / "asha" / "trials.parquet").to_pandas()
    epochs = pq.read_table(results / "asha" / "epochs.parquet").to_pandas()
    assert len(trials) == 8 and trials["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "stopped"}
    # Seeded sampler and seeded CPU training: ASHA's decisions are reproducible here.
    assert (trials["status"] == "stopped").any() and (trials["status"] == "completed").any()
    per_trial = epochs.groupby("trial_id").size()
    for _, row in trials.iterrows():
        expected = 4 if row["status"] == "completed" else None
        if expected:
            assert per_trial[row["trial_id"]] == expected
        else:
            assert per_trial[row["trial_id"]] < 4
    storage = f"sqlite:///{results / 'asha' / 'optuna.db'}"
    states = [t.state for t in optuna.load_study(study_name="elbo", storage=storage).trials]
    stopped = (trials[trials["arm"] == "elbo"]["status"] == "stopped").sum()
    assert states.count(optuna.trial.TrialState.PRUNED) == stopped


def test_arm_without_search_space_trains_its_fixed_configuration_per_seed(finished_study):
    _, folder, _ = finished_study
    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    plain = trials[(trials["arm"] == "plain") & (trials["phase"] == "search")]
    assert sorted(plain["trial_id"]) == ["plain-0000", "plain-0001"]
    assert sorted(plain["seed"]) == [0, 1]  # seed_policy per_trial: train.seed + index
    assert (plain["param.model.decoder.width"] == 16).all()


def test_a_repeated_configuration_is_recorded_as_a_copy_not_trained(tmp_path):
    """elbo searches a 2-value choice with one seed for every trial (seed_policy fixed): of
    its 5 trials at most 2 are distinct configurations; the repeats are copies. One trial at a
    time: only a configuration already *completed* is copied, so two trials in flight at once
    may still share one."""
    study = write_study(tmp_path, "repeats", trials=5, seeds=1, epochs=1, seed_policy="fixed")
    study.write_text(study.read_text().replace("max_concurrent: 2", "max_concurrent: 1"))
    result = CliRunner().invoke(app, ["run", str(study), "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    trials = pq.read_table(tmp_path / "r" / "repeats" / "trials.parquet").to_pandas()
    elbo = trials[(trials["arm"] == "elbo") & (trials["phase"] == "search")]
    assert len(elbo) == 5 and elbo["trial_id"].is_unique
    trained = elbo[elbo["copy_of"].isna()]
    copies = elbo[elbo["copy_of"].notna()]
    assert trained["param.model.decoder.width"].is_unique  # no configuration trained twice
    assert len(copies) >= 3
    by_id = trials.set_index("trial_id")
    for _, copy in copies.iterrows():
        original = by_id.loc[copy["copy_of"]]
        assert original["copy_of"] is None or original.isna()["copy_of"]
        assert copy["param.model.decoder.width"] == original["param.model.decoder.width"]
        assert copy["metric.mmd"] == original["metric.mmd"]
        assert copy["train_seconds"] == 0.0
    epochs = pq.read_table(tmp_path / "r" / "repeats" / "epochs.parquet").to_pandas()
    assert set(copies["trial_id"]) <= set(epochs["trial_id"])  # curves copied for the report
    db = f"sqlite:///{tmp_path / 'r' / 'repeats' / 'optuna.db'}"
    told = optuna.load_study(study_name="elbo", storage=db).get_trials()
    assert len(told) == 5 and all(t.state.name == "COMPLETE" for t in told)
