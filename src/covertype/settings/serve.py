"""The inference API: where it listens, how it serves and watches the model, its log of
answers; and where its clients (the UI, Locust, `covertype up`) reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from covertype.settings.values import Group, setting


class ServeSettings(Group):
    url: str = setting(
        "http://127.0.0.1:8085",
        "COVERTYPE_API_URL",
        "where the inference API's clients (UI, Locust, `up`) reach it",
    )
    host: str = setting("127.0.0.1", "COVERTYPE_SERVE_HOST", "where the inference API listens")
    port: int = setting(8085, "COVERTYPE_SERVE_PORT", "the inference API's port", ge=1, le=65535)
    workers: int = setting(1, "COVERTYPE_SERVE_WORKERS", "inference API worker processes", ge=1)
    watch_seconds: float = setting(
        10.0,
        "COVERTYPE_SERVE_WATCH_SECONDS",
        "how often the inference API checks where the alias points",
        gt=0,
    )
    registry_timeout_seconds: float = setting(
        10.0,
        "COVERTYPE_SERVE_REGISTRY_TIMEOUT_SECONDS",
        "HTTP timeout of the inference API's registry calls",
        gt=0,
    )
    budget_us: float = setting(
        300.0,
        "COVERTYPE_SERVE_BUDGET_US",
        "serving budget: the most microseconds one single-row answer of a model may cost "
        "(measured at training on the serving path, one thread); the search chooses among "
        "candidates within it and the gate refuses a version over it; 0: no budget",
        ge=0,
    )
    max_batch: int = setting(
        1000, "COVERTYPE_SERVE_MAX_BATCH", "records per /predict/batch call", ge=1
    )
    predictor: Literal["auto", "fast", "pipeline"] = setting(
        "auto",
        "COVERTYPE_SERVE_PREDICTOR",
        "auto: the fastest predictor that matches the pipeline (ONNX trees for LightGBM); "
        "fast: NumPy encoder and the model's own trees; pipeline: the pipeline",
    )
    model_cache: Path | None = setting(
        None,
        "COVERTYPE_SERVE_MODEL_CACHE",
        "the last loaded model on local disk; unset: a folder in COVERTYPE_HOME",
    )
    access_log: Literal["all", "errors", "off"] = setting(
        "errors",
        "COVERTYPE_SERVE_ACCESS_LOG",
        "JSON log line per request: all, errors (4xx/5xx answers only) or off",
    )
    prediction_log: Literal["on", "off"] = setting(
        "on",
        "COVERTYPE_PREDICTION_LOG",
        "every answer recorded in the data DB's table predictions",
    )
    prediction_log_queue: int = setting(
        10_000,
        "COVERTYPE_PREDICTION_LOG_QUEUE",
        "answered records the log keeps in memory; more are dropped (and counted)",
        ge=1,
    )
    prediction_log_flush_seconds: float = setting(
        1.0,
        "COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS",
        "how often the log writes its queue to the data DB",
        gt=0,
    )

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or self._home / "serve-cache"
