"""Observability against real processes: the dashboard's and the alert rules' queries name
metrics that a real scrape of the inference API, the source API and MLflow exports, and a
real Prometheus (`covertype prometheus`, the binary of Debian's package) scrapes all three,
loads every rule, answers every panel's query, and fires CovertypeDriftDetected once the
API reads a drift report that found drift from its data DB."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from covertype import db
from covertype.serve import drift_gauges
from covertype.settings import Settings
from covertype.ui import monitoring_data
from tests.support.data import records_of
from tests.support.environment import REPO
from tests.support.servers import ServerProcess, free_port, wait_for

MONITORING = REPO / "deploy/monitoring"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
BUILT_IN = {"up"}  # Prometheus' own series for every target
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def dashboard_queries() -> dict[str, str]:
    board = json.loads((MONITORING / "grafana/covertype.json").read_text())
    queries = {
        f"{p['title']} [{t['refId']}]": t["expr"] for p in board["panels"] for t in p["targets"]
    }
    for annotation in board["annotations"]["list"]:
        queries[f"annotation {annotation['name']}"] = annotation["expr"]
    return {name: q.replace("$__rate_interval", "1m") for name, q in queries.items()}


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "prometheus/alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def metric_names(query: str) -> set[str]:
    """The series names a PromQL query reads (not its functions, labels or keywords)."""
    text = re.sub(r'"[^"]*"', "", query)  # label values, format strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    names = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def exported(*bodies: str) -> set[str]:
    names = set(BUILT_IN)
    for body in bodies:
        for family in text_string_to_metric_families(body):
            names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
            names |= {sample.name for sample in family.samples}
    return names


@pytest.fixture(scope="module")
def api(inference_api):
    """The session's `covertype serve` of the champion (its data DB takes a drift report)."""
    return inference_api


@pytest.fixture(scope="module")
def source(real_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observed-source")
    server = ServerProcess(
        ["source", "--port", str(free_port())],
        env={"COVERTYPE_HOME": str(tmp / "home"), "COVERTYPE_SOURCE_DATA": str(real_data)},
        cwd=tmp,
        log_path=tmp / "source.log",
    ).start(ready_path="/", timeout=180)
    yield server
    server.stop()


def traffic(api: ServerProcess, frame) -> None:
    records = records_of(frame.sample(30, random_state=11))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for record in records:
            assert client.post("/predict", json=record).status_code == 200
        assert client.post("/predict/batch", json=records).status_code == 200
        assert client.post("/predict", json={"Elevation": 1}).status_code == 422


def test_every_dashboard_and_alert_query_names_a_metric_a_real_scrape_exports(
    api, source, mlflow_server, real_frame
):
    traffic(api, real_frame)
    assert httpx.get(f"{source.url}/data", params={"group_number": 3}).status_code == 200
    bodies = [httpx.get(f"{s.url}/metrics", timeout=10).text for s in (api, source, mlflow_server)]
    names = exported(*bodies)
    assert "covertype_source_batch" in names and "mlflow_http_request_total" in names
    queries = dashboard_queries() | alert_queries()
    for name, query in queries.items():
        read = metric_names(query)
        assert read, f"{name}: no metric in {query!r}"
        assert read <= names, f"{name} reads {sorted(read - names)}, which nothing exports"
    # The check itself can fail: a misspelt metric is caught.
    assert not metric_names("rate(covertype_request_total[1m])") <= names


@pytest.fixture(scope="module")
def prometheus(api, source, mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    server = ServerProcess(
        ["prometheus"],
        env={
            "COVERTYPE_HOME": str(tmp / "home"),
            "COVERTYPE_PROMETHEUS_PORT": str(port),
            "COVERTYPE_PROMETHEUS_SCRAPE_SECONDS": "1",
            "COVERTYPE_SERVE_PORT": str(api.port),
            "COVERTYPE_SOURCE_PORT": str(source.port),
            "COVERTYPE_MLFLOW_PORT": str(mlflow_server.port),
        },
        cwd=tmp,
        log_path=tmp / "prometheus.log",
        port=port,
    ).start(ready_path="/-/ready", timeout=60)
    yield server
    server.stop()


def query(prometheus: ServerProcess, promql: str) -> list:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=10)
    assert answer.status_code == 200, f"{promql}: {answer.text}"
    return answer.json()["data"]["result"]


def test_prometheus_scrapes_every_service_and_answers_every_panel(prometheus, api, real_frame):
    def targets_up():
        active = httpx.get(f"{prometheus.url}/api/v1/targets").json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    wanted = {"covertype-api", "covertype-source", "mlflow", "prometheus"}
    wait_for(lambda: targets_up() == dict.fromkeys(wanted, "up"), 30, "every target up")
    # A series is born at its first request: Prometheus must have scraped it once before a
    # rate of it can be above 0 (the session's API may be new), so traffic, a scrape, traffic.
    traffic(api, real_frame)
    seen = 'covertype_request_duration_seconds_count{endpoint="/predict/batch"}'
    wait_for(lambda: query(prometheus, seen), 30, "the request series scraped")
    traffic(api, real_frame)

    def predictions_counted():
        rates = [
            query(prometheus, "sum(rate(covertype_predictions_total[1m])) > 0"),
            query(prometheus, monitoring_data.TRAFFIC_QUERIES["p99 latency (ms)"] + " > 0"),
        ]
        return all(rates)

    wait_for(predictions_counted, 30, "the predictions in Prometheus")
    # MLflow's rate needs two scrapes of its counters too (CI once read the panel empty).
    mlflow_rate = dashboard_queries()["MLflow requests per second by status [A]"]
    wait_for(lambda: query(prometheus, mlflow_rate), 60, "MLflow's request rate")
    empty = []
    for name, promql in dashboard_queries().items():
        if not query(prometheus, promql):
            empty.append(name)
    # Drift and live accuracy exist once a report is read; the rest must draw at once.
    assert all(
        re.search(r"Drift|drift|Live accuracy|annotation|Batch of|error|Errors", n) for n in empty
    ), empty
    [version] = query(prometheus, "max(covertype_model_version)")
    assert float(version["value"][1]) >= 1
    # The UI's Monitoring tab asks the same Prometheus for its traffic charts.
    drawn = monitoring_data.traffic(Settings.from_env({"COVERTYPE_PROMETHEUS_URL": prometheus.url}))
    assert set(drawn["measure"]) == set(monitoring_data.TRAFFIC_QUERIES)
    assert {"/predict", "/predict/batch"} <= set(drawn["endpoint"])


def test_prometheus_loads_every_rule_and_fires_drift_from_a_stored_report(
    prometheus, api, champion
):
    def evaluated():
        groups = httpx.get(f"{prometheus.url}/api/v1/rules").json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        return rules if all(r["health"] != "unknown" for r in rules.values()) else None

    rules = wait_for(evaluated, 30, "every rule evaluated")
    assert set(rules) == set(alert_queries())
    assert all(r["health"] == "ok" for r in rules.values()), rules
    assert rules["CovertypeNoChampion"]["state"] == "inactive"  # the champion is served

    engine = db.make_engine(api.data_db)
    db.ensure_schema(engine)
    db.add_drift_report(
        engine,
        {
            "kind": "batch", "created_at": datetime.now(UTC), "model_name": champion["model_name"],
            "champion_version": "1", "batch_number": 5, "reference_rows": 5000,
            "current_rows": 4034, "computed": True, "reason": "test: drift in 9 of 12",
            "dataset_drift": True, "drifted_features": 9, "features": 12, "drift_share": 0.75,
            "drift_share_threshold": 0.5, "feature_scores": "{}", "live_accuracy": 0.61,
        },
    )  # fmt: skip
    engine.dispose()

    def drift_alert():
        alerts = httpx.get(f"{prometheus.url}/api/v1/alerts").json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "CovertypeDriftDetected"]

    timeout = drift_gauges.REFRESH_SECONDS + 20
    [alert] = wait_for(drift_alert, timeout, "CovertypeDriftDetected firing")
    assert alert["state"] == "firing" and alert["labels"]["kind"] == "batch"
    [share] = query(prometheus, 'max(covertype_drift_share{kind="batch"})')
    assert float(share["value"][1]) == 0.75
