"""The inference API's routes: HTTP in, calls to the holder and the metrics, HTTP out.

Records are validated by `records.Record` (the schema module's rules and messages), the
model comes from `model_holder.ModelHolder`, every answer's shape from `responses`. Errors
are raised (`covertype.errors`) and answered by the app's one handler, never mapped here.
The holder, the metrics and the settings are the app's (`create_app` puts them in
`app.state`), handed in by `Depends`. `/predict` is `async def` on purpose: a one-row
prediction is a few hundred microseconds of CPU, cheaper on the event loop than through
the thread pool (where concurrent predictions only fight over the GIL); big batches go to
a thread. When a challenger is loaded, a sampled share of the prediction requests is also
predicted by it, after the answer, off the request path (`shadow`): the route only times
the champion's predict of those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import thread_time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute

from covertype.http_errors import error_response
from covertype.schema import FEATURES
from covertype.serve.explain import explain
from covertype.serve.metrics import Metrics
from covertype.serve.model_holder import ModelHolder
from covertype.serve.prediction_log import answered
from covertype.serve.records import (
    EXAMPLE,
    EXAMPLE_2,
    InvalidRecords,
    Record,
    TooLarge,
    parse_batch,
    problems,
)
from covertype.serve.responses import (
    Detail,
    Explanation,
    Health,
    ModelInfo,
    Prediction,
    Problems,
    Readiness,
)
from covertype.serve.shadow import Shadow, Shadowed
from covertype.settings import Settings

BATCH_IN_THREAD = 64  # batches at least this big predict off the event loop
BYTES_PER_RECORD = 2048  # body size allowed per record of COVERTYPE_SERVE_MAX_BATCH
BATCH_PATH = "/predict/batch"


# ---------------------------------------------------------------- what the routes depend on
# `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, which
# costs more than a fast-path prediction. These only read app.state: ~10 µs each measured
# here in-process, so /predict reads app.state itself.


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


@dataclass(frozen=True, slots=True)
class PredictPath:
    """What /predict reads of the app, in one object (`app.state.predict_path`): each
    attribute of app.state is a Python __getattr__ (~0.8 µs here), each of these a slot."""

    holder: ModelHolder
    metrics: Metrics
    challenger: ModelHolder
    shadow: Shadow


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


# ---------------------------------------------------------------- documented answers

Responses = dict[int | str, dict[str, Any]]  # a route's documented answers, as FastAPI takes them

UNAVAILABLE: Responses = {503: {"model": Detail, "description": "No model loaded yet"}}
INVALID: Responses = {
    422: {"model": Problems, "description": "Bad record(s): each bad field named"}
}
ONE_EXAMPLE = {
    "first real row": {"summary": "The first row of covtype (class 0)", "value": EXAMPLE}
}


def batch_body(max_batch: int) -> dict:
    """The batch route's documented body (it reads the body itself, for the size limits)."""
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


async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation errors answered as ours: 422 naming each bad field and what
    is allowed."""
    return await error_response(request, InvalidRecords(problems(list(error.errors()))))


# ---------------------------------------------------------------- the routes

router = APIRouter()


UNREADABLE: Responses = {
    400: {"model": Detail, "description": "The body cannot be read (not UTF-8)"}
}


@router.post(
    "/predict",
    response_model=Prediction,
    responses=INVALID | UNAVAILABLE | UNREADABLE,
    summary="Predict the cover type of one record",
)
async def predict(
    record: Annotated[Record, Body(openapi_examples=ONE_EXAMPLE)], request: Request
) -> Any:
    # app.state read here, not through Depends: two dependencies cost ~8% of the route.
    path: PredictPath = request.app.state.predict_path
    served = path.holder.serving()
    features = record.__dict__
    challenger = path.challenger.current  # None: the lean path, nothing else asked
    if challenger is None or not path.shadow.sampled():
        label, proba = served.predictor.classify_one(features)
        shadowed = None
    else:
        started = thread_time()  # CPU time: the GIL and core waits are not the model's
        label, proba = served.predictor.classify_one(features)
        shadowed = Shadowed(challenger, thread_time() - started)
    path.metrics.count_prediction(served.version, label)
    answered((features,), (label,), served.version, shadowed)
    return Response(served.answers.one(label, proba), media_type="application/json")


@router.post(
    "/predict/explain",
    response_model=Explanation,
    responses=INVALID
    | UNAVAILABLE
    | UNREADABLE
    | {501: {"model": Detail, "description": "The served model's family has no explanations"}},
    summary="Predict one record and say which of its fields weighed most (SHAP values)",
)
async def predict_explain(
    record: Annotated[Record, Body(openapi_examples=ONE_EXAMPLE)],
    holder: HolderDep,
    top: Annotated[int, Query(ge=1, le=len(FEATURES), description="contributions shown")] = 5,
) -> Any:
    served = holder.serving()
    family = served.tags.get("family")
    return explain(served.predictor, family, record.__dict__, served.version, top)


@router.post(
    BATCH_PATH,
    response_model=list[Prediction],
    responses=INVALID
    | UNAVAILABLE
    | {413: {"model": Detail, "description": "More records than COVERTYPE_SERVE_MAX_BATCH"}},
    summary="Predict a list of records; answers in the same order",
)  # its body is documented by `include_routes`, with the app's batch limit
async def predict_batch(
    request: Request, holder: HolderDep, metrics: MetricsDep, settings: SettingsDep
) -> Any:
    body = await _read_body(request, settings.serve.max_batch * BYTES_PER_RECORD)
    records = parse_batch(body, settings.serve.max_batch)
    served = holder.serving()
    rows = [record.__dict__ for record in records]
    path: PredictPath = request.app.state.predict_path
    challenger = path.challenger.current
    shadowed = None
    if len(rows) >= BATCH_IN_THREAD:
        (labels, proba), seconds = await run_in_threadpool(
            _timed, served.predictor.classify_many, rows
        )
    else:
        (labels, proba), seconds = _timed(served.predictor.classify_many, rows)
    if challenger is not None and rows and path.shadow.sampled():
        shadowed = Shadowed(challenger, seconds)
    metrics.count_predictions(served.version, labels)
    answered(rows, labels, served.version, shadowed)
    return Response(served.answers.many(labels, proba), media_type="application/json")


@router.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Any:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "No model loaded yet"}},
    summary="A model is loaded (which one), and whether the registry answers",
)
async def ready(holder: HolderDep) -> Any:
    served = holder.current
    readiness = Readiness(
        ready=served is not None,
        model=served.summary() if served else None,
        registry=holder.registry.status(),
        detail=None if served else holder.not_ready_reason(),
    )
    if served is None:
        return JSONResponse(readiness.model_dump(), status_code=503)
    return readiness


@router.get(
    "/model",
    response_model=ModelInfo,
    responses=UNAVAILABLE,
    summary="The model being served: version, alias, run, holdout metrics, training data; "
    "the challenger in shadow beside it, if any",
)
async def model(request: Request, holder: HolderDep) -> Any:
    info = holder.serving().info(holder.registry.status())
    challenger = request.app.state.challenger.current
    if challenger is not None:
        info.challenger = challenger.challenger_info(
            request.app.state.shadow.shown(challenger.version)
        )
    return info


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def prometheus(metrics: MetricsDep) -> Any:
    return Response(metrics.render(), media_type=metrics.content_type)


def include_routes(app: FastAPI, max_batch: int) -> None:
    """The routes on `app`, its batch limit in the OpenAPI document (the router's routes
    are shared by every app; each app gets copies, so one app's limit is its own)."""
    app.include_router(router)
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == BATCH_PATH:
            route.openapi_extra = batch_body(max_batch)
    # /predict matched first: each route before it (the docs' four) costs a regex match.
    routes = app.router.routes
    first = [r for r in routes if isinstance(r, APIRoute) and r.path == "/predict"]
    routes[:] = first + [r for r in routes if r not in first]


def _timed(predict: Callable, rows: list) -> tuple[Any, float]:
    """`predict(rows)` and its thread's CPU seconds (a batch's timing is cheap: every one
    timed)."""
    started = thread_time()
    return predict(rows), thread_time() - started


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or TooLarge (413) as soon as it is longer than `limit` bytes."""
    too_long = TooLarge(
        f"request body over {limit} bytes ({BYTES_PER_RECORD} a record of the maximum batch)"
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
