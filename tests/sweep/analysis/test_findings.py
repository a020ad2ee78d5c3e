"""The findings across studies: each claim's verdict over hand-made study folders whose answer
is known, the page they render, and the command that writes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweep.analysis.findings import gather_findings, overall_verdict
from sweep.cli import app
from sweep.findings_page import render_findings, write_findings
from tests.sweep.synthetic_study import (
    ELBO_MEANS,
    INFO_MEANS,
    SyntheticArm,
    write_synthetic_study,
)

PAIR_CLAIMS = ["aggregate_mmd", "log_det_cov", "mutual_info"]


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ([], "not run"),
        (["holds", "holds"], "holds"),
        (["holds", "does not hold"], "holds in part"),
        (["holds", "not measurable"], "holds in part"),
        (["holds", "not measured"], "holds"),
        (["does not hold", "not measurable"], "does not hold"),
        (["not measurable", "not measured"], "not measurable"),
        (["not measured"], "not measurable"),
    ],
)
def test_a_claims_verdict_over_studies(statuses: list[str], verdict: str) -> None:
    assert overall_verdict(statuses) == verdict


def _study(
    root: Path, name: str, elbo: dict, info: dict, claims: list[str], dataset: str | None = None
) -> Path:
    arms = {
        "elbo": SyntheticArm(alpha=0.0, lambda_=1.0, means=elbo),
        "infovae": SyntheticArm(alpha=0.0, lambda_=100.0, means=info),
    }
    folder = write_synthetic_study(root / name, arms=arms, n_search=3, n_seeds=5, name=name)
    spec = yaml.safe_load((folder / "study.yaml").read_text())
    spec["claims"] = claims
    if dataset is not None:  # only the name: the synthetic tables stay as they are
        spec["data"]["dataset"] = dataset
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def _verdicts(root: Path) -> dict[str, str]:
    return {f.claim.id: f.verdict for f in gather_findings(root).claims}


# InfoVAE clearly better; the ELBO's rate (kl) is just above its MI estimate, below InfoVAE's.
CLEAR_ELBO = dict(ELBO_MEANS, kl=2.3)
CLEAR_INFO = dict(INFO_MEANS, kl=3.4)


def test_claims_hold_on_a_study_where_infovae_is_clearly_better(tmp_path: Path) -> None:
    _study(tmp_path, "clear", CLEAR_ELBO, CLEAR_INFO, PAIR_CLAIMS)
    verdicts = _verdicts(tmp_path)
    assert {k: verdicts[k] for k in PAIR_CLAIMS} == dict.fromkeys(PAIR_CLAIMS, "holds")
    assert verdicts["small_data"] == "not run"  # no study tests it


def test_a_claim_holds_in_part_when_another_study_finds_the_opposite(tmp_path: Path) -> None:
    _study(tmp_path, "clear", CLEAR_ELBO, CLEAR_INFO, PAIR_CLAIMS)
    reversed_mmd = dict(CLEAR_INFO, mmd=0.09)  # InfoVAE's MMD above the ELBO's 0.05
    _study(tmp_path, "reversed", CLEAR_ELBO, reversed_mmd, ["aggregate_mmd"])
    verdicts = _verdicts(tmp_path)
    assert verdicts["aggregate_mmd"] == "holds in part"
    assert verdicts["log_det_cov"] == "holds"  # the second study does not test it


def test_the_answer_quotes_a_study_on_mnist_before_one_on_digits(tmp_path: Path) -> None:
    _study(tmp_path, "a_digits", CLEAR_ELBO, CLEAR_INFO, ["aggregate_mmd"])
    _study(tmp_path, "b_mnist", CLEAR_ELBO, CLEAR_INFO, ["aggregate_mmd"], dataset="mnist")
    _study(tmp_path, "c_mnist", CLEAR_ELBO, CLEAR_INFO, ["aggregate_mmd"], dataset="mnist")
    (finding,) = [f for f in gather_findings(tmp_path).claims if f.claim.id == "aggregate_mmd"]
    study, claim = finding.headline
    assert (study.name, claim.status) == ("b_mnist", "holds")


def test_the_answer_quotes_a_study_that_agrees_with_the_verdict_before_one_on_mnist(
    tmp_path: Path,
) -> None:
    _study(tmp_path, "a_digits", CLEAR_ELBO, CLEAR_INFO, ["aggregate_mmd"])
    reversed_mmd = dict(CLEAR_INFO, mmd=0.09)
    _study(tmp_path, "b_mnist", CLEAR_ELBO, reversed_mmd, ["aggregate_mmd"], dataset="mnist")
    (finding,) = [f for f in gather_findings(tmp_path).claims if f.claim.id == "aggregate_mmd"]
    assert finding.verdict == "holds in part"
    assert finding.headline[0].name == "a_digits"


def test_mutual_information_is_not_measurable_when_the_intervals_overlap(tmp_path: Path) -> None:
    # The synthetic ELBO's rate is 20 nats: far above InfoVAE's estimate of 3.
    _study(tmp_path, "overlap", ELBO_MEANS, INFO_MEANS, ["mutual_info"])
    assert _verdicts(tmp_path)["mutual_info"] == "not measurable"


def test_a_study_tests_only_the_claims_its_file_names(tmp_path: Path) -> None:
    _study(tmp_path, "only_mmd", CLEAR_ELBO, CLEAR_INFO, ["aggregate_mmd"])
    (study,) = gather_findings(tmp_path).studies
    assert {c.claim_id for c in study.claims} == {"aggregate_mmd"}


def test_the_page_is_the_same_bytes_when_rendered_again(tmp_path: Path) -> None:
    _study(tmp_path / "results", "clear", CLEAR_ELBO, CLEAR_INFO, PAIR_CLAIMS)
    first = render_findings(gather_findings(tmp_path / "results"), "findings")
    second = render_findings(gather_findings(tmp_path / "results"), "findings")
    assert first == second
    page, figures = first
    assert "| InfoVAE's aggregate posterior" in page and "**holds**" in page
    assert list(figures) == ["clear.svg"]
    assert figures["clear.svg"].startswith("<svg") and "elbo" in figures["clear.svg"]


def test_the_page_lists_study_files_without_results_as_not_run(tmp_path: Path) -> None:
    _study(tmp_path / "results", "clear", CLEAR_ELBO, CLEAR_INFO, PAIR_CLAIMS)
    studies = tmp_path / "studies"
    studies.mkdir()
    text = (Path(__file__).resolve().parents[3] / "studies" / "digits.yaml").read_text()
    (studies / "digits.yaml").write_text(text)
    findings = gather_findings(tmp_path / "results", studies)
    assert [p.name for p in findings.not_run] == ["digits"]
    page, _ = render_findings(findings, "findings")
    assert "`studies/digits.yaml`" in page


def test_findings_command_writes_the_page_and_its_figures(tmp_path: Path) -> None:
    _study(tmp_path / "results", "clear", CLEAR_ELBO, CLEAR_INFO, PAIR_CLAIMS)
    out = tmp_path / "docs" / "findings.md"
    result = CliRunner().invoke(
        app, ["findings", str(tmp_path / "results"), "--out", str(out), "--studies", "none"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "docs" / "findings" / "clear.svg").is_file()
    assert "(findings/clear.svg)" in out.read_text()
    stale = tmp_path / "docs" / "findings" / "gone.svg"
    stale.write_text("<svg/>")
    write_findings(gather_findings(tmp_path / "results"), out)
    assert not stale.exists()


def test_findings_command_refuses_a_missing_results_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["findings", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such results folder" in result.output
