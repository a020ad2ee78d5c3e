"""Benchmark (not a test): whether a large study stays light and keeps its pace.

A study of N tiny trials (the tests' two arms on digits, 2 epochs, TPE, 2 at a time) runs through
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

    python bench/scale.py [--trials 2000] [--concurrency 2] [--tpe-window N]
                          [--sampler tpe|random] [--optuna-storage sqlite|journal] [--keep DIR]
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
from tests.sweep.studies import write_study  # noqa: E402

# The tests' tiny study, searched by TPE, the learning rate searched too (with the decoder
# width alone, TPE would repeat configurations, recorded as copies rather than trained).
_SEARCHED = "      model.decoder.width: {choice: [8, 16]}\n"
_LR = "      train.lr: {log_uniform: {low: 1.0e-4, high: 1.0e-2}}\n"


def _study_file(
    folder: Path, trials: int, concurrency: int, window: int | None, sampler: str
) -> Path:
    path = write_study(folder, "scale", trials=trials // 2, seeds=0, epochs=2)
    text = path.read_text()
    tpe = f"  sampler: {sampler}\n" + (f"  tpe_window: {window}\n" if window else "")
    for old, new in (
        (_SEARCHED, _SEARCHED + _LR),
        ("  sampler: random\n", tpe),
        ("  max_concurrent: 2\n", f"  max_concurrent: {concurrency}\n"),
    ):
        assert old in text, f"the tests' tiny study changed: {old.strip()}"
        text = text.replace(old, new)
    path.write_text(text)
    return path


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
    parser.add_argument(
        "--sampler", choices=("tpe", "random"), default="tpe", help="search.sampler"
    )
    parser.add_argument(
        "--optuna-storage",
        choices=("sqlite", "journal"),
        default="sqlite",
        help="the Optuna storage (run's --optuna-storage)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="write the study here, keep it")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; load average before: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.trials} trials, sampler "
          f"{args.sampler}, Optuna storage {args.optuna_storage}")

    work = Path(tempfile.mkdtemp(prefix="infovae-scale-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    spec = load_study(
        _study_file(work, args.trials, args.concurrency, args.tpe_window, args.sampler)
    )
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
    run_study(
        spec,
        folder,
        num_cpus=args.concurrency,
        listeners=[sample],
        optuna_storage=args.optuna_storage,
    )
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
