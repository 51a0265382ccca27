"""The local stack's decisions: its environment, the restart policy, what status says."""

import os
import time
from pathlib import Path

import pytest

from covertype.settings import Settings
from covertype.stack import commands, guard, logins
from covertype.stack.services import SERVICES, TABLE, installed, prepare_environment
from covertype.stack.state import BACKOFF, FAILED, RUNNING, Exit, ServiceRecord
from covertype.stack.supervisor import Supervisor
from tests.support.environment import BIN


def test_fast_sets_only_what_the_environment_does_not(monkeypatch, tmp_path):
    environ = {"COVERTYPE_BATCH_SECONDS": "12", "PATH": "/usr/bin", "COVERTYPE_HOME": "rel"}
    monkeypatch.setattr(os, "environ", environ)  # what the stack's services would inherit
    monkeypatch.chdir(tmp_path)
    settings = prepare_environment(fast=True)
    assert environ["COVERTYPE_BATCH_SECONDS"] == "12"  # the environment wins
    assert environ["COVERTYPE_TRAIN_N_ITER"] == "3" and environ["COVERTYPE_SERVE_WATCH_SECONDS"]
    assert Path(environ["COVERTYPE_HOME"]).is_absolute()
    assert environ["PATH"].split(os.pathsep) == [str(BIN), "/usr/bin"]
    assert environ["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{settings.mlflow.port}"


def test_prometheus_is_a_service_only_where_its_binary_is_on_path(tmp_path):
    without = installed(TABLE, path=str(tmp_path))
    assert "prometheus" not in {s.name for s in without}
    assert {s.name for s in without} == {s.name for s in TABLE} - {"prometheus"}
    binary = tmp_path / "prometheus"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert "prometheus" in {s.name for s in installed(TABLE, path=str(tmp_path))}


def test_the_ui_links_to_what_the_local_stack_runs_and_asks_its_prometheus(monkeypatch, tmp_path):
    environ = {"PATH": "/usr/bin", "COVERTYPE_HOME": str(tmp_path)}
    monkeypatch.setattr(os, "environ", environ)
    settings = prepare_environment(fast=False)
    running = {s.name for s in SERVICES}
    links = environ["COVERTYPE_UI_LINKS"].split(",")
    assert links[:3] == ["api", "mlflow", "airflow"] and "minio" not in links
    if "prometheus" in running:
        assert links[3:] == ["prometheus"]
        assert environ["COVERTYPE_PROMETHEUS_URL"] == f"http://127.0.0.1:{settings.prometheus.port}"
    else:
        assert links[3:] == [] and "COVERTYPE_PROMETHEUS_URL" not in environ


def exits(*runs: float, end: float = 1000.0) -> list[Exit]:
    """Exits one second apart ending at `end`, after runs of these lengths."""
    return [Exit(at=end - len(runs) + i, code=1, ran_seconds=r) for i, r in enumerate(runs)]


def test_backoff_doubles_from_one_second_to_thirty_and_a_stable_run_resets_it():
    assert guard.backoff_seconds([]) == 0
    assert [guard.backoff_seconds(exits(*[1] * n)) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    # A run of a minute or more ends a streak: its exit waits 1 s again.
    assert guard.backoff_seconds(exits(1, 1, 1, guard.STABLE_SECONDS)) == 1
    assert guard.backoff_seconds(exits(1, 1, 1, guard.STABLE_SECONDS, 2)) == 2


def test_five_exits_within_two_minutes_give_up_and_older_ones_do_not_count():
    now = 1000.0
    recent = [Exit(at=now - 100 + 20 * i, code=1, ran_seconds=5) for i in range(5)]
    assert guard.gives_up(recent, now)
    assert not guard.gives_up(recent[1:], now)
    spread = [Exit(at=now - 31 * i, code=1, ran_seconds=5) for i in range(5)]  # over 2 min
    assert not guard.gives_up(spread, now)


def test_exit_codes_read_like_a_shell_and_describe_signals():
    assert guard.exit_code(3 << 8) == 3
    assert guard.exit_code(9) == 137  # killed by SIGKILL
    assert Exit(0, 137, 1).describe() == "killed by SIGKILL"
    assert Exit(0, 3, 1).describe() == "exit code 3"


def test_status_words_combine_supervisord_the_guard_and_health():
    running = {"statename": "RUNNING"}
    record = ServiceRecord("ui", state=RUNNING)
    assert commands.describe_state(record, running, healthy=True) == "running"
    assert commands.describe_state(record, running, healthy=False) == "starting"
    waiting = ServiceRecord("ui", state=BACKOFF, backoff_until=time.time() + 8)
    assert commands.describe_state(waiting, running, healthy=False).startswith("backoff ")
    failed = ServiceRecord("ui", state=FAILED)
    assert commands.describe_state(failed, {"statename": "EXITED"}, healthy=False) == "failed"
    assert commands.describe_state(record, {"statename": "STOPPED"}, healthy=False) == "stopped"
    assert commands.describe_state(record, None, healthy=False) == "unknown"


def test_records_survive_a_round_trip(tmp_path):
    record = ServiceRecord("serve", state=RUNNING, sid=42, starts=3)
    record.exits = exits(5, 90)
    record.save(tmp_path)
    again = ServiceRecord.load(tmp_path, "serve")
    assert again == record and again.restarts == 2 and again.last_exit.ran_seconds == 90
    assert ServiceRecord.load(tmp_path, "nothing").state == "starting"


def test_every_service_has_a_unique_name_and_a_covertype_command():
    names = [s.name for s in SERVICES]
    assert len(names) == len(set(names))
    for service in SERVICES:
        assert service.command()[0] == str(BIN / "covertype")


def test_monitoring_news_tells_new_reports_and_decisions_once(tmp_path):
    from datetime import UTC, datetime

    from covertype import db
    from covertype.release import ledger
    from covertype.settings import Settings
    from covertype.stack.progress import MonitoringNews

    settings = Settings.from_env({"COVERTYPE_HOME": tmp_path})
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    decision = {"model_name": "covertype", "champion_version": "1", "rows_now": 10,
                "champion_rows": 10, "decided_at": datetime.now(UTC)}  # fmt: skip
    db.add_retrain_decision(engine, decision | {"train": True, "reason": "an old stack's"})
    news = MonitoringNews()
    assert news.poll(settings) == []  # what was there before is not news
    db.add_retrain_decision(engine, decision | {"train": False, "reason": "no drift and 2%"})
    db.add_drift_report(engine, {
        "kind": "batch", "created_at": datetime.now(UTC), "model_name": "covertype",
        "champion_version": "1", "batch_number": 4, "reference_rows": 500, "current_rows": 400,
        "computed": True, "reason": "x", "dataset_drift": True, "drifted_features": 7,
        "features": 12, "drift_share": 0.58, "drift_share_threshold": 0.5,
        "live_accuracy": 0.612, "live_macro_f1": 0.4,
    })  # fmt: skip
    with engine.begin() as conn:
        ledger.record(conn, ledger.Move("covertype", "challenger", "challenge", None, "2",
                                        "training run r", "macro F1 0.9 beats 0.8"))  # fmt: skip
    told = news.poll(settings)
    assert told == [
        "monitoring: batch 4 vs champion v1: DRIFT (7 of 12 features, share 0.58); "
        "the champion on it: accuracy 0.612, macro F1 0.400",
        "policy: training skipped: no drift and 2%",
        "release: challenger – → 2 (challenge): macro F1 0.9 beats 0.8",
    ]
    assert news.poll(settings) == []
    engine.dispose()


def test_an_up_that_exited_is_not_alive_while_it_waits_to_be_reaped(tmp_path):
    import subprocess

    import psutil

    from covertype.stack.state import StackState

    child = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    created = psutil.Process(child.pid).create_time()
    state = StackState(pid=child.pid, created=created, home=str(tmp_path), fast=True,
                       started_at="now")  # fmt: skip
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert commands.up_alive(state) is False  # `down` used to wait 95 s for such a zombie
    child.wait()
    alive = StackState(pid=os.getpid(), created=psutil.Process().create_time(),
                       home=str(tmp_path), fast=True, started_at="now")  # fmt: skip
    assert commands.up_alive(alive) is True


# ---------------------------------------------------------------- logins


def test_the_first_up_generates_the_logins_once_in_a_file_only_its_user_reads(
    monkeypatch, tmp_path
):
    mine = {"COVERTYPE_UI_PASSWORD": "mine-and-long-enough"}
    environ = {"PATH": "/usr/bin", "COVERTYPE_HOME": str(tmp_path), **mine}
    monkeypatch.setattr(os, "environ", environ)
    generated = logins.prepare(tmp_path, environ)
    path = logins.secrets_file(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(generated) == set(logins.GENERATED) - {"COVERTYPE_UI_PASSWORD"}  # env wins
    assert environ["COVERTYPE_UI_PASSWORD"] == "mine-and-long-enough"
    assert "mine-and-long-enough" not in path.read_text()
    assert (
        environ["COVERTYPE_API_KEYS"]
        == environ["COVERTYPE_API_KEY"]
        == generated["COVERTYPE_API_KEY"]
    )
    # The stack's own processes sign in to MLflow as the training user.
    assert environ["MLFLOW_TRACKING_USERNAME"] == "covertype-train"
    assert environ["MLFLOW_TRACKING_PASSWORD"] == generated["COVERTYPE_MLFLOW_TRAIN_PASSWORD"]
    settings = Settings()  # every generated secret is one the settings accept
    assert settings.auth.accepted_api_keys == (generated["COVERTYPE_API_KEY"],)
    # A second `up`: nothing new, the same secrets read back.
    again = {"PATH": "/usr/bin", "COVERTYPE_HOME": str(tmp_path), **mine}
    assert logins.prepare(tmp_path, again) == {}
    for variable, value in generated.items():
        assert again[variable] == value
    # A command beside the stack (`covertype train`, ...) signs in as the stack does.
    beside = {"MLFLOW_TRACKING_PASSWORD": "my-own-password"}
    assert logins.load(tmp_path, beside) and not logins.load(tmp_path / "elsewhere", {})
    assert beside["COVERTYPE_API_KEY"] == generated["COVERTYPE_API_KEY"]
    assert beside["MLFLOW_TRACKING_PASSWORD"] == "my-own-password"  # the environment wins
    # What `up` prints: the secrets the first time only, where they are always.
    first = "\n".join(logins.describe(settings, generated))
    assert generated["COVERTYPE_API_KEY"] in first and str(path) in first
    later = "\n".join(logins.describe(settings, {}))
    assert generated["COVERTYPE_API_KEY"] not in later and str(path) in later


def test_a_key_list_from_the_environment_gives_the_stack_its_first_key(monkeypatch, tmp_path):
    keys = "first-key-0123456789,second-key-0123456789"
    environ = {"PATH": "/usr/bin", "COVERTYPE_HOME": str(tmp_path), "COVERTYPE_API_KEYS": keys}
    monkeypatch.setattr(os, "environ", environ)
    logins.prepare(tmp_path, environ)
    assert environ["COVERTYPE_API_KEYS"] == keys
    assert environ["COVERTYPE_API_KEY"] == "first-key-0123456789"


def test_the_api_and_the_ui_sign_in_to_mlflow_as_their_own_users(tmp_path):
    passwords = {
        "COVERTYPE_MLFLOW_SERVE_PASSWORD": "serve-password-1",
        "COVERTYPE_MLFLOW_UI_PASSWORD": "ui-password-1",
    }
    settings = Settings.from_env({"COVERTYPE_AUTH": "on"} | passwords)
    assert logins.service_environment(settings, "serve") == {
        "MLFLOW_TRACKING_USERNAME": "covertype-serve",
        "MLFLOW_TRACKING_PASSWORD": "serve-password-1",
    }
    assert logins.service_environment(settings, "ui")["MLFLOW_TRACKING_USERNAME"] == "covertype-ui"
    assert logins.service_environment(settings, "mlflow") == {}
    off = Settings.from_env(
        {"COVERTYPE_AUTH": "off", "COVERTYPE_MLFLOW_SERVE_PASSWORD": "serve-password-1"}
    )
    assert logins.service_environment(off, "serve") == {}


def test_a_services_environment_reaches_supervisord_as_written(tmp_path):
    from supervisor.datatypes import dict_of_key_value_pairs

    tricky = 'a"b\\c%d,e=f'
    supervisor = Supervisor(tmp_path)
    programs = [("serve", ["true"], True, {"X_SECRET": tricky, "Y": "2", "Z": "it's"}, 0)]
    supervisor.write_config(programs, tmp_path)
    assert supervisor.config.stat().st_mode & 0o777 == 0o600  # it holds MLflow logins
    [line] = [x for x in supervisor.config.read_text().splitlines() if x.startswith("environment=")]
    # supervisord expands %(...)s first (%% is a %), then splits KEY="value" pairs.
    parsed = dict_of_key_value_pairs(line.removeprefix("environment=").replace("%%", "%"))
    assert parsed == {"X_SECRET": tricky, "Y": "2", "Z": "it's"}
    with pytest.raises(ValueError, match="both ' and"):
        supervisor.write_config([("ui", ["true"], True, {"X": "\"'"}, 0)], tmp_path)


def test_logins_off_is_refused_when_a_service_listens_beyond_this_machine(monkeypatch, tmp_path):
    environ = {"PATH": "/usr/bin", "COVERTYPE_HOME": str(tmp_path), "COVERTYPE_AUTH": "off",
               "COVERTYPE_UI_HOST": "0.0.0.0"}  # fmt: skip
    monkeypatch.setattr(os, "environ", environ)
    said: list[str] = []
    assert commands.up(echo=said.append) == 1
    assert "COVERTYPE_AUTH=off is only for a stack on 127.0.0.1" in said[0]
    assert "COVERTYPE_UI_HOST=0.0.0.0" in said[0]
    assert not (tmp_path / "stack").exists()  # nothing started
    monkeypatch.setattr(os, "environ", {"PATH": "/usr/bin"})
    assert logins.exposed(Settings.from_env({}), commands.HOST_FIELDS) == []
