"""The MLflow tracking server's command line and process, one for every place that starts it
(local stack, tests, compose): a database backend store (SQLite locally, MySQL in compose),
an artifact destination (a folder locally, S3/MinIO in compose) proxied by the server
(`--serve-artifacts`), so clients need no storage credentials, and Prometheus metrics on
/metrics (`--expose-prometheus`). With COVERTYPE_AUTH=on: MLflow's basic-auth app, its
configuration written and its users bootstrapped before the server starts."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from covertype.settings import Settings
from covertype.tracking.auth_app import AUTH_APP
from covertype.tracking.auth_config import auth_environment
from covertype.tracking.auth_users import bootstrap_auth

log = logging.getLogger(__name__)


def server_command(settings: Settings, host: str | None = None, port: int | None = None) -> list:
    """`mlflow server ...` with the store, artifacts and port of the settings."""
    destination = settings.mlflow.artifacts
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    allowed = ["--allowed-hosts", settings.mlflow.allowed_hosts]
    # The venv's own mlflow, also when the venv is not on PATH.
    beside = Path(sys.executable).parent / "mlflow"
    return [
        str(beside) if beside.exists() else "mlflow",
        "server",
        "--host",
        host or settings.mlflow.host,
        "--port",
        str(port or settings.mlflow.port),
        "--backend-store-uri",
        settings.mlflow.backend_store,
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--workers",
        str(settings.mlflow.workers),
        "--expose-prometheus",
        str(metrics_dir(settings)),
        # MLflow 3 rejects unknown Host headers; compose and k8s reach it by service name.
        *(allowed if settings.mlflow.allowed_hosts else []),
        *(["--app-name", AUTH_APP] if settings.auth.on else []),
    ]


def metrics_dir(settings: Settings) -> Path:
    """The workers' shared metric files (prometheus_client's multiprocess mode)."""
    return settings.home / "mlflow-metrics"


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment the server needs for an S3 artifact destination (MinIO, SeaweedFS)."""
    env = {}
    if settings.mlflow.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.mlflow.s3_endpoint_url
    if settings.mlflow.aws_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.mlflow.aws_access_key_id
    if settings.mlflow.aws_secret_access_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.mlflow.aws_secret_access_key.get_secret_value()
    return env


def exec_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Replace this process with the MLflow server (signals reach it directly). With auth
    on: AuthSetupError (one line) without a usable admin password, else writes the auth
    config and bootstraps the user DB first."""
    command = server_command(settings, host, port)
    if settings.mlflow.backend_store.startswith("sqlite:///"):
        Path(settings.mlflow.backend_store.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    # MLflow 3's job runner (GenAI evaluation jobs) is two more processes we never use.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    if settings.auth.on:
        env |= auth_environment(settings)
        os.environ.update(env)  # MLflow's auth module reads its config path at import
        for line in bootstrap_auth(settings):
            log.info(line)
    # Files of a previous run's workers would add their counts to this run's.
    shutil.rmtree(metrics_dir(settings), ignore_errors=True)
    log.info("starting MLflow server", extra={"command": " ".join(command)})
    os.execvpe(command[0], command, env | server_environment(settings))
