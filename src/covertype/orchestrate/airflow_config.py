"""Airflow's configuration from the settings, and `covertype airflow <args>`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from covertype.orchestrate.schedule import DAGS_FOLDER
from covertype.settings import Settings, client_host


def passwords_file(settings: Settings) -> Path:
    return settings.airflow.home / "simple_auth_manager_passwords.json"


def airflow_env(settings: Settings) -> dict[str, str]:
    """AIRFLOW_HOME and the AIRFLOW__* options of the platform's Airflow.

    Local stack (defaults): SQLite metadata DB in COVERTYPE_HOME, LocalExecutor with
    `airflow_parallelism` workers. Compose: COVERTYPE_AIRFLOW_DB_URL (PostgreSQL),
    COVERTYPE_AIRFLOW_EXECUTOR=CeleryExecutor and COVERTYPE_AIRFLOW_BROKER_URL (Redis)."""
    home = settings.airflow.home
    parallelism = str(settings.airflow.parallelism)
    # Workers call the api-server's Execution API; 0.0.0.0 is where it listens, not an address.
    base_url = f"http://{client_host(settings.airflow.host)}:{settings.airflow.port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The stack is there to run the pipeline: collection starts once the DAG is parsed.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": settings.airflow.executor,
        # Standalone otherwise starts 32 worker slots and 4 api-server workers (2 cores here).
        "AIRFLOW__CORE__PARALLELISM": parallelism,
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": parallelism,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow.metadata_db,
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow.admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__API__HOST": settings.airflow.host,
        "AIRFLOW__API__PORT": str(settings.airflow.port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
    }
    if settings.airflow.broker_url:
        # Celery's result backend defaults to the metadata DB; each worker runs as many tasks.
        env["AIRFLOW__CELERY__BROKER_URL"] = settings.airflow.broker_url
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = parallelism
    return env


def process_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus `airflow_env`; an AIRFLOW__* option
    already in `base` wins (Airflow's own way to set what the settings do not cover). The
    venv's bin goes first on PATH: `airflow standalone` starts its components as `airflow`."""
    base = dict(os.environ if base is None else base)
    env = base | airflow_env(settings)
    env |= {key: value for key, value in base.items() if key.startswith("AIRFLOW__")}
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), *filter(None, base.get("PATH", "").split(os.pathsep))]
    )
    return env


def prepare_home(settings: Settings) -> Path:
    """Create AIRFLOW_HOME; write the admin password of the settings where the simple auth
    manager reads it (unset: Airflow generates one on first start and prints it)."""
    home = settings.airflow.home
    home.mkdir(parents=True, exist_ok=True)
    if settings.airflow.admin_password is not None:
        path = passwords_file(settings)
        path.touch()
        path.chmod(0o600)  # the simple auth manager keeps passwords in plain text
        path.write_text(
            json.dumps(
                {settings.airflow.admin_user: settings.airflow.admin_password.get_secret_value()}
            )
        )
    return home


def exec_airflow(settings: Settings, args: Sequence[str]) -> None:
    """Replace this process with the venv's `airflow <args>` configured from the settings."""
    prepare_home(settings)
    program = str(Path(sys.executable).parent / "airflow")
    os.execve(program, [program, *args], process_env(settings))
