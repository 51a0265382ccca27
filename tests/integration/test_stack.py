"""`covertype up`: the whole local stack as a subprocess, end to end, its faults, a restart.

The stack runs on free ports in a temporary COVERTYPE_HOME with the real data. The module's
stack is started once: the first test waits for its first served champion (collection →
training → alias → API) and uses every part of it; then each fault test kills a real
process tree with SIGKILL while a bounded load posts real records to `/predict`, and asserts
what users see (failed requests, seconds until healthy again, rows stored); then `covertype
down` must leave no process. The last test starts the stack again on the same home and stops
it with Ctrl-C. Each fault's figures go to test-output/faults.md (printed at the end).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest
from dotenv import dotenv_values

from covertype.priority import autogroup_nice
from covertype.processes import Server, session_members
from covertype.stack import guard, logins
from covertype.stack.services import BATCH_NICE, FAST
from covertype.stack.state import FAILED, RUNNING, ServiceRecord, StackState
from covertype.stack.supervisor import Supervisor
from tests.support.browser import SCREENSHOTS, headless_chromium
from tests.support.data import records_of
from tests.support.environment import BIN, clean_env, run_cli
from tests.support.load import PredictLoad
from tests.support.servers import free_port, wait_for

FIRST_CYCLE_TIMEOUT = 900  # seconds; measured here: see the closing notes of issue 12
FAULTS = SCREENSHOTS / "faults.md"
PORTS = [
    "COVERTYPE_SOURCE_PORT",
    "COVERTYPE_MLFLOW_PORT",
    "COVERTYPE_AIRFLOW_PORT",
    "COVERTYPE_SERVE_PORT",
    "COVERTYPE_UI_PORT",
    "COVERTYPE_PROMETHEUS_PORT",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
]


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory, real_data) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("stack")
    env = {name: str(free_port()) for name in PORTS}
    return env | {
        "COVERTYPE_HOME": str(tmp / "home"),
        "COVERTYPE_SOURCE_DATA": str(real_data),
        "COVERTYPE_AIRFLOW_ADMIN_PASSWORD": "stack-test-password",
        "COVERTYPE_LOCUST_PASSWORD": "unused-here",
        # Batches of 40 s: the source still has data while the fault tests run (ten windows,
        # 7.5 min), and Neota's batch 5 is in before the Monitoring tab's test (3.75 min).
        "COVERTYPE_BATCH_SECONDS": "40",
        # The drift scenario the Monitoring tab's screenshot shows (Neota after Rawah, ...).
        "COVERTYPE_SOURCE_ORDER": "wilderness",
        # Logins on, as for a user: `up` generates every secret (clean_env turns them off).
        "COVERTYPE_AUTH": "on",
    }


class Up(Server):
    """`covertype up [args]` in a session of its own, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        super().__init__([str(BIN / "covertype"), "up", *args], log, clean_env(env), log.parent)
        self.log_path.write_text("")
        self.started = time.monotonic()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first match of `pattern` in the output after character `start`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.compile(pattern).search(self.log(), start):
                return match
            if not self.running():
                pytest.fail(f"covertype up ended ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.5)
        pytest.fail(f"no {pattern!r} after {timeout} s:\n{self.log()[-5000:]}")


class Stack:
    """The running stack as a test sees it."""

    def __init__(self, env: dict[str, str], up: Up):
        self.env, self.up = env, up
        self.home = Path(env["COVERTYPE_HOME"])
        self.api = url(env, "COVERTYPE_SERVE_PORT")
        # (stopped, answering again) in epoch seconds, each time a test takes MLflow away.
        self.mlflow_outages: list[tuple[float, float]] = []

    def record(self, name: str) -> ServiceRecord:
        return ServiceRecord.load(self.home, name)

    @property
    def secrets(self) -> dict[str, str]:
        """What the first `up` generated (COVERTYPE_HOME/secrets.env)."""
        return dotenv_values(logins.secrets_file(self.home))

    @property
    def collection_window(self) -> int:
        """Seconds between two collection runs: a batch plus `up --fast`'s margin."""
        return int(self.env["COVERTYPE_BATCH_SECONDS"]) + int(
            FAST["COVERTYPE_COLLECT_MARGIN_SECONDS"]
        )

    @property
    def keyed(self) -> dict[str, str]:
        return {"X-API-Key": self.secrets["COVERTYPE_API_KEY"]}

    def kill(self, name: str) -> float:
        """SIGKILL every process of the service's tree (its guard lives on); the time."""
        record = self.record(name)
        members = session_members([record.sid])
        assert members, f"{name} has no process to kill"
        for process in members:
            process.kill()
        return time.time()

    def ready(self) -> dict:
        return httpx.get(f"{self.api}/ready", timeout=5).json()

    def wait(self, condition, timeout: float, what: str):
        try:
            return wait_for(condition, timeout, what)
        except AssertionError as error:
            pytest.fail(f"{error}:\n{self.up.log()[-4000:]}")

    def healthy(self, path_of: str, path: str) -> bool:
        try:
            return httpx.get(url(self.env, path_of) + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def batches_collected_during(self, outages: list[tuple[float, float]]) -> set[int]:
        """The batches whose first row was stored within 30 s of one of the outages."""
        with sqlite3.connect(self.home / "cover_type.db") as db:
            first = db.execute(
                "SELECT batch_number, MIN(ingested_at) FROM cover_type GROUP BY batch_number"
            ).fetchall()
        stored = {
            batch: datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() for batch, at in first
        }
        return {
            batch
            for batch, at in stored.items()
            for start, end in outages
            if start - 30 <= at <= end + 30
        }

    def rows_since(self, when: float) -> dict[int, int]:
        """Rows stored after `when` (epoch seconds), by batch."""
        with sqlite3.connect(self.home / "cover_type.db") as db:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
            rows = db.execute(
                "SELECT batch_number, COUNT(*) FROM cover_type WHERE ingested_at > ? "
                "GROUP BY batch_number",
                (stamp,),
            ).fetchall()
        return dict(rows)

    def duplicate_rows(self) -> int:
        """Rows whose 13 values another row has too."""
        from covertype import schema

        columns = ", ".join(f'"{name}"' for name in schema.FIELDS)
        with sqlite3.connect(self.home / "cover_type.db") as db:
            [(total, distinct)] = db.execute(
                f"SELECT (SELECT COUNT(*) FROM cover_type), "
                f"(SELECT COUNT(*) FROM (SELECT DISTINCT {columns} FROM cover_type))"
            ).fetchall()
        return total - distinct


def url(env: dict[str, str], port_variable: str) -> str:
    return f"http://127.0.0.1:{env[port_variable]}"


def fault(service: str, seconds: float, failed: int, requests: int, note: str = "") -> None:
    """One row of the fault table (test-output/faults.md), printed at the end of the run."""
    FAULTS.parent.mkdir(exist_ok=True)
    if not FAULTS.exists() or FAULTS.stat().st_mtime < time.time() - 3600 * 6:
        FAULTS.write_text(
            "| killed (SIGKILL) | seconds to healthy again | failed /predict | requests "
            "| note |\n|---|---:|---:|---:|---|\n"
        )
    with FAULTS.open("a") as table:
        table.write(f"| {service} | {seconds:.1f} | {failed} | {requests} | {note} |\n")


def processes_of(env: dict[str, str]) -> list[str]:
    """Live processes with this stack's COVERTYPE_HOME in their environment."""
    left = []
    for process in psutil.process_iter(["pid", "status", "cmdline"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
            continue
        try:
            if process.environ().get("COVERTYPE_HOME") == env["COVERTYPE_HOME"]:
                left.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:120]}")
        except psutil.Error:
            continue
    return left


@pytest.fixture(scope="module")
def stack(stack_env, tmp_path_factory):
    up = Up(["--fast"], stack_env, tmp_path_factory.mktemp("up") / "up.log").spawn()
    try:
        yield Stack(stack_env, up)
    finally:
        if up.running():  # a test failed before `down`: stop it all, whatever its state
            run_cli(["down"], stack_env, up.cwd, timeout=120)
            up.kill()


@pytest.fixture(scope="module")
def records(real_frame) -> list[dict]:
    return records_of(real_frame.sample(200, random_state=5))


# ---------------------------------------------------------------- the first cycle


def test_up_fast_serves_a_champion_end_to_end(stack, real_frame, tmp_path):
    up = stack.up
    up.wait_for(r"first prediction (\d+) s after", FIRST_CYCLE_TIMEOUT)
    print(f"covertype up --fast: first prediction after {time.monotonic() - up.started:.0f} s")
    output = up.log()
    for title in ("source API", "MLflow", "Airflow", "Airflow scheduler", "inference API"):
        assert f"✔ {title} healthy" in output
    assert "✔ Streamlit UI healthy" in output
    assert "✔ Prometheus healthy" in output  # scripts/test.sh installs Debian's prometheus
    prometheus = url(stack.env, "COVERTYPE_PROMETHEUS_PORT")
    assert re.search(rf"Prometheus\s+{prometheus}\s", output), output
    assert "Airflow login: admin with the password in COVERTYPE_AIRFLOW_ADMIN" in output
    assert re.search(r"Airflow metadata DB ready \(\d+ s\)", output)
    assert re.search(r"collection: [\d,]+ rows of batch", output)
    assert re.search(r"training: run train-\S+ started", output)
    # Each candidate's line carries its serving cost (and says when it is over the budget).
    line = r"training: \w+ candidate, validation macro F1 0\.\d{4} \(fit [\d.]+ s; \d+ µs a row"
    assert re.search(line, output), output
    assert re.search(r"registry: covertype version \d+ is champion", output)

    # Logins: generated by this first `up`, shown once, kept in a file only its user reads.
    path = logins.secrets_file(stack.home)
    assert path.stat().st_mode & 0o777 == 0o600
    assert f"logins generated now, kept in {path} (mode 0600); shown once:" in output
    shown_key = re.search(r"inference API key \(X-API-Key\): (\S+)", output).group(1)
    assert shown_key == stack.secrets["COVERTYPE_API_KEY"]
    ui_login = re.search(r"UI: covertype / (\S+)", output).group(1)
    assert ui_login == stack.secrets["COVERTYPE_UI_PASSWORD"]
    anonymous = httpx.post(f"{stack.api}/predict", json=records_of_one())
    assert anonymous.status_code == 401 and "X-API-Key" in anonymous.json()["detail"]
    mlflow = url(stack.env, "COVERTYPE_MLFLOW_PORT")
    assert httpx.get(f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1").status_code == 401
    assert httpx.get(f"{mlflow}/health").status_code == 200

    version = stack.ready()["model"]["version"]
    for record in records_of(real_frame.sample(20, random_state=3)):
        answer = httpx.post(f"{stack.api}/predict", json=record, headers={"X-API-Key": shown_key})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["cover_type"] in range(7) and body["model_version"] == version

    ui = url(stack.env, "COVERTYPE_UI_PORT")
    assert httpx.get(f"{ui}/_stcore/health").text == "ok"
    assert "<title>Streamlit</title>" in httpx.get(ui).text

    status = run_cli(["status"], stack.env, tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    names = ("source", "mlflow", "airflow-scheduler", "airflow-api-server", "serve", "ui")
    for name in (*names, "prometheus"):
        row = rf"^\s+{name}\s+running\s+0\s+–\s+[\d,]+ MiB\s+healthy"
        assert re.search(row, status.stdout, re.M), status.stdout
    assert f"served: covertype version {version}" in status.stdout
    # Airflow's tasks (collection, drift reports, training) yield the CPU to the services.
    niced = {"airflow-scheduler": BATCH_NICE, "airflow-dag-processor": BATCH_NICE, "serve": 0}
    assert {name: autogroup_nice(stack.record(name).sid) for name in niced} == niced
    peak = re.search(r"peak memory ([\d,]+) MiB", status.stdout)
    assert peak, status.stdout
    print(f"stack memory (PSS) peak so far: {peak.group(1)} MiB")

    def scraped():
        targets = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in targets}

    jobs = {"covertype-api", "covertype-source", "mlflow", "prometheus"}
    stack.wait(lambda: scraped() == dict.fromkeys(jobs, "up"), 60, "every service scraped")

    load = run_cli(
        ["loadtest", "--users", "5", "--spawn-rate", "5", "--run-time", "10s"],
        stack.env | {"COVERTYPE_API_URL": stack.api, "COVERTYPE_API_KEY": shown_key},
        tmp_path,
        timeout=120,
    )
    assert load.returncode == 0, load.stdout + load.stderr
    assert re.search(r"\| Aggregated \| \d+ \| 0 \|", load.stdout), load.stdout


# ---------------------------------------------------------------- releases under load

WEAK = ("lightgbm", {"n_estimators": 2, "num_leaves": 3, "learning_rate": 0.05})


def ledger_moves(stack: Stack) -> list[tuple]:
    with sqlite3.connect(stack.home / "cover_type.db") as db:
        return db.execute(
            "SELECT id, alias, action, from_version, to_version FROM releases ORDER BY id"
        ).fetchall()


def test_a_forced_bad_champion_is_rolled_back_without_a_failed_prediction(
    stack, records, real_frame, tmp_path, monkeypatch
):
    """A version that scores far below the champion (two trees of three leaves, trained on
    2,000 rows beside the stack), forced in by `covertype promote`, rolled back by hand,
    forced again, then rolled back automatically by the next collected batch's review; the
    API swaps each time under a bounded load, and the alert fires in the stack's Prometheus."""
    from covertype.settings import Settings
    from covertype.train import train
    from tests.support.data import fill_data_db

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "covertype-train")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.secrets["COVERTYPE_MLFLOW_TRAIN_PASSWORD"])
    mlflow_url = url(stack.env, "COVERTYPE_MLFLOW_PORT")
    beside = Settings.from_env({
        "COVERTYPE_HOME": tmp_path / "home", "MLFLOW_TRACKING_URI": mlflow_url,
        "COVERTYPE_DATA_DB_URL": f"sqlite:///{tmp_path / 'beside.db'}",
    })  # fmt: skip
    fill_data_db(beside.data_db, real_frame, rows=2000, batches=1)
    bad = train(beside, candidates=[WEAK])
    assert bad.alias is None, bad.decision  # the gate refused it: nothing moved
    good = stack.ready()["model"]["version"]

    def serving() -> str:
        return stack.ready()["model"]["version"]

    def cli(*args: str) -> str:
        done = run_cli(list(args), stack.env, tmp_path, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    started = time.time()
    with PredictLoad(stack.api, records, headers=stack.keyed, max_seconds=600) as load:
        time.sleep(1)
        cli("promote", bad.version, "--reason", "stack test: a bad version forced in")
        stack.wait(lambda: serving() == bad.version, 30, f"v{bad.version} served")
        cli("rollback", "--reason", "stack test: back by hand")
        stack.wait(lambda: serving() == good, 30, f"v{good} served again")
        cli("promote", bad.version, "--reason", "stack test: forced in again")
        stack.wait(lambda: serving() == bad.version, 30, f"v{bad.version} served")
        forced = time.time()
        # The next collected batch's review (the collection DAG's review_release).
        window = stack.collection_window
        # CI once saw that collection run end 203 s after the promotion (the suite beside it).
        stack.wait(
            lambda: [m for m in ledger_moves(stack) if m[1] == "champion"][-1][2]
            == "automatic_rollback",
            4 * window + 180,
            "an automatic rollback",
        )  # fmt: skip
        rolled_back = time.time()
        stack.wait(lambda: serving() == good, 30, f"v{good} served after the rollback")
        time.sleep(1)
    assert load.requests > 100
    assert load.failures() == [], load.failures()[:5]
    moves = [
        (alias, action, old, new)
        for _, alias, action, old, new in ledger_moves(stack)
        if alias == "champion"  # the stack's own trainings name challengers meanwhile
    ]
    assert moves[-4:] == [
        ("champion", "promote", good, bad.version),
        ("champion", "rollback", bad.version, good),
        ("champion", "promote", good, bad.version),
        ("champion", "automatic_rollback", bad.version, good),
    ]
    shown = cli("releases")
    assert "automatic_rollback" in shown and "stack test: back by hand" in shown
    fault(
        "none: a bad champion forced in, rolled back by hand, forced again, rolled back "
        "automatically", rolled_back - forced, len(load.failures()), load.requests,
        f"automatic rollback {rolled_back - forced:.0f} s after the forced promotion",
    )  # fmt: skip

    prometheus = url(stack.env, "COVERTYPE_PROMETHEUS_PORT")

    def firing() -> bool:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return any(
            a["labels"]["alertname"] == "CovertypeAutomaticRollback" and a["state"] == "firing"
            for a in alerts
        )

    stack.wait(firing, 120, "CovertypeAutomaticRollback firing in Prometheus")
    print(f"releases under load: {load.requests} requests, 0 failed, {time.time() - started:.0f} s")


# ---------------------------------------------------------------- faults under load


def test_mlflow_killed_no_prediction_fails_and_the_api_sees_the_registry_again(stack, records):
    before = stack.ready()
    assert before["registry"]["reachable"] is True
    with PredictLoad(stack.api, records, headers=stack.keyed) as load:
        time.sleep(1)
        killed = stack.kill("mlflow")  # the server and its uvicorn worker
        stack.wait(lambda: stack.ready()["registry"]["reachable"] is False, 30, "registry down")
        stack.wait(lambda: stack.healthy("COVERTYPE_MLFLOW_PORT", "/health"), 60, "MLflow back")
        back = time.time() - killed
        stack.mlflow_outages.append((killed, time.time()))
        stack.wait(lambda: stack.ready()["registry"]["reachable"] is True, 30, "registry seen")
        seen = time.time() - killed  # within 30 s of MLflow's return, or wait() failed
        time.sleep(1)
    assert load.requests > 50
    assert load.failures() == []
    assert stack.ready()["model"]["version"] == before["model"]["version"]
    assert stack.up.wait_for(r"✖ MLflow exited \(killed by SIGKILL", 10)
    stack.up.wait_for(r"✔ MLflow healthy again, \d+ s after it exited \(restart 1\)", 30)
    fault(
        "MLflow (server and worker)", back, 0, load.requests, f"API sees it again at {seen:.0f} s"
    )


def test_inference_api_killed_is_back_within_15_s_serving_the_champion(stack, records):
    version = stack.ready()["model"]["version"]
    with PredictLoad(stack.api, records, headers=stack.keyed) as load:
        time.sleep(1)
        killed = stack.kill("serve")
        stack.wait(lambda: stack.ready()["model"]["version"] == version, 30, "API back")
        back = time.time() - killed
        time.sleep(1)
    assert back <= 15, f"the API took {back:.1f} s"
    assert load.results[-1][1], "the last request failed"
    fault("inference API", back, len(load.failures()), load.requests)


def test_airflow_scheduler_killed_restarts_and_collection_goes_on_storing_rows_once(stack):
    record = stack.record("airflow-scheduler")
    killed = stack.kill("airflow-scheduler")
    restarted = stack.wait(
        lambda: (r := stack.record("airflow-scheduler")).sid not in (None, record.sid) and r,
        30,
        "a new scheduler",
    )
    assert restarted.restarts == record.restarts + 1
    stack.wait(
        lambda: (
            httpx.get(url(stack.env, "COVERTYPE_AIRFLOW_PORT") + "/api/v2/monitor/health").json()[
                "scheduler"
            ]["status"]
            == "healthy"
        ),
        90,
        "a healthy scheduler",
    )
    back = time.time() - killed
    new_rows = stack.wait(lambda: stack.rows_since(killed), 180, "a collection after the kill")
    assert stack.duplicate_rows() == 0
    fault("Airflow scheduler", back, 0, 0, f"next collection stored {sum(new_rows.values())} rows")


def test_source_api_killed_restarts_with_its_group_state(stack):
    source = url(stack.env, "COVERTYPE_SOURCE_PORT")
    batch = httpx.get(source + "/").json()["group_state"]["7"]["batch_number"]
    assert batch > 1
    killed = stack.kill("source")
    stack.wait(lambda: stack.healthy("COVERTYPE_SOURCE_PORT", "/"), 60, "source back")
    back = time.time() - killed
    after = httpx.get(source + "/").json()["group_state"]["7"]["batch_number"]
    assert after >= batch  # not back at batch 1: the state survived
    new_rows = stack.wait(lambda: stack.rows_since(killed), 180, "a collection after the kill")
    assert min(new_rows) >= batch, new_rows
    assert stack.duplicate_rows() == 0
    fault("source API", back, 0, 0, f"batch {batch} before, collection went on at {min(new_rows)}")


def test_inference_api_killed_while_mlflow_is_down_serves_its_cached_champion(stack, records):
    # After the tests above, the API has served for over a minute: a first exit again (1 s).
    supervisor = Supervisor(stack.home)
    stopped = time.time()
    supervisor.stop("mlflow")
    try:
        stack.wait(lambda: stack.ready()["registry"]["reachable"] is False, 30, "registry down")
        # Read only now: a champion promoted just before MLflow stopped may still have been
        # loaded (and cached) by the API after an earlier read.
        version = stack.ready()["model"]["version"]
        with PredictLoad(stack.api, records, headers=stack.keyed) as load:
            time.sleep(1)
            killed = stack.kill("serve")
            stack.wait(lambda: stack.ready()["model"]["version"] == version, 30, "API back")
            back = time.time() - killed
        assert back <= 15, f"the API took {back:.1f} s"
        assert stack.ready()["model"]["source"] == "local cache"
        # Unknown (None) until the new API's watcher has asked the registry once.
        stack.wait(lambda: stack.ready()["registry"]["reachable"] is False, 30, "registry down")
    finally:
        supervisor.start("mlflow")
        stack.wait(lambda: stack.healthy("COVERTYPE_MLFLOW_PORT", "/health"), 60, "MLflow back")
        stack.mlflow_outages.append((stopped, time.time()))
    stack.wait(lambda: stack.ready()["registry"]["reachable"] is True, 60, "registry again")
    fault("inference API, MLflow stopped", back, len(load.failures()), load.requests, "cache")


def test_ui_killed_is_back(stack):
    killed = stack.kill("ui")
    stack.wait(lambda: stack.healthy("COVERTYPE_UI_PORT", "/_stcore/health"), 60, "UI back")
    fault("Streamlit UI", time.time() - killed, 0, 0)


def test_a_service_that_keeps_dying_is_marked_failed_and_the_rest_serves(stack, tmp_path):
    # Kill the UI whenever it is back, until its guard gives up (5 exits within 2 minutes).
    def running_or_failed() -> ServiceRecord | None:
        record = stack.record("ui")
        alive = record.state == RUNNING and record.sid and session_members([record.sid])
        return record if alive or record.state == FAILED else None

    for _ in range(guard.FAIL_EXITS + 1):
        record = stack.wait(running_or_failed, 60, "a UI to kill")
        if record.state == FAILED:
            break
        stack.kill("ui")
        seen = len(record.exits)
        stack.wait(lambda: len(stack.record("ui").exits) > seen, 30, "the exit noted")  # noqa: B023
    failed = stack.wait(lambda: (r := stack.record("ui")).state == FAILED and r, 60, "UI failed")
    assert "5 exits within 120 s" in failed.failed_reason
    stack.up.wait_for(r"✖ Streamlit UI FAILED: 5 exits within 120 s", 10)
    assert httpx.post(f"{stack.api}/predict", json=records_of_one(), headers=stack.keyed).is_success
    status = run_cli(["status"], stack.env, tmp_path)
    assert status.returncode == 1
    assert re.search(r"^\s+ui\s+failed\s+\d+\s+killed by SIGKILL", status.stdout, re.M)
    assert re.search(r"^\s+serve\s+running", status.stdout, re.M), status.stdout

    again = run_cli(["restart", "ui"], stack.env, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    stack.wait(lambda: stack.healthy("COVERTYPE_UI_PORT", "/_stcore/health"), 60, "UI again")


def records_of_one() -> dict:
    from covertype.serve.records import EXAMPLE

    return EXAMPLE


def sign_in(browser, user: str, password: str) -> None:
    """Through the UI's password gate, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    inputs = "input[type=text], input[type=password]"

    def form(b):
        found = b.find_elements(By.CSS_SELECTOR, inputs)
        return found if len(found) == 2 else None

    fields = WebDriverWait(browser, 60).until(form)
    fields[0].send_keys(user)
    fields[1].send_keys(password)
    [button] = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Sign in"]
    button.click()


def test_monitoring_tab_shows_the_wilderness_drift(stack, tmp_path):
    """The screenshot of the Monitoring tab (test-output/ui-monitoring.png) after the batches
    collected so far under the `wilderness` order: drift is flagged from the batch whose
    wilderness area differs from the champion's (batch 5 in benchmarks/bench_drift.py)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def reports() -> list[tuple]:
        with sqlite3.connect(stack.home / "cover_type.db") as db:
            return db.execute(
                "SELECT batch_number, dataset_drift FROM drift_reports "
                "WHERE kind = 'batch' AND computed = 1 ORDER BY batch_number"
            ).fetchall()

    def every_report() -> dict[int, list[str]]:
        """Each batch's stored reports, computed or not: the reasons."""
        with sqlite3.connect(stack.home / "cover_type.db") as db:
            rows = db.execute(
                "SELECT batch_number, reason FROM drift_reports WHERE kind = 'batch'"
            ).fetchall()
        found: dict[int, list[str]] = {}
        for batch, reason in rows:
            found.setdefault(batch, []).append(reason)
        return found

    def counted(seen: list[tuple]) -> tuple[list[int], set[int], set[int]]:
        """The batches with a report, the gaps between them, and the batches excused: every
        batch after the first champion has its report, made against the champion serving
        when it arrived (no gaps where a training had already absorbed the batch), but for
        one collected while a test above had MLflow down, whose report can only say why it
        was not made (or, when the collection's report gave up, is made by nobody)."""
        numbers = sorted({batch for batch, _ in seen})
        with sqlite3.connect(stack.home / "cover_type.db") as db:
            # A batch the source served while a test had killed the scheduler mid-collect
            # was never stored: it has no report to make.
            stored = {b for (b,) in db.execute("SELECT DISTINCT batch_number FROM cover_type")}
        span = set(range(numbers[0], numbers[-1] + 1)) & stored if numbers else set()
        missing = span - set(numbers)
        return numbers, missing, stack.batches_collected_during(stack.mlflow_outages)

    def enough() -> bool:
        seen = reports()
        numbers, missing, excused = counted(seen)
        return any(d for _, d in seen) and len(numbers) + len(missing & excused) >= 3

    # Neota's first batch is batch 5: collected at most 5 collection windows (a batch plus the
    # collection's margin) after the first, its report ~20 s later. Batches collected before
    # the first champion have no report (CI once saw its first champion after batch 3), so
    # up to three windows more for the later ones. A screenshot either way; the assertion
    # follows it.
    window = stack.collection_window
    with contextlib.suppress(AssertionError):
        wait_for(enough, 8 * window + 30, "a drifted batch among three reported")
    seen = reports()
    stored = every_report()
    print(f"\nbatch drift reports (batch, drifted): {seen}")
    for batch, reasons in sorted(stored.items()):
        print(f"  batch {batch}: {reasons}")
    numbers, missing, excused = counted(seen)
    print(f"MLflow outages {stack.mlflow_outages}: batches {sorted(excused)} collected then")
    # Three batches at least, an excused one among them counted: it was collected, only its
    # report could not be made.
    assert len(numbers) + len(missing & excused) >= 3 and missing <= excused, (
        seen,
        stored,
        excused,
    )

    ui = url(stack.env, "COVERTYPE_UI_PORT")
    with headless_chromium(tmp_path, height=2300) as browser:
        browser.get(ui)
        sign_in(browser, "covertype", stack.secrets["COVERTYPE_UI_PASSWORD"])
        tabs = WebDriverWait(browser, 60).until(
            lambda b: [
                t
                for t in b.find_elements(By.CSS_SELECTOR, "[role=tab]")
                if t.text.strip() == "Monitoring"
            ]
        )
        [tab] = tabs
        tab.click()
        WebDriverWait(browser, 90).until(  # five charts drawn
            lambda b: (
                len(b.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")) >= 5
            )
        )
        time.sleep(2)  # the last chart's animation
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "did not answer" not in text, text
        shot = SCREENSHOTS / "ui-monitoring.png"
        browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
    assert any(drifted for _, drifted in seen), f"no batch flagged as drifted: {seen}"


def test_challengers_were_shadowed_then_decided_by_the_next_batch(stack):
    """The stack's own trainings (new rows, the wilderness drift) named challengers; the API
    shadowed them beside the champion and a collection run's review decided one (waiting
    for the next batch's review when the newest challenger is still on probation)."""

    def ledger() -> list[tuple]:
        with sqlite3.connect(stack.home / "cover_type.db") as db:
            return db.execute(
                "SELECT alias, action, from_version, to_version, actor, reason FROM releases "
                "ORDER BY id"
            ).fetchall()

    def decided() -> list[tuple]:
        return [
            (action, old)
            for alias, action, old, _, actor, _ in ledger()
            if alias == "challenger" and action in ("promote", "retire")
            and "covertype_collect" in actor
        ]  # fmt: skip

    window = stack.collection_window
    with contextlib.suppress(AssertionError):  # the ledger is printed either way
        wait_for(decided, 5 * window + 180, "a challenger decided by a collection run")
    moves = ledger()
    with sqlite3.connect(stack.home / "cover_type.db") as db:
        shadowed = dict(db.execute(
            "SELECT challenger_version, COUNT(*) FROM shadow_predictions "
            "WHERE challenger_cover_type IS NOT NULL GROUP BY challenger_version"
        ).fetchall())  # fmt: skip
    print("\nthe release ledger:")
    for move in moves:
        print("  ", move)
    print(f"shadow answers by challenger version: {shadowed}")
    assert [new for _, action, _, new, _, _ in moves if action == "challenge"], moves
    assert decided(), moves
    assert any(old in shadowed for _, old in decided()), (decided(), shadowed)


def test_down_stops_every_process(stack, tmp_path):
    down = run_cli(["down"], stack.env, tmp_path, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert stack.up.process.wait(timeout=60) == 0, stack.up.log()  # the UI was restarted
    assert processes_of(stack.env) == []
    assert StackState.load(stack.home) is None
    assert "peak memory of the stack" in stack.up.log()


# ---------------------------------------------------------------- again, and start-up checks


def test_up_again_serves_the_same_champion_within_60_s_and_ctrl_c_stops_it(stack_env, tmp_path):
    home = Path(stack_env["COVERTYPE_HOME"])
    if not (home / "serve-cache").exists():
        pytest.fail("the end-to-end test did not leave a champion in this COVERTYPE_HOME")
    status = run_cli(["status"], stack_env, tmp_path)
    assert status.returncode == 3 and "no stack runs" in status.stdout

    key = dotenv_values(logins.secrets_file(home))["COVERTYPE_API_KEY"]
    api = url(stack_env, "COVERTYPE_SERVE_PORT")

    def answers() -> bool:
        try:
            return httpx.post(
                f"{api}/predict", json=records_of_one(), headers={"X-API-Key": key}, timeout=5
            ).is_success
        except httpx.HTTPError:
            return False

    up = Up([], stack_env, tmp_path / "up-again.log").spawn()
    try:
        # Served within the minute from the API's cache, MLflow up or not (`up` says so once
        # every service is healthy); a champion the last stack promoted after its API cached
        # one is swapped in once the registry answers.
        try:
            wait_for(answers, 60, "an answer of the API within the minute")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{up.log()}") from None
        print(f"up again: the API answers {time.monotonic() - up.started:.0f} s after `up`")

        def serves_the_champion() -> bool:
            log = up.log()
            champions = re.findall(r"registry: covertype version (\d+) is champion", log)
            answers = re.findall(r"inference API: version (\d+) answers", log)
            return bool(champions and answers and answers[-1] == champions[-1])

        try:
            wait_for(serves_the_champion, 180, "the registry's champion served")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{up.log()}") from None
        assert "first prediction" in up.log()
        # The logins of the first run, read back, not shown again, and still the API's.
        assert "logins: UI, API key and MLflow in" in up.log()
        assert "logins generated now" not in up.log()
        assert key not in up.log()
        assert answers()
        up.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert up.process.wait(timeout=90) == 0, up.log()
        assert processes_of(stack_env) == []
    finally:
        up.kill()


def test_a_port_in_use_is_named_and_nothing_starts(stack_env, tmp_path):
    env = stack_env | {"COVERTYPE_HOME": str(tmp_path / "home")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        serve_port = str(taken.getsockname()[1])
        env["COVERTYPE_SERVE_PORT"] = serve_port
        env["COVERTYPE_UI_PORT"] = env["COVERTYPE_MLFLOW_PORT"]
        done = run_cli(["up"], env, tmp_path)
    assert done.returncode == 1
    assert f"port {serve_port} (inference API, COVERTYPE_SERVE_PORT) is already in" in done.stdout
    assert "is given twice: COVERTYPE_UI_PORT and COVERTYPE_MLFLOW_PORT" in done.stdout
    assert "nothing started" in done.stdout
    assert StackState.load(tmp_path / "home") is None
