"""Rows of `cover_type` and its quarantine: keyed by content, each stored once."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Insert, Table, func, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from covertype import schema
from covertype.db.engine import make_engine
from covertype.db.tables import ROW_KEY_LENGTH, cover_type, quarantine

log = logging.getLogger(__name__)


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
    statement: Insert
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
            if error.orig is None or error.orig.args[0] not in _LOCAL_INFILE_REFUSED:
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
            rows, held = (
                conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (cover_type, quarantine)
            )
            return rows, held
    finally:
        engine.dispose()
