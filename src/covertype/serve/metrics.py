"""Prometheus metrics of the inference API.

Requests and their latency by endpoint, method and status; predictions by class and model
version; the version being served, loads, swaps and whether the registry answers; the
challenger's shadow predictions beside the champion's and the release ledger's moves. With
several worker processes (COVERTYPE_SERVE_WORKERS > 1) `covertype serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder and /metrics adds up every worker's numbers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from covertype import schema

if TYPE_CHECKING:
    from covertype.serve.served_model import ServedModel

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Sub-millisecond answers are the norm; the default buckets start at 5 ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# A predict's seconds per record: a batch's row costs a few µs, a single row ~100 µs.
PER_RECORD_BUCKETS = (
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
SHADOW_OUTCOMES = ("agree", "disagree", "error")


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
        self.serving_cost = Gauge(
            "covertype_model_serving_cost_microseconds",
            "The served version's measured cost at training, by kind: single_row (median), "
            "single_row_p90, batch_row (one row of a batch); -1: not measured",
            ["kind"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.serve_budget = Gauge(
            "covertype_serve_budget_microseconds",
            "COVERTYPE_SERVE_BUDGET_US: the most a single-row answer may cost (0: no budget)",
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
        self.prediction_log_written = Counter(
            "covertype_prediction_log_written",
            "Answered records written to the data DB's predictions table",
            registry=r,
        )
        self.prediction_log_dropped = Counter(
            "covertype_prediction_log_dropped",
            "Answered records not logged: the prediction log's queue was full",
            registry=r,
        )
        self.prediction_log_queue = Gauge(
            "covertype_prediction_log_queue",
            "Answered records waiting in the prediction log's queue",
            multiprocess_mode="livesum",
            registry=r,
        )
        # The latest drift reports (covertype.monitor), read from the data DB's drift_reports.
        self.drift_share = Gauge(
            "covertype_drift_share",
            "Share of drifted features in the latest drift report, by kind (batch, predictions)",
            ["kind"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_detected = Gauge(
            "covertype_drift_detected",
            "1 if the latest drift report of this kind found the dataset drifted, else 0",
            ["kind"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_feature_score = Gauge(
            "covertype_drift_feature_score",
            "Drift score of one feature in the latest report (the test's statistic or p-value)",
            ["kind", "feature"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_batch = Gauge(
            "covertype_drift_batch",
            "Batch number of the latest batch drift report",
            ["kind"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.live_accuracy = Gauge(
            "covertype_live_accuracy",
            "The champion's accuracy on the latest collected batch, before retraining",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.live_macro_f1 = Gauge(
            "covertype_live_macro_f1",
            "The champion's macro F1 on the latest collected batch, before retraining",
            multiprocess_mode="livemax",
            registry=r,
        )
        # The challenger in shadow (serve.shadow) and the release ledger (release.ledger).
        self.shadow_predictions = Counter(
            "covertype_shadow_predictions",
            "Records the challenger predicted beside the champion, by outcome: agree, "
            "disagree (another class than the champion's), error (it raised)",
            ["outcome"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "covertype_shadow_dropped",
            "Sampled requests not shadowed: the shadow queue (COVERTYPE_SHADOW_QUEUE) was full",
            registry=r,
        )
        self.shadow_seconds = Histogram(
            "covertype_shadow_predict_seconds",
            "Seconds per record of a shadowed request's predict, by role: champion (timed on "
            "the request path), challenger (in the shadow thread); one observation a request",
            ["role"],
            buckets=PER_RECORD_BUCKETS,
            registry=r,
        )
        self.challenger_version = Gauge(
            "covertype_challenger_version",
            "Registry version of the challenger predicting in shadow (0: none loaded)",
            ["model_name", "alias"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.releases = Gauge(
            "covertype_releases_total",
            "Moves of the served model's aliases in the release ledger, by action (only grows)",
            ["action"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.shadow_outcomes = {k: self.shadow_predictions.labels(k) for k in SHADOW_OUTCOMES}
        self.shadow_roles = {k: self.shadow_seconds.labels(k) for k in ("champion", "challenger")}
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

    def model_served(self, served: ServedModel, swapped: bool) -> None:
        version = served.version
        self.model_version.labels(served.name, served.alias).set(
            int(version) if version.isdigit() else -1
        )
        cost = served.cost  # measured at training; -1: a version trained before costs were
        for kind, value in (
            ("single_row", cost.single_row_us if cost else -1),
            ("single_row_p90", cost.single_row_p90_us if cost else -1),
            ("batch_row", cost.batch_row_us if cost else -1),
        ):
            self.serving_cost.labels(kind).set(value)
        if swapped:
            self.model_swaps.inc()

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None:
        self.model_loads.labels(source, "ok" if ok else "failed").inc()
        if ok and seconds is not None:
            self.model_load_seconds.observe(seconds)

    def model_dropped(self, served: ServedModel) -> None:
        self.model_version.labels(served.name, served.alias).set(0)

    def registry_checked(self, reachable: bool) -> None:
        self.registry_up.set(1 if reachable else 0)

    def challenger(self) -> ChallengerMetrics:
        """The challenger's holder's observer: its own version gauge; its loads counted
        beside the champion's under a source of their own; no swaps, no registry_up."""
        return ChallengerMetrics(self)

    # ------------------------------------------------------------ drift (covertype.monitor)

    def drift_reported(self, report: dict) -> None:
        """The gauges of one stored drift report (a row of drift_reports)."""
        import json

        kind = report["kind"]
        self.drift_share.labels(kind).set(report["drift_share"] or 0.0)
        self.drift_detected.labels(kind).set(1 if report["dataset_drift"] else 0)
        for feature, score in json.loads(report["feature_scores"] or "{}").items():
            value = score.get("score") if isinstance(score, dict) else score
            if isinstance(value, int | float):
                self.drift_feature_score.labels(kind, feature).set(value)
        if kind == "batch":
            self.drift_batch.labels(kind).set(report["batch_number"] or 0)
            if report.get("live_accuracy") is not None:
                self.live_accuracy.set(report["live_accuracy"])
            if report.get("live_macro_f1") is not None:
                self.live_macro_f1.set(report["live_macro_f1"])

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


class ChallengerMetrics:
    """What the challenger's holder reports (model_holder.Observer)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def model_served(self, served: ServedModel, swapped: bool) -> None:
        version = served.version
        gauge = self.metrics.challenger_version.labels(served.name, served.alias)
        gauge.set(int(version) if version.isdigit() else -1)

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None:
        self.metrics.model_loaded(f"{source} (challenger)", ok, seconds)

    def model_dropped(self, served: ServedModel) -> None:
        self.metrics.challenger_version.labels(served.name, served.alias).set(0)

    def registry_checked(self, reachable: bool) -> None:
        pass  # covertype_registry_up is the champion's watcher's
