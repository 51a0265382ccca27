"""Locust load tests against a real inference API serving a real model."""

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import uvicorn
import yaml
from fastapi import FastAPI

from covertype import loadtest
from tests.support.environment import BIN, REPO, clean_env, run_cli
from tests.support.servers import ServerProcess, free_port

ROOT = REPO
COMPOSE_SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"


def env_for(api_url: str, tmp_path: Path, real_data: Path, **extra: str) -> dict[str, str]:
    return {
        "COVERTYPE_HOME": str(tmp_path / "home"),
        "COVERTYPE_API_URL": api_url,
        "COVERTYPE_SOURCE_DATA": str(real_data),
        "COVERTYPE_LOADTEST_DIR": str(tmp_path / "reports"),
        **extra,
    }


def test_a_short_headless_run_has_no_failures_and_writes_its_reports(
    inference_api, champion, tmp_path, real_data
):
    done = run_cli(
        ["loadtest", "--users", "10", "--spawn-rate", "10", "--run-time", "10s"],
        env_for(inference_api.url, tmp_path, real_data),
        tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout[done.stdout.index("model version under test") :]
    print("\n" + table)
    assert table.startswith(f"model version under test: {champion['version']}")
    [report] = (tmp_path / "reports").iterdir()
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html"):
        assert (report / name).is_file(), name
    rows = {row.name: row for row in loadtest.read_stats(report / "locust_stats.csv")}
    assert set(rows) == {"/predict", "/predict/batch", "Aggregated"}
    assert rows["Aggregated"].failures == 0
    assert rows["/predict"].requests > 5 * rows["/predict/batch"].requests > 0  # 9 : 1
    assert rows["Aggregated"].rps > 10
    line = re.search(r"^\| Aggregated \| (\d+) \| 0 \| ", table, re.M)
    assert line and int(line[1]) == rows["Aggregated"].requests


class WrongApi:
    """An API that answers 200 with a wrong body: the users must count failures."""

    def __init__(self):
        app = FastAPI()

        @app.post("/predict")
        def predict():
            return {"cover_type": 9, "cover_type_name": "Palm", "model_version": "1"}

        @app.post("/predict/batch")
        def batch():
            return [{"cover_type": 0, "cover_type_name": "Spruce/Fir", "model_version": "1"}]

        @app.get("/model")
        def model():
            return {"version": "wrong"}

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_wrong_answers_count_as_failures_though_the_status_is_200(tmp_path, real_data):
    with WrongApi() as api:
        started = time.monotonic()
        done = run_cli(
            # 100 requests, however long a cold machine takes to make them (at most a minute).
            ["loadtest", "-u", "4", "-r", "4", "--run-time", "60s", "--requests", "100"],
            env_for(api.url, tmp_path, real_data),
            tmp_path,
            timeout=120,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    [report] = (tmp_path / "reports").iterdir()
    rows = {row.name: row for row in loadtest.read_stats(report / "locust_stats.csv")}
    assert rows["/predict"].failures == rows["/predict"].requests > 0
    # It stopped after its requests, all of them in the final CSV (Locust's own is 1 s old).
    assert time.monotonic() - started < 50 and 100 <= rows["Aggregated"].requests < 200
    failures = (report / "locust_failures.csv").read_text()
    assert "cover_type 9 is not a class 0..6" in failures
    assert "answers to 20 records" in failures


def test_the_web_ui_asks_for_the_login_of_the_settings(inference_api, tmp_path, real_data):
    port = free_port()
    env = env_for(
        inference_api.url,
        tmp_path,
        real_data,
        COVERTYPE_LOCUST_PORT=str(port),
        COVERTYPE_LOCUST_USER="operator",
        COVERTYPE_LOCUST_PASSWORD="not-the-default",
    )
    web = ServerProcess(
        ["loadtest", "--web"], env=env, cwd=tmp_path, log_path=tmp_path / "locust.log", port=port
    ).start(ready_path="/login", timeout=60)
    try:
        with httpx.Client(base_url=web.url) as browser:
            assert browser.get("/").status_code == 302  # to the login page
            wrong = {"username": "operator", "password": "guess"}
            browser.post("/login_submit", data=wrong)
            assert browser.get("/").status_code == 302
            right = {"username": "operator", "password": "not-the-default"}
            assert browser.post("/login_submit", data=right).status_code == 302
            page = browser.get("/")
            assert page.status_code == 200 and "locust" in page.text.lower()
    finally:
        web.stop()


def test_the_web_ui_refuses_to_start_without_a_password(inference_api, tmp_path, real_data):
    env = env_for(inference_api.url, tmp_path, real_data, COVERTYPE_LOCUST_PORT=str(free_port()))
    done = run_cli(["loadtest", "--web"], env, tmp_path, timeout=60)
    assert done.returncode != 0
    assert "COVERTYPE_LOCUST_PASSWORD is not set" in done.stdout + done.stderr


def test_a_master_with_a_worker_runs_the_load(inference_api, tmp_path, real_data):
    env = clean_env(env_for(inference_api.url, tmp_path, real_data))
    master = subprocess.Popen(
        [str(BIN / "covertype"), "loadtest", "--master", "--expect-workers", "1",
         "--users", "4", "--spawn-rate", "4", "--run-time", "4s"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(BIN / "covertype"), "loadtest", "--worker", "--master-host", "127.0.0.1"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = master.communicate(timeout=90)
    finally:
        worker.terminate()
        worker.wait(30)
    assert master.returncode == 0, output
    totals = re.findall(r"^\s*Aggregated\s+(\d+)\s+(\d+)\(", output, re.M)
    assert totals, output
    requests, failures = map(int, totals[-1])  # the final statistics
    assert requests > 0 and failures == 0
    assert "worker" in output.lower()


def test_locust_compose_file_is_valid_and_joins_the_main_network():
    spec = json.loads(COMPOSE_SCHEMA.read_text())
    compose = yaml.safe_load((ROOT / "docker-compose-locust.yaml").read_text())
    jsonschema.validate(compose, spec)
    master, worker = compose["services"]["locust-master"], compose["services"]["locust-worker"]
    assert master["command"][:3] == ["covertype", "loadtest", "--web"]
    assert "--master" in master["command"]
    assert worker["command"][:3] == ["covertype", "loadtest", "--worker"]
    assert "container_name" not in worker  # scalable: --scale locust-worker=N
    assert master["ports"] == ["8089:8089"]
    assert master["environment"]["COVERTYPE_LOCUST_PASSWORD"].startswith(
        "${COVERTYPE_LOCUST_PASSWORD:?"
    )  # from .env, never written here
    network = compose["networks"]["covertype"]
    assert network["external"] is True
    for command in (master["command"], worker["command"]):
        done = subprocess.run(
            [str(BIN / "covertype"), *command[1:3], "--help"], capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
