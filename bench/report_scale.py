"""Benchmark (not a test): build the report of a large synthetic study.

A synthetic store of 2,000 trials x 50 epochs (two arms of 1,000 trials: 985 completed and 5
failed search trials, 10 confirm seeds), with artifacts and an Optuna database, is written to
a temporary folder; the script prints the report build time and the HTML size.
Target: <= 10 s and <= 15 MB.

    python bench/report_scale.py [--trials 2000] [--epochs 50] [--no-optuna] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from sweep.report import build_report  # noqa: E402
from tests.sweep.synthetic_study import write_synthetic_study  # noqa: E402

TARGET_SECONDS = 10.0
TARGET_MB = 15.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="total trials (two arms)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per completed trial")
    parser.add_argument("--seeds", type=int, default=10, help="confirm seeds per arm")
    parser.add_argument("--no-optuna", action="store_true", help="no optuna.db (no importance)")
    parser.add_argument("--keep", type=Path, default=None, help="write the study here and keep it")
    args = parser.parse_args()

    per_arm = args.trials // 2
    failed = 5
    n_search = per_arm - failed - args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep if args.keep is not None else Path(tmp) / "study"
        start = time.perf_counter()
        write_synthetic_study(folder, n_search=n_search, n_seeds=args.seeds,
                              n_epochs=args.epochs, failed_per_arm=failed,
                              optuna_db=not args.no_optuna, name="scale")
        setup = time.perf_counter() - start
        # A fresh interpreter, as `infovae-sweep report` runs: imports (Optuna, Plotly) count.
        code = ("import sys; from pathlib import Path; from sweep.report import build_report; "
                "build_report(Path(sys.argv[1]))")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(folder)], check=True, cwd=ROOT)
        cold = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        start = time.perf_counter()
        out = build_report(folder)
        seconds = time.perf_counter() - start
        megabytes = out.stat().st_size / 1e6
    print(f"store: {2 * per_arm} trials x {args.epochs} epochs "
          f"(written in {setup:.1f} s, optuna.db: {not args.no_optuna})")
    print(f"report build time, fresh process (imports included): {cold:.2f} s wall, "
          f"{cold_cpu:.2f} s CPU (target <= {TARGET_SECONDS:g} s)")
    print(f"report build time, libraries already imported: {seconds:.2f} s wall")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (wall time is inflated when the machine is busy; "
          "CPU time is not)")
    print(f"report size: {megabytes:.2f} MB (target <= {TARGET_MB:g} MB)")
    ok = min(cold, cold_cpu) <= TARGET_SECONDS and megabytes <= TARGET_MB
    print("within target" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
