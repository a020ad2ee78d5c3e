"""The study folders shipped in results/ and the findings page generated from them.

- Every shipped folder loads with the current code (a schema change needs a migration or a
  rerun) and names, in its run record, finished runs of a clean commit.
- The training code is frozen for them: the infovae_core that ran (its source hash, and its
  commit) is the infovae_core of this checkout. A change to it means running the studies again.
- docs/findings.md and its figures are exactly what `infovae-sweep findings results` writes
  (a number changed by hand, or by code, without a rerun fails here), and its per-arm means
  are the plain pandas means of the shipped Parquet files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sweep.analysis.findings import gather_findings
from sweep.analysis.formatting import format_number
from sweep.analysis.study import analyse_study
from sweep.findings_page import FIGURES_DIR, render_findings
from sweep.run.run_record import source_sha256

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SHIPPED = sorted(p for p in RESULTS.glob("*/") if (p / "study.yaml").is_file())
PAGE = ROOT / "docs" / "findings.md"

pytestmark = pytest.mark.skipif(not SHIPPED, reason="no study folder is shipped in results/")


def _runs(folder: Path) -> list[dict]:
    return json.loads((folder / "run.json").read_text())["runs"]


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_study_loads_with_the_current_code(folder: Path) -> None:
    analysis = analyse_study(folder, strict=True, check_damage=True)
    assert analysis.data.spec is not None and analysis.data.warnings == ()
    assert len(analysis.data.trials) and analysis.trials_left == 0
    named = analysis.data.spec.claims
    checked = {c.claim_id for c in analysis.claims}
    assert checked == set(named) if named is not None else checked  # each claim it names


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_study_ran_clean_code_to_the_end(folder: Path) -> None:
    runs = _runs(folder)
    assert runs and runs[-1]["status"] == "finished"
    for run in runs:
        assert run["code"]["commit"] and run["code"]["dirty"] is False


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_the_training_code_of_a_shipped_study_is_this_checkouts(folder: Path) -> None:
    current = source_sha256(ROOT / "infovae_core")
    for run in _runs(folder):
        assert run["code"]["infovae_core_sha256"] == current, (
            f"infovae_core changed since {folder.name} ran: run the study again"
        )
        git = shutil.which("git")
        if git and (ROOT / ".git").exists():
            diff = subprocess.run(
                [git, "diff", "--quiet", run["code"]["commit"], "HEAD", "--", "infovae_core"],
                cwd=ROOT,
            )
            assert diff.returncode == 0, f"git diff {run['code']['commit']} HEAD -- infovae_core"


def test_the_findings_page_is_what_the_shipped_results_give() -> None:
    page, figures = render_findings(gather_findings(RESULTS, ROOT / "studies"), FIGURES_DIR)
    assert PAGE.read_text() == page, "regenerate: infovae-sweep findings results"
    shipped = {p.name: p.read_text() for p in (PAGE.parent / FIGURES_DIR).glob("*.svg")}
    assert shipped == figures


def test_the_pages_arm_means_are_the_plain_means_of_the_parquet_files() -> None:
    page = PAGE.read_text()
    checked = 0
    for folder in SHIPPED:
        trials = pd.read_parquet(folder / "trials.parquet")
        confirm = trials[(trials["phase"] == "confirm") & (trials["status"] == "completed")]
        spec = analyse_study(folder).data.spec
        if confirm.empty or spec.confirm.top_k != 1:
            continue
        for _, rows in confirm.groupby("arm"):
            assert format_number(rows["metric.mmd"].mean()) in page
            checked += 1
    assert checked or all(
        pd.read_parquet(f / "trials.parquet")["phase"].eq("search").all() for f in SHIPPED
    )
