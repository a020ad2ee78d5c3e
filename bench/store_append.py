"""Cost of recording one trial in the results store as the study grows.

Records ``--trials`` trials of ``--epochs`` epochs each (the shape of a 50-epoch study) into a
fresh store in a temp folder, holding the writer's lock as the runner does, and prints the wall
and CPU time of recording the 10th, 100th, 1,000th and 2,000th trial: the median over the ten
records ending at that trial, and their mean including any compaction that fell in the window.
Target: the 2,000th costs at most 2x the 10th. Compactions (which fold the part files into
``trials.parquet``/``epochs.parquet``; O(rows), spaced so they stay a small share of the time)
are listed with their duration, and the final compaction at the lock's release is timed too.

``--eager`` compacts after every record, which is what the store did before part files (both
Parquet files rewritten per trial): the cost that grew with the number of trials.

    python bench/store_append.py                 # 2,000 trials x 50 epochs
    python bench/store_append.py --eager --trials 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sweep import names
from sweep.store import ResultsStore

POINTS = (10, 100, 1000, 2000)
WINDOW = 10


def _row(index: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "study": "bench",
        "arm": "infovae" if index % 2 else "elbo",
        "phase": "search",
        "trial_id": f"trial-{index:05d}",
        "attempt": 0,
        "seed": index,
        "status": "completed",
        "started_at": now,
        "ended_at": now,
        "train_seconds": 10.0,
        "eval_seconds": 1.0,
        "host": "bench",
        "device": "cpu",
        **{names.param(f"p{j}"): float(index + j) for j in range(8)},
        **{names.metric(f"m{j}"): float(index * j) for j in range(10)},
    }


def _epochs(index: int, n: int) -> list[dict[str, Any]]:
    terms = ("total", "recon", "kl", "divergence", "elbo")
    return [
        {
            "epoch": e,
            **{f"{split}.{t}": float(index + e) for split in ("train", "val") for t in terms},
        }
        for e in range(1, n + 1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--eager", action="store_true", help="compact after every record")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=os.getcwd()) as tmp:
        store = ResultsStore.create(Path(tmp) / "bench", "name: bench\n")
        wall: list[float] = []
        cpu: list[float] = []
        compactions: list[tuple[int, float]] = []
        real_compact = store.compact

        def timed_compact() -> bool:
            started = time.perf_counter()
            done = real_compact()
            if done and len(wall) < args.trials:
                compactions.append((len(wall) + 1, time.perf_counter() - started))
            return done

        store.compact = timed_compact  # type: ignore[method-assign]
        lock = store.lock()
        lock.__enter__()
        compactions.clear()  # the one at the lock's entry (an empty store) is not a record's
        for index in range(1, args.trials + 1):
            row, epochs = _row(index), _epochs(index, args.epochs)
            w, c = time.perf_counter(), time.process_time()
            store.record_trial(row, epochs)
            if args.eager:  # part of the record's cost, as when every record rewrote both files
                real_compact()
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        started = time.perf_counter()
        lock.__exit__(None, None, None)
        final = time.perf_counter() - started

    mode = "eager (rewrite per record)" if args.eager else "parts + lazy compaction"
    print(
        f"store: {mode}; {args.trials} trials x {args.epochs} epochs; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'trial':>6} {'median ms':>10} {'mean ms':>9} {'median cpu ms':>14}")
    base = None
    for point in POINTS:
        if point > args.trials:
            continue
        window = slice(max(0, point - WINDOW), point)
        median = statistics.median(wall[window]) * 1e3
        mean = statistics.fmean(wall[window]) * 1e3
        cpu_median = statistics.median(cpu[window]) * 1e3
        base = median if base is None else base
        print(
            f"{point:>6} {median:>10.2f} {mean:>9.2f} {cpu_median:>14.2f}   "
            f"x{median / base:.2f} of the 10th"
        )
    total = sum(wall)
    spent = sum(seconds for _, seconds in compactions)
    print(
        f"all records: {total:.1f} s wall, {sum(cpu):.1f} s CPU; {len(compactions)} "
        f"compactions during recording took {spent:.1f} s ({100 * spent / total:.1f} %)"
    )
    print(f"amortised per record, compactions included: {1e3 * total / len(wall):.2f} ms")
    for at, seconds in compactions[:5]:
        print(f"  compaction at record {at}: {seconds * 1e3:.0f} ms")
    print(f"final compaction at the lock's release: {final * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
