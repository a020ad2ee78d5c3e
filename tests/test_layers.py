"""The layer rules of docs/architecture.md, checked by import-linter (contracts in
pyproject.toml): they hold for the code as it is, and a change that breaks one is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module", autouse=True)
def _needs_import_linter() -> None:
    if not Path(LINT_IMPORTS).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")


def test_the_layer_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("sweep/report/html.py", "import sweep.store", "never through the store"),
        ("sweep/analysis/stats.py", "import sweep.report.html", "imports no renderer"),
        ("infovae_core/metrics.py", "import sweep.names", "imports nothing from sweep"),
    ],
)
def test_a_broken_contract_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in ("infovae_core", "sweep"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout
