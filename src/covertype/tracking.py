"""The MLflow tracking server as the platform runs it, and the client's connection check.

One command line for every place that starts the server (local stack, tests, compose):
a database backend store (SQLite locally, MySQL in compose), an artifact destination
(a folder locally, S3/MinIO in compose) proxied by the server (`--serve-artifacts`), so
clients need no storage credentials, and Prometheus metrics on /metrics
(`--expose-prometheus`, prometheus-flask-exporter: requests by method and status, latency).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from covertype.settings import Settings

log = logging.getLogger(__name__)


class TrackingUnreachable(RuntimeError):
    """The MLflow tracking server did not answer."""


def server_command(settings: Settings, host: str | None = None, port: int | None = None) -> list:
    """`mlflow server ...` with the store, artifacts and port of the settings."""
    destination = settings.mlflow_artifacts
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    allowed = ["--allowed-hosts", settings.mlflow_allowed_hosts]
    # The venv's own mlflow, also when the venv is not on PATH.
    beside = Path(sys.executable).parent / "mlflow"
    return [
        str(beside) if beside.exists() else "mlflow",
        "server",
        "--host",
        host or settings.mlflow_host,
        "--port",
        str(port or settings.mlflow_port),
        "--backend-store-uri",
        settings.mlflow_backend_store,
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--workers",
        str(settings.mlflow_workers),
        "--expose-prometheus",
        str(metrics_dir(settings)),
        # MLflow 3 rejects unknown Host headers; compose and k8s reach it by service name.
        *(allowed if settings.mlflow_allowed_hosts else []),
    ]


def metrics_dir(settings: Settings) -> Path:
    """The workers' shared metric files (prometheus_client's multiprocess mode)."""
    return settings.home / "mlflow-metrics"


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment the server needs for an S3 artifact destination (MinIO, SeaweedFS)."""
    env = {}
    if settings.mlflow_s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.mlflow_s3_endpoint_url
    if settings.aws_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.aws_access_key_id
    if settings.aws_secret_access_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.aws_secret_access_key.get_secret_value()
    return env


def exec_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Replace this process with the MLflow server (signals reach it directly)."""
    command = server_command(settings, host, port)
    if settings.mlflow_backend_store.startswith("sqlite:///"):
        Path(settings.mlflow_backend_store.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    # Files of a previous run's workers would add their counts to this run's.
    shutil.rmtree(metrics_dir(settings), ignore_errors=True)
    log.info("starting MLflow server", extra={"command": " ".join(command)})
    # MLflow 3's job runner (GenAI evaluation jobs) is two more processes we never use.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    os.execvpe(command[0], command, env | server_environment(settings))


def connect(settings: Settings):
    """An MlflowClient for the tracking URI, after checking the server answers: retried
    `settings.mlflow_attempts` times, then TrackingUnreachable naming the URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow's own HTTP retries (7, with minutes of backoff) would hide an outage for long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # we print progress
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    error: Exception | None = None
    for attempt in range(1, settings.mlflow_attempts + 1):
        try:
            client.search_experiments(max_results=1)
            return client
        except (MlflowException, OSError) as caught:
            error = caught
            log.warning(
                "MLflow not answering",
                extra={
                    "uri": settings.mlflow_tracking_uri,
                    "attempt": attempt,
                    "error": str(caught),
                },
            )
            if attempt < settings.mlflow_attempts:
                time.sleep(settings.mlflow_backoff_seconds * 2 ** (attempt - 1))
    raise TrackingUnreachable(
        f"MLflow tracking server {settings.mlflow_tracking_uri} unreachable after "
        f"{settings.mlflow_attempts} attempts: {error}"
    )
