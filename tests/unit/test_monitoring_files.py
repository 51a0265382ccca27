"""Prometheus' and Grafana's files (deploy/monitoring) as their own tools read them: promtool
checks every scrape config (compose, Kubernetes, the local stack's) and the alert rules, and
runs the rules' unit tests; the dashboard is read as Grafana would provision it, promtool
parses each of its queries, and evaluates the Releases row's on made-up series. That its
queries name metrics the code exports, and run in a real Prometheus, is
tests/integration/test_observability.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from covertype.settings import Settings
from covertype.stack import prometheus as local
from tests.deploy_files import K8S, MAIN_COMPOSE, ROOT, by_kind, load_yaml

MONITORING = ROOT / "deploy/monitoring"
PROMETHEUS = MONITORING / "prometheus"
GRAFANA = MONITORING / "grafana"
ALERTS = {
    "CovertypeNoChampion", "CovertypeLatencyP99High", "CovertypeErrorRatioHigh",
    "CovertypeDriftDetected", "CovertypePredictionLogDropping", "CovertypeTargetDown",
    "CovertypeAutomaticRollback", "CovertypeShadowErrors",
}  # fmt: skip


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: Debian's prometheus package (scripts/test.sh installs it)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def dashboard() -> dict:
    return json.loads((GRAFANA / "covertype.json").read_text())


def queries(board: dict) -> dict[str, str]:
    """Every query of the dashboard ("title [refId]", annotations too), with Grafana's
    $__rate_interval as Prometheus would get it (1m: four of the deployments' 15 s scrapes)."""
    found = {f"{p['title']} [{t['refId']}]": t["expr"] for p in board["panels"]
             for t in p.get("targets", [])}  # fmt: skip
    found |= {f"annotation {a['name']}": a["expr"] for a in board["annotations"]["list"]}
    return {name: expr.replace("$__rate_interval", "1m") for name, expr in found.items()}


def as_rule_file(exprs: dict[str, str], path: Path) -> Path:
    """The queries as recording rules, the file promtool parses (it has no PromQL linter)."""
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs.values())]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return path


SCRAPE_CREDENTIAL = "/run/secrets/metrics_key"  # the compose secret, the k8s Secret's file


def with_local_rules(config: Path, tmp_path: Path, credential: bool = True) -> Path:
    """The config with its container paths pointing here: the rules (/etc/prometheus) and,
    with `credential`, a scrape credential file (promtool checks that it exists)."""
    text = config.read_text().replace("/etc/prometheus/alerts.yml", str(PROMETHEUS / "alerts.yml"))
    if credential:
        key = tmp_path / "metrics_key"
        key.write_text("metrics-key-0123456789abcdef")
        text = text.replace(SCRAPE_CREDENTIAL, str(key))
    copy = tmp_path / config.name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("name", ["compose.yml", "k8s.yml"])
def test_promtool_accepts_the_deployed_scrape_configs(name, tmp_path):
    checked = promtool("check", "config", str(with_local_rules(PROMETHEUS / name, tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


@pytest.mark.parametrize("name", ["compose.yml", "k8s.yml"])
def test_the_deployed_configs_scrape_with_the_credential_file(name, tmp_path):
    jobs = {c["job_name"]: c for c in load_yaml(PROMETHEUS / name)["scrape_configs"]}
    assert jobs["covertype-api"]["authorization"] == {
        "type": "Bearer", "credentials_file": SCRAPE_CREDENTIAL
    }  # fmt: skip
    assert jobs["mlflow"]["basic_auth"] == {
        "username": Settings.from_env({}).auth.mlflow_metrics_user,
        "password_file": SCRAPE_CREDENTIAL,
    }
    # promtool refuses a credential file that is not there (Prometheus reads it per scrape).
    config = with_local_rules(PROMETHEUS / name, tmp_path, credential=False)
    checked = promtool("check", "config", str(config))
    assert checked.returncode != 0 and SCRAPE_CREDENTIAL in checked.stdout + checked.stderr


def test_promtool_accepts_the_local_stacks_config(tmp_path):
    settings = Settings.from_env(
        {
            "COVERTYPE_HOME": tmp_path,
            "COVERTYPE_SERVE_PORT": 18085,
            "COVERTYPE_PROMETHEUS_PORT": 19090,
        }
    )
    path = local.write_config(settings)
    checked = promtool("check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(path.read_text())
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert targets["covertype-api"] == ["127.0.0.1:18085"]
    assert targets["prometheus"] == ["127.0.0.1:19090"]
    assert config["global"]["scrape_interval"] == "10s"


def test_every_deployment_scrapes_the_same_jobs(tmp_path):
    local_jobs = {c["job_name"] for c in local.config(Settings.from_env({}))["scrape_configs"]}
    for name in ("compose.yml", "k8s.yml"):
        jobs = {c["job_name"] for c in load_yaml(PROMETHEUS / name)["scrape_configs"]}
        assert jobs == local_jobs, name
    # Each api replica on its own: DNS discovery of every replica's address, not the gateway.
    for name, service in (("compose.yml", "api"), ("k8s.yml", "api-metrics")):
        [api] = [c for c in load_yaml(PROMETHEUS / name)["scrape_configs"]
                 if c["job_name"] == "covertype-api"]  # fmt: skip
        assert api["dns_sd_configs"][0]["names"] == [service], name
    headless = by_kind("Service")["api-metrics"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True


def test_the_alert_rules_pass_promtool_and_their_unit_tests():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    assert alerts == ALERTS
    fired, quiet = set(), set()
    for test in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts and quiet == alerts


def test_a_broken_rule_file_fails_promtool(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text((PROMETHEUS / "alerts.yml").read_text().replace("> 0.05", "> > 0.05"))
    checked = promtool("check", "rules", str(broken))
    assert checked.returncode != 0  # the checks above would catch a mistake


def test_compose_mounts_the_monitoring_files_and_publishes_the_design_ports():
    services = load_yaml(MAIN_COMPOSE)["services"]
    # Prometheus has no login: the host's loopback only; Grafana asks for its admin login.
    for name, port in (("prometheus", "127.0.0.1:9090:9090"), ("grafana", "3000:3000")):
        assert services[name]["ports"] == [port], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), volume
    assert "GF_SECURITY_ADMIN_PASSWORD" in services["grafana"]["environment"]


def test_the_kustomization_generates_the_configmaps_the_pods_mount():
    kustomization = load_yaml(MONITORING / "kustomization.yaml")
    generated = {}
    for generator in kustomization["configMapGenerator"]:
        keys = set()
        for entry in generator["files"]:
            key, _, path = entry.partition("=")
            assert (MONITORING / path).is_file(), entry
            keys.add(key)
        generated[generator["name"]] = keys
    assert "../monitoring" in load_yaml(K8S / "kustomization.yaml")["resources"]
    for name in ("prometheus", "grafana"):
        pod = by_kind("Deployment")[name]["spec"]["template"]["spec"]
        for volume in pod["volumes"]:
            if "configMap" in volume:
                wanted = {i["key"] for i in volume["configMap"].get("items", [])}
                assert wanted <= generated[volume["configMap"]["name"]], volume


def test_grafana_provisions_the_datasource_the_dashboard_uses():
    [source] = load_yaml(GRAFANA / "datasource.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = load_yaml(GRAFANA / "dashboards.yml")["providers"]
    mounted = [v for v in load_yaml(MAIN_COMPOSE)["services"]["grafana"]["volumes"]
               if "covertype.json" in v]  # fmt: skip
    assert mounted[0].split(":")[1] == f"{provider['options']['path']}/covertype.json"
    board = dashboard()
    assert board["uid"] == "covertype" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        if panel["type"] == "row":  # a heading: no query of its own
            assert not panel["targets"], panel["title"]
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == source["uid"]


def test_the_dashboard_draws_what_the_issue_asks_for():
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    for metric in (
        "covertype_requests_total", "covertype_request_duration_seconds_bucket",
        "covertype_predictions_total", "covertype_model_version", "covertype_drift_share",
        "covertype_live_accuracy",
    ):  # fmt: skip
        assert metric in exprs, metric
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def releases_row(board: dict) -> list[dict]:
    """The panels under the "Releases" row (to the next row or the end)."""
    panels = sorted(board["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    [start] = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Releases"]
    below = panels[start + 1 :]
    ends = [i for i, p in enumerate(below) if p["type"] == "row"]
    return below[: ends[0]] if ends else below


def test_the_releases_row_draws_versions_shadow_agreement_latency_errors_and_the_ledger():
    exprs = {
        p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in releases_row(dashboard())
    }
    assert len(exprs) == 5, list(exprs)
    for metric in (
        "covertype_model_version",
        "covertype_challenger_version",
        'covertype_shadow_predictions_total{outcome="agree"}',
        "covertype_shadow_predict_seconds_bucket",
        'covertype_shadow_predictions_total{outcome="error"}',
        "covertype_shadow_dropped_total",
        "covertype_releases_total",
    ):
        assert sum(metric in e for e in exprs.values()) == 1, metric
    annotations = {a["name"]: a["expr"] for a in dashboard()["annotations"]["list"]}
    assert (
        'covertype_releases_total{action="automatic_rollback"}' in annotations["Automatic rollback"]
    )


def test_promtool_parses_every_query_of_the_dashboard(tmp_path):
    exprs = queries(dashboard())
    assert len(exprs) >= 25
    checked = promtool("check", "rules", str(as_rule_file(exprs, tmp_path / "dashboard.yml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    # ... and would refuse one that does not parse.
    broken = exprs | {"broken": "sum by (role (rate(covertype_shadow_dropped_total[1m]))"}
    checked = promtool("check", "rules", str(as_rule_file(broken, tmp_path / "broken.yml")))
    assert checked.returncode != 0


# Made-up series, one point a minute: two workers serving version 3 with challenger 4; per
# minute 45 shadowed records agree, 15 disagree, 6 fail, 3 requests are not shadowed; the
# champion predicts every record within 1 ms, the challenger between 1 and 3 ms; a promotion
# at 10m (the ledger's count 1 → 2), nothing else moves.
RELEASE_SERIES = {
    'covertype_model_version{model_name="covertype",alias="champion",pid="11"}': "3x20",
    'covertype_model_version{model_name="covertype",alias="champion",pid="12"}': "3x20",
    'covertype_challenger_version{model_name="covertype",alias="challenger",pid="11"}': "4x20",
    'covertype_shadow_predictions_total{outcome="agree"}': "0+45x20",
    'covertype_shadow_predictions_total{outcome="disagree"}': "0+15x20",
    'covertype_shadow_predictions_total{outcome="error"}': "0+6x20",
    "covertype_shadow_dropped_total": "0+3x20",
    'covertype_shadow_predict_seconds_bucket{role="champion",le="0.001"}': "0+60x20",
    'covertype_shadow_predict_seconds_bucket{role="champion",le="0.003"}': "0+60x20",
    'covertype_shadow_predict_seconds_bucket{role="champion",le="+Inf"}': "0+60x20",
    'covertype_shadow_predict_seconds_bucket{role="challenger",le="0.001"}': "0x20",
    'covertype_shadow_predict_seconds_bucket{role="challenger",le="0.003"}': "0+60x20",
    'covertype_shadow_predict_seconds_bucket{role="challenger",le="+Inf"}': "0+60x20",
    'covertype_releases_total{action="promote",pid="11"}': "1x9 2x11",
    'covertype_releases_total{action="promote",pid="12"}': "1x9 2x11",
    'covertype_releases_total{action="challenge",pid="11"}': "2x20",
}
RELEASE_ANSWERS = {  # each Releases query → the series it draws at 15m: labels, value
    "Champion and challenger versions served [A]": [({}, 3)],  # once, not per worker
    "Champion and challenger versions served [B]": [({}, 4)],
    "Shadow agreement with the champion [A]": [({}, 0.75)],  # 45 / (45 + 15): failures apart
    "Predict p99 per record: champion vs challenger [A]": [
        ({"role": "champion"}, 0.00099),
        ({"role": "challenger"}, 0.00298),
    ],
    "Shadow errors and dropped requests [A]": [({}, 0.1)],  # records a second
    "Shadow errors and dropped requests [B]": [({}, 0.05)],  # requests a second
    "Release ledger moves in the last hour, by action [A]": [
        ({"action": "challenge"}, 0),
        ({"action": "promote"}, 1),
    ],
}


def test_the_releases_row_draws_what_made_up_series_say(tmp_path):
    """promtool evaluates each of the row's queries on RELEASE_SERIES."""
    row = {p["title"] for p in releases_row(dashboard())}
    # Rate windows of 5m: five of the series' points (1m, as queries() has it, holds two).
    exprs = {name: expr.replace("[1m]", "[5m]") for name, expr in queries(dashboard()).items()
             if name.rpartition(" [")[0] in row}  # fmt: skip
    assert set(exprs) == set(RELEASE_ANSWERS)
    cases = [
        {"expr": expr, "eval_time": "15m", "exp_samples": [
            {"labels": _labels(labels), "value": value} for labels, value in RELEASE_ANSWERS[name]
        ]}
        for name, expr in exprs.items()
    ]  # fmt: skip
    (tmp_path / "none.yml").write_text("groups: []\n")
    series = [{"series": name, "values": values} for name, values in RELEASE_SERIES.items()]
    test = {
        "rule_files": ["none.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": cases}],
    }
    (tmp_path / "releases_test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    tested = promtool("test", "rules", "releases_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
