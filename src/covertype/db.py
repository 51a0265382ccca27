"""The data DB: table `cover_type` (valid rows, stored once by row key) and its quarantine.

Works on SQLite (local), MySQL/MariaDB (compose, CI) and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
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

from covertype import schema

metadata = MetaData()
ROW_KEY_LENGTH = 32  # hex chars of a 16-byte BLAKE2b digest

cover_type = Table(
    "cover_type",
    metadata,
    Column("row_key", String(ROW_KEY_LENGTH), primary_key=True),
    *(
        Column(f.name, SmallInteger if f.high < 2**15 else Integer, nullable=False)
        for f in schema.NUMERIC_FIELDS
    ),
    Column(schema.WILDERNESS, String(16), nullable=False),
    Column(schema.SOIL, String(8), nullable=False),
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
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def row_key(values: Sequence[object]) -> str:
    """Content key of a canonical record: the same row always gets the same key."""
    text = "\x1f".join(str(v) for v in values)
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
