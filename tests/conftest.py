"""Shared fixtures: real server processes on free ports, data files, data DBs."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from covertype import db
from covertype.settings import Settings
from tests.helpers import BIN, ServerProcess, free_port, training_settings, write_uci_file

SESSION_START = time.time()
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


# ---------------------------------------------------------------- MLflow

S3_BUCKET = "mlflow-artifacts"
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # moto's


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3-compatible server on a free port, with the artifact bucket created."""
    import boto3

    tmp = tmp_path_factory.mktemp("moto")
    port = free_port()
    server = ServerProcess(
        ["-H", "127.0.0.1", "-p", str(port)],
        env=S3_TEST_ENV,
        cwd=tmp,
        log_path=tmp / "moto.log",
        program=str(BIN / "moto_server"),
    ).start(ready_path="/moto-api/")
    boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1", **_lower(S3_TEST_ENV)
    ).create_bucket(Bucket=S3_BUCKET)
    yield server
    server.stop()


def _lower(env: dict) -> dict:
    return {k.lower(): v for k, v in env.items()}


def start_mlflow(tmp: Path, env: dict[str, str]) -> ServerProcess:
    """`covertype mlflow` on a free port, with the store/artifact settings in `env`."""
    port = free_port()
    return ServerProcess(
        ["mlflow", "--port", str(port)],
        env={"COVERTYPE_HOME": str(tmp / "home")} | env,
        cwd=tmp,
        log_path=tmp / f"mlflow-{port}.log",
    ).start(ready_path="/health", timeout=180)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The local-stack MLflow server: SQLite backend, artifacts in a folder, proxied."""
    server = start_mlflow(tmp_path_factory.mktemp("mlflow-local"), {})
    yield server
    server.stop()


@pytest.fixture(scope="session", params=["local"] + (["mysql-s3"] if MYSQL_URL else []))
def any_mlflow_server(request, tmp_path_factory):
    """Each MLflow set-up the platform runs: local (SQLite + folder) always; with
    COVERTYPE_TEST_MYSQL_URL also compose's (MariaDB backend + S3 artifacts on moto)."""
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


@pytest.fixture(scope="session")
def real_frame(real_data, tmp_path_factory):
    """The real rows in the course format (cached conversion)."""
    from covertype import dataset

    home = tmp_path_factory.mktemp("frame-home")
    return dataset.load_dataset(Settings(_env_file=None, home=home, source_data=real_data))


def fill_data_db(url: str, frame, rows: int, batches: int = 3, start: int = 0) -> None:
    """Store `rows` real rows (from `start`) through ingest, split into `batches` batches."""
    from covertype import dataset, ingest

    engine = db.make_engine(url)
    db.create_tables(engine)
    course = dataset.to_course_rows(frame.iloc[start : start + rows])
    size = -(-rows // batches)
    for b in range(batches):
        ingest.store_batch(engine, ingest.Batch(7, b + 1, course[b * size : (b + 1) * size]))
    engine.dispose()


# ---------------------------------------------------------------- a served champion


@pytest.fixture(scope="session")
def champion(mlflow_server, tmp_path_factory, real_frame) -> dict[str, str]:
    """A small LightGBM champion trained on real rows: its model name and version."""
    from covertype.train import train

    tmp = tmp_path_factory.mktemp("champion")
    settings = training_settings(tmp, mlflow_server.url)
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=2)
    result = train(settings, candidates=[("lightgbm", {"n_estimators": 60, "num_leaves": 31})])
    return {"model_name": settings.model_name, "version": result.version}


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
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter):
    """Say where the UI screenshot of this run is (tests/test_ui.py takes it)."""
    from tests.test_ui import SCREENSHOTS

    shot = SCREENSHOTS / "ui-prediction.png"
    if shot.is_file() and shot.stat().st_mtime >= SESSION_START:
        terminalreporter.write_line(f"UI screenshot (headless Chromium): {shot}")
