"""bench/gpu_check.sh in its CPU form: CI has no GPU, so it checks that the script itself runs
every stage (tiny, on the CPU) and reports each one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _mnist_dir() -> str:
    root = os.environ.get("INFOVAE_DATA_DIR", "")
    if not root or not (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST not found: set INFOVAE_DATA_DIR to a folder with mnist/")
    return root


@pytest.mark.slow
@pytest.mark.mnist
def test_gpu_check_cpu_smoke_runs_every_stage_and_summarises_them(tmp_path: Path) -> None:
    env = {**os.environ, "INFOVAE_DATA_DIR": _mnist_dir(), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-smoke", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("== summary", 1)[1]
    for stage in ("throughput-fp32", "throughput-amp", "throughput-compile", "study-run",
                  "study-show", "study-report"):
        line = next(line for line in summary.splitlines() if line.startswith(stage))
        assert "failed" not in line and "cut" not in line, line
    assert "packing" in summary and "skipped" in summary
    assert (tmp_path / "results" / "gpu-check" / "report.html").is_file()


def test_gpu_check_refuses_an_unknown_argument() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--bogus"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "--bogus" in done.stderr
