"""The sidebar's links to the services this deployment runs."""

from __future__ import annotations

import httpx
import streamlit as st

from covertype.settings import Settings, client_host


def links(settings: Settings, locust_running: bool = False) -> dict[str, str]:
    """The services this deployment runs (settings.ui.links), as a browser reaches them;
    Locust only while its web UI answers. No link leads nowhere."""
    host = settings.ui.public_host

    def at(port: int, path: str = "") -> str:
        return f"http://{host}:{port}{path}"

    # The API's own URL may be a service name (compose, k8s) a browser cannot reach.
    known = {
        "api": ("Inference API docs", at(settings.serve.port, "/docs")),
        "mlflow": ("MLflow", at(settings.mlflow.port)),
        "airflow": ("Airflow", at(settings.airflow.port)),
        "minio": ("MinIO console", at(settings.ui.minio_console_port)),
        "prometheus": ("Prometheus", at(settings.prometheus.port, "/alerts")),
        "grafana": ("Grafana", at(settings.ui.grafana_port)),
    }
    wanted = [name.strip() for name in settings.ui.links.split(",") if name.strip()]
    shown = dict(known[name] for name in wanted if name in known)
    if locust_running:
        shown["Locust (load test running)"] = at(settings.loadtest.port)
    return shown


def locust_running(settings: Settings) -> bool:
    """Whether a Locust web UI answers where the settings say (its login page)."""
    url = (
        settings.ui.locust_url
        or f"http://{client_host(settings.loadtest.host)}:{settings.loadtest.port}"
    )
    return _answers(url)


@st.cache_data(ttl=10, show_spinner=False)  # asked once per 10 s, not on every rerun
def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code < 500
    except httpx.HTTPError:
        return False
