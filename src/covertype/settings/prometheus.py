"""Prometheus: the local one `covertype up` runs, and the one the UI asks for traffic."""

from __future__ import annotations

from covertype.settings.values import Group, setting


class PrometheusSettings(Group):
    host: str = setting("127.0.0.1", "COVERTYPE_PROMETHEUS_HOST", "where Prometheus listens")
    port: int = setting(9090, "COVERTYPE_PROMETHEUS_PORT", "Prometheus' port", ge=1, le=65535)
    url: str | None = setting(
        None,
        "COVERTYPE_PROMETHEUS_URL",
        "the Prometheus the UI queries for request rate and latency; unset: no traffic charts",
    )
    scrape_seconds: float = setting(
        10.0,
        "COVERTYPE_PROMETHEUS_SCRAPE_SECONDS",
        "the local Prometheus' scrape and rule interval",
        gt=0,
    )
