"""The inference API's app: start-up and shutdown, request ids, logs and metrics, the
champion and the challenger in shadow beside it (`shadow`), and the routes (`routes`) wired
together; `run` serves it with uvicorn.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from covertype import __version__, logs
from covertype.errors import CovertypeError
from covertype.http_errors import error_response
from covertype.serve import api_keys
from covertype.serve.drift_gauges import DriftGauges
from covertype.serve.metrics import MULTIPROC_ENV, Metrics
from covertype.serve.model_holder import ModelHolder
from covertype.serve.prediction_log import ANSWERED, PredictionLog
from covertype.serve.release_gauges import ReleaseGauges
from covertype.serve.routes import PredictPath, include_routes, invalid
from covertype.serve.shadow import Shadow
from covertype.settings import Settings, get_settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("covertype.serve.access")

GRACEFUL_SHUTDOWN_SECONDS = 10  # in-flight requests get this long after SIGTERM
# uvicorn's supervisor kills a worker that does not answer its ping within this long. Its
# default, 5 s, killed each new worker in a loop on two busy cores: a spawned worker answers
# only once its interpreter is up, then from a thread that start-up's imports and the
# first model load keep waiting for the GIL.
WORKER_HEALTHCHECK_SECONDS = 30
ENDPOINTS = frozenset(
    {"/predict", "/predict/batch", "/predict/explain", "/health", "/ready", "/model",
     "/metrics", "/docs", "/openapi.json", "/redoc"}
)  # fmt: skip

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


# ---------------------------------------------------------------- request ids, logs, metrics


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every log record written while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


def log_config(level: str = "INFO") -> dict:
    """The platform's JSON-lines logging, each line tagged with the request id."""
    config = logs.logging_config(level)
    config["filters"] = {"request_id": {"()": RequestIdFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    return config


class RequestContext:
    """ASGI middleware: a request id (the client's X-Request-ID if sane, else a new one)
    in the logs and the response headers, the request's metrics and its access log line,
    and a logged 500 for anything unhandled. Plain ASGI: BaseHTTPMiddleware costs more than
    a whole fast-path prediction. A log line costs ~50 µs (a third of a bare request), so
    by default (COVERTYPE_SERVE_ACCESS_LOG=errors) only 4xx/5xx answers get one."""

    def __init__(
        self,
        app,
        metrics: Metrics,
        access: str,
        predictions: PredictionLog | None,
        shadow: Shadow,
    ):
        self.app, self.metrics, self.predictions = app, metrics, predictions
        self.shadow, self.challenger = shadow, shadow.holder
        self.log_from = {"all": 0, "errors": 400}.get(access, 1000)  # lowest status logged

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        token = REQUEST_ID.set(request_id)
        slot: list = []
        predictions = self.predictions  # a local: None-checked once, read once per answer
        # The route's answers are wanted to log them, or to shadow them (a challenger).
        wanted = predictions is not None or self.challenger.current is not None
        if wanted:
            answered_token = ANSWERED.set(slot)
        id_header = (b"x-request-id", request_id.encode())
        status = 0

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request failed", extra={"path": scope["path"]})
            if status == 0:
                response = JSONResponse(
                    {"detail": f"internal error; request id {request_id}"}, status_code=500
                )
                await response(scope, receive, send_with_id)
            status = status or 500
        finally:
            seconds = time.perf_counter() - started
            path = scope["path"]
            endpoint = path if path in ENDPOINTS else "other"
            self.metrics.observe_request(endpoint, scope["method"], status, seconds)
            if wanted:
                for records, labels, version, shadowed in slot:  # the answers, now timed
                    if predictions is not None:
                        predictions.add(records, labels, version, seconds * 1000, request_id)
                    if shadowed is not None:  # sent: the challenger's turn, off this path
                        self.shadow.submit(records, labels, version, shadowed, request_id)
                ANSWERED.reset(answered_token)
            if status >= self.log_from:
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": path,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )
            REQUEST_ID.reset(token)


def _request_id(headers) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _GOOD_REQUEST_ID.fullmatch(text):
                return text
            break
    return f"{_ids.prefix}{next(_ids.count):016x}"


class _Ids:
    """New request ids: 32 hex digits, 16 random ones per process then a counter (a uuid4
    costs a system call and an object, ~2 µs of a ~100 µs request); new random digits in
    a forked child."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.count = itertools.count(1)


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)


# ---------------------------------------------------------------- the app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start-up (the first model load, then the watcher) and shutdown."""
    from threadpoolctl import threadpool_limits

    holder: ModelHolder = app.state.holder
    challenger: ModelHolder = app.state.challenger
    settings: Settings = app.state.settings
    limits = threadpool_limits(1)  # one-row work: BLAS/OpenMP thread teams only cost here
    started = time.perf_counter()
    await asyncio.to_thread(holder.start)
    challenger.start()  # its first check in its own thread: not on start-up's path
    served = holder.current
    log.info(
        "inference API started",
        extra={
            "model": holder.target,
            "serving_version": served.version if served else None,
            "challenger": challenger.target,
            "registry": settings.mlflow.tracking_uri,
            "registry_reachable": holder.registry.reachable,
            "watch_seconds": settings.serve.watch_seconds,
            "startup_seconds": round(time.perf_counter() - started, 3),
        },
    )
    # Stopped in this order: the shadow's last rows reach the prediction log's last flush.
    background = [
        task
        for task in (
            app.state.shadow,
            app.state.predictions,
            app.state.drift_gauges,
            app.state.release_gauges,
        )
        if task is not None
    ]
    for task in background:
        task.start()
    yield
    holder.stop()
    challenger.stop()
    for task in background:
        task.stop()
    app.state.metrics.process_exiting()
    limits.restore_original_limits()  # for a process that goes on (an in-process test)
    log.info("inference API stopped", extra={"model": holder.target})


def create_app(settings: Settings | None = None, *, watch: bool = True) -> FastAPI:
    """The API for `settings`. `watch=False`: the registry is never asked (no MLflow, no
    watcher thread); a model is served only by `app.state.holder.serve_pipeline(...)`."""
    settings = settings or get_settings()
    metrics = Metrics()
    name = settings.mlflow.model_name
    metrics.model_version.labels(name, settings.mlflow.model_alias).set(0)
    metrics.challenger_version.labels(name, settings.release.challenger_alias).set(0)
    metrics.serve_budget.set(settings.serve.budget_us)
    app = FastAPI(
        title="covertype inference API",
        version=__version__,
        description=(
            f"Predicts the forest cover type of one cell from its 12 features with the model "
            f"`models:/{settings.mlflow.model_name}@{settings.mlflow.model_alias}`, kept in memory "
            "and swapped when the alias moves. Every answer names the model version that made it. "
            f"The version `models:/{settings.mlflow.model_name}@"
            f"{settings.release.challenger_alias}`, when there is one, predicts a share of the "
            "requests in shadow: recorded, never answered."
        ),
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics = settings, metrics
    holder = ModelHolder(settings, observer=metrics, watch=watch)
    challenger = ModelHolder(
        settings,
        observer=metrics.challenger(),
        watch=watch,
        alias=settings.release.challenger_alias,
        keep_when_gone=False,
        beside=holder,
    )
    predictions = (
        PredictionLog(settings, metrics) if settings.serve.prediction_log == "on" else None
    )
    shadow = Shadow(settings, metrics, challenger, predictions)
    app.state.holder, app.state.challenger, app.state.shadow = holder, challenger, shadow
    app.state.predict_path = PredictPath(holder, metrics, challenger, shadow)
    app.state.predictions = predictions
    # The gauges read the data DB's reports and ledger: only an API that watches the registry.
    app.state.drift_gauges = DriftGauges(settings, metrics) if watch else None
    app.state.release_gauges = ReleaseGauges(settings, metrics) if watch else None
    if settings.auth.on:
        api_keys.check_configured(settings)
        metrics_key = (
            settings.auth.metrics_key.get_secret_value() if settings.auth.metrics_key else None
        )
        # Inside the request context (added after it runs first): a 401 is timed and logged.
        app.add_middleware(
            api_keys.ApiKeys, keys=settings.auth.accepted_api_keys, metrics_key=metrics_key
        )
        _document_keys(app)
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        access=settings.serve.access_log,
        predictions=predictions,
        shadow=shadow,
    )
    # One handler of the platform's errors; FastAPI's own validation errors answered the same.
    # (Starlette types a handler as taking any Exception, not the class it is registered for.)
    app.add_exception_handler(CovertypeError, error_response)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    include_routes(app, settings.serve.max_batch)
    return app


def _document_keys(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = api_keys.document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


# ---------------------------------------------------------------- the server


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """`covertype serve`: uvicorn with JSON logs, no per-request log of its own (ours has
    the request id), a graceful shutdown, and COVERTYPE_SERVE_WORKERS processes."""
    import uvicorn

    api_keys.check_configured(settings)  # here, not once in each worker
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    options: dict[str, Any] = {
        "host": host or settings.serve.host,
        "port": port or settings.serve.port,
        "log_config": log_config(level),
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if settings.serve.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    if not os.environ.get(MULTIPROC_ENV):  # every worker writes its metrics here
        folder = settings.home / "serve-metrics" / str(options["port"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(folder)
    uvicorn.run(
        "covertype.serve.app:create_app",
        factory=True,
        workers=settings.serve.workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        **options,
    )
