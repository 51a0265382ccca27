"""One schema change at a time per database: API replicas' init containers, Airflow workers
and `covertype up` may all run `covertype db upgrade` at once."""

from __future__ import annotations

import contextlib
import fcntl
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from covertype.errors import Unavailable

WAIT_SECONDS = 600.0  # an upgrade's index build on a large table may take minutes
_POLL_SECONDS = 0.2


class LockTimeout(Unavailable):
    """Another process held the data DB's schema lock for longer than we wait."""


def lock_name(url: sa.URL) -> str:
    """The lock's name on the server: one per database (MySQL allows 64 characters)."""
    return f"covertype.schema.{url.database}"[:64]


@contextlib.contextmanager
def schema_lock(conn: sa.Connection, wait: float | None = None) -> Iterator[None]:
    """Hold the database's schema lock while the block runs, on `conn`'s session (MySQL,
    PostgreSQL) or on a file beside the SQLite DB; every transaction of `conn` committed."""
    wait = WAIT_SECONDS if wait is None else wait
    url = conn.engine.url
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        name = lock_name(url)
        # GET_LOCK waits server-side; 1: ours, 0: timed out. Held by the session, so the
        # implicit commits of DDL do not release it.
        got = conn.scalar(sa.select(sa.func.get_lock(name, int(wait))))
        conn.commit()
        _check(got == 1, url, wait)
        try:
            yield
        finally:
            conn.scalar(sa.select(sa.func.release_lock(name)))
            conn.commit()
    elif dialect == "postgresql":
        key = zlib.crc32(lock_name(url).encode())  # advisory locks take a bigint
        _wait_for(lambda: conn.scalar(sa.select(sa.func.pg_try_advisory_lock(key))), url, wait)
        conn.commit()
        try:
            yield
        finally:
            conn.scalar(sa.select(sa.func.pg_advisory_unlock(key)))
            conn.commit()
    elif dialect == "sqlite" and url.database not in (None, "", ":memory:"):
        # Kept, never deleted: removing a lock file lets two processes lock two files.
        with open(Path(f"{url.database}.lock"), "a") as handle:
            _wait_for(lambda: _try_flock(handle.fileno()), url, wait)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:  # an in-memory SQLite DB has a single connection to race with
        yield


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for(acquire: Callable[[], object], url: sa.URL, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not (got := acquire()) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    _check(bool(got), url, wait)


def _check(got: bool, url: sa.URL, wait: float) -> None:
    if not got:
        raise LockTimeout(
            f"another process held the schema lock of the data DB {url.render_as_string()} "
            f"for more than {wait:g} s (an upgrade still running?); try again once it ends"
        )
