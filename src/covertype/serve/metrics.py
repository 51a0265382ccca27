"""Prometheus metrics of the inference API.

Requests and their latency by endpoint, method and status; predictions by class and model
version; the version being served, loads, swaps and whether the registry answers. With
several worker processes (COVERTYPE_SERVE_WORKERS > 1) `covertype serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder and /metrics adds up every worker's numbers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from covertype import schema

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Sub-millisecond answers are the norm; the default buckets start at 5 ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The API's metrics in a registry of their own (one per app), children cached."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "covertype_requests",
            "HTTP requests answered, by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "covertype_request_duration_seconds",
            "Time from request to the end of the answer, by endpoint, method and status",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "covertype_predictions",
            "Records predicted, by predicted class and the model version that predicted",
            ["cover_type", "cover_type_name", "model_version"],
            registry=r,
        )
        self.model_version = Gauge(
            "covertype_model_version",
            "Registry version of the model being served (0: none loaded yet)",
            ["model_name", "alias"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.model_loads = Counter(
            "covertype_model_loads",
            "Model loads by where from (registry, local cache) and outcome (ok, failed)",
            ["source", "outcome"],
            registry=r,
        )
        self.model_swaps = Counter(
            "covertype_model_swaps",
            "Times a newly loaded version replaced the one being served",
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "covertype_model_load_seconds",
            "Time to download, load, check and warm up a model version",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.registry_up = Gauge(
            "covertype_registry_up",
            "1 if the model registry answered the last check, else 0",
            multiprocess_mode="liveall",
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple] = {}
        self._prediction_children: dict[tuple[str, int], object] = {}

    # ------------------------------------------------------------ requests

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (endpoint, method, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, version: str, labels: list[int]) -> None:
        counts: dict[int, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            self._prediction_child(version, label).inc(n)

    def count_prediction(self, version: str, label: int) -> None:
        self._prediction_child(version, label).inc()

    def _prediction_child(self, version: str, label: int):
        child = self._prediction_children.get((version, label))
        if child is None:
            child = self.predictions.labels(str(label), schema.COVER_TYPE_NAMES[label], version)
            self._prediction_children[(version, label)] = child
        return child

    # ------------------------------------------------------------ the model (holder's observer)

    def model_served(self, name: str, alias: str, version: str, swapped: bool) -> None:
        self.model_version.labels(name, alias).set(int(version) if version.isdigit() else -1)
        if swapped:
            self.model_swaps.inc()

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None:
        self.model_loads.labels(source, "ok" if ok else "failed").inc()
        if ok and seconds is not None:
            self.model_load_seconds.observe(seconds)

    def registry_checked(self, reachable: bool) -> None:
        self.registry_up.set(1 if reachable else 0)

    # ------------------------------------------------------------ exposition

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)
        return generate_latest(combined)

    def process_exiting(self) -> None:
        """In multiprocess mode, drop this worker's live gauges."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())
