"""Fixtures of the integration layer: real server processes on free ports, data DBs,
MLflow servers (local, and MariaDB + S3), a trained champion and its inference API."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from covertype import db
from tests.support.data import fill_data_db, training_settings
from tests.support.environment import MYSQL_URL
from tests.support.servers import (
    S3_BUCKET,
    S3_TEST_ENV,
    S3Server,
    ServerProcess,
    free_port,
    start_mlflow,
)


@pytest.fixture
def source_server(tmp_path, small_data):
    """Factory: start `covertype source` as a real process; stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(
        data: Path = small_data,
        batch_seconds: float = 300,
        home: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        home = home or tmp_path / "home"
        server = ServerProcess(
            ["source", "--port", str(free_port())],
            env={
                "COVERTYPE_HOME": str(home),
                "COVERTYPE_SOURCE_DATA": str(data),
                "COVERTYPE_BATCH_SECONDS": str(batch_seconds),
            }
            | (env or {}),
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
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


# ---------------------------------------------------------------- MLflow


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS) on free ports, with the artifact bucket created."""
    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The local-stack MLflow server: SQLite backend, artifacts in a folder, proxied."""
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-local"), {})
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["local"] + (["mysql-s3"] if MYSQL_URL else []))
def any_mlflow_server(request, tmp_path_factory):
    """Each MLflow set-up the platform runs: local (SQLite + folder) always; with
    COVERTYPE_TEST_MYSQL_URL also compose's (MariaDB backend + S3 artifacts on SeaweedFS)."""
    if request.param == "local":
        yield request.getfixturevalue("mlflow_server")
        return
    s3 = request.getfixturevalue("s3_server")
    name = f"mlflow_test_{uuid.uuid4().hex[:8]}"
    server_engine = sa.create_engine(MYSQL_URL)
    with server_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    backend = sa.engine.make_url(MYSQL_URL).set(database=name)
    server = start_mlflow(
        tmp_path_factory.mktemp("mlflow-mysql-s3"),
        {
            "COVERTYPE_MLFLOW_BACKEND_STORE_URI": backend.render_as_string(hide_password=False),
            "COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION": f"s3://{S3_BUCKET}/",
            "MLFLOW_S3_ENDPOINT_URL": s3.url,
            **S3_TEST_ENV,
        },
    )
    server.s3 = s3  # tests look in the bucket for the artifacts
    yield server
    server.stop()
    _drop_database(server_engine, name)


# ---------------------------------------------------------------- a served champion


@pytest.fixture(scope="session")
def champion(mlflow_server, tmp_path_factory, real_frame) -> dict[str, str]:
    """A small LightGBM champion trained on real rows: its model name and version."""
    from covertype.train import train

    tmp = tmp_path_factory.mktemp("champion")
    settings = training_settings(tmp, mlflow_server.url)
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=2)
    result = train(settings, candidates=[("lightgbm", {"n_estimators": 60, "num_leaves": 31})])
    return {"model_name": settings.mlflow.model_name, "version": result.version}


@pytest.fixture(scope="session")
def inference_api(champion, mlflow_server, tmp_path_factory):
    """`covertype serve` of that champion, as a real process."""
    tmp = tmp_path_factory.mktemp("inference-api")
    server = ServerProcess(
        ["serve", "--port", str(free_port())],
        env={
            "COVERTYPE_HOME": str(tmp / "home"),
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": champion["model_name"],
        },
        cwd=tmp,
        log_path=tmp / "serve.log",
    ).start(ready_path="/ready", timeout=120)
    server.data_db = f"sqlite:///{tmp / 'home' / 'cover_type.db'}"  # its prediction log, reports
    yield server
    server.stop()
