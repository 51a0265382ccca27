"""What the DAGs decide and how Airflow is configured: plain functions, no Airflow process."""

import os
from datetime import UTC, datetime, timedelta

from covertype.orchestrate import airflow_config, schedule
from covertype.settings import Settings
from tests.support.environment import BIN


def test_compose_settings_and_explicit_airflow_options():
    settings = Settings.from_env(
        {
            "COVERTYPE_AIRFLOW_HOST": "0.0.0.0",
            "COVERTYPE_AIRFLOW_DB_URL": "postgresql+psycopg2://airflow:pw@postgres:5432/airflow",
            "COVERTYPE_AIRFLOW_EXECUTOR": "CeleryExecutor",
            "COVERTYPE_AIRFLOW_BROKER_URL": "redis://redis:6379/0",
        }
    )
    env = airflow_config.airflow_env(settings)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "4"
    assert env["AIRFLOW__API__HOST"] == "0.0.0.0"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"
    # An AIRFLOW__* option already in the environment wins; the venv's bin comes first on PATH.
    full = airflow_config.process_env(settings, {"AIRFLOW__CORE__PARALLELISM": "2", "PATH": "/bin"})
    assert full["AIRFLOW__CORE__PARALLELISM"] == "2"
    assert full["PATH"].split(os.pathsep) == [str(BIN), "/bin"]


def test_pause_is_per_source_and_probed_every_probe_seconds():
    settings = Settings.from_env({"COVERTYPE_COLLECT_PROBE_SECONDS": 600})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    marker = schedule.pause_marker(settings, "All data was collected.", None, start)
    reason = schedule.paused_reason(marker, settings, now=start + timedelta(seconds=599))
    assert reason.startswith("collection paused since 2026-01-01T00:00:00+00:00")
    assert schedule.paused_reason(marker, settings, now=start + timedelta(seconds=600)) is None
    assert schedule.paused_reason(marker, settings, resume=True, now=start) is None
    other = Settings.from_env({"COVERTYPE_GROUP_NUMBER": 3})
    assert schedule.paused_reason(marker, other, now=start) is None
    # A probe that finds the source still exhausted keeps "since" and moves "checked_at".
    later = schedule.pause_marker(settings, "x", marker, start + timedelta(hours=1))
    assert later["since"] == marker["since"] and later["checked_at"] != marker["checked_at"]
