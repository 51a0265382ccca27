"""Inference API speed against its anchors: same model version, same machine, one run.

    apt-get install -y wrk                       # once (Debian); the script checks for it
    .venv/bin/python benchmarks/bench_serve.py   # ~10 min: trains, then 3 servers × 3 loads

Three servers, started one at a time (the others stopped), each warmed up and then loaded by
wrk (a C load generator; Locust would compete for the 2 cores) for `--duration` seconds at
1, 8 and 32 connections, POST bodies cycling over 100 real rows:

  (a) bare FastAPI: validate the record with a plain pydantic model, return a constant
      (`async def`, same uvicorn, no access log): the web stack's ceiling;
  (b) `mlflow models serve` of the same registered version (`--env-manager local`);
  (c) `covertype serve`, our /predict, on the previous path (COVERTYPE_SERVE_PREDICTOR=fast:
      NumPy encoder + LightGBM's booster), otherwise the settings' defaults (access log of
      4xx/5xx answers only; `--access-log all` logs every request; the prediction log on,
      into a SQLite data DB);
  (c0) the same with COVERTYPE_PREDICTION_LOG=off: (c) must keep ≥ 90% of its req/s;
  (d) `covertype serve` with every default: the served path (ONNX Runtime's trees), logins
      off (COVERTYPE_AUTH=off);
  (d0) (d) with COVERTYPE_PREDICTION_LOG=off;
  (dk) the same with API keys on (three keys configured, wrk sending the last one as
      X-API-Key): (dk) must keep ≥ 95% of (d)'s req/s;
  (ds10), (ds100) (d) with a challenger predicting 10 % and 100 % of the requests in shadow
      (benchmarks/serve_shadow.py: a copy of the same version under an alias of the run;
      (d), whose challenger alias points nowhere, is shadow off): (ds10)'s req/s ≥ 85 % of
      (d)'s, its p50 within ±10 % of (d)'s (at 8 connections and at the fixed rate below);
      the shadow's records, dropped requests and rows written from /metrics and the data DB;
  (e) the lean path (benchmarks/lean_app.py): FastAPI, a plain pydantic record → the NumPy
      row → LightGBM's one-row C API with one thread, nothing else (no prediction log,
      metrics, keys, request ids): the model-bound ceiling of this machine, (d) ≥ 90% of it;
  (e1) the lean path in one process whose predicts run on `--workers` threads (the trees
      held once) against (e)'s processes (a copy each);
  (p1) BentoML 1.4 and (p2) MLServer 1.7 (LightGBM runtime), each with adaptive batching,
      installed into virtualenvs of their own (benchmarks/serve_peers.py: `.cache/`, once),
      serving the same booster fed the encoded rows: (d) ≥ 5× each one's req/s.
After the rounds, every server again under an open-loop load at a fixed arrival rate
(benchmarks/open_loop.py, `--fixed-seconds`): half the slowest server's median maximum (or
`--rate`); (d) must have the lowest p99 there. (d) and (e) also at half their own maximum:
(d) p99 ≤ 10 ms there with the cheap model. Each point reports the server's CPU per request
(all its processes) and wrk's; `--py-spy PATH` profiles a worker of each at 8 connections.
(c) and (d) are also loaded with /predict/batch of 1,000 records at 2 connections
(`--batch-seconds`), in rows/s. `--fixed-rounds N` repeats the open-loop runs, interleaved.
`--servers c,c0` measures only some of them; `--rounds 3`
measures them three times, interleaved, and checks each one's median (a shared machine's
noise between two runs of the same server was ±15% here, more than the log costs).

The model: a scratch MLflow server and data DB in a temporary folder, `--rows` real rows
(COVERTYPE_SOURCE_DATA) stored through ingest, one LightGBM version trained by
`covertype.train` like the serving anchors' model (500 trees × 127 leaves × 7 classes on
~58k training rows; minutes on a busy machine: `--state DIR` keeps it for the next run).
`--trees N --leaves L` trains a smaller LightGBM instead (N rounds × 7 classes × L leaves,
its own `--state`): with a model that costs little, (d) against (a) is the ceiling of our
route itself (validation, metrics, the prediction log, the answer) on this machine.
`--tracking-uri URL --model NAME --version V` benchmarks an existing version instead.
Also measured in-process: one-row predict time of the served version (our record → class
path, the booster alone, the logged pipeline on a one-row DataFrame).

Targets at 8 connections, same workers for every server (`--workers`, default one per
core): (c) ≥ 10× (b)'s requests/s; (c) p99 ≤ 10 ms; (c) ≥ 70% of the model's limit
1 / (1/(a)'s req/s + predict time / workers); (d) ≥ 50% of (a)'s req/s, (d) p99 ≤ 5 ms,
(d)'s batch rows/s ≥ 4× (c)'s; `--lean-big RPS` ((e) on the big model, another run):
(d) on this run's model ≥ 2× it. Other load on the machine shows: the report
prints the load average before and after, and `--state` makes a rerun cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
from pydantic import create_model

import serve_shadow
from covertype import dataset, db, ingest, processes, schema
from covertype.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.servers import free_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ANCHOR = {"n_estimators": 500, "num_leaves": 127, "learning_rate": 0.1}  # trees per class
BODIES = 100
BENCH_KEY = "bench-serve-key-" + uuid.uuid4().hex

LUA = """
local bodies = {%(bodies)s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"%(headers)s},
    bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%.1f %%.1f\\n", summary.requests,
    summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------- anchor (a): the ceiling


# The record with plain pydantic types (module level: FastAPI resolves annotations here).
Row = create_model(
    "Row",
    **{name: (int, ...) for name in schema.NUMERIC},
    **{name: (str, ...) for name in schema.CATEGORICAL},
)


def bare_app():
    """FastAPI validating the record with plain pydantic types, answering a constant."""
    from fastapi import FastAPI

    app = FastAPI()
    answer = {"cover_type": 1, "cover_type_name": "Lodgepole Pine", "model_version": "0"}

    @app.post("/predict")
    async def predict(row: Row) -> dict:  # type: ignore[valid-type]
        return answer

    return app


# ---------------------------------------------------------------- processes


class Server(processes.Server):
    """A named server of the benchmark, in a session of its own, its log in a file."""

    def __init__(self, name: str, command: list[str], env: dict, log: Path, port: int,
                 cwd: Path | None = None):  # fmt: skip
        super().__init__(
            command, log, env=os.environ | env, cwd=cwd, url=f"http://127.0.0.1:{port}"
        )
        self.name = name
        # (dk) sends the key its server asks for; the others send none.
        self.headers = {"X-API-Key": BENCH_KEY} if env.get("COVERTYPE_AUTH") == "on" else {}

    def start(self, ready: str, timeout: float = 300) -> Server:
        super().start(ready, timeout)
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every process of the server's session so far."""
        total = 0.0
        processes = {p.pid: p for p in self.members()}
        with contextlib.suppress(psutil.Error):  # BentoML's workers leave the session
            processes |= {p.pid: p for p in psutil.Process(self.pid).children(recursive=True)}
        for process in processes.values():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total


@dataclass
class Run:
    """One server of the benchmark: how it starts on a port, what it is sent."""

    label: str
    command: Callable[[int], list[str]]  # port → command line
    env: dict
    ready: str
    path: str
    bodies: list[str]
    cwd: Path | None = None

    @property
    def key(self) -> str:
        return self.label.split()[0]


# ---------------------------------------------------------------- load


@dataclass
class InProcess:
    """Median one-row µs: (c)'s path and model, (d)'s path and model, the pipeline."""

    ours: float
    model: float
    new: float
    new_model: float
    pipeline: float


@dataclass
class Point:
    server: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float = float("nan")  # the server's processes' CPU per request
    client_cpu_us: float = float("nan")  # wrk's CPU per request


@dataclass
class Fixed:
    """An open-loop run at a fixed arrival rate (benchmarks/open_loop.py)."""

    server: str
    rate: float
    achieved: float
    p50_ms: float
    p99_ms: float
    errors: int
    dropped: int
    generator_cpu: float  # share of one core the generator used


def wrk(url: str, path: str, bodies: list[str], connections: int, seconds: int, tmp: Path,
        headers: dict[str, str] | None = None):  # fmt: skip
    """One wrk run; (answers/s with a 2xx or 3xx status, p50 ms, p99 ms, errors: socket +
    non-2xx; a server that sheds load answers errors fast, counted out of its rate)."""
    script = tmp / f"bench-{uuid.uuid4().hex[:6]}.lua"
    quoted = ", ".join(json.dumps(b) for b in bodies)  # JSON strings are valid Lua strings
    extra = "".join(f", [{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items())
    script.write_text(LUA % {"bodies": quoted, "path": path, "headers": extra})
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
         str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    requests, micros, socket_errors, status_errors, p50, p99 = line.split()[1:]
    return (
        (int(requests) - int(status_errors)) / (int(micros) / 1e6),
        float(p50) / 1000,
        float(p99) / 1000,
        int(socket_errors) + int(status_errors),
    )


def batch_records(frame, k: int) -> list[dict]:
    """The k-th 1,000 real rows before the single-row bodies, as records."""
    rows = frame.iloc[-BODIES - (k + 1) * 1000 : -BODIES - k * 1000]
    return [
        {name: (int(v) if name in schema.NUMERIC else str(v)) for name, v in row.items()}
        for row in rows[list(schema.FEATURES)].to_dict("records")
    ]


def measure_batch(server: Server, bodies: list[str], args, tmp: Path) -> Point:
    """/predict/batch of 1,000 records at 2 connections: rows/s in `rps`."""
    h = server.headers
    wrk(server.url, "/predict/batch", bodies, 2, 3, tmp, h)  # warm-up
    rps, p50, p99, errors = wrk(server.url, "/predict/batch", bodies, 2, args.batch_seconds, tmp, h)
    say(f"{server.name}: batch of 1,000: {rps * 1000:,.0f} rows/s, p50 {p50:.0f} ms")
    return Point(server.name, 2, rps * 1000, p50, p99, errors)


def measure(server: Server, path: str, bodies: list[str], args, tmp: Path,
            probe: serve_shadow.Probe | None = None) -> list[Point]:  # fmt: skip
    say(f"{server.name}: warm-up {args.warmup}s")
    wrk(server.url, path, bodies, 8, args.warmup, tmp, server.headers)
    points = []
    for c in args.connections:
        profiler = profile(server, args) if c == 8 and args.py_spy else None
        cpu_before = server.cpu_seconds()
        wrk_before = children_cpu()
        if probe is not None:
            probe.before(c)
        rps, p50, p99, errors = wrk(server.url, path, bodies, c, args.duration, tmp, server.headers)
        if profiler is not None:
            profiler.wait()
        requests = rps * args.duration
        server_us = (server.cpu_seconds() - cpu_before) / requests * 1e6
        client_us = (children_cpu() - wrk_before) / requests * 1e6
        say(
            f"{server.name}: {c} connections: {rps:,.0f} req/s, p50 {p50:.2f} ms, p99 "
            f"{p99:.2f} ms; CPU per request: server {server_us:.0f} µs, wrk {client_us:.0f} µs"
        )
        points.append(Point(server.name, c, rps, p50, p99, errors, server_us, client_us))
        if probe is not None:
            probe.after(points[-1])
    return points


def profile(server: Server, args) -> subprocess.Popen:
    """py-spy on the busiest process of the server (a worker) while it is loaded: its
    stacks (collapsed; non-blocking, so a C call shows as its Python caller) into `--state`
    or the current folder."""
    busiest = max(server.members(), key=lambda p: sum(p.cpu_times()[:2]))
    folder = Path(args.state) if args.state else Path.cwd()
    out = folder / f"py-spy-{server.name.split()[0].strip('()')}-{uuid.uuid4().hex[:4]}.txt"
    say(f"{server.name}: py-spy on pid {busiest.pid} into {out}")
    return subprocess.Popen(
        [args.py_spy, "record", "--pid", str(busiest.pid), "--duration",
         str(max(1, args.duration - 2)), "--rate", "200", "--format", "raw",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_fixed(server: Server, path: str, bodies: list[str], rate: float, args,
                  tmp: Path) -> Fixed:  # fmt: skip
    """The open-loop generator at `rate` requests/s for `--fixed-seconds`."""
    file = tmp / f"bodies-{uuid.uuid4().hex[:6]}.json"
    file.write_text(json.dumps(bodies))
    headers = [x for k, v in server.headers.items() for x in ("--header", f"{k}: {v}")]
    done = subprocess.run(
        [sys.executable, str(HERE / "open_loop.py"), "--url", server.url, "--path", path,
         "--bodies", str(file), "--rate", f"{rate:.1f}", "--duration", str(args.fixed_seconds),
         *headers],
        capture_output=True, text=True, timeout=args.fixed_seconds + 120, check=True,
    )  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    fixed = Fixed(server.name, rate, out["achieved"], out["p50_ms"], out["p99_ms"],
                  out["errors"], out["dropped"], out["cpu_share"])  # fmt: skip
    say(
        f"{server.name}: {rate:,.0f} req/s offered: {fixed.achieved:,.0f} answered/s, p50 "
        f"{fixed.p50_ms:.2f} ms, p99 {fixed.p99_ms:.2f} ms, errors {fixed.errors}, dropped "
        f"{fixed.dropped}; generator {fixed.generator_cpu:.0%} of a core"
    )
    return fixed


# ---------------------------------------------------------------- the model


def prepare_model(args, tmp: Path, frame) -> tuple[str, str, str, Server | None]:
    """(tracking URI, model name, version, the scratch MLflow server or None). With
    `--state DIR` the scratch registry lives there and a second run reuses its model."""
    if args.tracking_uri:
        return args.tracking_uri, args.model, args.version, None
    from covertype.train import train

    state = Path(args.state).resolve() if args.state else tmp
    state.mkdir(parents=True, exist_ok=True)
    home, done = state / "home", state / "trained.json"
    port = free_port()
    mlflow_server = Server(
        "mlflow",
        [str(BIN / "covertype"), "mlflow", "--port", str(port)],
        {"COVERTYPE_HOME": str(home), "COVERTYPE_AUTH": "off"},  # a scratch registry
        tmp / "mlflow.log",
        port,
    ).start("/health")
    if done.is_file():
        trained = json.loads(done.read_text())
        if (
            trained.get("trees", ANCHOR["n_estimators"]) != args.trees
            or trained.get("leaves", ANCHOR["num_leaves"]) != args.leaves
        ):
            sys.exit(f"{state} holds a model of other --trees/--leaves: use another --state")
        say(f"reusing {trained['model']} version {trained['version']} from {state}")
        return mlflow_server.url, trained["model"], trained["version"], mlflow_server
    settings = Settings.from_env(
        {
            "COVERTYPE_HOME": home,
            "COVERTYPE_DATA_DB_URL": f"sqlite:///{state / 'data.db'}",
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": "covertype-bench",
            "COVERTYPE_EXPERIMENT_NAME": "covertype-bench",
            "COVERTYPE_SERVE_BUDGET_US": 0,  # the model asked for, whatever it costs
        }
    )
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    course = dataset.to_course_rows(frame.iloc[: args.rows])
    for b, part in enumerate(np.array_split(np.arange(len(course)), 3), 1):
        ingest.store_batch(engine, ingest.Batch(7, b, [course[i] for i in part]))
    engine.dispose()
    params = ANCHOR | {"n_estimators": args.trees, "num_leaves": args.leaves}
    say(f"training LightGBM {params} on {args.rows:,} stored rows ...")
    started = time.perf_counter()
    result = train(settings, candidates=[("lightgbm", params)])
    say(f"version {result.version} trained in {time.perf_counter() - started:.0f}s")
    done.write_text(
        json.dumps(
            {
                "model": settings.mlflow.model_name,
                "version": result.version,
                "trees": args.trees,
                "leaves": args.leaves,
            }
        )
    )
    return mlflow_server.url, settings.mlflow.model_name, result.version, mlflow_server


def key_check_us(calls: int = 100_000) -> tuple[float, float]:
    """µs per request of the API's key middleware around a no-op app, and of the no-op."""
    import asyncio

    from covertype.serve.api_keys import ApiKeys

    async def app(scope, receive, send) -> None:
        return None

    keys = (f"other-key-{'1' * 16}", f"other-key-{'2' * 16}", BENCH_KEY)
    guarded = ApiKeys(app, keys=keys, metrics_key=None)
    headers = [(b"host", b"127.0.0.1:8085"), (b"content-type", b"application/json"),
               (b"content-length", b"320"), (b"x-api-key", BENCH_KEY.encode())]  # fmt: skip
    scope = {"type": "http", "path": "/predict", "headers": headers}

    async def run(target) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await target(scope, None, None)
        return (time.perf_counter() - started) / calls * 1e6

    def median(target) -> float:
        return statistics.median(asyncio.run(run(target)) for _ in range(5))

    return median(guarded), median(app)


def in_process(tracking_uri: str, name: str, version: str, records: list[dict], tmp: Path):
    """Median one-row predict times (µs): ours, the booster alone, the logged pipeline."""
    import mlflow
    import mlflow.artifacts
    from threadpoolctl import threadpool_limits

    from covertype.serve.model_files import load_pipeline
    from covertype.serve.predictor_choice import compile_predictor
    from covertype.serve.predictors import FastPredictor, records_frame

    threadpool_limits(1)
    mlflow.set_tracking_uri(tracking_uri)  # models:/ resolves through the global registry URI
    mlflow.set_registry_uri(tracking_uri)
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{name}/{version}",
        dst_path=str(tmp / "model"),
        tracking_uri=tracking_uri,
        registry_uri=tracking_uri,
    )
    pipeline = load_pipeline(Path(folder))
    fast = FastPredictor(pipeline)
    frames = [records_frame([r]) for r in records]
    matrices = [fast.encode([r]) for r in records]

    def median_us(call, n: int) -> float:
        times = []
        for i in range(n):
            started = time.perf_counter()
            call(i % len(records))
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    served, note = compile_predictor(pipeline)
    say(f"served predictor: {served.kind} ({note or 'no note'})")
    for i in range(50):  # warm caches
        fast.classify_one(records[i % len(records)])
        served.classify_one(records[i % len(records)])
    ours = median_us(lambda i: fast.classify_one(records[i]), 2000)
    model = median_us(lambda i: fast.model.predict_proba(matrices[i]), 2000)
    new = median_us(lambda i: served.classify_one(records[i]), 2000)
    new_model = median_us(lambda i: served.model.predict_proba(matrices[i]), 2000)
    whole = median_us(lambda i: pipeline.predict(frames[i]), 300)
    estimator = pipeline.steps[-1][1]
    if hasattr(estimator, "booster_"):
        size = f", {estimator.booster_.num_trees()} trees"
    elif hasattr(estimator, "estimators_"):
        size = f", {len(estimator.estimators_)} trees"
    else:
        size = ""
    kind = f"{type(estimator).__name__}{size}; (d) predictor {served.kind}"
    return InProcess(ours, model, new, new_model, whole), kind, Path(folder), fast


def peer_runs(args, wanted: set[str], tmp: Path, model_dir: Path, fast, records) -> list[Run]:
    """(p1) BentoML and (p2) MLServer on the served pipeline's booster, each installed in a
    virtualenv of its own (benchmarks/serve_peers.py), fed the encoded rows."""
    import serve_peers

    folder = tmp / "peers"
    folder.mkdir(exist_ok=True)
    model_file = folder / "booster.txt"
    fast.model.booster.save_model(str(model_file))
    rows = fast.encode(records).tolist()
    if args.state:  # for benchmarks/predict_loop.py (cachegrind) and the peers by hand
        shutil.copy(model_file, Path(args.state) / "booster.txt")
        (Path(args.state) / "rows.json").write_text(json.dumps(rows))
    runs = []
    if "(p1)" in wanted:
        bento_python, _, version = serve_peers.ensure_venv("bentoml", say)

        def bento(port: int) -> list[str]:
            return serve_peers.bentoml_peer(
                bento_python, folder / "bentoml", model_file, rows, args.workers, port
            ).command

        peer = serve_peers.bentoml_peer(bento_python, folder / "bentoml", model_file, rows,
                                        args.workers, 0)  # fmt: skip
        env = peer.env | {"BENTOML_HOME": str(folder / "bentoml-home")}
        label = peer.label.replace("BentoML", f"BentoML {version}")
        runs.append(Run(label, bento, env, peer.ready, peer.path, peer.bodies, peer.cwd))
    if "(p2)" in wanted:
        python, _, version = serve_peers.ensure_venv("mlserver", say)

        def mlserver(port: int) -> list[str]:
            return serve_peers.mlserver_peer(
                python, folder / "mlserver", model_file, rows, args.workers,
                (port, free_port(), free_port()),
            ).command  # fmt: skip

        peer = serve_peers.mlserver_peer(python, folder / "mlserver", model_file, rows,
                                         args.workers, (0, 0, 0))  # fmt: skip
        label = peer.label.replace("MLServer", f"MLServer {version}")
        runs.append(Run(label, mlserver, peer.env, peer.ready, peer.path, peer.bodies, peer.cwd))
    return runs


def medians_at_8(points: list[Point]) -> dict[str, Point]:
    """Per server, its median point (by req/s) at 8 connections over the rounds."""
    by_server: dict[str, list[Point]] = {}
    for p in points:
        if p.connections == 8:
            by_server.setdefault(p.server.split()[0], []).append(p)
    return {key: sorted(ps, key=lambda p: p.rps)[len(ps) // 2] for key, ps in by_server.items()}


# ---------------------------------------------------------------- main


def say(line: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {line}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes of every server [one per core]",
    )
    parser.add_argument("--duration", type=int, default=30, help="seconds measured per point")
    parser.add_argument("--warmup", type=int, default=10, help="seconds of warm-up per server")
    parser.add_argument(
        "--batch-seconds", type=int, default=10, help="seconds of /predict/batch load"
    )
    parser.add_argument("--connections", default="1,8,32", help="comma-separated")
    parser.add_argument(
        "--servers",
        default="a,b,c,c0,d,dk,ds10,ds100,e,p1,p2",
        help="which of (a), (b), (c), (c0), (d), (d0), (dk), (ds10), (ds100), (e), (e1), "
        "(p1), (p2) to measure",
    )
    parser.add_argument("--rows", type=int, default=90_000, help="rows stored to train on")
    parser.add_argument(
        "--trees", type=int, default=ANCHOR["n_estimators"], help="boosting rounds to train"
    )
    parser.add_argument(
        "--leaves", type=int, default=ANCHOR["num_leaves"], help="leaves per tree to train"
    )
    parser.add_argument("--tracking-uri", help="benchmark an existing version instead")
    parser.add_argument("--model", default="covertype")
    parser.add_argument("--version")
    parser.add_argument(
        "--access-log", choices=["all", "errors", "off"], help="(c)'s access log [settings]"
    )
    parser.add_argument("--state", help="keep the scratch registry here; a rerun reuses it")
    parser.add_argument(
        "--fixed-seconds",
        type=int,
        default=20,
        help="seconds of open-loop load at a fixed rate per server (0: none)",
    )
    parser.add_argument(
        "--fixed-rounds",
        type=int,
        default=1,
        help="open-loop runs of each server, interleaved (the shadow cases' medians)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="the fixed rate, requests/s [half of the slowest server's median maximum]",
    )
    parser.add_argument(
        "--lean-big",
        type=float,
        help="(e)'s req/s on the big model (another run): checks (d) here ≥ 2× it",
    )
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument(
        "--py-spy", help="path of py-spy: profile a worker of each server at 8 connections"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the servers this many times, interleaved; checks use each one's median",
    )
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    if args.tracking_uri and not args.version:
        parser.error("--tracking-uri needs --version")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu)")

    settings = Settings()
    frame = dataset.load_dataset(settings)
    sample = frame.iloc[-BODIES:]  # real rows the model did not train on
    records = [
        {name: (int(v) if name in schema.NUMERIC else str(v)) for name, v in row.items()}
        for row in sample[list(schema.FEATURES)].to_dict("records")
    ]
    ours_bodies = [json.dumps(r) for r in records]
    mlflow_bodies = [json.dumps({"dataframe_records": [r]}) for r in records]
    load_before = os.getloadavg()

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    servers: list[Server] = []
    challenger: serve_shadow.Challenger | None = None
    try:
        uri, name, version, scratch = prepare_model(args, tmp, frame)
        if scratch:
            servers.append(scratch)
        timing, model_kind, model_dir, fast = in_process(uri, name, version, records, tmp)
        say(f"in-process one-row: (c) {timing.ours:.0f} µs, (d) {timing.new:.0f} µs")
        batch_bodies = [json.dumps(batch_records(frame, k)) for k in range(3)]

        w = str(args.workers)
        common = {"MLFLOW_TRACKING_URI": uri}
        # Every covertype serve: the champion, the workers; each run adds its home and switches.
        serve_env = common | {
            "COVERTYPE_MODEL_NAME": name,
            "COVERTYPE_MODEL_ALIAS": "champion",
            "COVERTYPE_SERVE_WORKERS": w,
            "COVERTYPE_AUTH": "off",
        }
        covertype = [str(BIN / "covertype"), "serve"]

        def ported(command: list[str]) -> Callable[[int], list[str]]:
            return lambda port: [*command, "--port", str(port)]

        def lean(workers: str) -> Callable[[int], list[str]]:
            return ported(
                [str(BIN / "uvicorn"), "--factory", "lean_app:create_app", "--app-dir",
                 str(HERE), "--workers", workers, "--no-access-log", "--log-level", "warning"]
            )  # fmt: skip

        lean_env = {"LEAN_MODEL_DIR": str(model_dir), "LEAN_MODEL_VERSION": str(version)}
        runs = [
            Run(
                "(a) bare FastAPI, constant",
                ported([str(BIN / "uvicorn"), "--factory", "bench_serve:bare_app", "--app-dir",
                        str(HERE), "--workers", w, "--no-access-log", "--log-level", "warning"]),
                {}, "/openapi.json", "/predict", ours_bodies,
            ),
            Run(
                "(b) mlflow models serve",
                ported([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}/{version}",
                        "--env-manager", "local", "--workers", w, "-h", "127.0.0.1"]),
                common, "/ping", "/invocations", mlflow_bodies,
            ),
            Run(
                "(c) covertype serve /predict",
                ported(covertype),
                serve_env | {
                    "COVERTYPE_HOME": str(tmp / "serve-home"),
                    "COVERTYPE_SERVE_PREDICTOR": "fast",
                },
                "/ready", "/predict", ours_bodies,
            ),
            Run(
                "(c0) covertype serve /predict, prediction log off",
                ported(covertype),
                serve_env | {
                    "COVERTYPE_HOME": str(tmp / "serve-home-off"),
                    "COVERTYPE_PREDICTION_LOG": "off",
                    "COVERTYPE_SERVE_PREDICTOR": "fast",
                },
                "/ready", "/predict", ours_bodies,
            ),
            Run(
                "(d) covertype serve /predict, served path",
                ported(covertype),
                serve_env | {
                    "COVERTYPE_HOME": str(tmp / "serve-home-d"),
                    "COVERTYPE_CHALLENGER_ALIAS": serve_shadow.NO_CHALLENGER,  # shadow off
                },
                "/ready", "/predict", ours_bodies,
            ),
            Run(
                "(d0) covertype serve /predict, served path, prediction log off",
                ported(covertype),
                serve_env | {
                    "COVERTYPE_HOME": str(tmp / "serve-home-d0"),
                    "COVERTYPE_PREDICTION_LOG": "off",
                },
                "/ready", "/predict", ours_bodies,
            ),
            Run(
                "(dk) covertype serve /predict, served path, API keys on",
                ported(covertype),
                serve_env | {
                    "COVERTYPE_HOME": str(tmp / "serve-home-dk"),
                    "COVERTYPE_AUTH": "on",
                    # Three keys: the one sent is the last compared.
                    "COVERTYPE_API_KEYS": f"other-key-{'1' * 16},other-key-{'2' * 16},{BENCH_KEY}",
                },
                "/ready", "/predict", ours_bodies,
            ),
            Run(
                "(e) lean FastAPI + the one-row C API",
                lean(w), lean_env, "/ready", "/predict", ours_bodies,
            ),
            Run(
                f"(e1) lean, 1 process, predicts on {w} threads",
                lean("1"), lean_env | {"LEAN_THREADS": w}, "/ready", "/predict", ours_bodies,
            ),
        ]  # fmt: skip
        wanted = {f"({key})" for key in args.servers.split(",")}
        if wanted & serve_shadow.CASES.keys():  # (d) beside them: shadow off, their anchor
            wanted.add(serve_shadow.ANCHOR)
            challenger = serve_shadow.name_challenger(uri, name, version, scratch is not None)
            say(f"challenger: version {challenger.version} as @{challenger.alias}")
            runs += [
                Run(
                    f"{case} covertype serve /predict, served path, shadow {share:.0%}",
                    ported(covertype),
                    serve_env | {
                        "COVERTYPE_HOME": str(tmp / "serve-home-shadow"),
                        "COVERTYPE_CHALLENGER_ALIAS": challenger.alias,
                        "COVERTYPE_SHADOW_SHARE": str(share),
                    },
                    "/ready", "/predict", ours_bodies,
                )
                for case, share in serve_shadow.CASES.items()
            ]  # fmt: skip
        if wanted & {"(p1)", "(p2)"}:
            runs += peer_runs(args, wanted, tmp, model_dir, fast, records)
        if args.access_log:
            runs[2].env["COVERTYPE_SERVE_ACCESS_LOG"] = args.access_log
        if args.tracking_uri:  # an existing version: serve exactly it through an alias
            from mlflow import MlflowClient

            alias = "bench-" + uuid.uuid4().hex[:6]
            MlflowClient(uri, registry_uri=uri).set_registered_model_alias(name, alias, version)
            for run in runs:
                if "COVERTYPE_MODEL_ALIAS" in run.env:  # every covertype serve
                    run.env["COVERTYPE_MODEL_ALIAS"] = alias
        points: list[Point] = []
        batches: list[Point] = []  # rps in rows/s
        fixed: list[Fixed] = []
        shadow_points: list[serve_shadow.ShadowPoint] = []
        ready_s: dict[str, list[float]] = {}
        chosen = [run for run in runs if run.key in wanted]

        def started(run: Run) -> Server:
            port = free_port()
            server = Server(run.label, run.command(port), run.env, tmp / f"{port}.log", port,
                            run.cwd)  # fmt: skip
            servers.append(server)
            begun = time.perf_counter()
            server.start(run.ready)
            if run.key in serve_shadow.CASES:  # measured once every worker shadows
                serve_shadow.wait_for_challenger(server.url, challenger, args.workers)
            ready_s.setdefault(run.key, []).append(time.perf_counter() - begun)
            return server

        shadowing = bool(wanted & serve_shadow.CASES.keys())
        for run in chosen * args.rounds:
            server = started(run)
            probe = None
            if shadowing and run.key in (serve_shadow.ANCHOR, *serve_shadow.CASES):
                data_db = Settings.from_env(os.environ | run.env).data_db
                probe = serve_shadow.Probe(run.key, server.url, data_db, args.duration)
            try:
                points += measure(server, run.path, run.bodies, args, tmp, probe)
                if run.key in ("(c)", "(d)") and args.batch_seconds:
                    batches.append(measure_batch(server, batch_bodies, args, tmp))
            finally:
                server.stop()
            if probe is not None:  # the prediction log flushed at the stop
                shadow_points += probe.finish()
        if args.fixed_seconds:
            # The fixed arrival rate every server sustains: half the slowest one's maximum.
            at8 = medians_at_8(points)
            rate = args.rate or 0.5 * min(p.rps for p in at8.values())
            say(f"fixed-rate load: {rate:,.0f} req/s (open loop), {args.fixed_seconds}s each")
            for run in chosen * args.fixed_rounds:
                server = started(run)
                try:
                    wrk(server.url, run.path, run.bodies, 8, args.warmup, tmp, server.headers)
                    fixed.append(measure_fixed(server, run.path, run.bodies, rate, args, tmp))
                    own = 0.5 * at8[run.key].rps if run.key in at8 else 0
                    if run.key in ("(d)", "(e)") and own > rate:  # half of its own maximum
                        fixed.append(measure_fixed(server, run.path, run.bodies, own, args, tmp))
                finally:
                    server.stop()
    finally:
        if challenger is not None:  # while the registry still runs (a scratch one stops next)
            try:
                serve_shadow.forget_challenger(uri, name, challenger, scratch is not None)
            except Exception as error:
                say(f"could not remove @{challenger.alias}: {error}")
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    report(points, batches, fixed, ready_s, args, timing, model_kind, load_before, version)
    serve_shadow.report(shadow_points, fixed, args.workers)
    if args.json and shadow_points:
        saved = json.loads(Path(args.json).read_text())
        saved["shadow"] = [asdict(p) for p in shadow_points]
        Path(args.json).write_text(json.dumps(saved, indent=1))


def budget_checks(at8: dict[str, Point], fixed: list[Fixed], args) -> None:
    """The serving budget's targets: (d) against the lean path (e), the bare stack (a),
    the peers, at 8 connections and at the fixed rate."""
    if "(d)" not in at8:
        return
    d = at8["(d)"]
    checks = []
    if "(e)" in at8:
        e = at8["(e)"]
        checks.append(
            (f"(d) {d.rps:,.0f} req/s = {d.rps / e.rps:.0%} of the lean path (e) {e.rps:,.0f}",
             "≥ 90%", d.rps >= 0.9 * e.rps)
        )  # fmt: skip
    if "(a)" in at8:
        a = at8["(a)"]
        print(f"\n  (d)/(a) = {d.rps / a.rps:.0%} ({d.rps:,.0f} / {a.rps:,.0f} req/s)")
    if args.lean_big:
        checks.append(
            (f"(d) {d.rps:,.0f} req/s = {d.rps / args.lean_big:.1f}× the lean path on the big "
             f"model ({args.lean_big:,.0f})", "≥ 2×", d.rps >= 2 * args.lean_big)
        )  # fmt: skip
    for key in ("(b)", "(p1)", "(p2)"):
        if key in at8:
            peer = at8[key]
            checks.append(
                (f"(d) / {peer.server} = {d.rps / peer.rps:.1f}× ({peer.rps:,.0f} req/s)",
                 "≥ 5×", d.rps >= 5 * peer.rps)
            )  # fmt: skip
    common = {f.server.split()[0]: f for f in fixed if f.rate == min(x.rate for x in fixed)}
    if "(d)" in common:
        ours = common["(d)"]
        for key, f in common.items():
            if key in ("(b)", "(p1)", "(p2)"):
                checks.append(
                    (f"at {ours.rate:,.0f} req/s: (d) p99 {ours.p99_ms:.2f} ms vs {f.server} "
                     f"{f.p99_ms:.2f} ms", "lower", ours.p99_ms < f.p99_ms)
                )  # fmt: skip
    for f in fixed:  # its own half: a run of its own, or the common rate when (d) is slowest
        if f.server.startswith("(d)") and abs(f.rate - d.rps / 2) < 0.01 * d.rps:
            checks.append(
                (f"(d) p99 at half its own maximum ({f.rate:,.0f} req/s offered, "
                 f"{f.achieved:,.0f} answered/s) = {f.p99_ms:.2f} ms", "≤ 10 ms",
                 f.p99_ms <= 10 and f.errors == 0)
            )  # fmt: skip
    print("\nServing budget (8 connections, medians; fixed rate: open loop):")
    for text, target, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text} (target {target})")


def report(points, batches, fixed, ready_s, args, timing, model_kind, load_before, version):
    ours_us = timing.ours
    load_after = os.getloadavg()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0]
    print()
    print(
        f"covertype serve benchmark, {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores "
        f"({platform.machine()}), load average {load_before[0]:.1f} before / "
        f"{load_after[0]:.1f} after; {wrk_version.strip()}, 1 thread, {args.warmup} s warm-up "
        f"per server, {args.duration} s per point, bodies cycling over {BODIES} real rows; "
        f"{args.workers} worker(s) per server; model version {version}: {model_kind}"
    )
    print()
    print(
        "| server | conns | req/s | p50 ms | p99 ms | errors | server CPU µs/req | server cores "
        "| wrk CPU µs/req |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in points:
        # cores: well under the workers' count, the connections landed unevenly on them
        print(
            f"| {p.server} | {p.connections} | {p.rps:,.0f} | {p.p50_ms:.2f} | "
            f"{p.p99_ms:.2f} | {p.errors} | {p.server_cpu_us:.0f} | "
            f"{p.rps * p.server_cpu_us / 1e6:.2f} | {p.client_cpu_us:.0f} |"
        )
    print()
    if fixed:
        print(
            "| server, open loop (benchmarks/open_loop.py) | offered req/s | answered/s | "
            "p50 ms | p99 ms | errors | dropped | generator CPU |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for f in fixed:
            print(
                f"| {f.server} | {f.rate:,.0f} | {f.achieved:,.0f} | {f.p50_ms:.2f} | "
                f"{f.p99_ms:.2f} | {f.errors} | {f.dropped} | {f.generator_cpu:.0%} of a core |"
            )
        print()
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "points": [asdict(p) for p in points],
                    "fixed": [asdict(f) for f in fixed],
                    "batches": [asdict(b) for b in batches],
                    "timing": asdict(timing),
                    "model": model_kind,
                    "load": [load_before[0], load_after[0]],
                },
                indent=1,
            )
        )
    if batches:
        print("| server | /predict/batch of 1,000, 2 conns: rows/s | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|")
        for p in batches:
            print(f"| {p.server} | {p.rps:,.0f} | {p.p50_ms:.0f} | {p.p99_ms:.0f} | {p.errors} |")
        print()
    print(
        "Seconds from start to /ready (model load, ONNX conversion on (d)'s first start): "
        + "; ".join(f"{k} " + ", ".join(f"{t:.1f}" for t in ts) for k, ts in ready_s.items())
    )
    print(
        f"In-process one-row predict (median of 2,000 calls), record → class and "
        f"probabilities: (c) {timing.ours:.0f} µs, its model alone (booster on a ready row) "
        f"{timing.model:.0f} µs; (d) {timing.new:.0f} µs, its model alone "
        f"{timing.new_model:.0f} µs; the logged pipeline on a one-row DataFrame "
        f"{timing.pipeline / 1000:.2f} ms."
    )
    with_key, without = key_check_us()
    print(
        f"In-process API key check ((dk)'s middleware, 3 keys, the last one sent; median of 5 "
        f"runs of 100,000 calls): {with_key - without:.2f} µs per request over a bare ASGI call "
        f"({without:.2f} µs)."
    )
    at8 = medians_at_8(points)
    if args.rounds > 1:
        print(f"\nChecks on each server's median of {args.rounds} rounds at 8 connections.")
        print("\n| server | median req/s | p50 ms | p99 ms | server CPU µs/req |")
        print("|---|---:|---:|---:|---:|")
        for p in at8.values():
            print(
                f"| {p.server} | {p.rps:,.0f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | "
                f"{p.server_cpu_us:.0f} |"
            )
    budget_checks(at8, fixed, args)
    if {"(c)", "(c0)"} <= set(at8):
        on, off = at8["(c)"], at8["(c0)"]
        verdict = "PASS" if on.rps >= 0.9 * off.rps else "FAIL"
        print(
            f"\n  {verdict}  prediction log on: {on.rps:,.0f} req/s = {on.rps / off.rps:.0%} of "
            f"off ({off.rps:,.0f}) at 8 connections (target ≥ 90%)"
        )
    if {"(d)", "(dk)"} <= set(at8):
        on, off = at8["(dk)"], at8["(d)"]
        verdict = "PASS" if on.rps >= 0.95 * off.rps else "FAIL"
        print(
            f"\n  {verdict}  API keys on: {on.rps:,.0f} req/s = {on.rps / off.rps:.0%} of "
            f"off ({off.rps:,.0f}) at 8 connections (target ≥ 95%)"
        )
    if not {"(a)", "(b)", "(c)"} <= set(at8):
        return
    a, b, c = at8["(a)"], at8["(b)"], at8["(c)"]
    parallel = min(args.workers, os.cpu_count() or 1)
    limit = 1 / (1 / a.rps + ours_us / 1e6 / parallel)
    checks = [
        (f"(c) / (b) requests/s = {c.rps / b.rps:.1f}×", "≥ 10×", c.rps >= 10 * b.rps),
        (f"(c) p99 = {c.p99_ms:.2f} ms", "≤ 10 ms", c.p99_ms <= 10),
        (
            f"model limit 1 / (1/{a.rps:,.0f} + {ours_us:.0f} µs/{parallel}) = {limit:,.0f} "
            f"req/s; (c) = {c.rps / limit:.0%} of it",
            "≥ 70%",
            c.rps >= 0.7 * limit,
        ),
    ]
    if "(d)" in at8:
        d = at8["(d)"]
        checks += [
            (f"(d) = {d.rps / a.rps:.0%} of (a)'s req/s", "≥ 50%", d.rps >= 0.5 * a.rps),
            (f"(d) p99 = {d.p99_ms:.2f} ms", "≤ 5 ms", d.p99_ms <= 5),
        ]
    rows = {}
    for p in batches:
        rows.setdefault(p.server.split()[0], []).append(p.rps)
    if {"(c)", "(d)"} <= set(rows):
        old, new = (statistics.median(rows[k]) for k in ("(c)", "(d)"))
        checks.append(
            (f"(d) batch {new:,.0f} rows/s = {new / old:.1f}× (c)'s {old:,.0f}", "≥ 4×",
             new >= 4 * old)
        )  # fmt: skip
    print()
    print("Targets at 8 connections:")
    for text, target, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text} (target {target})")


if __name__ == "__main__":
    main()
