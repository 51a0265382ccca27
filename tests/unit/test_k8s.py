"""The Kubernetes manifests (deploy/k8s) and the Airflow chart values, read as data: the keys
of each kind, selectors and named ports, probes against the routes of the service they probe,
the autoscaled inference API, settings from the ConfigMap, secrets generated and referenced by
name, every login wired as in compose. The containers' commands run in
tests/integration/test_deploy_commands.py."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from covertype import orchestrate
from covertype.settings import Settings
from tests.deploy_files import (
    K8S,
    MAIN_COMPOSE,
    ROOT,
    SECRET_NAME,
    SETTINGS_ENV,
    by_kind,
    compose_services,
    dig,
    dockerfile,
    env_file_keys,
    environment,
    from_image,
    interpolate,
    k8s_objects,
    load_yaml,
    served_paths,
)

# Deployments of pinned upstream images, and the health endpoints their documentation gives.
THIRD_PARTY = {"prometheus": {"/-/ready", "/-/healthy"}, "grafana": {"/api/health"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return served_paths(tmp_path_factory.mktemp("served"))


REQUIRED_KEYS = {
    "Namespace": ("v1", []),
    "ConfigMap": ("v1", ["data"]),
    "PersistentVolumeClaim": ("v1", ["spec.accessModes", "spec.resources.requests.storage"]),
    "Deployment": (
        "apps/v1",
        ["spec.selector.matchLabels", "spec.template.metadata.labels",
         "spec.template.spec.containers"],
    ),
    "Service": ("v1", ["spec.selector", "spec.ports"]),
    "HorizontalPodAutoscaler": (
        "autoscaling/v2", ["spec.scaleTargetRef.name", "spec.maxReplicas", "spec.metrics"]
    ),
    "PodDisruptionBudget": ("policy/v1", ["spec.selector.matchLabels"]),
}  # fmt: skip


def test_kubernetes_objects_have_the_required_keys_of_their_kind():
    objects = k8s_objects()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= {
        o["kind"] for o in objects
    }
    for obj in objects:
        assert obj["kind"] in REQUIRED_KEYS, f"no check for kind {obj['kind']}"
        api_version, keys = REQUIRED_KEYS[obj["kind"]]
        assert obj["apiVersion"] == api_version, obj["metadata"]
        assert obj["metadata"]["name"], obj
        for key in keys:
            assert dig(obj, key) is not None, f"{obj['kind']} {obj['metadata']['name']}: {key}"


def test_deployments_select_their_pods_and_their_containers_are_complete():
    for name, deployment in by_kind("Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            if name in THIRD_PARTY:
                assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", container["image"]), name
            else:
                assert container["image"] == "covertype", f"{name}: the project image"
                assert container["command"][0] == "covertype", name
            assert container["ports"], name
            for probe in ("readinessProbe", "livenessProbe"):
                assert dig(container, f"{probe}.httpGet.path"), f"{name}: {probe}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"


def test_services_route_to_their_deployments_named_ports():
    deployments = by_kind("Deployment")
    for name, service in by_kind("Service").items():
        matching = [
            d for d in deployments.values()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        assert len(matching) == 1, f"Service {name} selects {len(matching)} Deployments"
        ports = {
            p["name"]: p["containerPort"]
            for c in matching[0]["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: {port['targetPort']}"
            assert port["port"] == ports[port["targetPort"]], f"Service {name}: same port"


def test_every_probe_asks_a_path_its_service_serves(served):
    health_paths = served.health_paths() | THIRD_PARTY
    for name, deployment in by_kind("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = dig(container, f"{probe}.httpGet.path")
                if path is not None:
                    assert path in health_paths[name], f"{name} {probe}: {path}"


def test_inference_api_is_ready_with_a_model_alive_with_health_and_autoscaled(served):
    inference_api_paths = served.inference_api
    [container] = by_kind("Deployment")["api"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "get" in inference_api_paths["/ready"] and "get" in inference_api_paths["/health"]
    assert "replicas" not in by_kind("Deployment")["api"]["spec"], "the HPA owns the count"
    hpa = by_kind("HorizontalPodAutoscaler")["api"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "api"
    }  # fmt: skip
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"  # works because the pods request CPU
    assert container["resources"]["requests"]["cpu"]


def test_configmap_holds_settings_the_code_reads():
    data = by_kind("ConfigMap")["covertype-settings"]["data"]
    assert set(data) <= set(SETTINGS_ENV), set(data) - set(SETTINGS_ENV)
    assert not {k for k in data if SECRET_NAME.search(k)}, "secrets belong in a Secret"
    assert "COVERTYPE_HOME" not in data, "the images set their own home"
    settings = Settings(_env_file=None, **{SETTINGS_ENV[k]: v for k, v in data.items()})
    services = by_kind("Service")
    for url in (settings.source_url, settings.mlflow_tracking_uri, settings.api_url):
        name, port = urlsplit(url).hostname, urlsplit(url).port
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port], url


def test_secrets_are_generated_from_git_ignored_files_and_referenced_by_name():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    generated = {}
    ignored = (K8S / ".gitignore").read_text().split()
    for generator in kustomization["secretGenerator"]:
        [env_file] = generator["envs"]
        assert env_file in ignored, f"{env_file} must be git-ignored"
        example = K8S / f"{env_file}.example"
        assert example.exists(), example
        for line in re.findall(r"^[^#\n][^=\n]*=(.*)$", example.read_text(), re.M):
            assert "<" in line, f"{example.name}: placeholder values only, not {line}"
        generated[generator["name"]] = env_file_keys(example)
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    text = "\n".join(
        (K8S / r).read_text() for r in kustomization["resources"] if (K8S / r).is_file()
    )
    assert "kind: Secret\n" not in text, "no Secret written in the manifests"
    for deployment in by_kind("Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                ref = dig(variable, "valueFrom.secretKeyRef")
                if ref:
                    assert ref["key"] in generated[ref["name"]], ref
                else:
                    assert not SECRET_NAME.search(variable["name"]), variable
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in by_kind("ConfigMap")


def test_kustomization_lists_every_manifest_of_the_folder():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    helm_values = {"airflow-values.yaml"}
    files = {r for r in kustomization["resources"] if not r.startswith("../")}
    assert files == manifests - helm_values
    assert kustomization["namespace"] == "covertype"
    assert [i["name"] for i in kustomization["images"]] == ["covertype"]


def test_airflow_chart_values_run_our_image_with_dags_from_it_and_name_secrets_only():
    values = load_yaml(K8S / "airflow-values.yaml")
    instructions = dockerfile(ROOT / "deploy/airflow.Dockerfile")
    version, python = re.fullmatch(
        r"apache/airflow:([\d.]+)-python(3\.\d+)", from_image(instructions, 0)
    ).groups()
    assert values["airflowVersion"] == values["defaultAirflowTag"] == version
    compose_image = load_yaml(MAIN_COMPOSE)["services"]["airflow-scheduler"]["image"]
    assert values["images"]["airflow"]["repository"] in interpolate(compose_image)
    assert values["executor"] in ("CeleryExecutor", "KubernetesExecutor")
    # DAGs inside the image: the installed package's dags folder, nothing synced or mounted.
    package_dags = orchestrate.DAGS_FOLDER.relative_to(orchestrate.DAGS_FOLDER.parents[1])
    expected = f"/home/airflow/.local/lib/python{python}/site-packages/{package_dags}"
    assert values["config"]["core"]["dags_folder"] == expected
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    # Secrets by name only.
    for literal in ("fernetKey", "jwtSecret", "apiSecretKey", "webserverSecretKey"):
        assert values.get(literal) is None, literal
    assert dig(values, "data.metadataConnection") is None
    assert values["createUserJob"]["enabled"] is False, "no default admin/admin"
    generated = {g["name"]: g for g in load_yaml(K8S / "kustomization.yaml")["secretGenerator"]}
    keys = {name: env_file_keys(K8S / f"{g['envs'][0]}.example") for name, g in generated.items()}
    for field in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[field] in generated, field
    assert values["data"]["metadataSecretName"] in generated
    assert {"connection", "fernet-key", "api-secret-key", "jwt-secret"} <= keys["covertype-airflow"]
    # What the tasks read: the settings ConfigMap and the data DB URL.
    assert "name: covertype-settings" in values["extraEnvFrom"]
    assert values["secret"] == [
        {"envName": "COVERTYPE_DATA_DB_URL", "secretName": "covertype-secrets",
         "secretKey": "COVERTYPE_DATA_DB_URL"},
        {"envName": "MLFLOW_TRACKING_PASSWORD", "secretName": "covertype-secrets",
         "secretKey": "COVERTYPE_MLFLOW_TRAIN_PASSWORD"},
    ]  # fmt: skip
    assert {s["secretKey"] for s in values["secret"]} <= keys["covertype-secrets"]
    # The tasks sign in to MLflow as its training user, as compose's Airflow services do.
    compose_worker = environment(compose_services()["airflow-worker"])
    assert values["env"] == [
        {"name": "MLFLOW_TRACKING_USERNAME", "value": compose_worker["MLFLOW_TRACKING_USERNAME"]}
    ]


# ---------------------------------------------------------------- logins


def container_env(name: str) -> dict[str, dict]:
    """A Deployment's one container's env entries by name."""
    [container] = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return {variable["name"]: variable for variable in container.get("env", [])}


@pytest.mark.parametrize("name", ["mlflow", "api", "ui"])
def test_logins_are_wired_as_in_compose_from_the_secret(name):
    """Every login variable compose gives the service, from covertype-secrets (or the
    ConfigMap for COVERTYPE_AUTH, a plain value for the MLflow user name)."""
    compose = environment(compose_services()[name])
    logins = {
        key for key in compose
        if SECRET_NAME.search(key) and key.startswith(("COVERTYPE_", "MLFLOW_TRACKING_"))
    }  # fmt: skip
    if name == "mlflow":  # a URL with the password of the user DB's MySQL user
        logins.add("COVERTYPE_MLFLOW_AUTH_DB_URL")
    assert logins, name
    env = container_env(name)
    config = by_kind("ConfigMap")["covertype-settings"]["data"]
    assert config["COVERTYPE_AUTH"] == compose["COVERTYPE_AUTH"] == "on"
    for key in logins:
        ref = dig(env.get(key, {}), "valueFrom.secretKeyRef")
        assert ref and ref["name"] == "covertype-secrets", f"{name}: {key} from the Secret"
        # Compose's .env variable of that value is the Secret's key of the same name.
        from_env_file = set(re.findall(r"\$\{(\w+):\?", compose[key]))
        assert ref["key"] in {key} | from_env_file, (name, key)
    if "MLFLOW_TRACKING_USERNAME" in compose:
        assert env["MLFLOW_TRACKING_USERNAME"]["value"] == compose["MLFLOW_TRACKING_USERNAME"]
    keys = env_file_keys(K8S / "secrets.env.example")
    assert {dig(v, "valueFrom.secretKeyRef.key") for v in env.values()} - {None} <= keys


def test_prometheus_reads_the_metrics_key_from_the_secret_where_its_config_says():
    pod = by_kind("Deployment")["prometheus"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {
        m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]]
    }  # fmt: skip
    files = {
        f"{path}/{item['path']}": (volume["secret"]["secretName"], item["key"])
        for path, volume in mounted.items()
        for item in volume["secret"]["items"]
    }
    config = load_yaml(ROOT / "deploy/monitoring/prometheus/k8s.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    used = {
        jobs["covertype-api"]["authorization"]["credentials_file"],
        jobs["mlflow"]["basic_auth"]["password_file"],
    }
    assert {files[path] for path in used} == {("covertype-secrets", "COVERTYPE_METRICS_KEY")}
    # The same key the api and mlflow pods check the scraper against.
    for name in ("api", "mlflow"):
        ref = container_env(name)["COVERTYPE_METRICS_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "COVERTYPE_METRICS_KEY", name
    # Readable by the user Prometheus runs as (group fsGroup), by nobody else.
    [volume] = mounted.values()
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
