"""What reproducible versions cost: the snapshot step in training, a second training on the
same rows, and a reproduction against the training it reproduces, measured in one run.

    .venv/bin/python benchmarks/bench_reproduce.py              # 58k rows, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_reproduce.py --all-rows   # + the snapshot of all rows

In a temporary folder: one local MLflow server (`covertype mlflow`: SQLite, artifacts in a
folder, proxied) and a SQLite data DB holding the first --rows real rows
(COVERTYPE_SOURCE_DATA, shuffled once with seed 0) stored through ingest in 6 batches.
1. `train` with the settings' search (n_iter candidates, seed 0, every family): wall time,
   its `snapshot_seconds` metric, the bytes its snapshots stored. The anchor: the same
   training without the snapshot step (wall − snapshot_seconds).
2. `train` again on the same rows: wall time, snapshot_seconds, new snapshot runs.
3. `reproduce` of version 1 from its snapshots and from the data DB: wall time, identical.
4. --all-rows: no training; every row keyed as ingest keys it, split as `train` splits, and
   `snapshot.store` against the server: seconds (digest and Parquet apart) and bytes.
Targets: snapshot ≤ 5% of the training's wall time; training 2 stores 0 new snapshots;
both reproductions identical.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from covertype import dataset, db, schema
from covertype.reproduce.run import reproduce
from covertype.tracking.client import connect
from covertype.train import data, snapshot
from covertype.train.run import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.data import fill_data_db, real_frame, training_settings
from tests.support.servers import start_mlflow

os.environ |= {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "DO_NOT_TRACK": "1"}
SOURCE = Path(os.environ.get("COVERTYPE_SOURCE_DATA", "/work/shared/data/covtype.csv.gz"))
BATCHES = 6


def snapshot_runs(client, settings) -> int:
    found = client.get_experiment_by_name(snapshot.experiment_name(settings.mlflow.experiment_name))
    return len(client.search_runs([found.experiment_id], max_results=1000)) if found else 0


def timed_training(client, settings) -> dict:
    before = snapshot_runs(client, settings)
    started = time.perf_counter()
    result = train(settings, progress=lambda line: print(f"  {line}", flush=True))
    wall = time.perf_counter() - started
    run = client.get_run(result.run_id).data
    return {
        "version": result.version,
        "wall": wall,
        "snapshot": run.metrics["snapshot_seconds"],
        "refit": run.metrics["refit_seconds"],
        "bytes": int(run.tags["manifest.snapshot_bytes"]),
        "reused": run.tags["manifest.snapshot_reused"],
        "new_runs": snapshot_runs(client, settings) - before,
    }


def keyed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as `data.load_rows` would read them after ingest stored them in BATCHES
    batches: keyed by their canonical text, the first of duplicates kept, by row key."""
    course = dataset.to_course_rows(frame)
    size = -(-len(course) // BATCHES)
    rows = (
        frame[list(schema.FIELDS)]
        .reset_index(drop=True)
        .assign(
            row_key=[db.row_key(r) for r in course], batch_number=np.arange(len(course)) // size + 1
        )
    )
    rows = rows.drop_duplicates("row_key").sort_values("row_key", ignore_index=True)
    for name in schema.CATEGORICAL:
        rows[name] = rows[name].astype(str)
    for name in (*schema.NUMERIC, schema.LABEL, "batch_number"):
        rows[name] = rows[name].astype(np.int64)
    return rows


def all_rows_snapshot(client, settings, frame: pd.DataFrame) -> dict:
    started = time.perf_counter()
    rows = keyed_rows(frame)
    split = data.split(rows, settings)
    prepare = time.perf_counter() - started
    shares = [getattr(split, name).rows for name in snapshot.SHARES]
    started = time.perf_counter()  # the two CPU steps of `store`, alone
    for share in shares:
        snapshot.rows_digest(share)
    digest = time.perf_counter() - started
    started = time.perf_counter()
    for share in shares:
        snapshot.parquet_bytes(share)
    parquet = time.perf_counter() - started
    stored, seconds = snapshot.store(client, settings.mlflow.experiment_name + "-all", split)
    size = sum(s.bytes for s in stored.values())
    return {"rows": len(rows), "prepare": prepare, "digest": digest, "parquet": parquet,
            "seconds": seconds, "bytes": size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=58_000)
    parser.add_argument("--all-rows", action="store_true", help="+ the snapshot of all rows")
    args = parser.parse_args()
    bench_start, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as tmp_name:
        tmp = Path(tmp_name)
        frame = real_frame(SOURCE, tmp / "cache-home")
        rows = frame.iloc[np.random.default_rng(0).permutation(len(frame))[: args.rows]]
        server = start_mlflow(tmp / "mlflow", {})
        try:
            settings = training_settings(tmp / "train", server.url, "bench-reproduce")
            started = time.perf_counter()
            fill_data_db(settings.data_db, rows, len(rows), BATCHES)
            print(f"{len(rows)} rows in {BATCHES} batches: {time.perf_counter() - started:.0f}s")
            client = connect(settings)
            print("training 1 ...", flush=True)
            first = timed_training(client, settings)
            print("training 2 (same rows) ...", flush=True)
            second = timed_training(client, settings)
            again = {}
            for source in ("snapshot", "db"):
                print(f"reproduce version {first['version']} from {source} ...", flush=True)
                started = time.perf_counter()
                found = reproduce(settings, first["version"], source)
                again[source] = (time.perf_counter() - started, found)
                print(f"  {found.summary}; refit {found.numbers.get('refit_seconds', 0):.1f}s")
            whole = all_rows_snapshot(client, settings, frame) if args.all_rows else None
        finally:
            server.stop()

    anchor = first["wall"] - first["snapshot"]
    share = 100 * first["snapshot"] / first["wall"]
    print(f"\nmeasured {date.today()}, {os.cpu_count()} cores, {len(rows):,} rows "
          f"({first['bytes'] / len(rows):.1f} snapshot bytes/row); "
          f"whole benchmark {time.perf_counter() - bench_start:.0f}s; load average "
          f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (other work skews "
          "LightGBM's threads)\n")  # fmt: skip
    print("| step | wall s | snapshot s | snapshot share | bytes stored | result |")
    print("|---|---|---|---|---|---|")
    print(f"| anchor: training 1 without the snapshot step | {anchor:.1f} | – | – | – | – |")
    for name, t in (("training 1", first), ("training 2, same rows", second)):
        verdict = "≤ 5% ✓" if 100 * t["snapshot"] / t["wall"] <= 5 else "> 5% ✗"
        new = (f"{t['bytes']:,} ({t['new_runs']} new snapshot runs)" if t["new_runs"]
               else f"0 new (reused: {t['reused']})")  # fmt: skip
        print(f"| {name} (version {t['version']}) | {t['wall']:.1f} | {t['snapshot']:.2f} | "
              f"{100 * t['snapshot'] / t['wall']:.2f}% {verdict} | {new} | "
              f"refit {t['refit']:.1f}s |")  # fmt: skip
    for source, (wall, found) in again.items():
        print(f"| reproduce v{first['version']} from {source} | {wall:.1f} | – | – | – | "
              f"identical: {'yes' if found.identical else 'NO'}, "
              f"{wall / first['wall']:.2f}× training 1, refit "
              f"{found.numbers.get('refit_seconds', 0):.1f}s |")  # fmt: skip
    if whole:
        print(f"| `snapshot.store` of all {whole['rows']:,} rows, no training | "
              f"{whole['seconds']:.1f} | {whole['seconds']:.2f} | – | {whole['bytes']:,} "
              f"({whole['bytes'] / whole['rows']:.1f}/row) | CPU alone: digests "
              f"{whole['digest']:.2f}s, Parquet {whole['parquet']:.2f}s (keying and split "
              f"before: {whole['prepare']:.1f}s) |")  # fmt: skip
    print(f"\nsnapshot share of training 1: {share:.2f}% (target ≤ 5%); training 2 new "
          f"snapshots: {second['new_runs']} (target 0)")  # fmt: skip


if __name__ == "__main__":
    main()
