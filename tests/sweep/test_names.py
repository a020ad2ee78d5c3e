"""sweep.names is the one list of shared names: the store's schemas are built from it."""

from __future__ import annotations

import pytest

from sweep import names
from sweep.store import EPOCH_SCHEMA, TRIAL_SCHEMA


def test_store_schemas_are_the_names_fixed_columns() -> None:
    assert tuple(TRIAL_SCHEMA.names) == names.TRIAL_FIXED_COLUMNS
    assert tuple(EPOCH_SCHEMA.names) == names.EPOCH_FIXED_COLUMNS


def test_column_helpers() -> None:
    assert names.param("objective.lambda") == "param.objective.lambda"
    assert names.metric("mmd") == "metric.mmd"
    assert names.strip("metric.mmd", names.METRIC) == "mmd"
    with pytest.raises(ValueError, match="does not start with"):
        names.strip("val.loss", names.METRIC)


def test_metric_names_are_those_the_core_evaluation_writes() -> None:
    """Read from infovae_core/evaluation.py's source (the core must not import sweep)."""
    import re
    from pathlib import Path

    import infovae_core.evaluation as evaluation

    source = Path(evaluation.__file__).read_text(encoding="utf-8")
    written = set(re.findall(r'metrics\["(\w+)"\] =', source))
    probes = set(re.findall(r'metrics\[f"(\w+)\{', source))
    assert written == set(names.METRIC_NAMES)
    assert probes == {names.PROBE_ACC}
