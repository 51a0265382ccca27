"""(e) of bench_serve.py: the lean path, the model-bound ceiling of this machine.

A FastAPI app serving the same model version as `covertype serve`, with nothing of the
platform around it: a plain pydantic record (ints and strings, no normalisation) → the
NumPy row (the fitted encoder's maps, as the served path) → LightGBM's one-row C API with
one thread → class and probabilities as JSON. No prediction log, metrics, API keys,
request ids, middleware or dependencies.

    LEAN_MODEL_DIR=<an MLflow model folder> uvicorn --factory lean_app:create_app \
        --app-dir benchmarks --workers 2 --no-access-log

LEAN_THREADS=N (with one worker): the predicts run on N threads of the one process, each
with its single-row configuration of its own (ctypes releases the GIL during the C call),
the trees held once in memory: against N processes, each with a copy of the trees.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import create_model

from covertype import schema

Row = create_model(
    "Row",
    **{name: (int, ...) for name in schema.NUMERIC},
    **{name: (str, ...) for name in schema.CATEGORICAL},
)


def create_app() -> FastAPI:
    from threadpoolctl import threadpool_limits

    from covertype.serve.model_files import load_pipeline
    from covertype.serve.predictors import FastPredictor

    threadpool_limits(1)
    folder = Path(os.environ["LEAN_MODEL_DIR"])
    fast = FastPredictor(load_pipeline(folder))
    encode, single = fast.encoder.encode, fast.model.single
    if single is None:
        raise RuntimeError("LightGBM's single-row C API is not available")
    classes = fast.model.classes
    version = os.environ.get("LEAN_MODEL_VERSION", "0")
    names = schema.COVER_TYPE_NAMES
    threads = int(os.environ.get("LEAN_THREADS", "0"))
    app = FastAPI()

    if threads:
        from covertype.serve.lightgbm_single_row import SingleRow

        pool = ThreadPoolExecutor(threads, thread_name_prefix="predict")
        local = threading.local()
        booster, width = fast.model.booster, fast.model.n_features

        def predict_row(matrix):
            mine = getattr(local, "single", None)
            if mine is None:
                mine = local.single = SingleRow(booster, width)
            return mine.predict(matrix)[0]

    async def probabilities(row):
        if threads:
            return await asyncio.get_running_loop().run_in_executor(
                pool, predict_row, encode((row.__dict__,))
            )
        return single.predict(encode((row.__dict__,)))[0]

    @app.post("/predict")
    async def predict(row: Row) -> Response:  # type: ignore[valid-type]
        proba = await probabilities(row)
        k = int(classes[int(proba.argmax())])
        body = {
            "cover_type": k,
            "cover_type_name": names[k],
            "model_version": version,
            "probabilities": dict(zip(names, proba.tolist(), strict=False)),
        }
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/ready")
    async def ready() -> dict:
        return {"ready": True}

    return app
