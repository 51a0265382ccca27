"""The data DB: table `cover_type` (valid rows, stored once by row key) and its quarantine;
`predictions` (what the inference API answered) and `drift_reports` (the monitoring's).

Works on SQLite (local), MySQL/MariaDB (compose, CI) and PostgreSQL.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import operator
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError

from covertype import schema

log = logging.getLogger(__name__)
metadata = MetaData()
ROW_KEY_LENGTH = 32  # hex chars of a 16-byte BLAKE2b digest


def _feature_columns() -> list[Column]:
    """The 12 features as columns (fresh objects: a Column belongs to one table)."""
    return [
        *(
            Column(f.name, SmallInteger if f.high < 2**15 else Integer, nullable=False)
            for f in schema.NUMERIC_FIELDS
        ),
        Column(schema.WILDERNESS, String(16), nullable=False),
        Column(schema.SOIL, String(8), nullable=False),
    ]


# SQLite autoincrements only an INTEGER PRIMARY KEY; elsewhere 64 bits, for a long log.
_SERIAL = BigInteger().with_variant(Integer, "sqlite")
# MySQL's DATETIME drops fractions of a second unless asked to keep them.
_MICROSECONDS = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

cover_type = Table(
    "cover_type",
    metadata,
    Column("row_key", String(ROW_KEY_LENGTH), primary_key=True),
    *_feature_columns(),
    Column(schema.LABEL, SmallInteger, nullable=False),
    Column("batch_number", SmallInteger, nullable=False),
    Column("group_number", SmallInteger, nullable=False),
    Column("ingested_at", DateTime(timezone=True), nullable=False),
)

quarantine = Table(
    "cover_type_quarantine",
    metadata,
    Column("raw_key", String(ROW_KEY_LENGTH), primary_key=True),
    Column("raw", Text, nullable=False),  # the row as received, JSON
    Column("reason", Text, nullable=False),
    Column("batch_number", SmallInteger),
    Column("group_number", SmallInteger),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


# What the inference API answered, one row per record (written in bulk by its log writer).
predictions = Table(
    "predictions",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("predicted_at", _MICROSECONDS, nullable=False),
    Column("model_version", String(32), nullable=False),
    *_feature_columns(),  # as normalised by the schema (canonical area and soil code)
    Column("predicted_cover_type", SmallInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),  # of the request that answered it
    Index("ix_predictions_predicted_at", "predicted_at"),
)

# One row per drift report (computed or not: `reason` says why not); see covertype.monitor.
drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # "batch" or "predictions"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("champion_version", String(32)),  # None: there was no champion
    Column("batch_number", SmallInteger),  # kind "batch"
    Column("predictions_from_id", BigInteger),  # kind "predictions": the ids compared
    Column("predictions_to_id", BigInteger),
    Column("reference_rows", Integer, nullable=False),
    Column("current_rows", Integer, nullable=False),
    Column("computed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),  # the summary, or why it was not computed
    Column("dataset_drift", Boolean),
    Column("drifted_features", SmallInteger),
    Column("features", SmallInteger),
    Column("drift_share", Float),
    Column("drift_share_threshold", Float),
    Column("feature_scores", Text),  # JSON: feature → score, test, threshold, drifted
    Column("current_classes", SmallInteger),  # kind "batch": classes in the batch
    Column("live_accuracy", Float),  # kind "batch": the champion on the batch, before training
    Column("live_macro_f1", Float),
    Column("mlflow_run_id", String(32)),
    Index("ix_drift_reports_kind_model", "kind", "model_name", "id"),
)

# Every decision of the retraining policy (covertype.orchestrate), trained or skipped, why.
retrain_decisions = Table(
    "retrain_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("champion_version", String(32)),
    Column("train", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rows_now", Integer, nullable=False),
    Column("champion_rows", Integer, nullable=False),
    Column("run_id", String(250)),  # the Airflow DAG run that decided
)


class Prediction(NamedTuple):
    """One answered record, as the prediction log stores it."""

    features: Mapping[str, object]  # the 12 fields as normalised by `schema`
    cover_type: int
    model_version: str
    latency_ms: float
    predicted_at: datetime
    request_id: str


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets readers (training, tests) run while ingest writes.
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        return engine
    # local_infile: insert_frame loads batches with LOAD DATA LOCAL INFILE on MySQL/MariaDB.
    connect_args = {"local_infile": True} if make_url(url).get_backend_name() == "mysql" else {}
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def row_key(values: Sequence[object]) -> str:
    """Content key of a canonical record: the same row always gets the same key."""
    return _hash(schema.canonical_text(values))


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=ROW_KEY_LENGTH // 2).hexdigest()


def insert_new(conn: Connection, table: Table, rows: list[dict]) -> int:
    """Insert rows whose primary key is not there yet; return how many were inserted.

    The DB decides (not a read before the write), so concurrent runs of the same batch
    cannot store a row twice.
    """
    if not rows:
        return 0
    name = conn.dialect.name
    if name == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        # Rows are validated before, so IGNORE only ever skips duplicate keys.
        statement = mysql.insert(table).prefix_with("IGNORE")
    elif name == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    else:
        statement = insert(table)
    return conn.execute(statement, rows).rowcount


# MySQL/MariaDB refusing LOAD DATA LOCAL (local_infile off on either side).
_LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 4166}


def store_rows(
    conn: Connection,
    valid: schema.Validated,
    *,
    batch_number: int,
    group_number: int,
    at: datetime,
) -> int:
    """Store validated rows in `cover_type` once each; return how many were new.
    On MySQL/MariaDB through the server's bulk path, LOAD DATA LOCAL INFILE ... IGNORE
    (several times faster than a multi-row INSERT); elsewhere, or where LOCAL INFILE is
    refused, through `insert_new`."""
    # A row's canonical text gives both its key and its CSV line.
    lines = valid.texts
    by_key = {_hash(line): line for line in lines}  # a batch may repeat a row
    if not by_key:
        return 0
    if conn.dialect.name in ("mysql", "mariadb"):
        try:
            return _load_data(
                conn, by_key, f"{batch_number},{group_number},{at:%Y-%m-%d %H:%M:%S.%f}"
            )
        except OperationalError as error:
            if error.orig.args[0] not in _LOCAL_INFILE_REFUSED:
                raise
            log.warning("LOAD DATA LOCAL INFILE refused, using INSERT", extra={"error": str(error)})
    rows = valid.clean.assign(row_key=[_hash(line) for line in lines]).drop_duplicates("row_key")
    extra = {"batch_number": batch_number, "group_number": group_number, "ingested_at": at}
    return insert_new(conn, cover_type, [r | extra for r in rows.to_dict("records")])


def _load_data(conn: Connection, by_key: dict[str, str], extra: str) -> int:
    columns = [*schema.FIELDS, "row_key", "batch_number", "group_number", "ingested_at"]
    with tempfile.NamedTemporaryFile("w", suffix=".csv") as handle:
        # Validated values hold no separators; the datetime is naive UTC, like DATETIME.
        handle.write("".join(f"{line},{key},{extra}\n" for key, line in by_key.items()))
        handle.flush()
        statement = (
            f"LOAD DATA LOCAL INFILE '{handle.name}' IGNORE INTO TABLE {cover_type.name} "
            "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' "
            f"({', '.join(f'`{c}`' for c in columns)})"
        )
        return conn.exec_driver_sql(statement).rowcount


def rows_by_batch(url: str) -> dict[int, int]:
    """Rows in `cover_type` per batch number."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            query = select(cover_type.c.batch_number, func.count()).group_by(
                cover_type.c.batch_number
            )
            return {int(batch): int(rows) for batch, rows in conn.execute(query)}
    finally:
        engine.dispose()


def count_rows(url: str) -> tuple[int, int]:
    """Rows in `cover_type` and in its quarantine."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (cover_type, quarantine)
            )
    finally:
        engine.dispose()


def insert_predictions(engine: Engine, records: Sequence[Prediction]) -> int:
    """Store answered records in `predictions` in one transaction and one executemany of
    plain tuples; how many were stored.

    The API's log writer runs this beside the requests, holding the GIL: SQLAlchemy's
    per-row parameter handling cost ~15 µs a row (~30 ms for a flush of 2,000, a stall of
    every request of the worker meanwhile); the statement compiled once per dialect and
    the columns' own bind processors applied by hand leave the DB-API's executemany
    (sqlite3 in C, pymysql into multi-row INSERTs) ~4 µs a row (measured here)."""
    if not records:
        return 0
    sql, order, processors = _prediction_insert(engine.dialect)
    pick = operator.itemgetter(*order) if order else None  # positional: a tuple in C
    rows = []
    for r in records:
        values = {
            **r.features,
            "predicted_cover_type": r.cover_type,
            "model_version": r.model_version,
            "latency_ms": r.latency_ms,
            "predicted_at": r.predicted_at,
            "request_id": r.request_id,
        }
        for name, process in processors:
            values[name] = process(values[name])
        rows.append(pick(values) if pick else values)
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, rows)
    return len(rows)


@functools.cache
def _prediction_insert(dialect) -> tuple[str, tuple[str, ...] | None, tuple]:
    """The INSERT's SQL for `dialect`, its parameters' order (None: named) and the bind
    processors of the columns that have one (e.g. SQLite's datetime → text)."""
    columns = [c for c in predictions.columns if c.name != "id"]
    compiled = insert(predictions).compile(dialect=dialect, column_keys=[c.name for c in columns])
    order = tuple(compiled.positiontup) if compiled.positional else None
    processors = []
    for column in columns:
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors.append((column.name, process))
    return compiled.string, order, tuple(processors)


def add_drift_report(engine: Engine, row: Mapping[str, object]) -> int:
    """Store one drift report; its id."""
    with engine.begin() as conn:
        return int(conn.execute(insert(drift_reports), dict(row)).inserted_primary_key[0])


def latest_drift_report(
    engine: Engine,
    kind: str,
    model_name: str,
    champion_version: str | None = None,
    batch_number: int | None = None,
) -> dict | None:
    """The newest computed report of `kind` for the model (and champion version, and batch,
    if given)."""
    query = select(drift_reports).where(
        drift_reports.c.kind == kind,
        drift_reports.c.model_name == model_name,
        drift_reports.c.computed.is_(True),
    )
    if champion_version is not None:
        query = query.where(drift_reports.c.champion_version == champion_version)
    if batch_number is not None:
        query = query.where(drift_reports.c.batch_number == batch_number)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(drift_reports.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def add_retrain_decision(engine: Engine, row: Mapping[str, object]) -> int:
    """Store one decision of the retraining policy; its id."""
    with engine.begin() as conn:
        return int(conn.execute(insert(retrain_decisions), dict(row)).inserted_primary_key[0])


def rows_after(engine: Engine, table: Table, after_id: int, limit: int = 100) -> list[dict]:
    """Rows of `table` (with an `id`) after `after_id`, oldest first: what is new since."""
    query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
