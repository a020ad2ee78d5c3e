"""docs/ must not drift from the code: every metric, results column, kernel formula and study key
the code defines is documented, every link between the pages resolves, and nothing points to
the design notes outside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import infovae_core.kernels
from infovae_core.objective import TERM_NAMES
from sweep.analysis.verdict import BASE_METRICS
from sweep.spec import EVAL_METRICS, StudySpec
from sweep.store import EPOCH_SCHEMA, TRIAL_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("objective.md", "kernels.md", "metrics.md", "results.md", "studies.md", "architecture.md")


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _code_metric_names() -> set[str]:
    """Metric names the code defines: the ones a study may name, the report's, and every key
    ``evaluate`` writes (read from its source, so a new metric there is caught)."""
    source = (ROOT / "infovae_core" / "evaluation.py").read_text(encoding="utf-8")
    written = set(re.findall(r'metrics\["(\w+)"\]', source))
    if re.search(r'metrics\[f"probe_acc_\{', source):
        written.add("probe_acc_<n>")
    assert {"mmd", "mutual_info", "probe_acc_<n>"} <= written  # the regexes still find them
    return written | set(EVAL_METRICS) | {m.key for m in BASE_METRICS}


def test_every_docs_page_exists():
    for name in PAGES:
        assert _read(name).startswith("# "), name


@pytest.mark.parametrize("name", sorted(_code_metric_names()))
def test_every_metric_is_documented_in_metrics_md(name):
    assert f"`metric.{name}`" in _read("metrics.md")


@pytest.mark.parametrize("column", TRIAL_SCHEMA.names + EPOCH_SCHEMA.names)
def test_every_fixed_results_column_is_documented_in_results_md(column):
    assert f"`{column}`" in _read("results.md")


def test_every_loss_term_is_documented():
    for term in TERM_NAMES:
        assert f"`{term}`" in _read("objective.md")
        assert f"`{term}`" in _read("results.md")


def _formulas(text: str) -> list[str]:
    """The kernel formulas of a text, without spaces and multiplication signs."""
    flat = text.replace(" ", "").replace("*", "").replace("`", "")
    return [f for f in ("exp(-||a-b||^2/(2ds^2))", "C/(C+||a-b||^2)", "C=2ds^2") if f in flat]


def test_kernels_md_states_the_codes_convention():
    code = _formulas(infovae_core.kernels.__doc__ or "")
    assert len(code) == 3, "the kernel docstring changed: update docs/kernels.md too"
    assert _formulas(_read("kernels.md")) == code
    assert "sum" in _read("kernels.md").lower()


def test_every_top_level_study_key_is_documented_in_studies_md():
    text = _read("studies.md")
    for key in StudySpec.model_fields:
        alias = StudySpec.model_fields[key].alias or key
        assert re.search(rf"^{re.escape(alias)}:", text, re.MULTILINE), alias


def test_links_between_pages_resolve():
    for page in [*(DOCS / p for p in PAGES), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} -> {target}"


def test_nothing_points_to_the_design_notes_outside_the_repository():
    paths = [ROOT / "README.md", *ROOT.glob("studies/*.yaml")]
    for package in ("sweep", "infovae_core"):
        paths += (ROOT / package).rglob("*.py")
    offenders = [str(p.relative_to(ROOT)) for p in paths if "DESIGN.md" in p.read_text()]
    assert offenders == []


def test_architecture_page_names_every_module_under_sweep():
    page = _read("architecture.md")
    modules = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "sweep").rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "spec"
    )
    assert modules  # the glob still finds the package
    missing = [m for m in modules if f"`{m}`" not in page]
    assert missing == []


def test_no_module_basename_is_used_twice_under_sweep():
    names = [p.name for p in (ROOT / "sweep").rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def _answer_table(text: str) -> str:
    return text.split("## The answer\n\n", 1)[1].split("\n## ", 1)[0].split("\n\n", 1)[0].strip()


def test_readme_gives_the_findings_pages_answer():
    page = DOCS / "findings.md"
    if not page.exists():
        pytest.skip("no findings page yet (infovae-sweep findings results)")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _answer_table(readme) == _answer_table(page.read_text(encoding="utf-8"))


def test_readmes_digits_wall_time_is_the_shipped_run_records():
    record = ROOT / "results" / "digits" / "run.json"
    if not record.exists():
        pytest.skip("no shipped digits results")
    finished = [r for r in json.loads(record.read_text())["runs"] if r["status"] == "finished"]
    seconds = round(finished[-1]["wall_seconds"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"digits study needs no download:.*?took (\d+) min (\d+) s", readme, re.S)
    assert quoted, "README's quickstart no longer quotes the digits study's wall time"
    assert int(quoted[1]) * 60 + int(quoted[2]) == seconds


def test_readmes_local_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []
