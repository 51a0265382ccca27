"""The index of revision 0002 (cover_type (batch_number, ingested_at)) on the real rows in
MariaDB/MySQL: the reads by batch before and after it, the migration's own time, and what it
costs ingest.

    COVERTYPE_SOURCE_DATA=/path/covtype.csv.gz .venv/bin/python benchmarks/bench_db_index.py

Every row of the data file goes in as the source serves it (10 batches, ingest.store_batch,
so LOAD DATA LOCAL INFILE), into a DB at revision 0001 (no index); each read is timed
(execute and fetch every row, median of --repeat after one warm-up), then `covertype db
upgrade` builds the index and the reads are timed again. Ingest: batch 10 deleted and
stored again, median of --repeat, before and after. DB: COVERTYPE_BENCH_MYSQL_URL (default
root@127.0.0.1:3306, database covertype_bench_index, dropped and made anew).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa

from covertype import dataset, db, schema, source
from covertype.db import schema_version
from covertype.ingest import Batch, store_batch
from covertype.settings import Settings

URL = os.environ.get(
    "COVERTYPE_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/covertype_bench_index"
)
table = db.cover_type


def training_rows(batches: list[int], rows: int):
    """monitor/reference.py's training_rows: a champion's rows, oldest first."""
    return (
        sa.select(*(table.c[name] for name in (*schema.FIELDS, "row_key")))
        .where(table.c.batch_number.in_(batches), table.c.ingested_at < datetime(2100, 1, 1))
        .order_by(table.c.ingested_at, table.c.row_key)
        .limit(rows)
    )


def reads(counts: dict[int, int]) -> dict[str, sa.Select]:
    first3 = sum(counts[b] for b in (1, 2, 3))
    return {
        "rows per batch (rows_by_batch, Monitoring)": sa.select(
            table.c.batch_number, sa.func.count()
        ).group_by(table.c.batch_number),
        "one batch's rows (its drift report)": sa.select(
            *(table.c[name] for name in (*schema.FIELDS, "row_key"))
        ).where(table.c.batch_number == 5),
        "champion's training rows, batches 1-3": training_rows([1, 2, 3], first3),
        "champion's training rows, batches 1-9": training_rows(
            list(range(1, 10)), sum(counts[b] for b in range(1, 10))
        ),
    }


class Read(NamedTuple):
    seconds: float  # execute and fetch, as the caller sees it
    server_ms: float  # MariaDB's own time for the statement (ANALYZE), without the transfer
    rows: int
    key: str  # the index EXPLAIN says the server uses


def timed_read(engine: sa.Engine, query: sa.Select, repeat: int) -> Read:
    with engine.connect() as conn:
        compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
        plan = conn.exec_driver_sql(f"EXPLAIN {compiled}").mappings().one()
        rows = len(conn.execute(query).fetchall())  # warm-up
        times, server = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            conn.execute(query).fetchall()
            times.append(time.perf_counter() - started)
            analyzed = json.loads(
                conn.exec_driver_sql(f"ANALYZE FORMAT=JSON {compiled}").scalar_one()
            )
            server.append(analyzed["query_block"]["r_total_time_ms"])
    return Read(statistics.median(times), statistics.median(server), rows, plan["key"] or "none")


def timed_ingest(engine: sa.Engine, rows: list[list[str]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        with engine.begin() as conn:
            conn.execute(table.delete().where(table.c.batch_number == 10))
        started = time.perf_counter()
        stored = store_batch(engine, Batch(7, 10, rows)).stored
        times.append(time.perf_counter() - started)
        assert stored == len({db.row_key(r) for r in rows}), stored
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    frame = dataset.load_dataset(Settings())
    batches = [dataset.to_course_rows(frame.iloc[p]) for p in source.partition(frame)]
    url = sa.engine.make_url(URL)
    server = sa.create_engine(url.set(database=""))
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {url.database}")
        conn.exec_driver_sql(f"CREATE DATABASE {url.database} CHARACTER SET utf8mb4")
    server.dispose()
    engine = db.make_engine(URL)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT VERSION()").scalar()
    print(f"{len(frame)} rows of {os.environ.get('COVERTYPE_SOURCE_DATA')}, {version}")

    schema_version.upgrade(engine, "0001_baseline")
    for number, rows in enumerate(batches, start=1):
        store_batch(engine, Batch(7, number, rows))
    counts = db.rows_by_batch(URL)
    queries = reads(counts)
    before = {name: timed_read(engine, q, args.repeat) for name, q in queries.items()}
    ingest_before = timed_ingest(engine, batches[-1], args.repeat)

    started = time.perf_counter()
    summary = schema_version.upgrade(engine).summary()
    migration = time.perf_counter() - started
    after = {name: timed_read(engine, q, args.repeat) for name, q in queries.items()}
    ingest_after = timed_ingest(engine, batches[-1], args.repeat)
    engine.dispose()

    print(f"{summary} in {migration:.2f} s ({sum(counts.values())} rows)")
    print(f"measured {datetime.now(UTC):%Y-%m-%d}, median of {args.repeat}\n")
    header = (
        f"{'ms (median)':46} {'rows':>6} | {'no index':>8} {'index':>6} {'ratio':>5} | "
        f"{'server: no index':>16} {'index':>6} {'ratio':>5} | index used"
    )
    print(header)
    print("-" * len(header))
    for name, was in before.items():
        now = after[name]
        print(
            f"{name:46} {was.rows:>6} | {was.seconds * 1000:>8.0f} {now.seconds * 1000:>6.0f} "
            f"{was.seconds / now.seconds:>4.2f}× | {was.server_ms:>16.0f} {now.server_ms:>6.0f} "
            f"{was.server_ms / now.server_ms:>4.2f}× | {now.key}"
        )
    print(
        f"{'ingest of batch 10 (store_batch: LOAD DATA)':46} {len(batches[-1]):>6} | "
        f"{ingest_before * 1000:>8.0f} {ingest_after * 1000:>6.0f} "
        f"{ingest_before / ingest_after:>4.2f}× |"
    )


if __name__ == "__main__":
    main()
