"""The synthetic study of the report tests is written through the spec and the store."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweep import names
from sweep.spec import load_study
from sweep.store import ResultsStore, json_columns
from tests.sweep.synthetic_study import default_arms, synthetic_spec, write_synthetic_study


def test_the_synthetic_study_file_is_accepted_by_load_study(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "s", n_search=3, n_seeds=2, artifacts=False)
    spec = load_study(folder / names.STUDY_FILE)
    assert spec == synthetic_spec(default_arms(), n_search=3, n_seeds=2, failed_per_arm=1)
    assert spec.arm_names == ("elbo", "infovae")
    assert spec.search.metrics == (names.metric("nll_iwae"), names.metric("mmd"))
    assert spec.confirm_seeds == (0, 1)
    assert spec.trials_for("elbo") == 4  # 3 completed + 1 failed search trials


def test_the_synthetic_trials_are_recorded_and_compacted_by_the_store(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "s", n_search=3, n_seeds=2, n_epochs=4,
                                   artifacts=False)
    store = ResultsStore.open(folder)
    trials = store.trials()
    assert len(trials) == 2 * (3 + 1 + 2)
    assert not list((folder / names.PARTS_DIR).glob("*.parquet"))  # all in the main files
    assert len(store.epochs()) == 2 * (3 + 2) * 4  # completed trials only
    # A list-valued hyperparameter is the store's JSON text, as the runner writes it.
    assert json_columns(store.trials_table().schema) == [names.param("objective.scales")]
    assert set(trials[names.param("objective.scales")]) == {"[1.0]"}
    spec = load_study(folder / names.STUDY_FILE)
    widths = spec.arms["elbo"].search["model.decoder.width"].values
    assert set(trials[names.param("model.decoder.width")]) <= set(widths)


def test_the_synthetic_optuna_studies_use_the_spec_search_space(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "s", n_search=3, n_seeds=1, artifacts=False,
                                   optuna_db=True)
    spec = load_study(folder / names.STUDY_FILE)
    storage = f"sqlite:///{folder / names.OPTUNA_FILE}"
    for arm in spec.arm_names:
        study = optuna.load_study(study_name=arm, storage=storage)
        assert len(study.trials) == 3
        assert study.trials[0].distributions == spec.optuna_space(arm)
