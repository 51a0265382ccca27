"""Prometheus' and Grafana's files (deploy/monitoring) as their own tools read them: promtool
checks every scrape config (compose, Kubernetes, the local stack's) and the alert rules, and
runs the rules' unit tests; the dashboard is read as Grafana would provision it. That its
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
}  # fmt: skip


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: Debian's prometheus package (scripts/test.sh installs it)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def dashboard() -> dict:
    return json.loads((GRAFANA / "covertype.json").read_text())


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
    assert "SUCCESS: 6 rules found" in checked.stdout


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
