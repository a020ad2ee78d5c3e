"""A resumed search draws new configurations: its sampler does not replay the first start's."""

from __future__ import annotations

import optuna

from sweep.spec import load_study
from tests.sweep.studies import write_study


def test_a_resumed_random_search_does_not_replay_the_draws_before_the_kill(tmp_path):
    """Found by the chaos test: a resumed driver built the arm's sampler with the seed of the
    first start, so a random search suggested the same lambda as its first trial again (the
    run recorded it as a copy and explored one configuration less)."""
    spec = load_study(write_study(tmp_path, "replay", trials=3))
    space = spec.optuna_space("infovae")

    def first_draws(restart: int) -> list[float]:
        study = optuna.create_study(sampler=spec.sampler("infovae", restart=restart))
        return [study.ask(space).params["objective.lambda"] for _ in range(3)]

    before_kill = first_draws(0)
    after_resume = first_draws(2)  # the Optuna study held two trials when resumed
    assert not set(before_kill) & set(after_resume)
    assert first_draws(2) == after_resume  # still reproducible
