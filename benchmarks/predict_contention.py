"""The load inflation of a one-row predict: alone, beside a second process, beside a thread.

    .venv/bin/python benchmarks/predict_contention.py BOOSTER.txt ROWS.json [--seconds 8]

Each worker calls LightGBM's one-row C API (as the served path) in a loop over the rows for
`--seconds`; printed: µs per predict per worker, and predicts/s in all, for
  1 process alone;
  2 processes at once, each with its own copy of the trees (uvicorn's 2 workers);
  1 process, 2 threads at once on one copy (ctypes releases the GIL during the call).
(2 processes) ≫ (alone) with (2 threads) ≈ (alone): the two copies fight over the cache;
all three equal: no contention; (2 threads) ≈ (2 processes) ≫ (alone): the cores (or the
memory) themselves are shared, not the copies.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time

import numpy as np


def load(booster_file: str, rows_file: str):
    import lightgbm

    booster = lightgbm.Booster(model_file=booster_file)
    with open(rows_file) as file:
        rows = [np.asarray([r], dtype=np.float64) for r in json.load(file)]
    return booster, rows


def loop(booster, rows, seconds: float, start: float) -> tuple[int, float]:
    from covertype.serve.lightgbm_single_row import SingleRow

    single = SingleRow(booster, rows[0].shape[1])
    for row in rows:  # warm
        single.predict(row)
    while time.perf_counter() < start:
        time.sleep(0.001)
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        single.predict(rows[n % len(rows)])
        n += 1
    return n, time.perf_counter() - began


def process_worker(args, start: float, out) -> None:
    booster, rows = load(args.booster, args.rows)
    out.put(loop(booster, rows, args.seconds, start))


def report(name: str, results: list[tuple[int, float]]) -> None:
    per = [elapsed / n * 1e6 for n, elapsed in results]
    total = sum(n / elapsed for n, elapsed in results)
    print(
        f"{name:34s} {' / '.join(f'{p:.0f}' for p in per)} µs per predict; "
        f"{total:,.0f} predicts/s in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("booster")
    parser.add_argument("rows")
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")

    def processes(k: int) -> list:
        out = context.Queue()
        start = time.perf_counter() + 15  # after every process has loaded the trees
        procs = [context.Process(target=process_worker, args=(args, start, out)) for _ in range(k)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        return results

    report("1 process alone", processes(1))
    report("2 processes, a copy each", processes(2))
    booster, rows = load(args.booster, args.rows)
    results: list = []
    start = time.perf_counter() + 1

    def thread() -> None:
        results.append(loop(booster, rows, args.seconds, start))

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report("1 process, 2 threads, one copy", results)


if __name__ == "__main__":
    main()
