"""Ingestion rate into MariaDB/MySQL for one 40k-row batch: our ingest vs the server's bulk path.

    .venv/bin/python benchmarks/bench_ingest.py [--repeat 5]

Rows: batch 1 of the real data (COVERTYPE_SOURCE_DATA), as the source API serves them
(strings). "ours" is `ingest.store_batch`: validate, key, INSERT IGNORE in one transaction.
The anchors load the same canonical rows (with the same key and batch columns) into an
empty table: `LOAD DATA LOCAL INFILE` of a prepared CSV, and one multi-row INSERT built
beforehand; only the statement is timed for them, everything for ours. Target: ours ≥ 50%
of the bulk path. DB: COVERTYPE_BENCH_MYSQL_URL (default root@127.0.0.1:3306, database
covertype_bench, created if missing).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from covertype import dataset, db, schema, source
from covertype.ingest import Batch, store_batch
from covertype.settings import Settings

URL = os.environ.get(
    "COVERTYPE_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/covertype_bench"
)
COLUMNS = ["row_key", *schema.FIELDS, "batch_number", "group_number", "ingested_at"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    settings = Settings()
    frame = dataset.load_dataset(settings)
    order = np.random.default_rng(source.PARTITION_SEED).permutation(len(frame))
    batch_rows = dataset.to_course_rows(frame.iloc[np.array_split(order, source.BATCHES)[0]])
    print(f"rows: {len(batch_rows)} (batch 1 of {settings.source.data}); DB {URL}")

    url = sa.engine.make_url(URL)
    server = sa.create_engine(url.set(database=""))
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {url.database}")
    server.dispose()
    engine = db.make_engine(URL)
    bulk = sa.create_engine(URL, connect_args={"local_infile": True})
    db.ensure_schema(engine)

    # Canonical rows with their keys, as ours would store them, for the anchors.
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    canonical = [[db.row_key(r), *r, 1, 7, now] for r in batch_rows]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as handle:
        csv.writer(handle).writerows(canonical)
        csv_path = handle.name
    values = ",".join(
        "(" + ",".join(f"'{v}'" if isinstance(v, str) else str(v) for v in row) + ")"
        for row in canonical
    )
    multi_insert = f"INSERT INTO cover_type ({','.join(COLUMNS)}) VALUES {values}"
    load_data = (
        f"LOAD DATA LOCAL INFILE '{csv_path}' INTO TABLE cover_type "
        f"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ({','.join(COLUMNS)})"
    )

    def empty() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE TABLE cover_type")

    def ours() -> float:
        started = time.perf_counter()
        result = store_batch(engine, Batch(7, 1, batch_rows))
        elapsed = time.perf_counter() - started
        assert result.stored == len(batch_rows), result
        return elapsed

    def anchor(statement: str) -> float:
        with bulk.begin() as conn:
            started = time.perf_counter()
            conn.exec_driver_sql(statement)
        elapsed = time.perf_counter() - started
        with engine.connect() as conn:
            count = conn.exec_driver_sql("SELECT COUNT(*) FROM cover_type").scalar()
        assert count == len(batch_rows), count
        return elapsed

    paths = {
        "ours: ingest.store_batch (validate + key + INSERT IGNORE)": ours,
        "anchor: LOAD DATA LOCAL INFILE (prepared CSV)": lambda: anchor(load_data),
        "anchor: one multi-row INSERT (prepared SQL)": lambda: anchor(multi_insert),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeat):  # interleaved, so drift hits every path alike
        for name, run in paths.items():
            empty()
            times[name].append(run())
    empty()
    os.unlink(csv_path)

    ours_rate = len(batch_rows) / statistics.median(times[next(iter(paths))])
    best_anchor = max(len(batch_rows) / statistics.median(t) for t in list(times.values())[1:])
    print(f"\n| path | median s ({args.repeat} runs) | rows/s | ours / this |")
    print("|---|---|---|---|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rate = len(batch_rows) / median
        print(f"| {name} | {median:.3f} | {rate:,.0f} | {ours_rate / rate:.0%} |")
    verdict = "meets" if ours_rate >= 0.5 * best_anchor else "MISSES"
    share = ours_rate / best_anchor
    print(f"\nours at {share:.0%} of the fastest bulk path: {verdict} the 50% target")


if __name__ == "__main__":
    main()
