"""Benchmark (not a test): trials per hour on one GPU for the MNIST conv study, with 1, 2, 4
and 8 trials sharing the GPU (``resources.gpu`` = 1, 0.5, 0.25, 0.125).

For each packing level k the script runs ``studies/mnist.yaml`` through the real runner
(embedded Ray on this machine, which sees this machine's GPU) with these changes only:
``resources.gpu = 1 / k``, ``search.max_concurrent = k``, ``search.trials_per_arm = waves x k /
2`` (both arms, so ``waves`` rounds of k trials), no confirm phase, ``train.epochs = --epochs``
(default 5: the study's 50 would take hours per level), and optionally ``train.amp`` /
``train.compile``. The evaluation settings are the study's, so a trial's fixed cost (the
evaluation after training) is measured as it is in the study.

Printed per level, from the store's ``started_at``, ``ended_at``, ``train_seconds`` and
``eval_seconds`` of the completed trials:

- measured trials/h = completed trials / makespan (first start to last end) x 3600;
- projected trials/h at the study's epochs: each trial's time scaled linearly in epochs,
  ``t_50 = (wall - train) + train x 50 / epochs`` (setup and evaluation do not grow with
  epochs), then ``k x 3600 / mean(t_50)``: an estimate, not a measurement.

    INFOVAE_DATA_DIR=/path/to/data python bench/gpu_packing.py \\
        [--levels 1,2,4,8] [--epochs 5] [--waves 2] [--cpus-per-trial 2] [--amp] [--compile]

On a machine without a CUDA GPU the script says so and exits (status 0): fake GPUs would
measure the CPU. MNIST comes from ``$INFOVAE_DATA_DIR`` (else the per-user cache).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

STUDY = ROOT / "studies" / "mnist.yaml"


@dataclass(frozen=True)
class LevelResult:
    """One packing level: k trials per GPU, measured on the completed trials."""

    per_gpu: int
    cpus_per_trial: int
    completed: int
    failed: int
    makespan_s: float
    mean_wall_s: float
    mean_train_s: float
    mean_eval_s: float
    epochs: int
    study_epochs: int

    @property
    def trials_per_hour(self) -> float:
        return self.completed / self.makespan_s * 3600 if self.makespan_s > 0 else math.nan

    @property
    def projected_trials_per_hour(self) -> float:
        """k x 3600 / t_50 with t_50 = (wall - train) + train x study_epochs / epochs."""
        t_full = (self.mean_wall_s - self.mean_train_s) + self.mean_train_s * (
            self.study_epochs / self.epochs
        )
        return self.per_gpu * 3600 / t_full if t_full > 0 else math.nan


def study_text(per_gpu: int, epochs: int, waves: int, cpus: int, amp: bool, compile_: bool) -> str:
    """studies/mnist.yaml with the level's resources, concurrency, budget and epochs."""
    doc: dict[str, Any] = yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    doc["name"] = f"gpu-packing-{per_gpu}"
    doc["defaults"]["train"]["epochs"] = epochs
    if amp:
        doc["defaults"]["train"]["amp"] = True
    if compile_:
        doc["defaults"]["train"]["compile"] = True
    n_arms = len(doc["arms"])
    doc["search"]["trials_per_arm"] = max(1, math.ceil(waves * per_gpu / n_arms))
    doc["search"]["max_concurrent"] = per_gpu
    doc["confirm"] = {"top_k": 1, "seeds": 0}
    doc["resources"] = {"cpu": cpus, "gpu": 1.0 / per_gpu}
    doc["storage"] = None
    return yaml.safe_dump(doc, sort_keys=False)


def run_level(
    per_gpu: int, epochs: int, waves: int, cpus: int, amp: bool, compile_: bool, folder: Path
) -> LevelResult:
    import pyarrow.parquet as pq

    from sweep import names
    from sweep.run.runner import run_study
    from sweep.spec import StudySpec

    text = study_text(per_gpu, epochs, waves, cpus, amp, compile_)
    spec = StudySpec.from_yaml_text(text, source=f"{STUDY} (k={per_gpu})")
    study_epochs = yaml.safe_load(STUDY.read_text(encoding="utf-8"))["defaults"]["train"]["epochs"]
    outcome = run_study(spec, folder / spec.name, num_cpus=os.cpu_count())
    trials = pq.read_table(outcome.folder / names.TRIALS_FILE).to_pandas()
    done = trials[trials[names.STATUS] == names.COMPLETED]
    if done.empty:
        errors = "; ".join(str(e)[:200] for e in trials["error"].dropna().head(3))
        raise RuntimeError(f"k={per_gpu}: no trial completed ({errors})")
    devices = set(done["device"].dropna())
    if not any(str(d).startswith("cuda") for d in devices):
        raise RuntimeError(f"k={per_gpu}: trials ran on {devices}, not on the GPU")
    wall = (done["ended_at"] - done["started_at"]).dt.total_seconds()
    makespan = (done["ended_at"].max() - done["started_at"].min()).total_seconds()
    return LevelResult(
        per_gpu=per_gpu,
        cpus_per_trial=cpus,
        completed=len(done),
        failed=int((trials["status"] == "failed").sum()),
        makespan_s=makespan,
        mean_wall_s=float(wall.mean()),
        mean_train_s=float(done["train_seconds"].mean()),
        mean_eval_s=float(done["eval_seconds"].mean()),
        epochs=epochs,
        study_epochs=int(study_epochs),
    )


def describe_machine() -> str:
    import torch

    name = torch.cuda.get_device_name(0)
    memory = torch.cuda.get_device_properties(0).total_memory / 2**30
    return (f"{name} ({memory:.0f} GiB), {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}), Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,8", help="trials per GPU, comma-separated")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per trial")
    parser.add_argument("--waves", type=int, default=2, help="rounds of k trials per level")
    parser.add_argument("--cpus-per-trial", type=int, default=2,
                        help="Ray CPUs per trial (lowered so that k trials fit this machine)")
    parser.add_argument("--amp", action="store_true", help="train.amp: bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="train.compile: torch.compile")
    parser.add_argument("--keep", type=Path, default=None, help="keep the study folders here")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: this benchmark measures trials sharing one GPU "
              "and needs one (fake Ray GPUs would measure the CPU). Nothing was run.")
        return 0
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    cores = os.cpu_count() or 1
    print(f"machine: {describe_machine()}")
    print(f"study: {STUDY.relative_to(ROOT)}, {args.epochs} epochs per trial, {args.waves} "
          f"waves, amp={args.amp}, compile={args.compile}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for k in levels:
            cpus = max(1, min(args.cpus_per_trial, cores // k))
            result = run_level(k, args.epochs, args.waves, cpus, args.amp, args.compile, folder)
            results.append(result)
            print(f"  k={k}: {result.completed} trials in {result.makespan_s:.0f} s "
                  f"({result.trials_per_hour:.1f} trials/h)", flush=True)
    header = (f"{'per GPU':>7} {'cpu/trial':>9} {'trials':>6} {'failed':>6} {'makespan s':>10} "
              f"{'train s':>8} {'eval s':>7} {'wall s':>7} {'trials/h':>9} "
              f"{'proj. trials/h @' + str(results[0].study_epochs) + ' ep':>22}")
    print(header)
    for r in results:
        print(f"{r.per_gpu:>7} {r.cpus_per_trial:>9} {r.completed:>6} {r.failed:>6} "
              f"{r.makespan_s:>10.0f} {r.mean_train_s:>8.1f} {r.mean_eval_s:>7.1f} "
              f"{r.mean_wall_s:>7.1f} {r.trials_per_hour:>9.1f} "
              f"{r.projected_trials_per_hour:>22.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
