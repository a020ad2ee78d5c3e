"""Which search trials the confirm phase re-trains (confirm_planner.confirm_candidates)."""

from __future__ import annotations

from pathlib import Path

from sweep.run.confirm_planner import confirm_candidates
from sweep.spec import load_study
from sweep.store import ResultsStore
from tests.sweep.studies import write_study


def _row(trial_id: str, width: int, mmd: float, copy_of: str | None = None) -> dict:
    return {
        "study": "pick",
        "arm": "elbo",
        "phase": "search",
        "trial_id": trial_id,
        "seed": 0,
        "status": "completed",
        "copy_of": copy_of,
        "param.model.decoder.width": width,
        "metric.mmd": mmd,
    }


def test_copies_never_take_a_second_confirm_slot(tmp_path: Path) -> None:
    path = write_study(tmp_path, "pick")
    path.write_text(path.read_text().replace("top_k: 1", "top_k: 2"))
    spec = load_study(path)
    store = ResultsStore.create(tmp_path / "results" / "pick", spec.to_yaml())
    store.record_trial(_row("elbo-0000", 16, 0.10), [])
    store.record_trial(_row("elbo-0001", 16, 0.10, copy_of="elbo-0000"), [])
    store.record_trial(_row("elbo-0002", 8, 0.30), [])
    store.record_trial(_row("elbo-0003", 8, 0.30, copy_of="elbo-0002"), [])
    picked = confirm_candidates(spec, store, "elbo")
    assert [c["source"] for c in picked] == ["elbo-0000", "elbo-0002"]
    assert [c["params"] for c in picked] == [
        {"model.decoder.width": 16},
        {"model.decoder.width": 8},
    ]
