"""Shared fixtures: real server processes on free ports, data files, data DBs."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from covertype import db
from covertype.settings import Settings
from tests.helpers import ServerProcess, free_port, write_uci_file

MYSQL_URL = os.environ.get("COVERTYPE_TEST_MYSQL_URL")  # set by .ci/run; absent: SQLite only


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A generated UCI-layout file: 2,000 valid rows (fast start-up for API tests)."""
    return write_uci_file(tmp_path_factory.mktemp("data") / "small.csv", rows=2000, seed=1)


@pytest.fixture(scope="session")
def real_data(tmp_path_factory) -> Path:
    """The real covtype file from the settings (COVERTYPE_SOURCE_DATA); on a machine without
    it, a generated 40,000-row file of the same layout."""
    configured = Settings(_env_file=None).source_data
    if configured is not None:
        assert Path(configured).is_file(), f"COVERTYPE_SOURCE_DATA={configured} does not exist"
        return Path(configured).resolve()
    return write_uci_file(tmp_path_factory.mktemp("data") / "generated.csv.gz", 40000, seed=2)


@pytest.fixture
def source_server(tmp_path, small_data):
    """Factory: start `covertype source` as a real process; stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(data: Path = small_data, batch_seconds: float = 300, home: Path | None = None):
        home = home or tmp_path / "home"
        server = ServerProcess(
            ["source", "--port", str(free_port())],
            env={
                "COVERTYPE_HOME": str(home),
                "COVERTYPE_SOURCE_DATA": str(data),
                "COVERTYPE_BATCH_SECONDS": str(batch_seconds),
            },
            cwd=tmp_path,
            log_path=tmp_path / f"source-{len(servers)}.log",
        )
        servers.append(server)
        server.start(ready_path="/")
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["sqlite", "mysql"] if MYSQL_URL else ["sqlite"])
def data_db_url(request, tmp_path) -> str:
    """An empty data DB: SQLite always; MariaDB/MySQL too when COVERTYPE_TEST_MYSQL_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cover_type.db'}"
    return _mysql_database(request)


@pytest.fixture
def mysql_db_url(request) -> str:
    """An empty MySQL/MariaDB database (only collected where COVERTYPE_TEST_MYSQL_URL is set)."""
    return _mysql_database(request)


def _mysql_database(request) -> str:
    # A database of its own per test, dropped after.
    name = f"covertype_test_{uuid.uuid4().hex[:8]}"
    server = sa.create_engine(MYSQL_URL)
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    request.addfinalizer(lambda: _drop_database(server, name))
    return sa.engine.make_url(MYSQL_URL).set(database=name).render_as_string(hide_password=False)


def _drop_database(server: sa.Engine, name: str) -> None:
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    server.dispose()


@pytest.fixture
def data_engine(data_db_url):
    engine = db.make_engine(data_db_url)
    db.create_tables(engine)
    yield engine
    engine.dispose()
