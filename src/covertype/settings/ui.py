"""The Streamlit UI: where it listens, and the links it shows to the other services."""

from __future__ import annotations

from covertype.settings.values import Group, setting


class UiSettings(Group):
    host: str = setting("127.0.0.1", "COVERTYPE_UI_HOST", "where the Streamlit UI listens")
    port: int = setting(8086, "COVERTYPE_UI_PORT", "the Streamlit UI's port", ge=1, le=65535)
    public_host: str = setting(
        "127.0.0.1", "COVERTYPE_PUBLIC_HOST", "host name the UI's links to the other services use"
    )
    links: str = setting(
        "api,mlflow,airflow",
        "COVERTYPE_UI_LINKS",
        "the services the UI links to (api, mlflow, airflow, minio, prometheus, grafana); "
        "Locust's link shows while COVERTYPE_LOCUST_URL answers",
        pattern=r"^[a-z,]*$",
    )
    minio_console_port: int = setting(
        8083, "COVERTYPE_MINIO_CONSOLE_PORT", "the MinIO console the UI links to", ge=1, le=65535
    )
    grafana_port: int = setting(
        3000, "COVERTYPE_GRAFANA_PORT", "the Grafana the UI links to", ge=1, le=65535
    )
    locust_url: str | None = setting(
        None,
        "COVERTYPE_LOCUST_URL",
        "where the UI checks that a Locust web run is up (unset: COVERTYPE_LOCUST_HOST and port)",
    )
