from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


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
    # local_infile: store_rows loads batches with LOAD DATA LOCAL INFILE on MySQL/MariaDB.
    connect_args = {"local_infile": True} if make_url(url).get_backend_name() == "mysql" else {}
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600, connect_args=connect_args)
