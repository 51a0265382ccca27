"""The inference API: routes, start-up and shutdown, request ids, logs and metrics.

Routes only translate HTTP: records are validated by `records.Record` (the schema module's
rules and messages), the model comes from `model.ModelHolder`, predictions from its fast
path. `/predict` is `async def` on purpose: a one-row prediction is a few hundred
microseconds of CPU, cheaper on the event loop than through the thread pool (where
concurrent predictions only fight over the GIL); big batches go to a thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from covertype import __version__, logs
from covertype.serve.metrics import MULTIPROC_ENV, Metrics
from covertype.serve.model import ModelHolder
from covertype.serve.records import (
    EXAMPLE,
    EXAMPLE_2,
    BatchInvalid,
    BatchTooLarge,
    Detail,
    Prediction,
    Problems,
    Record,
    parse_batch,
    problems,
)
from covertype.settings import Settings, get_settings

log = logging.getLogger(__name__)
access_log = logging.getLogger("covertype.serve.access")

GRACEFUL_SHUTDOWN_SECONDS = 10  # in-flight requests get this long after SIGTERM
BATCH_IN_THREAD = 64  # batches at least this big predict off the event loop
BYTES_PER_RECORD = 2048  # body size allowed per record of COVERTYPE_SERVE_MAX_BATCH
ENDPOINTS = frozenset(
    {"/predict", "/predict/batch", "/health", "/ready", "/model", "/metrics", "/docs",
     "/openapi.json", "/redoc"}
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

    def __init__(self, app, metrics: Metrics, access: str):
        self.app, self.metrics = app, metrics
        self.log_from = {"all": 0, "errors": 400}.get(access, 1000)  # lowest status logged

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        token = REQUEST_ID.set(request_id)
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
    return uuid.uuid4().hex


# ---------------------------------------------------------------- documented shapes


class Health(BaseModel):
    status: str


class ModelSummary(BaseModel):
    name: str
    version: str
    alias: str
    loaded_at: str
    source: str


class RegistryStatus(BaseModel):
    uri: str
    reachable: bool | None
    champion_version: str | None
    last_checked: str | None
    last_error: str | None


class Readiness(BaseModel):
    ready: bool
    model: ModelSummary | None = None
    registry: RegistryStatus
    detail: str | None = None


class HoldoutMetrics(BaseModel):
    holdout_accuracy: float | None
    holdout_macro_f1: float | None


class ModelInfo(ModelSummary):
    run_id: str
    family: str | None
    metrics: HoldoutMetrics
    trained_rows: int | None
    trained_batches: str | None
    trained_at: str | None
    gate_decision: str | None
    predictor: str
    fast_path_note: str | None
    registry: RegistryStatus


UNAVAILABLE = {503: {"model": Detail, "description": "No model loaded yet"}}
INVALID = {422: {"model": Problems, "description": "Bad record(s): each bad field named"}}
ONE_EXAMPLE = {
    "first real row": {"summary": "The first row of covtype (class 0)", "value": EXAMPLE}
}


def batch_body(max_batch: int) -> dict:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Record"},
                        "maxItems": max_batch,
                    },
                    "examples": {
                        "two real rows": {
                            "summary": "The first two rows of covtype (classes 0 and 2)",
                            "value": [EXAMPLE, EXAMPLE_2],
                        }
                    },
                }
            },
        }
    }


# ---------------------------------------------------------------- the app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    metrics.model_version.labels(settings.model_name, settings.model_alias).set(0)
    holder = ModelHolder(settings, observer=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one-row work: BLAS/OpenMP thread teams only cost here
        started = time.perf_counter()
        await asyncio.to_thread(holder.start)
        served = holder.current
        log.info(
            "inference API started",
            extra={
                "model": holder.target,
                "serving_version": served.version if served else None,
                "registry": settings.mlflow_tracking_uri,
                "registry_reachable": holder.registry.reachable,
                "watch_seconds": settings.serve_watch_seconds,
                "startup_seconds": round(time.perf_counter() - started, 3),
            },
        )
        yield
        holder.stop()
        metrics.process_exiting()
        log.info("inference API stopped", extra={"model": holder.target})

    app = FastAPI(
        title="covertype inference API",
        version=__version__,
        description=(
            f"Predicts the forest cover type of one cell from its 12 features with the model "
            f"`models:/{settings.model_name}@{settings.model_alias}`, kept in memory and "
            "swapped when the alias moves. Every answer names the model version that made it."
        ),
        lifespan=lifespan,
    )
    app.state.holder, app.state.metrics = holder, metrics
    app.add_middleware(RequestContext, metrics=metrics, access=settings.serve_access_log)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": problems(list(error.errors()))}, status_code=422)

    def unavailable() -> JSONResponse:
        return JSONResponse(
            {"detail": holder.not_ready_reason()},
            status_code=503,
            headers={"Retry-After": str(math.ceil(settings.serve_watch_seconds))},
        )

    @app.post(
        "/predict",
        response_model=Prediction,
        responses=INVALID
        | UNAVAILABLE
        | {400: {"model": Detail, "description": "The body cannot be read (not UTF-8)"}},
        summary="Predict the cover type of one record",
    )
    async def predict(record: Annotated[Record, Body(openapi_examples=ONE_EXAMPLE)]) -> Any:
        served = holder.current
        if served is None:
            return unavailable()
        label = served.predictor.predict_one(record.__dict__)
        metrics.count_prediction(served.version, label)
        return Response(served.answers[label], media_type="application/json")

    @app.post(
        "/predict/batch",
        response_model=list[Prediction],
        responses=INVALID
        | UNAVAILABLE
        | {413: {"model": Detail, "description": "More records than COVERTYPE_SERVE_MAX_BATCH"}},
        openapi_extra=batch_body(settings.serve_max_batch),
        summary="Predict a list of records; answers in the same order",
    )
    async def predict_batch(request: Request) -> Any:
        body = await _read_body(request, settings.serve_max_batch * BYTES_PER_RECORD)
        try:
            records = parse_batch(body, settings.serve_max_batch)
        except BatchTooLarge as error:
            return JSONResponse({"detail": str(error)}, status_code=413)
        except BatchInvalid as error:
            return JSONResponse({"detail": error.errors}, status_code=422)
        served = holder.current
        if served is None:
            return unavailable()
        rows = [record.__dict__ for record in records]
        if len(rows) >= BATCH_IN_THREAD:
            labels = await run_in_threadpool(served.predictor.predict_many, rows)
        else:
            labels = served.predictor.predict_many(rows)
        metrics.count_predictions(served.version, labels)
        answer = b"[" + b",".join(served.answers[label] for label in labels) + b"]"
        return Response(answer, media_type="application/json")

    @app.get("/health", response_model=Health, summary="The process is alive")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "No model loaded yet"}},
        summary="A model is loaded (which one), and whether the registry answers",
    )
    async def ready() -> Any:
        served = holder.current
        body = {
            "ready": served is not None,
            "model": served.summary() if served else None,
            "registry": holder.registry.as_dict(),
        }
        if served is None:
            return JSONResponse(body | {"detail": holder.not_ready_reason()}, status_code=503)
        return body

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses=UNAVAILABLE,
        summary="The model being served: version, alias, run, holdout metrics, training data",
    )
    async def model() -> Any:
        served = holder.current
        if served is None:
            return unavailable()
        return served.info() | {"registry": holder.registry.as_dict()}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> Any:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is longer than `limit` bytes."""
    too_long = HTTPException(
        413, f"request body over {limit} bytes ({BYTES_PER_RECORD} a record of the maximum batch)"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_long
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_long
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the server


def run(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """`covertype serve`: uvicorn with JSON logs, no per-request log of its own (ours has
    the request id), a graceful shutdown, and COVERTYPE_SERVE_WORKERS processes."""
    import uvicorn

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    options: dict[str, Any] = {
        "host": host or settings.serve_host,
        "port": port or settings.serve_port,
        "log_config": log_config(level),
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if settings.serve_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    if not os.environ.get(MULTIPROC_ENV):  # every worker writes its metrics here
        folder = settings.home / "serve-metrics" / str(options["port"])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(folder)
    uvicorn.run(
        "covertype.serve.app:create_app", factory=True, workers=settings.serve_workers, **options
    )
