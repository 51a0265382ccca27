"""The local Prometheus: `covertype prometheus`, a service of `covertype up` when Debian's
`prometheus` package (or any `prometheus` binary) is on PATH.

It scrapes the local services where the settings say they listen, with the job names of
compose and Kubernetes (deploy/monitoring/prometheus), and evaluates the same alert rules
(deploy/monitoring/prometheus/alerts.yml), so dashboards and alerts fit all three.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import yaml

from covertype.errors import CovertypeError
from covertype.settings import Settings, client_host, write_secret

log = logging.getLogger(__name__)

MONITORING = Path(__file__).resolve().parents[3] / "deploy/monitoring"
ALERTS = MONITORING / "prometheus/alerts.yml"
RETENTION = "7d"


class NotInstalled(CovertypeError):
    """No `prometheus` binary on PATH."""


def _target(host: str, port: int) -> str:
    return f"{client_host(host)}:{port}"


def key_file(settings: Settings) -> Path:
    """The scraper's key (COVERTYPE_METRICS_KEY), where Prometheus reads it (mode 0600)."""
    return settings.home / "prometheus" / "metrics-key"


def config(settings: Settings, alerts: Path = ALERTS) -> dict:
    """prometheus.yml for the local stack (a rule file only where the checkout has it).
    With logins on, the API is scraped with the scraper's key as Bearer and MLflow as its
    user `mlflow_metrics_user`, whose password is that same key (a file, not the config)."""
    s = settings
    jobs = {
        "covertype-api": _target(s.serve.host, s.serve.port),
        "covertype-source": _target(s.source.host, s.source.port),
        "mlflow": _target(s.mlflow.host, s.mlflow.port),
        "prometheus": _target(s.prometheus.host, s.prometheus.port),
    }
    interval = f"{s.prometheus.scrape_seconds:g}s"
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"deployment": "local"},
        },
        "rule_files": [str(alerts)] if alerts.exists() else [],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}], **_login(s, job)}
            for job, target in jobs.items()
        ],
    }


def _login(settings: Settings, job: str) -> dict:
    if not settings.auth.on or settings.auth.metrics_key is None:
        return {}
    secret = str(key_file(settings))
    if job == "covertype-api":
        return {"authorization": {"type": "Bearer", "credentials_file": secret}}
    if job == "mlflow":
        return {
            "basic_auth": {"username": settings.auth.mlflow_metrics_user, "password_file": secret}
        }
    return {}


def write_config(settings: Settings) -> Path:
    folder = settings.home / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(settings), sort_keys=False))
    if settings.auth.on and settings.auth.metrics_key is not None:
        write_secret(key_file(settings), settings.auth.metrics_key.get_secret_value())
    return path


def command(settings: Settings, config_path: Path) -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise NotInstalled(
            "prometheus is not on PATH (Debian/Ubuntu: sudo apt-get install prometheus)"
        )
    return [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={settings.home / 'prometheus' / 'data'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={settings.prometheus.host}:{settings.prometheus.port}",
    ]


def exec_server(settings: Settings) -> None:
    """Replace this process with Prometheus (signals reach it directly)."""
    path = write_config(settings)
    if not ALERTS.exists():
        log.warning("no alert rules", extra={"missing": str(ALERTS)})
    argv = command(settings, path)
    log.info("starting Prometheus", extra={"command": " ".join(argv)})
    os.execv(argv[0], argv)
