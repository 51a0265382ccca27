"""Test helpers: processes on free ports, generated UCI data, a scripted source server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from covertype import schema
from covertype.settings import Settings

BIN = Path(sys.executable).parent


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Real rows as JSON records (ints, and the canonical strings)."""
    rows = frame[list(schema.FEATURES)]
    numeric = rows[list(schema.NUMERIC)].astype(int).to_dict("records")
    categorical = rows[list(schema.CATEGORICAL)].astype(str).to_dict("records")
    return [n | c for n, c in zip(numeric, categorical, strict=True)]


def training_settings(folder: Path, tracking_uri: str, prefix: str = "covertype", **extra):
    """Settings to train into a registry from tests: state and a SQLite data DB in `folder`,
    a model and an experiment of their own (unique names, so tests share one MLflow)."""
    return Settings(
        _env_file=None,
        home=folder / "home",
        data_db_url=f"sqlite:///{folder / 'data.db'}",
        mlflow_tracking_uri=tracking_uri,
        model_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        experiment_name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        **extra,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The parent's environment without its COVERTYPE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERTYPE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):
    return subprocess.run(
        [str(BIN / "covertype"), *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServerProcess:
    """A server command (`covertype <args>` by default) in its own process group, logs to
    a file, stopped as a group. `port` defaults to the value after `--port`/`-p`."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        port: int | None = None,
        program: str | None = None,
    ):
        self.args, self.env, self.cwd, self.log_path = args, env, cwd, log_path
        self.program = program or str(BIN / "covertype")
        flag = "--port" if "--port" in args else "-p"
        self.port = port or int(args[args.index(flag) + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, ready_path: str = "/", timeout: float = 60) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.program, *self.args],
            env=clean_env(self.env),
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.args} not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole group (a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


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


class ScriptedSource:
    """A stand-in source API over real HTTP that answers from a script of
    (status, body) pairs, then repeats the last; it counts the requests it got."""

    def __init__(self, script: list[tuple[int, dict]]):
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
