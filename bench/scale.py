"""Benchmark (not a test): whether a large study stays light and keeps its pace.

A study of N tiny trials (two arms of digits, 2 epochs, TPE, 2 at a time) runs through
``sweep.run.runner.run_study`` on embedded Ray into a temporary folder; then the figures:

- the rate (trials recorded per second) over each tenth of the study, from ``ended_at`` in
  ``trials.parquet``, and the last tenth's rate over the first tenth's;
- the time TPE spends in ``Study.ask`` per suggestion, over each tenth (the searcher runs on
  the driver, so the script times Optuna's ``ask`` in its own process);
- Ray Tune's experiment state (``ray/<run>/experiment_state-*.json``) in bytes per trial;
- the driver's RSS after each tenth, its growth per 1,000 trials (a least-squares slope from
  the second tenth on, past the start-up's imports) and its peak;
- the bytes under ``ray/`` and under ``artifacts/`` per trial;
- the wall time of ``infovae-sweep report`` on the finished study.

Targets: the last tenth's rate >= 0.9 x the first tenth's; experiment state <= 16 KB per
trial; driver RSS growth < 100 MB per 1,000 trials.

    python bench/scale.py [--trials 2000] [--concurrency 2] [--tpe-window N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import psutil  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from sweep.run.runner import run_study  # noqa: E402
from sweep.spec import load_study  # noqa: E402

STUDY = """
name: scale
data: {{dataset: digits}}
defaults:
  model: {{latent_dim: 2, encoder: {{width: 16, depth: 1}}, decoder: {{width: 16, depth: 1}}}}
  train: {{epochs: 2, batch_size: 256}}
  eval: {{iwae_samples: 2, iwae_points: 20, probe_labels: [50], latents_to_keep: 50}}
arms:
  elbo:
    fixed: {{objective.alpha: 0, objective.lambda: 1}}
    search:
      model.decoder.width: {{choice: [8, 16]}}
      train.lr: {{log_uniform: {{low: 1.0e-4, high: 1.0e-2}}}}
  infovae:
    fixed: {{objective.alpha: 1}}
    search:
      objective.lambda: {{log_uniform: {{low: 1, high: 100}}}}
      objective.kernel: {{choice: [rbf, imq]}}
search:
  sampler: tpe
{window}  trials_per_arm: {per_arm}
  max_concurrent: {concurrency}
  objectives: [{{metric: metric.mmd, direction: minimize}}]
confirm: {{top_k: 1, seeds: 0}}
resources: {{cpu: 1, gpu: 0}}
"""


def _tenths(values: list[float], n: int = 10) -> list[list[float]]:
    size = max(1, len(values) // n)
    return [values[i * size : (i + 1) * size if i < n - 1 else len(values)] for i in range(n)]


def _bytes(path: Path, pattern: str = "**/*") -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file()) if path.exists() else 0


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--tpe-window", type=int, default=None, help="search.tpe_window")
    parser.add_argument("--keep", type=Path, default=None, help="write the study here, keep it")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    work = Path(tempfile.mkdtemp(prefix="infovae-scale-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    study = work / "scale.yaml"
    window = f"  tpe_window: {args.tpe_window}\n" if args.tpe_window else ""
    study.write_text(
        STUDY.format(per_arm=args.trials // 2, concurrency=args.concurrency, window=window)
    )
    spec = load_study(study)
    folder = work / "results" / "scale"
    if folder.exists():
        shutil.rmtree(folder)

    asks: list[float] = []
    ask = optuna.Study.ask

    def timed_ask(self, *a, **k):
        start = time.perf_counter()
        try:
            return ask(self, *a, **k)
        finally:
            asks.append(time.perf_counter() - start)

    optuna.Study.ask = timed_ask  # the searcher runs on the driver: this process
    me = psutil.Process()
    rss: list[tuple[int, float]] = []
    step = max(1, args.trials // 10)

    def sample(events) -> None:
        done = sum(a.done + a.failed + a.stopped for a in events.arms.values())
        if done >= step * (len(rss) + 1):
            rss.append((done, me.memory_info().rss / 2**20))

    start = time.monotonic()
    run_study(spec, folder, num_cpus=args.concurrency, listeners=[sample])
    wall = time.monotonic() - start
    optuna.Study.ask = ask

    trials = pq.read_table(folder / "trials.parquet").to_pandas()
    n = len(trials)
    ended = sorted(trials["ended_at"])
    print(f"{n} trials in {wall:.0f} s ({n / wall:.2f} trials/s overall); statuses "
          f"{trials['status'].value_counts().to_dict()}")
    chunks = _tenths([t.timestamp() for t in ended])
    rates, previous = [], ended[0].timestamp()
    for chunk in chunks:
        rates.append(len(chunk) / max(1e-9, chunk[-1] - previous))
        previous = chunk[-1]
    print("rate per tenth (trials/s): " + " ".join(f"{r:.2f}" for r in rates))
    print(f"last tenth / first tenth: {rates[-1] / rates[0]:.2f}  (median of the last three / "
          f"first three: {statistics.median(rates[-3:]) / statistics.median(rates[:3]):.2f};"
          " target >= 0.9)")
    ask_ms = [1000 * statistics.fmean(c) for c in _tenths(asks) if c]
    print("TPE ask per suggestion (ms), per tenth: " + " ".join(f"{a:.1f}" for a in ask_ms))
    print(f"TPE ask in all: {sum(asks):.1f} s of {wall:.0f} s wall")

    ray_dir = folder / "ray"
    state = _bytes(ray_dir, "*/experiment_state-*.json")
    print(f"experiment state: {state / n / 1024:.1f} KB per trial ({state / 2**20:.1f} MB; "
          "target <= 16 KB)")
    print(f"ray/: {_bytes(ray_dir) / n / 1024:.1f} KB per trial, "
          f"{sum(1 for _ in ray_dir.rglob('*')) / n:.1f} paths per trial; artifacts/: "
          f"{_bytes(folder / 'artifacts') / n / 1024:.1f} KB per trial")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = _slope(rss[1:]) * 1000 if len(rss) > 2 else float("nan")
    print("driver RSS after each tenth (MB): " + " ".join(f"{r:.0f}" for _, r in rss))
    print(f"driver RSS growth: {growth:.1f} MB per 1,000 trials (target < 100); "
          f"peak {peak:.0f} MB")

    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "report", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"report: {time.monotonic() - start:.1f} s (exit {out.returncode})")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
