"""build_report on synthetic study folders: one file, offline, escaped, and never a traceback
for an empty, running, one-arm or failed-arm study."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sweep.report import build_report
from sweep.store import NotAStudyFolderError
from tests.sweep.synthetic_study import write_synthetic_study

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _small(folder: Path, **kwargs: object) -> Path:
    """A small synthetic study (fast to build) for the edge cases."""
    options: dict[str, object] = {"n_search": 5, "n_seeds": 3, "n_epochs": 3}
    options.update(kwargs)
    return write_synthetic_study(folder, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def full_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_study(tmp_path_factory.mktemp("full") / "study", optuna_db=True)


@pytest.fixture(scope="module")
def full_report(full_study: Path) -> str:
    return build_report(full_study).read_text(encoding="utf-8")


def _plot_count(page: str) -> int:
    return len(re.findall(r'class="plotly-graph-div"', page))


def test_report_is_written_to_report_html_in_the_study_folder(full_study: Path) -> None:
    out = build_report(full_study)
    assert out == full_study / "report.html"
    assert out.stat().st_size > 0
    assert not list(full_study.glob(".report.html.*"))  # no temporary file left behind


def test_report_goes_to_the_requested_path(full_study: Path, tmp_path: Path) -> None:
    out = build_report(full_study, out=tmp_path / "sub" / "r.html")
    assert out == tmp_path / "sub" / "r.html" and out.is_file()


def test_plotly_js_is_inlined_once_and_nothing_is_fetched(full_report: str) -> None:
    import plotly.offline

    library = plotly.offline.get_plotlyjs()
    assert full_report.count(library) == 1
    rest = full_report.replace(library, "")  # the library names a CDN only for geo maps
    assert "cdn.plot.ly" not in rest and "cdn.jsdelivr" not in rest
    assert not re.search(r"<script[^>]+src=", rest)
    assert not re.search(r"<link[^>]+href=", rest)


def test_report_has_every_section_in_order(full_report: str) -> None:
    ids = ["study", "verdict", "hyperparameters", "training", "latent", "failures"]
    positions = [full_report.index(f'<section id="{i}"') for i in ids]
    assert positions == sorted(positions)


def test_full_report_draws_the_expected_plots(full_report: str) -> None:
    assert "q(z|x) vs prior" in full_report
    assert "Covariance spectrum" in full_report
    assert "Hyperparameter importance" in full_report
    assert "Pareto front" in full_report
    assert "parallel coordinates" in full_report
    assert "vs lambda" in full_report
    import plotly.offline

    rest = full_report.replace(plotly.offline.get_plotlyjs(), "")
    assert rest.count("data:image/png;base64,") == 4  # 2 arms x (samples, reconstructions)
    assert _plot_count(full_report) >= 10


def test_verdict_table_and_claims_show_numbers(full_report: str) -> None:
    assert 'id="verdict-table"' in full_report
    assert full_report.count('data-status="holds"') >= 3
    # The synthetic ELBO's rate (20 nats) is far above InfoVAE's estimate (3): the MI claim
    # cannot be decided on [estimate, rate] intervals.
    assert 'data-status="not measurable"' in full_report
    claim_numbers = re.findall(r'<div class="numbers">(.*?)</div>', full_report)
    assert claim_numbers and all(text.strip() for text in claim_numbers)


def test_failures_section_lists_the_errors(full_report: str) -> None:
    assert 'id="failures-table"' in full_report
    assert "synthetic failure in elbo-s00012" in full_report


def test_partial_report_is_marked_and_a_final_one_is_not(full_study: Path,
                                                         tmp_path: Path) -> None:
    partial = build_report(full_study, out=tmp_path / "p.html", partial=True).read_text()
    final = build_report(full_study, out=tmp_path / "f.html").read_text()
    assert 'id="partial-banner"' in partial
    assert 'id="partial-banner"' not in final


def test_folder_without_study_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAStudyFolderError, match="study.yaml"):
        build_report(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAStudyFolderError, match="no such study folder"):
        build_report(tmp_path / "absent")


def test_empty_study_gets_a_report(tmp_path: Path) -> None:
    from tests.sweep.synthetic_study import default_arms, synthetic_spec

    spec = synthetic_spec(default_arms(), n_search=2, n_seeds=2, failed_per_arm=0, name="empty")
    (tmp_path / "study.yaml").write_text(spec.to_yaml())
    page = build_report(tmp_path).read_text()
    assert "refused by the study loader" not in page
    assert "No trials yet." in page
    assert "No completed confirm-phase trials yet" in page
    assert "No failed trials." in page


def test_study_yaml_that_is_not_a_mapping_gets_a_report_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("- just\n- a list\n")
    page = build_report(tmp_path).read_text()
    assert "study.yaml: refused by the study loader" in page
    assert "the top level must be a mapping" in page  # the loader's own message


def test_a_study_yaml_the_loader_refuses_gets_a_report_by_the_trials(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s", artifacts=False)
    (folder / "study.yaml").write_text("name: synthetic\narms: {elbo: {}, infovae: {}}\n")
    page = build_report(folder).read_text()
    assert f"{folder / 'study.yaml'}:1: data: required key is missing" in page
    assert 'id="verdict-table"' in page  # the trials still report, arms taken from them


def test_broken_yaml_and_damaged_parquet_become_warnings(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("name: [unclosed\n")
    (tmp_path / "trials.parquet").write_bytes(b"not parquet at all")
    page = build_report(tmp_path).read_text()
    assert "study.yaml: refused by the study loader" in page and "invalid YAML" in page
    assert f"{tmp_path / 'trials.parquet'}: not a readable Parquet file" in page


def test_one_arm_study_gets_a_report(tmp_path: Path) -> None:
    from tests.sweep.synthetic_study import INFO_MEANS, SyntheticArm

    folder = _small(
        tmp_path / "s", arms={"infovae": SyntheticArm(lambda_=10.0, search_lambda=True,
                                                      means=INFO_MEANS)}
    )
    page = build_report(folder).read_text()
    assert 'id="verdict-table"' in page
    assert "no ELBO-like arm" in page


def test_arm_that_only_failed_gets_a_report(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s")
    trials = pd.read_parquet(folder / "trials.parquet")
    info = trials["arm"] == "infovae"
    trials.loc[info, "status"] = "failed"
    trials.loc[info, "error"] = "CUDA out of memory"
    for column in [c for c in trials.columns if c.startswith("metric.")]:
        trials.loc[info, column] = np.nan
    trials.to_parquet(folder / "trials.parquet")
    page = build_report(folder).read_text()
    assert "CUDA out of memory" in page
    assert "infovae: no completed trial" in page
    assert 'data-status="not measured"' in page


def test_a_study_left_unfinished_says_how_many_trials_its_plan_still_holds(
    tmp_path: Path,
) -> None:
    folder = _small(tmp_path / "s", artifacts=False)
    assert 'id="unfinished-banner"' not in build_report(folder).read_text()
    trials = pd.read_parquet(folder / "trials.parquet")
    confirm = trials.index[trials["phase"] == "confirm"]
    trials.drop(index=confirm[:2]).to_parquet(folder / "trials.parquet")  # killed: 2 missing
    page = build_report(folder).read_text()
    assert 'id="unfinished-banner"' in page and "still holds 2 trials" in page
    assert 'id="partial-banner"' not in page


def test_running_study_with_search_trials_only_gets_a_partial_report(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s", n_search=2, n_seeds=0, failed_per_arm=0,
                                   artifacts=False)
    (folder / "epochs.parquet").unlink()
    page = build_report(folder, partial=True).read_text()
    assert "Partial results" in page
    assert "No completed confirm-phase trials yet" in page
    assert "No per-epoch records yet." in page


def test_strings_from_the_study_and_errors_are_escaped(tmp_path: Path) -> None:
    # The loader refuses such an arm or study name, so the hostile strings come in through
    # the free-text description and the results files.
    folder = _small(tmp_path / "s")
    spec = yaml.safe_load((folder / "study.yaml").read_text())
    spec["description"] = HOSTILE
    (folder / "study.yaml").write_text(yaml.safe_dump(spec))
    trials = pd.read_parquet(folder / "trials.parquet")
    trials.loc[trials["arm"] == "infovae", "arm"] = HOSTILE
    trials.loc[trials["status"] == "failed", "error"] = HOSTILE
    trials.to_parquet(folder / "trials.parquet")
    page = build_report(folder).read_text()
    assert HOSTILE not in page
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_hostile_trial_id_never_reads_outside_the_artifacts_folder(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s")
    trials = pd.read_parquet(folder / "trials.parquet")
    confirm = trials["phase"] == "confirm"
    trials.loc[confirm, "trial_id"] = [f"../../outside-{i}" for i in range(int(confirm.sum()))]
    trials.to_parquet(folder / "trials.parquet")
    page = build_report(folder).read_text()
    assert "no artifacts folder" in page


def test_missing_and_corrupt_artifacts_become_notes(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s")
    for path in (folder / "artifacts").glob("elbo-*/latents.npy"):
        path.write_bytes(b"garbage")
    for path in (folder / "artifacts").glob("infovae-*/samples.png"):
        path.unlink()
    page = build_report(folder).read_text()
    assert "latents.npy could not be read" in page
    assert "no samples.png" in page


def test_pickled_latents_are_not_loaded(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s")
    for path in (folder / "artifacts").glob("elbo-*/latents.npy"):
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    page = build_report(folder).read_text()
    assert "latents.npy could not be read" in page


def test_scales_as_json_strings_or_lists_both_work(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s")
    trials = pd.read_parquet(folder / "trials.parquet")
    trials["param.objective.scales"] = [json.dumps([1.0, 2.0])] * len(trials)
    trials.to_parquet(folder / "trials.parquet")
    assert 'id="verdict-table"' in build_report(folder).read_text()


def test_without_optuna_db_importance_says_why(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s", optuna_db=False)
    page = build_report(folder).read_text()
    assert "Hyperparameter importance not available: no optuna.db" in page


def test_report_is_reproducible(full_study: Path, tmp_path: Path) -> None:
    def body(path: Path) -> str:
        return re.sub(r"Generated [^<]*", "", path.read_text())

    one = body(build_report(full_study, out=tmp_path / "1.html"))
    two = body(build_report(full_study, out=tmp_path / "2.html"))
    assert one == two


# -- convergence -------------------------------------------------------------------------------


def _rising_infovae(folder: Path, **kwargs: object) -> Path:
    """The default synthetic study but InfoVAE's curves still improve 7 % per epoch at the end."""
    from dataclasses import replace

    from tests.sweep.synthetic_study import default_arms

    arms = default_arms()
    arms["infovae"] = replace(arms["infovae"], still_rising=True)
    return write_synthetic_study(folder, arms=arms, artifacts=False, **kwargs)  # type: ignore[arg-type]


def _verdict_section(page: str) -> str:
    return page[page.index('<section id="verdict"') : page.index('<section id="hyperparameters"')]


def test_a_verdict_on_still_rising_confirm_runs_is_marked_unconverged(tmp_path: Path) -> None:
    page = _verdict_section(build_report(_rising_infovae(tmp_path / "s")).read_text())
    assert 'id="unconverged-banner"' in page
    assert "Verdict drawn from unconverged runs" in page
    assert "infovae: 5 of 5" in page
    claims = page[page.index('<div id="claims">') :]
    assert 'id="claims-unconverged"' in claims and "drawn from unconverged runs" in claims
    table = re.search(r'<table id="convergence-table">(.*?)</table>', page).group(1)
    rows = re.findall(
        r"<tr><td>(.*?)</td><td>(.*?)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>", table
    )
    assert ("infovae", "confirm", "0", "5") in rows and ("elbo", "confirm", "5", "0") in rows


def test_a_verdict_on_flat_confirm_runs_is_not_marked(full_report: str) -> None:
    page = _verdict_section(full_report)
    assert 'id="convergence-table"' in page
    assert "unconverged" not in page.replace("banner.unconverged", "")
    assert "val.elbo" in page and "0.5%" in page  # the rule, stated with its settings


def test_the_study_convergence_block_sets_the_tolerance_of_the_report(tmp_path: Path) -> None:
    folder = _rising_infovae(tmp_path / "s")
    spec = yaml.safe_load((folder / "study.yaml").read_text())
    spec["convergence"] = {"metric": "val.elbo", "tolerance": 0.1}  # 7 % per epoch is within it
    (folder / "study.yaml").write_text(yaml.safe_dump(spec))
    page = _verdict_section(build_report(folder).read_text())
    assert 'id="unconverged-banner"' not in page
    assert "at most 10% of the last mean" in page


def test_only_the_confirm_runs_of_the_verdict_mark_it(tmp_path: Path) -> None:
    # Unconverged search trials alone do not mark the verdict (they are not compared in it).
    folder = _rising_infovae(tmp_path / "s")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    trials = pd.read_parquet(folder / "trials.parquet")
    confirm = set(trials.loc[trials["phase"] == "confirm", "trial_id"])
    flat = epochs["trial_id"].isin(confirm)
    epochs.loc[flat, "val.elbo"] = -100.0
    epochs.to_parquet(folder / "epochs.parquet")
    page = _verdict_section(build_report(folder).read_text())
    assert 'id="unconverged-banner"' not in page
    assert re.search(r"<td>infovae</td><td>search</td><td[^>]*>0</td><td[^>]*>12</td>", page)


def test_too_short_runs_are_reported_as_unknown_not_unconverged(tmp_path: Path) -> None:
    page = _verdict_section(build_report(_small(tmp_path / "s", n_epochs=3)).read_text())
    assert 'id="unconverged-banner"' not in page
    assert "Convergence unknown" in page


# -- data.train_size -----------------------------------------------------------------------------


def test_metrics_are_plotted_against_a_varied_train_size(tmp_path: Path) -> None:
    folder = _small(tmp_path / "s", artifacts=False)
    trials = pd.read_parquet(folder / "trials.parquet")
    sizes = [50, 200, None]  # None: the whole digits training split (1,258 images)
    trials["param.data.train_size"] = [sizes[i % 3] for i in range(len(trials))]
    trials.to_parquet(folder / "trials.parquet")
    page = build_report(folder).read_text()
    assert "nll_iwae vs training-set size" in page
    unvaried = build_report(_small(tmp_path / "t", artifacts=False)).read_text()
    assert "vs training-set size" not in unvaried


def test_train_size_figure_draws_each_arm_median_per_size() -> None:
    from sweep.report.figures import metric_vs_train_size

    trials = pd.DataFrame(
        {
            "arm": ["a", "a", "a", "a", "b"],
            "param.data.train_size": [100.0, 100.0, 1000.0, 1000.0, 100.0],
            "metric.mmd": [1.0, 3.0, 5.0, np.nan, 7.0],
        }
    )
    fig = metric_vs_train_size(trials, "metric.mmd", "mmd", ["a", "b"])
    lines = {t.name: (list(t.x), list(t.y)) for t in fig.data if t.mode == "lines+markers"}
    assert lines["a (median)"] == ([100.0, 1000.0], [2.0, 5.0])  # the NaN is left out
    assert lines["b (median)"] == ([100.0], [7.0])
    assert fig.layout.xaxis.type == "log"


def _grid_data(folder: Path):
    """The synthetic study with its search runs re-labelled as a grid: two training-set
    sizes, every search run of one arm sharing its decoder width (seeds are the replicates)."""
    import dataclasses

    from sweep.analysis.load import load_study_data

    data = load_study_data(_small(folder, n_search=6, n_epochs=5))
    trials = data.trials.copy()
    search = trials["phase"] == "search"
    trials.loc[search, "param.data.train_size"] = [
        100 if i % 2 == 0 else 200 for i in range(int(search.sum()))
    ]
    trials.loc[search, "param.model.decoder.width"] = 128
    trials.loc[search, "param.objective.lambda"] = 10.0
    trials.loc[search, "param.objective.kernel"] = "rbf"
    return dataclasses.replace(data, trials=trials)


def test_grid_study_report_has_a_settings_table_with_the_mean_over_seeds(tmp_path: Path) -> None:
    from sweep.analysis.study import StudyAnalysis
    from sweep.report.blocks import TableBlock
    from sweep.report.sections import build_content

    data = _grid_data(tmp_path / "grid")
    content = build_content(StudyAnalysis(data))
    section = next(s for s in content.sections if s.anchor == "settings")
    table = next(b for b in section.blocks if isinstance(b, TableBlock)).frame
    arm = str(data.trials["arm"].iloc[0])
    row = table[(table["arm"] == arm) & (table["data.train_size"] == 100)].iloc[0]
    runs = data.trials[
        (data.trials["arm"] == arm) & (data.trials["phase"] == "search")
        & (data.trials["status"] == "completed") & (data.trials["param.data.train_size"] == 100)
    ]
    assert row["seeds"] == len(runs)
    expected_mean = float(np.mean(runs["metric.nll_iwae"]))
    assert row["nll_iwae"].startswith(f"{expected_mean:.2f}")
    assert row["converged"].endswith(f"/{len(runs)}")


def test_search_without_replicated_settings_gets_no_settings_table(tmp_path: Path) -> None:
    from sweep.analysis.study import analyse_study
    from sweep.report.sections import build_content

    content = build_content(analyse_study(_small(tmp_path / "tpe")))
    assert "settings" not in {s.anchor for s in content.sections}
