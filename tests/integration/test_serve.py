"""The inference API as users see it: a real `covertype serve` process, a real MLflow server,
models really trained by `covertype.train`, real HTTP.

What needs no process or registry (records and 422 messages, batches, the OpenAPI document,
the fast path on in-memory pipelines) is in tests/unit/test_api.py and test_fast_path.py.

Each test serves its own alias of one shared registered model (three versions: LightGBM,
extra trees, SVM), so moving an alias in one test never disturbs another.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from covertype import schema
from covertype.serve.model_files import load_pipeline
from covertype.serve.onnx_trees import ONNX_TOLERANCE
from covertype.serve.predictor_choice import EXACT, compile_predictor
from covertype.serve.records import EXAMPLE
from covertype.train import train
from tests.support.data import fill_data_db, records_of, training_frame, training_settings
from tests.support.environment import BIN, clean_env
from tests.support.servers import (
    ServerProcess,
    free_port,
    metric_samples,
    sample,
    start_mlflow,
    wait_for,
)

# LightGBM trains with one thread here: on two cores shared with other test runs its
# OpenMP team spins (40 trees took 30 s); serving ignores the trained thread count anyway.
FAMILIES = {
    "lightgbm": (
        "lightgbm",
        {"n_estimators": 40, "num_leaves": 31, "learning_rate": 0.1, "num_threads": 1},
    ),
    "extra_trees": (
        "extra_trees",
        {"n_estimators": 30, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5},
    ),
    "svm": ("svm", {"C": 1.0, "gamma": 0.1, "n_components": 300}),
}
WEAK = ("lightgbm", {"n_estimators": 2, "num_leaves": 3, "learning_rate": 0.05, "num_threads": 1})
TRAIN_ROWS = 4000  # real rows 0..3999 train the models; CHECK_ROWS are never seen
CHECK_ROWS = slice(20000, 30000)  # 10,000: the parity rows of every family
MAX_BATCH = 1000
SERVED_BY = {"lightgbm": "onnx", "extra_trees": "fast", "svm": "fast"}


# ---------------------------------------------------------------- helpers


def download(url: str, name: str, version: str, folder: Path) -> Path:
    """A registered version's files. models:/ URIs resolve through MLflow's global registry
    URI (the tracking URI unless set) whatever is passed, so point it at this server first."""
    mlflow.set_tracking_uri(url)
    return Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{name}/{version}", dst_path=str(folder), tracking_uri=url, registry_uri=url
        )
    )


def served_version(url: str) -> str | None:
    answer = httpx.get(url + "/ready", timeout=5)
    return answer.json()["model"]["version"] if answer.status_code == 200 else None


def json_lines(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.strip()]


@dataclass
class Registry:
    url: str
    name: str
    versions: dict[str, str]  # family → registered version
    pipelines: dict[str, object]  # family → the logged pipeline, loaded by MLflow
    client: MlflowClient

    def point(self, alias: str, family: str) -> str:
        self.client.set_registered_model_alias(self.name, alias, self.versions[family])
        return self.versions[family]

    def expected(self, family: str, records: list[dict]) -> list[int]:
        return [int(v) for v in self.pipelines[family].predict(training_frame(records))]


@pytest.fixture(scope="module")
def registry(mlflow_server, tmp_path_factory, real_frame) -> Registry:
    """One registered model with a version of each family, trained on real rows."""
    tmp = tmp_path_factory.mktemp("serve-registry")
    # Every family served, whatever it costs: no serving budget.
    settings = training_settings(
        tmp, mlflow_server.url, "covertype-serve", env={"COVERTYPE_SERVE_BUDGET_US": 0}
    )
    fill_data_db(settings.data_db, real_frame, rows=TRAIN_ROWS, batches=2)
    versions = {
        family: train(settings, candidates=[candidate]).version
        for family, candidate in FAMILIES.items()
    }
    pipelines = {
        family: mlflow.sklearn.load_model(
            str(
                download(
                    mlflow_server.url,
                    settings.mlflow.model_name,
                    version,
                    tmp_path_factory.mktemp(family),
                )
            )
        )
        for family, version in versions.items()
    }
    return Registry(
        mlflow_server.url,
        settings.mlflow.model_name,
        versions,
        pipelines,
        MlflowClient(mlflow_server.url),
    )


@pytest.fixture(scope="module")
def check_records(real_frame) -> list[dict]:
    return records_of(real_frame.iloc[CHECK_ROWS])


def serve_process(
    tmp: Path, tracking_uri: str, name: str, alias: str, home: Path | None = None, **env: str
) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        ["serve", "--port", str(port)],
        env={
            "COVERTYPE_HOME": str(home or tmp / "serve-home"),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "COVERTYPE_MODEL_NAME": name,
            "COVERTYPE_MODEL_ALIAS": alias,
            "COVERTYPE_SERVE_WATCH_SECONDS": "0.3",
            "COVERTYPE_SERVE_MAX_BATCH": str(MAX_BATCH),
        }
        | env,
        cwd=tmp,
        log_path=tmp / f"serve-{port}.log",
    )


@pytest.fixture
def serve(tmp_path):
    """Factory: a `covertype serve` process, stopped at teardown."""
    started: list[ServerProcess] = []

    def start(
        tracking_uri: str, name: str, alias: str, ready_path: str = "/ready", **kwargs
    ) -> ServerProcess:
        server = serve_process(tmp_path, tracking_uri, name, alias, **kwargs)
        started.append(server)
        return server.start(ready_path=ready_path, timeout=120)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def api(registry, tmp_path_factory):
    """A server of the LightGBM version, shared by the tests that only read."""
    tmp = tmp_path_factory.mktemp("api")
    alias = "api-" + uuid.uuid4().hex[:6]
    registry.point(alias, "lightgbm")
    server = serve_process(
        tmp, registry.url, registry.name, alias, COVERTYPE_SERVE_ACCESS_LOG="all"
    )
    server.start("/ready", timeout=120)
    yield server
    server.stop()


# ---------------------------------------------------------------- the contract


def test_predict_answers_the_class_its_name_and_the_version_that_made_it(
    api, registry, check_records
):
    version = registry.versions["lightgbm"]
    answer = httpx.post(api.url + "/predict", json=EXAMPLE)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"cover_type", "cover_type_name", "model_version", "probabilities"}
    assert list(body["probabilities"]) == list(schema.COVER_TYPE_NAMES)
    assert body["model_version"] == version
    assert body["cover_type_name"] == schema.COVER_TYPE_NAMES[body["cover_type"]]
    assert body["cover_type"] == registry.expected("lightgbm", [EXAMPLE])[0]

    rows = check_records[:100]
    with httpx.Client(base_url=api.url) as client:
        answers = [client.post("/predict", json=row).json() for row in rows]
    assert [a["cover_type"] for a in answers] == registry.expected("lightgbm", rows)
    assert {a["model_version"] for a in answers} == {version}


def test_health_ready_and_model_describe_the_served_version(api, registry):
    name, version = registry.name, registry.versions["lightgbm"]
    assert httpx.get(api.url + "/health").json() == {"status": "ok"}

    ready = httpx.get(api.url + "/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["model"]["name"] == name and body["model"]["version"] == version
    assert body["model"]["source"] == "registry"
    assert body["registry"]["reachable"] is True
    assert body["registry"]["champion_version"] == version

    info = httpx.get(api.url + "/model").json()
    tags = registry.client.get_model_version(name, version).tags
    assert (info["name"], info["version"]) == (name, version)
    assert info["alias"].startswith("api-")
    assert info["run_id"] == tags["run_id"]
    assert info["family"] == "lightgbm"
    assert info["metrics"]["holdout_macro_f1"] == pytest.approx(float(tags["holdout_macro_f1"]))
    assert info["metrics"]["holdout_accuracy"] == pytest.approx(float(tags["holdout_accuracy"]))
    assert info["trained_rows"] == int(tags["trained_rows"])
    assert info["trained_batches"] == "1,2"
    assert info["trained_at"] == tags["trained_at"]
    assert info["predictor"] == "onnx" and info["predictor_note"] is None
    assert info["challenger"] is None  # no version has the challenger alias
    # Its serving cost as the training measured it, against this API's budget.
    cost = info["serving_cost"]
    assert cost["single_row_us"] == pytest.approx(float(tags["serving.single_row_us"]))
    assert cost["batch_row_us"] == pytest.approx(float(tags["serving.batch_row_us"]))
    assert cost["single_row_us"] > 0 and cost["batch_row_us"] > 0
    assert cost["single_row_p90_us"] >= cost["single_row_us"]
    assert cost["measured_with"] == tags["serving.predictor"] == "fast"
    assert cost["within_budget"] is (
        cost["single_row_us"] <= cost["budget_us"] or not cost["budget_us"]
    )
    metrics = httpx.get(api.url + "/metrics").text
    single = (
        f'covertype_model_serving_cost_microseconds{{kind="single_row"}} {cost["single_row_us"]}'
    )
    assert single in metrics, metrics

    # What made it (the manifest's summary), and a reproduction tagged after it was loaded.
    made = info["reproducibility"]
    assert made["data_digest"] == tags["manifest.data_digest"]
    assert made["snapshot_bytes"] == int(tags["manifest.snapshot_bytes"]) > 0
    assert made["last_result"] is None
    registry.client.set_model_version_tag(name, version, "reproduced.result", "identical")
    registry.client.set_model_version_tag(name, version, "reproduced.from", "snapshot")
    wait_for(
        lambda: (
            httpx.get(api.url + "/model").json()["reproducibility"]["last_result"] == "identical"
        ),
        30,
        "/model showing the reproduction",
    )
    assert httpx.get(api.url + "/model").json()["loaded_at"] == info["loaded_at"]  # not reloaded


def test_request_ids_are_echoed_or_made_and_logged_as_json_lines(api, registry):
    sent = "client-" + uuid.uuid4().hex[:8]
    answer = httpx.post(api.url + "/predict", json=EXAMPLE, headers={"X-Request-ID": sent})
    assert answer.headers["x-request-id"] == sent
    bad = httpx.post(api.url + "/predict", json={**EXAMPLE, "Slope": 91})
    made = bad.headers["x-request-id"]
    assert bad.status_code == 422 and len(made) == 32  # a fresh uuid4 hex
    junk = httpx.get(api.url + "/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert junk.headers["x-request-id"] != "bad id\twith spaces"

    def logged() -> dict[str, dict]:
        lines = json_lines(api.log())  # every line of the server's output is JSON
        return {
            line["request_id"]: line for line in lines if line.get("request_id") in (sent, made)
        }

    by_id = wait_for(lambda: len(logged()) == 2 and logged(), 10, "access log lines")
    assert by_id[sent]["message"] == "request" and by_id[sent]["status"] == 200
    assert by_id[sent]["path"] == "/predict" and by_id[sent]["duration_ms"] > 0
    assert by_id[made]["status"] == 422
    loaded = [line for line in json_lines(api.log()) if line["message"] == "model loaded"]
    assert loaded[0]["model"] == f"models:/{registry.name}/{registry.versions['lightgbm']}"


# ---------------------------------------------------------------- observability


def test_metrics_count_requests_latency_predictions_and_the_served_version(
    api, registry, check_records
):
    version = registry.versions["lightgbm"]
    before = metric_samples(api.url)
    rows = check_records[200:230]
    with httpx.Client(base_url=api.url) as client:
        for row in rows:
            assert client.post("/predict", json=row).status_code == 200
        assert client.post("/predict", json={**EXAMPLE, "Slope": -1}).status_code == 422
        assert client.post("/predict/batch", json=rows[:10]).status_code == 200
    after = metric_samples(api.url)

    def delta(name: str, **labels) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    ok = {"endpoint": "/predict", "method": "POST", "status": "200"}
    assert delta("covertype_requests_total", **ok) == 30
    assert delta("covertype_request_duration_seconds_count", **ok) == 30
    assert delta("covertype_request_duration_seconds_bucket", **ok, le="+Inf") == 30
    assert delta("covertype_request_duration_seconds_sum", **ok) > 0
    assert delta("covertype_requests_total", endpoint="/predict", method="POST", status="422") == 1
    batch = {"endpoint": "/predict/batch", "method": "POST", "status": "200"}
    assert delta("covertype_requests_total", **batch) == 1

    predicted = registry.expected("lightgbm", rows + rows[:10])
    for k, name in enumerate(schema.COVER_TYPE_NAMES):
        labels = {"cover_type": str(k), "cover_type_name": name, "model_version": version}
        assert delta("covertype_predictions_total", **labels) == predicted.count(k)

    served = {"model_name": registry.name, "alias": httpx.get(api.url + "/model").json()["alias"]}
    assert sample(after, "covertype_model_version", **served) == int(version)
    assert sample(after, "covertype_registry_up") == 1
    assert sample(after, "covertype_model_loads_total", source="registry", outcome="ok") == 1
    assert sample(after, "covertype_model_swaps_total") == 0


def test_metrics_add_up_across_worker_processes(serve, registry):
    alias = "workers-" + uuid.uuid4().hex[:6]
    version = registry.point(alias, "extra_trees")
    server = serve(registry.url, registry.name, alias, ready_path="/health",
                   COVERTYPE_SERVE_WORKERS="2")  # fmt: skip
    # Both workers load on their own; ask on fresh connections until each has answered.
    wait_for(lambda: all(served_version(server.url) == version for _ in range(10)), 120, "workers")
    for _ in range(40):  # a new connection each: uvicorn hands them to either worker
        answer = httpx.post(server.url + "/predict", json=EXAMPLE)
        assert answer.status_code == 200 and answer.json()["model_version"] == version
    samples = metric_samples(server.url)
    ok = {"endpoint": "/predict", "method": "POST", "status": "200"}
    assert sample(samples, "covertype_requests_total", **ok) == 40
    by_worker = [
        value
        for (name, labels), value in samples.items()
        if name == "covertype_model_version" and dict(labels).get("alias") == alias
    ]
    assert by_worker == [int(version), int(version)]  # one gauge per live worker


# ---------------------------------------------------------------- no model yet


def test_without_a_champion_the_api_says_503_until_one_appears(serve, registry):
    empty = f"covertype-none-{uuid.uuid4().hex[:6]}"
    server = serve(registry.url, empty, "champion", ready_path="/health")

    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["registry"]["reachable"] is True
    for answer in (
        httpx.post(server.url + "/predict", json=EXAMPLE),
        httpx.post(server.url + "/predict/batch", json=[EXAMPLE]),
        httpx.get(server.url + "/model"),
    ):
        assert answer.status_code == 503
        detail = answer.json()["detail"]
        assert detail.startswith(f"no model loaded yet for models:/{empty}@champion: ")
        assert "checks again every 0.3 s" in detail
        assert answer.headers["retry-after"] == "1"
    assert httpx.get(server.url + "/health").status_code == 200
    # Bad records are still told what is wrong.
    assert httpx.post(server.url + "/predict", json={**EXAMPLE, "Slope": 99}).status_code == 422

    # By default only answers with an error status get an access log line, written after the
    # answer has left: wait for the last one.
    def requests() -> list[dict]:
        return [line for line in json_lines(server.log()) if line["message"] == "request"]

    logged = wait_for(lambda: len(requests()) >= 5 and requests(), 10, "access log lines")
    assert [line["status"] for line in logged] == [503, 503, 503, 503, 422]
    assert logged[1]["path"] == "/predict" and len(logged[1]["request_id"]) == 32

    source = registry.versions["lightgbm"]
    mlflow.set_tracking_uri(registry.url)
    new = mlflow.register_model(f"models:/{registry.name}/{source}", empty).version
    registry.client.set_registered_model_alias(empty, "champion", new)
    wait_for(lambda: served_version(server.url) == str(new), 60, "the new champion")
    answer = httpx.post(server.url + "/predict", json=EXAMPLE)
    assert answer.status_code == 200 and answer.json()["model_version"] == str(new)


# ---------------------------------------------------------------- hot swap


def test_hot_swap_under_load_loses_no_request(serve, registry, check_records):
    alias = "swap-" + uuid.uuid4().hex[:6]
    old = registry.point(alias, "lightgbm")
    server = serve(registry.url, registry.name, alias)
    rows = check_records[:400]
    expected = {
        registry.versions[f]: registry.expected(f, rows) for f in ("lightgbm", "extra_trees")
    }
    seen: list[list[tuple[int, str, int]]] = [[] for _ in range(4)]  # (row, version, class)
    failures: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = k
            while not stop.is_set():
                try:
                    answer = http.post("/predict", json=rows[i % len(rows)])
                except httpx.HTTPError as error:
                    failures.append(f"{type(error).__name__}: {error}")
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text}")
                else:
                    body = answer.json()
                    seen[k].append((i % len(rows), body["model_version"], body["cover_type"]))
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(len(s) >= 50 for s in seen), 60, "answers of the old version")
        new = registry.point(alias, "extra_trees")  # a new version takes the alias
        wait_for(
            lambda: all(sum(v == new for _, v, _ in s) >= 50 for s in seen), 120, "the new one"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    assert failures == []
    for answers in seen:
        versions = [version for _, version, _ in answers]
        switch = versions.index(new)
        assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}
        for row, version, label in answers:  # each answer is its version's prediction
            assert label == expected[version][row]
    samples = metric_samples(server.url)
    assert sample(samples, "covertype_model_swaps_total") == 1
    swap = [line for line in json_lines(server.log()) if line["message"] == "model swapped in"]
    assert swap[0]["previous_version"] == old and swap[0]["model"].endswith(f"/{new}")


# ---------------------------------------------------------------- the fast path


def test_served_predictor_equals_the_logged_pipeline_for_every_family(
    registry, check_records, tmp_path
):
    assert len(check_records) == 10_000
    frame = training_frame(check_records)
    for family, version in registry.versions.items():
        folder = download(registry.url, registry.name, version, tmp_path / family)
        pipeline = load_pipeline(folder)
        predictor, note = compile_predictor(pipeline, cache_dir=folder)
        assert (predictor.kind, note) == (SERVED_BY[family], None), family
        truth = [int(v) for v in pipeline.predict(frame)]
        assert truth == registry.expected(family, check_records)  # as MLflow loads it
        labels, proba = predictor.classify_many(check_records)
        assert labels == truth, family  # the same class for every row
        ones = [predictor.classify_one(r) for r in check_records]
        assert [label for label, _ in ones] == truth, family
        assert len(set(truth)) >= 3  # real rows, several classes
        if family == "svm":
            assert proba is None
            continue
        expected = registry.pipelines[family].predict_proba(frame)
        limit = ONNX_TOLERANCE if predictor.kind == "onnx" else EXACT
        assert np.abs(proba - expected).max() <= limit, family
        assert np.abs(np.vstack([p for _, p in ones]) - expected).max() <= limit, family


def test_served_answers_equal_the_pipeline_for_every_family(serve, registry, check_records):
    alias = "families-" + uuid.uuid4().hex[:6]
    registry.point(alias, "lightgbm")
    server = serve(registry.url, registry.name, alias)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for family, version in registry.versions.items():
            registry.point(alias, family)
            wait_for(lambda v=version: served_version(server.url) == v, 60, f"{family} served")
            assert client.get("/model").json()["predictor"] == SERVED_BY[family]
            answers = []
            for start in range(0, len(check_records), MAX_BATCH):
                batch = check_records[start : start + MAX_BATCH]
                answer = client.post("/predict/batch", json=batch)
                assert answer.status_code == 200
                answers += answer.json()
            assert {a["model_version"] for a in answers} == {version}
            assert [a["cover_type"] for a in answers] == registry.expected(family, check_records)
            if family == "svm":
                assert {a["probabilities"] is None for a in answers} == {True}
            else:
                proba = [list(a["probabilities"].values()) for a in answers]
                truth = registry.pipelines[family].predict_proba(training_frame(check_records))
                assert np.abs(np.array(proba) - truth).max() <= ONNX_TOLERANCE
            singles = [client.post("/predict", json=r).json() for r in check_records[:200]]
            assert [a["cover_type"] for a in singles] == [a["cover_type"] for a in answers[:200]]


# ---------------------------------------------------------------- registry outage


def test_registry_outage_keeps_serving_the_cached_model_and_picks_up_the_next_champion(
    tmp_path, real_frame, check_records
):
    mlflow_dir = tmp_path / "mlflow"
    mlflow_dir.mkdir()
    registry = start_mlflow(mlflow_dir, {})
    servers: list[ServerProcess] = []
    try:
        settings = training_settings(tmp_path, registry.url, "covertype-outage")
        fill_data_db(settings.data_db, real_frame, rows=3000, batches=1)
        first = train(settings, candidates=[WEAK])
        home = tmp_path / "serve-home"
        server = serve_process(
            tmp_path, registry.url, settings.mlflow.model_name, "champion", home=home
        )
        servers.append(server.start("/ready", timeout=120))
        rows = check_records[:50]

        registry.stop()  # the registry goes away mid-run
        wait_for(
            lambda: httpx.get(server.url + "/ready").json()["registry"]["reachable"] is False,
            30,
            "the watcher to notice",
        )
        for row in rows:
            answer = httpx.post(server.url + "/predict", json=row)
            assert answer.status_code == 200 and answer.json()["model_version"] == first.version
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 200 and ready.json()["model"]["version"] == first.version
        assert ready.json()["registry"]["last_error"]

        server.stop()  # and the API restarts while it is away: the local copy serves
        restarted = serve_process(tmp_path, registry.url, settings.mlflow.model_name, "champion",
                                  home=home)  # fmt: skip
        servers.append(restarted.start("/ready", timeout=120))
        ready = httpx.get(restarted.url + "/ready").json()
        assert ready["model"] | {"loaded_at": None} == {
            "name": settings.mlflow.model_name,
            "version": first.version,
            "alias": "champion",
            "source": "local cache",
            "loaded_at": None,
        }
        # It served before asking the registry; its watcher asks at once and finds it down.
        wait_for(
            lambda: httpx.get(restarted.url + "/ready").json()["registry"]["reachable"] is False,
            30,
            "the watcher's first check",
        )
        assert httpx.post(restarted.url + "/predict", json=EXAMPLE).status_code == 200
        # An API that never loaded anything has nothing to serve, says why, and keeps asking.
        cold = serve_process(tmp_path, registry.url, settings.mlflow.model_name, "champion",
                             home=tmp_path / "cold-home")  # fmt: skip
        servers.append(cold.start("/health", timeout=120))
        not_ready = httpx.get(cold.url + "/ready")
        assert not_ready.status_code == 503
        assert f"the registry {registry.url} is unreachable" in not_ready.json()["detail"]
        assert httpx.post(cold.url + "/predict", json=EXAMPLE).status_code == 503

        registry.start(ready_path="/health", timeout=180)  # same port, same SQLite store
        # A new version takes the alias, as the training gate does it.
        client = MlflowClient(registry.url)
        mlflow.set_tracking_uri(registry.url)
        name = settings.mlflow.model_name
        new = str(mlflow.register_model(f"models:/{name}/{first.version}", name).version)
        client.set_registered_model_alias(name, "champion", new)
        wait_for(lambda: served_version(restarted.url) == new, 60, "the new champion")
        ready = httpx.get(restarted.url + "/ready").json()
        assert ready["registry"]["reachable"] is True and ready["model"]["source"] == "registry"
        answer = httpx.post(restarted.url + "/predict", json=EXAMPLE)
        assert answer.json()["model_version"] == new != first.version
        wait_for(lambda: served_version(cold.url) == new, 60, "the cold API's first model")
        log = json_lines(restarted.log())
        assert any(line["message"] == "registry reachable again" for line in log)
    finally:
        for server in servers:
            server.stop()
        registry.stop()


# ---------------------------------------------------------------- shutdown


def test_sigterm_finishes_the_request_in_flight_then_exits(serve, registry):
    alias = "stop-" + uuid.uuid4().hex[:6]
    version = registry.point(alias, "lightgbm")
    server = serve(registry.url, registry.name, alias)
    body = json.dumps(EXAMPLE).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        time.sleep(0.3)
        os.killpg(server.process.pid, signal.SIGTERM)  # mid-request
        wait_for(lambda: "Shutting down" in server.log(), 10, "shutdown to begin")
        with pytest.raises(httpx.ConnectError):  # no new connections
            httpx.get(server.url + "/health", timeout=2)
        conn.sendall(body[20:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["model_version"] == version
    # uvicorn re-raises the signal it handled once shut down, so the exit is "by SIGTERM".
    assert server.process.wait(15) in (0, -signal.SIGTERM)
    messages = [line["message"] for line in json_lines(server.log())]
    assert messages.index("inference API stopped") < messages.index(
        "Application shutdown complete."
    )


# ---------------------------------------------------------------- property-based


def test_schemathesis_finds_no_server_error_and_no_contract_break(api, tmp_path):
    done = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            api.url + "/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
        ],
        env=clean_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
