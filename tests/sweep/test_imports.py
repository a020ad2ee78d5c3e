"""Importing the package changes nothing in the importing program's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "sweep.cli",
    "sweep.run.runner",
    "sweep.run",
    "sweep.run.searcher",
    "sweep.run.store_callback",
    "sweep.run.scheduler",
    "sweep.run.ray_environment",
    "sweep.run.trackers",
    "sweep.run.optuna_record",
    "sweep.run.mirror",
    "sweep.run.trial",
    "sweep.optuna_storage",
    "sweep.store",
    "sweep.integrity",
    "sweep.trainable",
    "sweep.analysis.ranking",
    "sweep.names",
    "sweep.analysis.leaderboard",
    "sweep.report",
]


def test_importing_sweep_sets_no_environment_variable() -> None:
    code = (
        "import importlib, json, os, sys\n"
        "before = dict(os.environ)\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        "after = dict(os.environ)\n"
        "print(json.dumps(sorted(k for k in after.keys() | before.keys()"
        " if after.get(k) != before.get(k))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNE_", "RAY_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_tune_environment_is_set_for_a_run_and_restored_after() -> None:
    from sweep.run.ray_environment import TUNE_ENVIRONMENT, tune_environment

    name = "TUNE_DISABLE_SIGINT_HANDLER"
    saved = os.environ.pop(name, None)
    try:
        with tune_environment():
            assert os.environ[name] == TUNE_ENVIRONMENT[name]
        assert name not in os.environ
        os.environ[name] = "0"  # a user's own setting wins and survives
        with tune_environment():
            assert os.environ[name] == "0"
        assert os.environ[name] == "0"
    finally:
        os.environ.pop(name, None)
        if saved is not None:
            os.environ[name] = saved
