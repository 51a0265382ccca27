"""Where a /predict request's time goes besides the model: the ASGI apps called in-process.

No sockets, no HTTP parser, no load generator: each app is called as uvicorn would call
it (the same scope, body and send), N times in a loop, and timed per request. The model is
a small LightGBM (`--trees` × 7 classes × `--leaves`, fitted here on real rows) so that the
rest shows; every app answers the same records with the same predictor code.

    .venv/bin/python benchmarks/serve_overhead.py [--requests 20000]

  bare        bench_serve's (a): validate a plain pydantic record, answer a constant
  lean        lean_app (e): plain record → the one-row C API → JSON
  ours        `covertype serve`'s app as served by (d), logins off, the prediction log on
  ours-nolog  the same, COVERTYPE_PREDICTION_LOG=off
  ours-keys   the same as ours, API keys on (the last of three keys sent)
Also the parts alone: the record's validation, the predictor, the answer's JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from covertype import dataset, schema
from covertype.settings import Settings

KEYS = ("other-key-" + "1" * 16, "other-key-" + "2" * 16, "overhead-key-" + "3" * 16)


class Driver:
    """Calls an ASGI app in-process: its lifespan, then POST requests."""

    def __init__(self, app):
        self.app = app
        self.lifespan: asyncio.Queue = asyncio.Queue()
        self.task = None

    async def start(self) -> None:
        started = asyncio.Event()

        async def receive():
            return await self.lifespan.get()

        async def send(message):
            if message["type"].startswith("lifespan.startup"):
                started.set()

        await self.lifespan.put({"type": "lifespan.startup"})
        self.task = asyncio.ensure_future(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        )
        await started.wait()

    async def stop(self) -> None:
        await self.lifespan.put({"type": "lifespan.shutdown"})
        await self.task

    async def post(self, path: str, body: bytes, headers: list) -> bytes:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
        }  # fmt: skip
        sent = False
        out = []

        async def receive():
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                assert message["status"] == 200, message
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return b"".join(out)


async def per_request_us(app, bodies: list[bytes], n: int, headers=()) -> float:
    driver = Driver(app)
    await driver.start()
    try:
        for i in range(200):  # warm-up
            await driver.post("/predict", bodies[i % len(bodies)], list(headers))
        times = []
        for _ in range(5):
            started = time.perf_counter()
            for i in range(n // 5):
                await driver.post("/predict", bodies[i % len(bodies)], list(headers))
            times.append((time.perf_counter() - started) / (n // 5) * 1e6)
        return statistics.median(times)
    finally:
        await driver.stop()


def timed_us(call, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=10)
    parser.add_argument("--leaves", type=int, default=15)
    parser.add_argument("--apps", default="bare,lean,ours,ours-nolog,ours-keys")
    args = parser.parse_args()

    from tests.support.data import records_of
    from threadpoolctl import threadpool_limits

    from covertype.serve import create_app
    from covertype.serve.predictor_choice import compile_predictor
    from covertype.serve.predictors import records_frame
    from covertype.serve.records import Record
    from covertype.train import fit_pipeline

    threadpool_limits(1)
    frame = dataset.load_dataset(Settings())
    train = frame.iloc[:5000]
    pipeline = fit_pipeline(
        "lightgbm",
        {"n_estimators": args.trees, "num_leaves": args.leaves, "learning_rate": 0.1},
        records_frame(records_of(train)),
        train[schema.LABEL].to_numpy(),
        seed=0,
    )
    records = records_of(frame.iloc[-100:])
    bodies = [json.dumps(r).encode() for r in records]
    tmp = Path(tempfile.mkdtemp(prefix="serve-overhead-"))

    def ours(**env):
        settings = Settings.from_env(
            {
                "COVERTYPE_HOME": tmp / env.get("home", "ours"),
                "COVERTYPE_DATA_DB_URL": f"sqlite:///{tmp / 'data.db'}",
                "COVERTYPE_AUTH": "off",
                "COVERTYPE_MODEL_NAME": "covertype-overhead",
                **{k: v for k, v in env.items() if k.startswith("COVERTYPE_")},
            }
        )
        app = create_app(settings, watch=False)
        app.state.holder.serve_pipeline(pipeline, "1")
        return app

    def lean():
        import covertype.serve.model_files as model_files
        import lean_app

        # lean_app loads an MLflow folder; it is handed the fitted pipeline instead.
        os.environ["LEAN_MODEL_DIR"] = str(tmp)
        loader, model_files.load_pipeline = model_files.load_pipeline, lambda _: pipeline
        try:
            return lean_app.create_app()
        finally:
            model_files.load_pipeline = loader

    import bench_serve

    apps = {
        "bare": (bench_serve.bare_app, ()),
        "lean": (lean, ()),
        "ours": (lambda: ours(), ()),
        "ours-nolog": (lambda: ours(home="nolog", COVERTYPE_PREDICTION_LOG="off"), ()),
        "ours-keys": (
            lambda: ours(home="keys", COVERTYPE_AUTH="on", COVERTYPE_API_KEYS=",".join(KEYS)),
            ((b"x-api-key", KEYS[-1].encode()),),
        ),
    }
    results = {}
    for name in args.apps.split(","):
        make, headers = apps[name]
        results[name] = asyncio.run(per_request_us(make(), bodies, args.requests, headers))
        print(f"{name:12s} {results[name]:7.1f} µs per request", flush=True)

    served, _ = compile_predictor(pipeline, prefer="fast")
    valid = [Record.model_validate(r).__dict__ for r in records]
    from covertype.serve.answers import Answers

    answers = Answers("1")
    label, proba = served.classify_one(valid[0])
    parts = {
        "Record.model_validate": lambda i: Record.model_validate(records[i % 100]),
        "schema.validate_record": lambda i: schema.validate_record(records[i % 100]),
        "json.loads of the body": lambda i: json.loads(bodies[i % 100]),
        "predictor.classify_one": lambda i: served.classify_one(valid[i % 100]),
        "Answers.one": lambda i: answers.one(label, proba),
    }
    print(f"\nparts alone (model {args.trees}×7×{args.leaves} trees):")
    for name, call in parts.items():
        print(f"  {name:24s} {timed_us(call, 20_000):6.1f} µs")


if __name__ == "__main__":
    main()
