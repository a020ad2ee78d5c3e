"""Study files: shipped studies load, bad files are refused with file, line and YAML path."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from infovae_core.config import ConfigError, TrialConfig
from infovae_core.objective import TERM_NAMES
from sweep.plan import format_plan, plan_study
from sweep.spec import EPOCH_TERMS, StudySpec, StudySpecError, load_study

ROOT = Path(__file__).resolve().parents[3]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))
BAD = Path(__file__).resolve().parent / "bad_studies"

MINIMAL = """\
name: tiny
data: {dataset: digits}
arms:
  infovae:
    fixed: {objective.alpha: 0.5}
    search:
      objective.lambda: {log_uniform: {low: 1.0, high: 100.0}}
search:
  trials_per_arm: 4
  objectives: [{metric: metric.mmd, direction: minimize}]
"""

# file -> (line, YAML path or "" for whole-file problems, a phrase the message must contain)
BAD_FILES: dict[str, tuple[int, str, str]] = {
    "unknown_top_level_key.yaml": (11, "results_dir", "unknown key"),
    "unknown_nested_key.yaml": (9, "search.trails_per_arm", "did you mean trials_per_arm"),
    "unknown_config_key.yaml": (
        7,
        "arms.infovae.fixed.objective.lamda",
        "did you mean objective.lambda",
    ),
    "uniform_bounds_reversed.yaml": (
        9,
        "arms.infovae.search.objective.alpha.uniform",
        "low must be < high",
    ),
    "log_uniform_low_zero.yaml": (
        9,
        "arms.infovae.search.objective.lambda.log_uniform.low",
        "must be > 0",
    ),
    "negative_divergence_weight.yaml": (
        9,
        "arms.infovae.search.objective.lambda",
        "objective.lambda=0.1",
    ),
    "invalid_kernel_choice.yaml": (8, "arms.infovae.search.objective.kernel", "'laplace'"),
    "fixed_and_searched.yaml": (8, "arms.infovae.search.objective.lambda", "not both"),
    "nsga2_one_objective.yaml": (9, "search.sampler", "several objectives"),
    "asha_multi_objective.yaml": (13, "search.early_stopping", "single-objective"),
    "cmaes_multi_objective.yaml": (9, "search.sampler", "cmaes is single-objective"),
    "unknown_metric.yaml": (11, "search.objectives.0.metric", "unknown metric 'metric.fid'"),
    "bad_direction.yaml": (12, "search.objectives.0.direction", "'minimize' or 'maximize'"),
    "negative_gpu.yaml": (13, "resources.gpu", "greater than or equal to 0"),
    "fractional_gpu_above_one.yaml": (12, "resources.gpu", "whole GPUs"),
    "confirm_top_k_zero.yaml": (12, "confirm.top_k", "greater than or equal to 1"),
    "malformed.yaml": (4, "", "invalid YAML"),
    "empty.yaml": (1, "", "empty"),
    "top_level_list.yaml": (2, "", "must be a mapping"),
    "bad_arm_name.yaml": (5, "arms.info vae", "arm names must match"),
    "no_arms.yaml": (4, "arms", "at least one arm"),
    "grid_sampler_uniform.yaml": (8, "arms.infovae.search.objective.lambda", "grid sampler"),
    "grid_without_grid_sampler.yaml": (
        7,
        "arms.infovae.search.objective.lambda",
        "sampler: grid",
    ),
    "grid_size_mismatch.yaml": (11, "search.trials_per_arm", "has 6 points"),
    "zero_width_default.yaml": (7, "defaults.model.decoder.width", "must be >= 4"),
    "zero_width_searched.yaml": (8, "arms.infovae.search.model.decoder.width", "must be >= 4"),
    "uniform_for_integer_setting.yaml": (
        7,
        "arms.infovae.search.model.decoder.width",
        "integer setting",
    ),
    "probe_metric_without_labels.yaml": (13, "search.objectives.0.metric", "eval.probe_labels"),
    "missing_data.yaml": (2, "data", "required key is missing"),
    "duplicate_key.yaml": (11, "search.trials_per_arm", "duplicate key (first at line 9)"),
    "data_key_in_defaults.yaml": (5, "defaults.data.binarize", "top-level data"),
    "asha_wrong_mode.yaml": (13, "search.early_stopping.mode", "use mode: max"),
    "empty_search_fixed_seed.yaml": (5, "arms.elbo", "no search space"),
    "bad_study_name.yaml": (2, "name", "results folder"),
}


# -- shipped studies ---------------------------------------------------------------------------


def test_the_three_shipped_studies_exist() -> None:
    assert {p.name for p in STUDIES} >= {"digits.yaml", "mnist.yaml", "lambda_sweep.yaml"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_study_loads_and_builds_every_arm(path: Path) -> None:
    spec = load_study(path)
    assert spec.name == path.stem
    for arm in spec.arm_names:
        assert isinstance(spec.arm_config(arm), TrialConfig)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_shipped_study_round_trips_through_yaml(path: Path) -> None:
    spec = load_study(path)
    assert StudySpec.from_yaml_text(spec.to_yaml()) == spec


def test_round_trip_keeps_list_choices_and_int_distributions(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "      objective.lambda:",
        "      objective.scales: {choice: [[1.0], [0.5, 1.0, 2.0]]}\n"
        "      model.latent_dim: {int: {low: 2, high: 16, step: 2}}\n"
        "      objective.lambda:",
    )
    spec = StudySpec.from_yaml_text(text)
    written = tmp_path / "study.yaml"
    written.write_text(spec.to_yaml())
    again = load_study(written)
    assert again == spec
    assert again.arms["infovae"].search["objective.scales"].values == ([1.0], [0.5, 1.0, 2.0])
    assert again.arms["infovae"].search["model.latent_dim"].int_.step == 2


def test_digits_plan_counts_search_and_confirm_trials() -> None:
    spec = load_study(ROOT / "studies" / "digits.yaml")
    plan = plan_study(spec)
    arms = len(spec.arms)
    per_arm = spec.search.trials_per_arm
    confirm = spec.confirm.top_k * spec.confirm.seeds
    assert plan.search_trials == per_arm * arms
    assert plan.confirm_trials == confirm * arms
    assert plan.total_trials == (per_arm + confirm) * arms
    assert plan.epoch_budget == (per_arm + confirm) * arms * spec.arm_config("elbo").train.epochs


def test_digits_study_fits_the_ten_minute_laptop_budget() -> None:
    # ~4 s per 20-epoch digits trial on 2 cores plus overhead: stay well under 10 minutes.
    spec = load_study(ROOT / "studies" / "digits.yaml")
    plan = plan_study(spec)
    waves = -(-plan.total_trials // spec.search.max_concurrent)
    assert spec.search.max_concurrent <= 2 and spec.resources.gpu == 0
    assert waves * 10 < 600


def test_lambda_sweep_runs_each_arms_whole_grid() -> None:
    spec = load_study(ROOT / "studies" / "lambda_sweep.yaml")
    assert spec.search.sampler == "grid"
    assert spec.trials_for("infovae-mmd") == 6 * 2 * 3
    assert spec.trials_for("elbo") == 3
    assert plan_study(spec).confirm_trials == 0


def test_format_plan_lists_arms_totals_and_spaces() -> None:
    spec = load_study(ROOT / "studies" / "digits.yaml")
    text = format_plan(plan_study(spec))
    total = plan_study(spec).total_trials
    assert re.search(rf"^\s+total\s+\d+\s+\d+\s+{total}\s", text, re.MULTILINE)
    for arm in spec.arm_names:
        assert re.search(rf"^\s+{re.escape(arm)}\s+\d+", text, re.MULTILINE)
    assert "objective.lambda: log_uniform[1, 100]" in text


# -- spec behaviour ----------------------------------------------------------------------------


def test_spec_is_frozen() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        spec.name = "other"  # type: ignore[misc]


def test_arm_config_layers_data_defaults_fixed_overrides_and_seed() -> None:
    text = MINIMAL.replace(
        "data: {dataset: digits}",
        "data: {dataset: digits, binarize: static}\n"
        "defaults:\n  model: {latent_dim: 4}\n  train.epochs: 3\n  objective.alpha: 0.2",
    )
    spec = StudySpec.from_yaml_text(text)
    config = spec.arm_config("infovae", {"objective.lambda": 7.0}, seed=11)
    assert config.data.binarize == "static"
    assert config.model.latent_dim == 4
    assert config.train.epochs == 3
    assert config.objective.alpha == 0.5  # the arm's fixed value beats the default 0.2
    assert config.objective.lambda_ == 7.0
    assert config.train.seed == 11


def test_arm_config_refuses_an_unknown_override_key() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL)
    with pytest.raises(ConfigError, match="objective.lamda"):
        spec.arm_config("infovae", {"objective.lamda": 3.0})


def test_unknown_arm_is_named_with_the_known_ones() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL)
    with pytest.raises(ValueError, match=r"unknown arm 'nope' \(arms: infovae\)"):
        spec.arm_config("nope")


def test_exponent_floats_without_a_dot_are_read_as_numbers() -> None:
    # Plain PyYAML reads 1e-3 as the string "1e-3"; the loader reads it as a float.
    spec = StudySpec.from_yaml_text(MINIMAL + "defaults: {train.lr: 1e-3}\n")
    assert spec.arm_config("infovae").train.lr == pytest.approx(0.001)


def test_seed_policy_fixed_uses_train_seed_for_every_trial() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL + "defaults: {train.seed: 5}\n")
    assert [spec.search_seed("infovae", i) for i in range(3)] == [5, 5, 5]


def test_seed_policy_per_trial_adds_the_trial_index() -> None:
    text = MINIMAL.replace("  trials_per_arm: 4", "  trials_per_arm: 4\n  seed_policy: per_trial")
    spec = StudySpec.from_yaml_text(text + "defaults: {train.seed: 5}\n")
    assert [spec.search_seed("infovae", i) for i in range(3)] == [5, 6, 7]


def test_a_searched_seed_is_left_to_the_sampler() -> None:
    spec = load_study(ROOT / "studies" / "lambda_sweep.yaml")
    assert spec.search_seed("infovae-mmd", 0) is None


def test_confirm_defaults_to_top_one_with_three_seeds() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL)
    assert spec.confirm.top_k == 1
    assert spec.confirm_seeds == (1000, 1001, 1002)
    assert spec.confirm_rank.metric == "metric.mmd"


def test_early_stopping_mode_is_implied_by_the_metric() -> None:
    text = MINIMAL + "  early_stopping: {metric: val.elbo, grace_period: 2}\n"
    spec = StudySpec.from_yaml_text(text)
    assert spec.search.early_stopping is not None
    assert spec.search.early_stopping.resolved_mode == "max"


def test_epoch_terms_match_the_trainers_loss_terms() -> None:
    assert EPOCH_TERMS == TERM_NAMES


# -- errors ------------------------------------------------------------------------------------


def test_every_bad_fixture_has_an_expectation() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(BAD_FILES)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_study_is_refused_naming_line_and_path(name: str) -> None:
    line, path, phrase = BAD_FILES[name]
    source = BAD / name
    with pytest.raises(StudySpecError) as caught:
        load_study(source)
    message = str(caught.value)
    where = f"{source}:{line}: {path}: " if path else f"{source}:{line}: "
    assert where in message, message
    assert phrase in message, message


def test_a_missing_file_is_a_study_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(StudySpecError, match=re.escape(f"{missing}: cannot read")):
        load_study(missing)


def test_several_errors_are_listed_one_per_line_in_file_order() -> None:
    text = MINIMAL.replace("trials_per_arm: 4", "trials_per_arm: 0") + "resources: {gpu: -1}\n"
    with pytest.raises(StudySpecError) as caught:
        StudySpec.from_yaml_text(text, source="s.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("s.yaml:9: search.trials_per_arm: ")
    assert lines[1].startswith("s.yaml:11: resources.gpu: ")
    assert [(i.line, i.path) for i in caught.value.issues] == [
        (9, "search.trials_per_arm"),
        (11, "resources.gpu"),
    ]


def test_study_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        StudySpec.from_yaml_text("")


def test_a_joint_weight_violation_is_found_at_a_corner_of_two_searched_keys() -> None:
    # Each range alone is fine with the defaults (alpha 0, lambda 1): only alpha = 0 together
    # with lambda = 0.5 makes alpha + lambda - 1 negative.
    text = MINIMAL.replace("    fixed: {objective.alpha: 0.5}\n", "").replace(
        "{log_uniform: {low: 1.0, high: 100.0}}",
        "{uniform: {low: 0.5, high: 2.0}}\n      objective.alpha: {uniform: {low: 0.0, high: 1.0}}",
    )
    with pytest.raises(StudySpecError, match=r"search\.objective\.lambda: alpha \+ lambda - 1"):
        StudySpec.from_yaml_text(text)


def test_loading_a_bad_file_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text(MINIMAL.replace("digits", "cifar"))
    with pytest.raises(StudySpecError, match="data.dataset"):
        load_study(source)
    assert list(tmp_path.iterdir()) == [source]


def test_a_python_tag_is_refused_not_constructed() -> None:
    text = MINIMAL + "storage: !!python/object/apply:os.getcwd []\n"
    with pytest.raises(StudySpecError, match=r"<string>:11: invalid YAML"):
        StudySpec.from_yaml_text(text)


def test_a_space_too_large_for_all_corners_is_checked_one_key_at_a_time() -> None:
    # 13 searched keys x 2 extremes = 8192 combinations (> 4096): each key's extremes are still
    # built, so lambda = 0.1 with alpha = 0 is caught.
    ints = [
        "model.latent_dim",
        "model.encoder.width",
        "model.encoder.depth",
        "model.decoder.width",
        "model.decoder.depth",
        "train.epochs",
        "train.batch_size",
        "eval.iwae_samples",
        "eval.iwae_points",
        "eval.seed",
        "eval.latents_to_keep",
    ]
    lines = [f"      {key}: {{int: {{low: 4, high: 8}}}}" for key in ints]
    lines += ["      train.lr: {log_uniform: {low: 1.0e-4, high: 1.0e-2}}"]
    text = MINIMAL.replace("{objective.alpha: 0.5}", "{objective.alpha: 0.0}").replace(
        "{log_uniform: {low: 1.0, high: 100.0}}",
        "{log_uniform: {low: 0.1, high: 10.0}}\n" + "\n".join(lines),
    )
    with pytest.raises(StudySpecError, match=r"search\.objective\.lambda: alpha \+ lambda"):
        StudySpec.from_yaml_text(text)
    assert StudySpec.from_yaml_text(text.replace("low: 0.1", "low: 1.0")).trials_for("infovae") == 4


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b"], ids=["nul", "bell", "escape"])
def test_a_non_printable_character_is_a_study_spec_error_with_its_position(
    tmp_path: Path, character: str
) -> None:
    source = tmp_path / "binary.yaml"
    lines = MINIMAL.splitlines(keepends=True)
    lines[2] = lines[2][:4] + character + lines[2][4:]  # line 3, column 5
    source.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(StudySpecError) as caught:
        load_study(source)
    (issue,) = caught.value.issues
    assert (issue.source, issue.line) == (str(source), 3)
    assert f"U+{ord(character):04X} at line 3, column 5" in str(caught.value)
    assert str(caught.value).startswith(f"{source}:3: invalid YAML")


# -- data.train_size ---------------------------------------------------------------------------

EXPLODING = """\
name: exploding
data: {dataset: digits, seed: 3}
arms:
  elbo:
    fixed: {objective.alpha: 0.0, objective.lambda: 1.0}
    search:
      data.train_size: {grid: [50, 200, 1258]}
  infovae:
    fixed: {objective.alpha: 1.0, objective.lambda: 10.0}
    search:
      data.train_size: {grid: [50, 200, 1258]}
search:
  sampler: grid
  objectives: [{metric: metric.nll_iwae, direction: minimize}]
"""


def test_train_size_in_the_data_block_reaches_every_arm() -> None:
    spec = StudySpec.from_yaml_text(
        MINIMAL.replace("{dataset: digits}", "{dataset: digits, train_size: 300}")
    )
    assert spec.data.train_size == 300
    assert spec.arm_config("infovae").data.train_size == 300
    assert StudySpec.from_yaml_text(spec.to_yaml()) == spec


def test_train_size_defaults_to_the_whole_split() -> None:
    assert StudySpec.from_yaml_text(MINIMAL).arm_config("infovae").data.train_size is None


def test_a_study_gridding_train_size_validates_and_plans_the_grid() -> None:
    spec = StudySpec.from_yaml_text(EXPLODING)
    assert spec.trials_for("elbo") == spec.trials_for("infovae") == 3
    config = spec.arm_config("infovae", {"data.train_size": 50})
    assert (config.data.train_size, config.data.seed) == (50, 3)
    assert "data.train_size" in plan_study(spec).arms[0].searched


def test_an_arm_may_fix_train_size_overriding_the_data_block() -> None:
    text = MINIMAL.replace("{dataset: digits}", "{dataset: digits, train_size: 300}").replace(
        "{objective.alpha: 0.5}", "{objective.alpha: 0.5, data.train_size: 100}"
    )
    assert StudySpec.from_yaml_text(text).arm_config("infovae").data.train_size == 100


def test_a_searched_train_size_above_the_split_is_refused_naming_the_key_and_size() -> None:
    text = EXPLODING.replace("[50, 200, 1258]}\n  infovae", "[50, 200, 5000]}\n  infovae")
    with pytest.raises(StudySpecError) as caught:
        StudySpec.from_yaml_text(text, source="s.yaml")
    message = str(caught.value)
    assert (
        "s.yaml:7: arms.elbo.search.data.train_size: 5000 is more than the 1258 images" in message
    )


def test_train_size_in_the_data_block_is_checked_against_the_split() -> None:
    text = MINIMAL.replace("{dataset: digits}", "{dataset: mnist, train_size: 60000}")
    with pytest.raises(StudySpecError, match=r":2: data.train_size: 60000 is more than the 50000"):
        StudySpec.from_yaml_text(text)


@pytest.mark.parametrize("value", ["1", "100.5", "'100'"])
def test_train_size_must_be_an_integer_of_at_least_two(value: str) -> None:
    text = MINIMAL.replace("{dataset: digits}", f"{{dataset: digits, train_size: {value}}}")
    with pytest.raises(StudySpecError, match=r"data.train_size: "):
        StudySpec.from_yaml_text(text)


def test_other_data_keys_are_still_refused_in_arms() -> None:
    text = MINIMAL.replace("{objective.alpha: 0.5}", "{objective.alpha: 0.5, data.seed: 1}")
    with pytest.raises(StudySpecError, match=r"arms.infovae.fixed.data.seed: data settings belong"):
        StudySpec.from_yaml_text(text)


def test_train_size_in_defaults_is_refused_pointing_at_data_or_an_arm() -> None:
    text = MINIMAL.replace("arms:", "defaults: {data.train_size: 10}\narms:")
    with pytest.raises(
        StudySpecError, match=r"defaults.data.train_size: .*or, for data.train_size, in an arm"
    ):
        StudySpec.from_yaml_text(text)


# -- convergence ---------------------------------------------------------------------------


def test_convergence_defaults_to_the_validation_elbo_at_half_a_percent() -> None:
    spec = StudySpec.from_yaml_text(MINIMAL)
    assert (spec.convergence.metric, spec.convergence.tolerance) == ("val.elbo", 0.005)


def test_convergence_block_sets_metric_and_tolerance_and_round_trips() -> None:
    spec = StudySpec.from_yaml_text(
        MINIMAL + "convergence: {metric: train.loss, tolerance: 0.01}\n"
    )
    assert (spec.convergence.metric, spec.convergence.tolerance) == ("train.loss", 0.01)
    assert StudySpec.from_yaml_text(spec.to_yaml()) == spec


@pytest.mark.parametrize(
    ("block", "path", "phrase"),
    [
        ("{tolerance: 0}", "convergence.tolerance", "greater than 0"),
        ("{tolerance: -0.1}", "convergence.tolerance", "greater than 0"),
        ("{tolerance: .nan}", "convergence.tolerance", "finite"),
        ("{metric: metric.mmd}", "convergence.metric", "unknown per-epoch metric 'metric.mmd'"),
        ("{metric: val.elob}", "convergence.metric", "allowed: val.loss"),
        ("{window: 3}", "convergence.window", "unknown key"),
    ],
)
def test_a_bad_convergence_block_is_refused_naming_the_key(
    block: str, path: str, phrase: str
) -> None:
    with pytest.raises(StudySpecError) as caught:
        StudySpec.from_yaml_text(MINIMAL + f"convergence: {block}\n", source="s.yaml")
    message = str(caught.value)
    assert f"s.yaml:11: {path}: " in message, message
    assert phrase in message, message


def test_a_probe_metric_with_leading_zeros_is_refused_naming_the_spelling_that_exists():
    """The evaluation writes probe_acc_100; metric.probe_acc_0100 would never be found."""
    text = MINIMAL.replace(
        "metric.mmd, direction: minimize", "metric.probe_acc_0100, direction: maximize"
    )
    with pytest.raises(StudySpecError, match=re.escape("metric.probe_acc_100")):
        StudySpec.from_yaml_text(text)
