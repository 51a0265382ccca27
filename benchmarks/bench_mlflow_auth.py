"""What MLflow's authentication costs the platform's calls: auth off, on without its
credential cache, on with the cache (COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS), side by side.

    .venv/bin/python benchmarks/bench_mlflow_auth.py              # ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_mlflow_auth.py --workers 2 --seconds 5

Three `covertype mlflow` servers (SQLite store and user DB, artifacts in a folder, proxied),
started one at a time in a temporary folder, `--workers` workers each: COVERTYPE_AUTH=off;
on with the cache 0 (a PBKDF2 password hash on every request); on with `--cache` seconds.
On each, as the training user (anonymous when off): a tiny scikit-learn model logged,
registered and made `champion`; then each call below repeated for `--seconds` by the real
MLflow client, in one thread (its latency) and, for the alias lookup, in `--threads` threads
(the server's throughput, CPU-bound when every request hashes):

  serving path   get_model_version_by_alias; the champion's artifacts downloaded
                 (models:/name@champion, 5 files: MLmodel, the model, its environments)
  training path  create_run; log_metric; log_batch of 10 metrics

The table: calls per second (and ms per call) per server, and on/off ratios. The issue's
figure for MLflow 2.x was 40-90× slower without the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.servers import start_mlflow

TRAIN = ("covertype-train", "train-password-for-bench")
AUTH_ENV = {
    "COVERTYPE_AUTH": "on",
    "COVERTYPE_MLFLOW_ADMIN_PASSWORD": "admin-password-for-bench",
    "COVERTYPE_MLFLOW_TRAIN_PASSWORD": TRAIN[1],
    "COVERTYPE_MLFLOW_SERVE_PASSWORD": "serve-password-for-bench",
}
MODEL = "bench-model"


@contextlib.contextmanager
def credentials(user: tuple[str, str] | None):
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.pop(name, None) for name in names}
    if user:
        os.environ.update(zip(names, user, strict=True))
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def prepare(url: str) -> str:
    """An experiment and a champion of a tiny model; returns the experiment id."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(url)
    experiment = mlflow.set_experiment("bench").experiment_id
    rng = np.random.default_rng(0)
    with mlflow.start_run():
        model = LogisticRegression().fit(rng.random((40, 3)), [0, 1] * 20)
        info = mlflow.sklearn.log_model(model, name="model")
    version = mlflow.register_model(info.model_uri, MODEL).version
    mlflow.MlflowClient(url).set_registered_model_alias(MODEL, "champion", version)
    return experiment


def rate(call, seconds: float, threads: int = 1) -> tuple[float, float]:
    """(calls per second, ms per call) of `call` repeated for `seconds` in `threads`."""
    for _ in range(3):
        call()  # warm: connections, the cache entry
    counts = [0] * threads
    deadline = time.monotonic() + seconds

    def loop(k: int) -> None:
        while time.monotonic() < deadline:
            call()
            counts[k] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    total = sum(counts)
    return total / elapsed, 1000 * elapsed * threads / max(total, 1)


def measure(url: str, seconds: float, threads: int, scratch: Path) -> dict[str, tuple]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    experiment = prepare(url)
    client = MlflowClient(url)
    run_id = client.create_run(experiment).info.run_id
    step = iter(range(10**9))

    def download():
        target = tempfile.mkdtemp(dir=scratch)
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion", dst_path=target)

    def log_batch():
        now, k = int(time.time() * 1000), next(step)
        client.log_batch(run_id, metrics=[Metric(f"m{i}", 0.5, now, k) for i in range(10)])

    calls = {
        "serve: get_model_version_by_alias": (
            lambda: client.get_model_version_by_alias(MODEL, "champion"),
            1,
        ),
        f"serve: get_model_version_by_alias ×{threads} threads": (
            lambda: client.get_model_version_by_alias(MODEL, "champion"),
            threads,
        ),
        "serve: download the champion (5 files)": (download, 1),
        "train: create_run": (lambda: client.create_run(experiment), 1),
        "train: log_metric": (lambda: client.log_metric(run_id, "loss", 0.1, step=next(step)), 1),
        "train: log_batch (10 metrics)": (log_batch, 1),
    }
    return {name: rate(call, seconds, n) for name, (call, n) in calls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per call and server")
    parser.add_argument("--workers", type=int, default=1, help="MLflow server workers")
    parser.add_argument("--threads", type=int, default=4, help="client threads, alias lookup")
    parser.add_argument("--cache", type=int, default=60, help="cache seconds of the 3rd server")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    servers = {
        "auth off": ({"COVERTYPE_AUTH": "off"}, None),
        "on, cache 0": (AUTH_ENV | {"COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS": "0"}, TRAIN),
        f"on, cache {args.cache} s": (
            AUTH_ENV | {"COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS": str(args.cache)},
            TRAIN,
        ),
    }
    results: dict[str, dict[str, tuple]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-auth-") as folder:
        for label, (env, user) in servers.items():
            tmp = Path(folder) / label.replace(" ", "-").replace(",", "")
            env = env | {"COVERTYPE_MLFLOW_WORKERS": str(args.workers)}
            server = start_mlflow(tmp, env)
            try:
                with credentials(user):
                    print(f"measuring {label} ({server.url}) …", file=sys.stderr)
                    results[label] = measure(server.url, args.seconds, args.threads, tmp)
            finally:
                server.stop()
    load_after = os.getloadavg()

    labels = list(servers)
    calls = list(results[labels[0]])
    width = max(len(c) for c in calls)
    print(
        f"\nMLflow auth cost: {platform.node()}, {os.cpu_count()} cores, {args.workers} "
        f"worker(s), {args.seconds:g} s per call; load average {load_before[0]:.2f} → "
        f"{load_after[0]:.2f}\n"
    )
    header = f"{'call':<{width}}  " + "  ".join(f"{label:>18}" for label in labels)
    header += "  " + "  ".join(f"{'off / ' + label.split(', ')[1]:>14}" for label in labels[1:])
    print(header)
    print("-" * len(header))
    for call in calls:
        cells = [results[label][call] for label in labels]
        row = f"{call:<{width}}  " + "  ".join(
            f"{per_s:8.1f}/s {ms:6.1f} ms" for per_s, ms in cells
        )
        row += "  " + "  ".join(f"{cells[0][0] / cell[0]:13.2f}×" for cell in cells[1:])
        print(row)
    print("\n(x/s: calls per second; ms: per call, per thread; off / on: how many times slower)")


if __name__ == "__main__":
    main()
