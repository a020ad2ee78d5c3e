"""The installed Ray and Optuna are inside the bounds that pyproject.toml declares."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirements() -> dict[str, Requirement]:
    data = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    found = [Requirement(text) for text in data["project"]["dependencies"]]
    return {req.name: req for req in found}


@pytest.mark.parametrize("name", ["ray", "optuna"])
def test_installed_version_is_inside_the_declared_bounds(name: str) -> None:
    requirement = _requirements()[name]
    assert any(spec.operator == "<" for spec in requirement.specifier), (
        f"{name}: no upper bound in pyproject.toml ({requirement}); the runner relies on its "
        "behaviour, so a new major or minor release must be tried before it is allowed"
    )
    installed = version(name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed but pyproject.toml asks for {requirement.specifier}"
    )
