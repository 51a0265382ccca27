"""Airflow DAGs: configuration, integrity and parse time, and end to end with real processes.

One isolated Airflow per session (AIRFLOW_HOME and SQLite metadata DB in a temp folder,
migrated once), driven through `covertype airflow ...` as a user would; real source API and
MLflow server processes; assertions on the data DB, the metadata DB and the model registry.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from covertype import db, schema
from covertype.orchestrate import airflow_config, schedule
from covertype.orchestrate.schedule import COLLECT_DAG, MONITOR_DAG, TRAIN_DAG
from covertype.settings import Settings
from covertype.train import FAMILIES
from tests.support.data import fill_data_db, write_uci_file
from tests.support.environment import BIN, clean_env
from tests.support.servers import ServerProcess, free_port

BATCH_SECONDS = 2.0  # the source's rotation in the end-to-end test
PARSE_BOUND_SECONDS = 1.0


class Airflow:
    """An isolated Airflow run through `covertype airflow`: COVERTYPE_HOME (so AIRFLOW_HOME)
    in a temp folder, plus per call the COVERTYPE_* settings the tasks need."""

    def __init__(self, root: Path):
        self.root = root
        self.settings = Settings.from_env({"COVERTYPE_HOME": root / "home"})
        self.metadata_db = self.settings.airflow.home / "airflow.db"
        self.base = {
            "COVERTYPE_HOME": str(self.settings.home),
            # One champion asset name per session (it is derived from the model name).
            "COVERTYPE_MODEL_NAME": f"covertype-dags-{uuid.uuid4().hex[:6]}",
            "COVERTYPE_EXPERIMENT_NAME": f"covertype-dags-{uuid.uuid4().hex[:6]}",
        }
        self.calls = 0

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        # Not the parent's AIRFLOW_* either: they would override this isolated Airflow.
        env = clean_env(self.base | (extra or {}))
        return {k: v for k, v in env.items() if not k.startswith("AIRFLOW")}

    def run(self, args: list[str], extra: dict[str, str] | None = None, timeout: float = 180):
        """`covertype airflow <args>`; the output goes to a log file, returned with the result."""
        self.calls += 1
        log = self.root / f"airflow-{self.calls:02d}-{args[0]}.log"
        with log.open("w") as out:
            done = subprocess.run(
                [str(BIN / "covertype"), "airflow", *args],
                env=self.env(extra),
                cwd=self.root,  # no .env of the checkout
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        return done.returncode, log.read_text(errors="replace")

    def dags_test(self, dag_id: str, extra: dict[str, str], conf: dict | None = None):
        """`airflow dags test`; returns (run_id, run state, {task_id: state}, output)."""
        args = ["dags", "test", dag_id] + (["-c", json.dumps(conf)] if conf else [])
        code, output = self.run(args, extra)
        assert code == 0, output[-4000:]
        [(run_id, state)] = self.query(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", dag_id
        )
        tasks = dict(
            self.query(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                dag_id,
                run_id,
            )
        )
        return run_id, state, tasks, output

    def query(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.metadata_db) as conn:
            return conn.execute(sql, args).fetchall()

    def asset_events(self, after_id: int = 0) -> list[tuple[int, str, dict]]:
        rows = self.query(
            "SELECT e.id, a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.id > ? ORDER BY e.id",
            after_id,
        )
        return [(i, name, json.loads(extra)) for i, name, extra in rows]

    def last_event_id(self) -> int:
        return self.query("SELECT COALESCE(MAX(id), 0) FROM asset_event")[0][0]

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        [(value,)] = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND key = 'return_value'",
            dag_id,
            run_id,
            task_id,
        )
        return json.loads(value)


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> Airflow:
    stack = Airflow(tmp_path_factory.mktemp("airflow"))
    code, output = stack.run(["db", "migrate"])
    assert code == 0, output[-4000:]
    return stack


def airflow_python(stack: Airflow, code: str, extra: dict[str, str] | None = None) -> dict:
    """Run Python under the Airflow environment of the settings; it prints one JSON object."""
    base = stack.env(extra)
    env = airflow_config.process_env(Settings.from_env(base), base=base)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- configuration


CONFIG_SCRIPT = """
import json
import airflow.configuration as c
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
conf = c.conf
print(json.dumps({
    "home": c.AIRFLOW_HOME,
    "executor": conf.get("core", "executor"),
    "parallelism": conf.getint("core", "parallelism"),
    "db": conf.get("database", "sql_alchemy_conn"),
    "dags_folder": conf.get("core", "dags_folder"),
    "load_examples": conf.getboolean("core", "load_examples"),
    "users": conf.get("core", "simple_auth_manager_users"),
    "port": conf.getint("api", "port"),
    "execution_api": conf.get("core", "execution_api_server_url"),
    "passwords_file": SimpleAuthManager.get_generated_password_file(),
}))
"""


def test_airflow_is_configured_from_the_settings(airflow):
    port = free_port()
    seen = airflow_python(airflow, CONFIG_SCRIPT, {"COVERTYPE_AIRFLOW_PORT": str(port)})
    home = airflow.settings.home / "airflow"
    assert seen["home"] == str(home)
    assert (seen["executor"], seen["parallelism"]) == ("LocalExecutor", 4)
    assert seen["db"] == f"sqlite:///{home / 'airflow.db'}"
    assert seen["dags_folder"] == str(schedule.DAGS_FOLDER)
    assert seen["load_examples"] is False
    assert seen["users"] == "admin:admin"
    assert seen["port"] == port
    assert seen["execution_api"] == f"http://127.0.0.1:{port}/execution/"
    assert seen["passwords_file"] == str(home / "simple_auth_manager_passwords.json")


def test_admin_logs_in_with_the_password_of_the_settings(airflow, tmp_path):
    port = free_port()
    password = f"pw-{uuid.uuid4().hex}"
    server = ServerProcess(
        ["airflow", "api-server"],
        env=airflow.env({"COVERTYPE_AIRFLOW_PORT": str(port)})
        | {"COVERTYPE_AIRFLOW_ADMIN_PASSWORD": password},
        cwd=tmp_path,
        log_path=tmp_path / "api-server.log",
        port=port,
    )
    server.start(ready_path="/api/v2/monitor/health", timeout=120)
    try:
        token = httpx.post(
            f"{server.url}/auth/token", json={"username": "admin", "password": password}
        )
        assert token.status_code == 201, token.text
        wrong = httpx.post(
            f"{server.url}/auth/token", json={"username": "admin", "password": "admin"}
        )
        assert wrong.status_code == 401
        me = httpx.get(
            f"{server.url}/api/v2/version",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert me.status_code == 200 and me.json()["version"].startswith("3.")
    finally:
        server.stop()


# ---------------------------------------------------------------- integrity

INTEGRITY_SCRIPT = """
import json, sys, warnings
from airflow.dag_processing.dagbag import DagBag
from covertype.orchestrate.schedule import DAGS_FOLDER
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    bag = DagBag(str(DAGS_FOLDER))

def seconds(delta):
    return delta.total_seconds() if delta is not None else None

def assets(items):
    return [a.name for a in items]

def scheduled_on(timetable):
    condition = getattr(timetable, "asset_condition", None)
    return [] if condition is None else [a.name for a in condition.objects]

# covertype.train itself is light (the DAG reads its FAMILIES); its stage modules are not.
HEAVY = ("covertype.ingest", "covertype.train.run", "covertype.train.data", "covertype.monitor",
         "evidently", "lightgbm", "sklearn",
         "mlflow")
print(json.dumps({
    "import_errors": bag.import_errors,
    "heavy_modules_loaded": [name for name in HEAVY if name in sys.modules],
    "warnings": {**bag.captured_warnings, "python": [str(w.message) for w in caught]},
    "parse_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
    "dags": {
        dag.dag_id: {
            "file": dag.fileloc,
            "timetable": type(dag.timetable).__name__,
            "delta": seconds(getattr(dag.timetable, "delta", None)),
            "schedule_assets": scheduled_on(dag.timetable),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": dag.params.dump(),
            "doc_md": dag.doc_md or "",
            "tasks": {
                t.task_id: {
                    "downstream": sorted(t.downstream_task_ids),
                    "retries": t.retries,
                    "backoff": t.retry_exponential_backoff,
                    "timeout": seconds(t.execution_timeout),
                    "outlets": assets(t.outlets),
                    "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                }
                for t in dag.tasks
            },
        }
        for dag in bag.dags.values()
    },
}, default=str))
"""


def test_dags_import_cleanly_with_expected_tasks_schedules_and_retries(airflow):
    seen = airflow_python(
        airflow,
        INTEGRITY_SCRIPT,
        {"COVERTYPE_BATCH_SECONDS": "120", "COVERTYPE_COLLECT_MARGIN_SECONDS": "15"},
    )
    assert seen["import_errors"] == {}
    # Thin: parsing loads neither the stage modules nor their libraries (tasks import them).
    assert seen["heavy_modules_loaded"] == []
    assert all(not found for found in seen["warnings"].values()), seen["warnings"]
    assert set(seen["dags"]) == {COLLECT_DAG, TRAIN_DAG, MONITOR_DAG}
    # Parse time of each file (the first one also pays the covertype/provider imports).
    print(f"\nDAG parse seconds: {seen['parse_seconds']}")
    assert set(seen["parse_seconds"]) == {"collection.py", "training.py", "monitoring.py"}
    assert all(s < PARSE_BOUND_SECONDS for s in seen["parse_seconds"].values())

    collect = seen["dags"][COLLECT_DAG]
    assert collect["timetable"] == "DeltaTriggerTimetable" and collect["delta"] == 135
    assert (collect["catchup"], collect["max_active_runs"]) == (False, 1)
    assert collect["params"] == {"resume": False}
    assert sorted(collect["tasks"]) == [
        "collect", "publish_cover_type", "report_batch", "review_release"
    ]  # fmt: skip
    task = collect["tasks"]["collect"]
    assert task["downstream"] == ["publish_cover_type", "report_batch"]
    # The batch's report is stored before the Asset update can start a training, and
    # before the release review (both score the champion serving while it arrived).
    assert collect["tasks"]["report_batch"]["downstream"] == [
        "publish_cover_type", "review_release"
    ]  # fmt: skip
    assert collect["tasks"]["review_release"]["trigger_rule"] == "all_done"
    assert task["retries"] == 3 and task["backoff"] == 2.0 and task["timeout"] == 300
    assert collect["tasks"]["publish_cover_type"]["outlets"] == ["cover_type"]

    train = seen["dags"][TRAIN_DAG]
    assert train["timetable"] == "AssetTriggeredTimetable"
    assert train["schedule_assets"] == ["cover_type"]
    assert (train["catchup"], train["max_active_runs"]) == (False, 1)
    assert train["params"] == {"n_iter": None, "families": list(FAMILIES), "apply_policy": False}
    assert list(train["tasks"]) == ["monitor_batches", "decide", "train_model", "publish_champion"]
    assert train["tasks"]["monitor_batches"]["downstream"] == ["decide"]
    assert train["tasks"]["decide"]["downstream"] == ["train_model"]
    task = train["tasks"]["train_model"]
    assert task["retries"] == 2 and task["backoff"] == 2.0 and task["timeout"] == 7200
    champion = f"{airflow.base['COVERTYPE_MODEL_NAME']}_champion"  # covertype_champion by default
    assert train["tasks"]["publish_champion"]["outlets"] == [champion]
    monitor = seen["dags"][MONITOR_DAG]
    assert monitor["timetable"] == "DeltaTriggerTimetable" and monitor["delta"] == 3600
    assert list(monitor["tasks"]) == ["report_predictions"]
    for dag in seen["dags"].values():
        assert dag["doc_md"].lstrip().startswith("###"), dag["file"]


# ---------------------------------------------------------------- end to end


def data_rows(url: str) -> list[tuple]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(*(db.cover_type.c[name] for name in (*schema.FIELDS, "batch_number")))
            ).all()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def generated_data(tmp_path_factory) -> Path:
    """5,000 generated rows: 50 per call, so training on three batches takes seconds."""
    return write_uci_file(tmp_path_factory.mktemp("dags-data") / "rows.csv", rows=5000, seed=3)


def test_collection_then_training_by_hand_then_the_policy_skips_and_drift_retrains(
    airflow, source_server, generated_data, mlflow_server, real_frame, tmp_path
):
    started = time.monotonic()
    source = source_server(data=generated_data, batch_seconds=BATCH_SECONDS)
    data_db = f"sqlite:///{tmp_path / 'cover_type.db'}"
    env = {
        "COVERTYPE_SOURCE_URL": source.url,
        "COVERTYPE_BATCH_SECONDS": str(BATCH_SECONDS),
        "COVERTYPE_DATA_DB_URL": data_db,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
    }
    before = airflow.last_event_id()

    results = []
    for _ in range(3):
        # Each run after the previous batch window is over, as the schedule guarantees.
        if results:
            time.sleep(max(0.0, BATCH_SECONDS - (time.monotonic() - results[-1][0])))
        run_id, state, tasks, output = airflow.dags_test(COLLECT_DAG, env)
        assert state == "success", output[-4000:]
        assert tasks == {
            "collect": "success",
            "report_batch": "success",
            "review_release": "success",
            "publish_cover_type": "success",
        }
        assert airflow.xcom(COLLECT_DAG, run_id, "review_release") == ["no challenger"]
        results.append((time.monotonic(), airflow.xcom(COLLECT_DAG, run_id, "collect")))
        report = airflow.xcom(COLLECT_DAG, run_id, "report_batch")  # made as the batch came
        assert report["batch_number"] == len(results) and not report["computed"]
        assert "has no version 'champion' yet" in report["reason"], report
    collected = [r for _, r in results]
    assert [r["batch_number"] for r in collected] == [1, 2, 3]

    # Rows of three batches, each stored once; every run accounted for what it received.
    rows = data_rows(data_db)
    assert {row[-1] for row in rows} == {1, 2, 3}
    assert len(rows) == len({row[:-1] for row in rows}) == sum(r["stored"] for r in collected)
    for r in collected:
        assert r["received"] == r["stored"] + r["duplicates"] + r["quarantined"] > 0

    # Each run updated the cover_type Asset, with its batch and rows in the event's extra;
    # the training DAG is queued by them (data-aware scheduling).
    events = airflow.asset_events(before)
    assert [(name, extra["batch_number"], extra["stored"]) for _, name, extra in events] == [
        ("cover_type", r["batch_number"], r["stored"]) for r in collected
    ]
    assert (TRAIN_DAG,) in airflow.query("SELECT target_dag_id FROM asset_dag_run_queue")

    # Training by hand with params: one LightGBM candidate on the rows just collected.
    before = airflow.last_event_id()
    run_id, state, tasks, output = airflow.dags_test(
        TRAIN_DAG, env, conf={"n_iter": 1, "families": ["lightgbm"]}
    )
    assert state == "success", output[-4000:]
    assert tasks == {
        "monitor_batches": "success",
        "decide": "success",
        "train_model": "success",
        "publish_champion": "success",
    }
    assert airflow.xcom(TRAIN_DAG, run_id, "decide") == {
        "train": True,
        "reason": "training requested by hand",
    }
    [report] = airflow.xcom(TRAIN_DAG, run_id, "monitor_batches")  # no champion yet to compare
    assert report["batch_number"] == 3 and not report["computed"]
    trained = airflow.xcom(TRAIN_DAG, run_id, "train_model")
    assert trained["family"] == "lightgbm" and trained["rows"] == len(rows)
    assert trained["promoted"] and trained["decision"].startswith("promoted")
    model_name = airflow.base["COVERTYPE_MODEL_NAME"]
    champion = MlflowClient(mlflow_server.url).get_model_version_by_alias(model_name, "champion")
    assert champion.version == trained["version"]
    [(_, name, extra)] = airflow.asset_events(before)
    assert name == f"{model_name}_champion"
    assert extra["version"] == trained["version"] and extra["decision"] == trained["decision"]

    # The next batch is reported as it is collected, against the champion serving then; the
    # training run takes that report (the same row), so a batch that arrives while a training
    # reads every stored row still has its report. The policy: no drift and too few new rows
    # (90% asked for here): skipped, with the reason in Airflow (the skipped task's log) and
    # in retrain_decisions.
    policy = env | {
        "COVERTYPE_DRIFT_MIN_ROWS": "30",
        "COVERTYPE_RETRAIN_MIN_NEW_ROWS_PERCENT": "90",
    }
    time.sleep(max(0.0, BATCH_SECONDS - (time.monotonic() - results[-1][0])))
    run_id, state, tasks, output = airflow.dags_test(COLLECT_DAG, policy)
    assert tasks["report_batch"] == "success", output[-4000:]
    collected_report = airflow.xcom(COLLECT_DAG, run_id, "report_batch")
    assert collected_report["batch_number"] == 4 and collected_report["computed"], collected_report
    assert collected_report["champion_version"] == trained["version"]
    assert not collected_report["dataset_drift"] and collected_report["live_accuracy"] is not None
    run_id, state, tasks, output = airflow.dags_test(TRAIN_DAG, policy, {"apply_policy": True})
    assert tasks["train_model"] == tasks["publish_champion"] == "skipped", output[-4000:]
    [report] = airflow.xcom(TRAIN_DAG, run_id, "monitor_batches")
    assert report["report_id"] == collected_report["report_id"], report
    decided = airflow.xcom(TRAIN_DAG, run_id, "decide")
    assert not decided["train"] and decided["reason"].startswith("no drift in batch 4"), decided
    assert "new rows since v" in decided["reason"] and "(< 90%)" in decided["reason"], decided
    assert f"no retraining: {decided['reason']}" in output
    # A small batch unlike anything the champion saw (real rows against generated ones):
    # drift, so training though the new rows are few (under the 90% asked for here).
    # Stored without a collection run, so the training run makes its report.
    fill_data_db(data_db, real_frame, rows=60, batches=1, start=0, batch_number=5)
    run_id, state, tasks, output = airflow.dags_test(
        TRAIN_DAG, policy, {"apply_policy": True, "n_iter": 1, "families": ["lightgbm"]}
    )
    assert tasks["train_model"] == "success", output[-4000:]
    [report] = airflow.xcom(TRAIN_DAG, run_id, "monitor_batches")
    assert report["computed"] and report["batch_number"] == 5 and report["dataset_drift"]
    assert report["live_accuracy"] is not None
    decided = airflow.xcom(TRAIN_DAG, run_id, "decide")
    assert decided["train"] and decided["reason"].startswith("drift in batch 5"), decided
    decisions = sqlite_rows(data_db, "SELECT train, reason FROM retrain_decisions ORDER BY id")
    assert [bool(train) for train, _ in decisions] == [True, False, True]
    print(f"\nend-to-end test took {time.monotonic() - started:.1f}s")


def sqlite_rows(url: str, sql: str) -> list[tuple]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql).fetchall()


def test_exhausted_source_skips_the_run_and_pauses_collection_until_it_serves_again(
    airflow, source_server, tmp_path
):
    source = source_server(batch_seconds=0.2)
    data_db = f"sqlite:///{tmp_path / 'cover_type.db'}"
    mlflow_down = f"http://127.0.0.1:{free_port()}"  # the batch's report cannot be made
    env = {
        "COVERTYPE_SOURCE_URL": source.url,
        "COVERTYPE_DATA_DB_URL": data_db,
        "MLFLOW_TRACKING_URI": mlflow_down,
        "COVERTYPE_MLFLOW_ATTEMPTS": "1",
    }
    # Serve all ten batches, so the source says all data was collected.
    for _ in range(40):
        if httpx.get(f"{source.url}/data", params={"group_number": 7}).status_code == 400:
            break
        time.sleep(0.25)
    else:
        pytest.fail("the source never said all data was collected")
    before = airflow.last_event_id()

    _, state, tasks, output = airflow.dags_test(COLLECT_DAG, env)
    assert state == "success"  # not failed
    assert tasks == {
        "collect": "skipped",
        "report_batch": "skipped",
        "review_release": "skipped",  # MLflow is not there: nothing to review with
        "publish_cover_type": "skipped",
    }
    assert "All data was collected for group 7" in output

    # The next run does not call the source (its access log says): collection is paused.
    calls = source.log().count("GET /data")
    _, state, tasks, output = airflow.dags_test(COLLECT_DAG, env)
    assert state == "success" and tasks["collect"] == "skipped"
    assert "collection paused since" in output
    assert source.log().count("GET /data") == calls
    assert airflow.asset_events(before) == []

    # Restarted source; a run triggered with resume asks at once and collects again.
    httpx.get(f"{source.url}/restart_data_generation", params={"group_number": 7})
    run_id, state, tasks, output = airflow.dags_test(COLLECT_DAG, env, conf={"resume": True})
    assert tasks.pop("review_release") == "skipped", output[-4000:]  # MLflow is not there
    assert "no release review now: " in output
    assert set(tasks.values()) == {"success"}, output[-4000:]
    assert "collection resumed" in output
    stored = airflow.xcom(COLLECT_DAG, run_id, "collect")["stored"]
    assert stored > 0 and len(data_rows(data_db)) == stored
    # MLflow unreachable: no report, said so, and the Asset update (a training) happened anyway.
    report = airflow.xcom(COLLECT_DAG, run_id, "report_batch")
    assert report["reason"].startswith("not made at collection"), report
    assert mlflow_down in report["reason"] and "the training run makes it" in report["reason"]
    [(_, name, extra)] = airflow.asset_events(before)
    assert name == "cover_type" and extra["stored"] == stored
