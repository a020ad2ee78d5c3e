"""`infovae-sweep validate`: several files, the plan's epochs and gradient steps per trial, the
arms' fixed settings, repeated configurations and the rough wall-time estimate."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sweep.cli import app
from sweep.plan import Calibration, calibrate, format_plan, plan_study
from sweep.spec import load_study

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "studies"
runner = CliRunner()


def _epochs(steps: int, size: int, batch: int = 128) -> int:
    return -(-steps // -(-size // batch))


def test_a_train_size_grid_with_a_step_budget_sums_each_trials_own_epochs():
    plan = plan_study(load_study(STUDIES / "exploding_latent.yaml"))
    sizes = (500, 1000, 2000, 5000, 10000, 50000)
    per_seed = sum(_epochs(20_000, size) for size in sizes)  # 9,556
    assert plan.epoch_budget == 2 * 5 * per_seed == 95_560
    assert plan.arms[0].exact


def test_gradient_steps_per_trial_are_epochs_times_batches():
    plan = plan_study(load_study(STUDIES / "digits.yaml"))
    arm = plan.arms[0]
    assert arm.trial_steps == (300 * 10,) * arm.search_trials  # 1,258 images, batches of 128
    assert plan.step_budget == 300 * 10 * plan.total_trials


def test_an_arm_with_fewer_configurations_than_trials_is_warned_about():
    text = format_plan(plan_study(load_study(STUDIES / "digits.yaml")))
    assert "elbo's search space holds 3 distinct configuration(s) for 10 search trials" in text
    assert "infovae-mmd's search space holds" not in text  # continuous ranges


def test_the_plan_lists_each_arms_fixed_settings():
    text = format_plan(plan_study(load_study(STUDIES / "digits.yaml")))
    assert "elbo fixes: objective.alpha=0, objective.lambda=1" in text


def test_the_wall_time_is_the_calibrated_step_time_times_the_steps_over_the_concurrency():
    plan = plan_study(load_study(STUDIES / "digits.yaml"))
    calibration = Calibration({"elbo": 0.01, "infovae-mmd": 0.02}, 5, 1, 2)
    expected = (0.01 * plan.arms[0].step_budget + 0.02 * plan.arms[1].step_budget) / 2
    assert calibration.wall_seconds(plan) == expected
    assert "rough estimate" in format_plan(plan, calibration)


def test_calibration_times_each_network_briefly_and_caps_concurrency_at_the_cpus():
    spec = load_study(STUDIES / "digits.yaml")
    calibration = calibrate(spec, cpus=1)
    assert set(calibration.step_seconds) == set(spec.arm_names)
    assert all(0 < s < 5 for s in calibration.step_seconds.values())
    assert calibration.concurrent == 1  # max_concurrent 2, but one CPU


def test_validate_takes_several_files():
    files = [str(STUDIES / "digits.yaml"), str(STUDIES / "mnist.yaml")]
    result = runner.invoke(app, ["validate", "--no-estimate", *files])
    assert result.exit_code == 0, result.output
    assert "study digits:" in result.stdout
    assert "study mnist:" in result.stdout


def test_validate_reports_every_file_and_exits_2_when_one_is_invalid(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\n", encoding="utf-8")
    good = STUDIES / "digits.yaml"
    result = runner.invoke(app, ["validate", "--no-estimate", str(bad), str(good)])
    assert result.exit_code == 2
    assert "study digits:" in result.stdout  # the file after the invalid one is still planned
    assert "1 of 2 study file(s) invalid" in result.output
