"""The platform's own contracts in its deployment files, which no schema knows: one table of
services (the port each listens on, the routes its checks ask, the settings and secrets it
needs, what it waits for), held against compose and against what `kubectl kustomize
deploy/k8s` renders. Shapes: test_deploy_validators.py; the commands run in
tests/integration/test_deploy_commands.py."""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import pytest

from covertype.orchestrate.airflow_config import process_env
from covertype.orchestrate.schedule import DAGS_FOLDER
from covertype.tracking.server import server_command, server_environment

from tests.deploy_files import (  # isort: skip
    COMPOSE_FILES, K8S, LOCUST_COMPOSE, MAIN_COMPOSE, ROOT, SECRET_NAME, SETTINGS_ENV, SHARED,
    InterpolationError, airflow_services, by_kind, compose_services, containers, dig, environment,
    healthcheck_url, interpolate, interpolated, load_yaml, pods, references, rendered, run_argv,
    served_routes, setting, settings_of,
)  # fmt: skip


def pairs(text: str) -> dict[str, str]:
    """'VAR=SOURCE SAME' -> {VAR: SOURCE, SAME: SAME}."""
    return {word.partition("=")[0]: word.rpartition("=")[2] for word in text.split()}


@dataclass(frozen=True)
class Service:
    port: int | str | None = None  # what it listens on: its image's port, or a setting's name
    health: str | None = None  # the app whose GET routes its healthcheck and probes ask
    needs: str = ""  # the settings its code reads there, besides its secrets
    secrets: dict = field(default_factory=dict)  # variable -> the .env variable it comes from
    login: str = ""  # the secret that guards its published port
    job: bool = False  # runs to completion: never restarted, waited for until done
    probe: bool = True  # long-running with a healthcheck (a scaled worker with no port: not)
    after: str = ""  # exactly what is healthy (a job: done) before it starts
    volume: str = ""  # its state's path, on a named volume
    design: str = ""  # DESIGN.md's component whose compose port(s) it publishes


MLFLOW_CLIENT = "MLFLOW_TRACKING_URI MLFLOW_TRACKING_USERNAME "
MODEL = "COVERTYPE_MODEL_NAME COVERTYPE_MODEL_ALIAS "
DATA_DB = "COVERTYPE_DATA_DB_URL=MYSQL_COVER_TYPE_PASSWORD "  # the password in the URL
S3_USER = "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY "
MINIO_ROOT = "MINIO_ROOT_USER MINIO_ROOT_PASSWORD "
AS_USER = "MLFLOW_TRACKING_PASSWORD=COVERTYPE_MLFLOW_{}_PASSWORD "  # the MLflow user of a role
AIRFLOW = Service(
    needs=MLFLOW_CLIENT + MODEL + "COVERTYPE_HOME COVERTYPE_AIRFLOW_EXECUTOR "
    "COVERTYPE_AIRFLOW_BROKER_URL COVERTYPE_AIRFLOW_HOST COVERTYPE_AIRFLOW_PORT "
    "COVERTYPE_SOURCE_URL COVERTYPE_GROUP_NUMBER COVERTYPE_BATCH_SECONDS",
    secrets=pairs(DATA_DB + AS_USER.format("TRAIN") + "AIRFLOW__API_AUTH__JWT_SECRET "
                  "AIRFLOW__CORE__FERNET_KEY COVERTYPE_AIRFLOW_DB_URL=POSTGRES_AIRFLOW_PASSWORD"),
    after="airflow-init db-migrate postgres redis",
    volume="/opt/airflow/covertype/airflow/logs")  # fmt: skip
SERVICES = {
    "mysql": Service(3306, volume="/var/lib/mysql", design="MySQL",
                     secrets=pairs("MYSQL_ROOT_PASSWORD")),
    "mysql-init": Service(job=True, after="mysql", secrets=pairs(
        "MYSQL_ROOT_PASSWORD MYSQL_COVER_TYPE_PASSWORD MYSQL_MLFLOW_PASSWORD "
        "MYSQL_MLFLOW_AUTH_PASSWORD")),
    "db-migrate": Service(job=True, after="mysql-init", secrets=pairs(DATA_DB)),
    "minio": Service(9000, volume="/data", design="MinIO", login="MINIO_ROOT_PASSWORD",
                     secrets=pairs(MINIO_ROOT)),
    "minio-init": Service(job=True, after="minio", secrets=pairs(MINIO_ROOT + S3_USER)),
    "postgres": Service(5432, volume="/var/lib/postgresql/data",
                        secrets=pairs("POSTGRES_PASSWORD=POSTGRES_AIRFLOW_PASSWORD")),
    "redis": Service(6379),
    "mlflow": Service(
        "COVERTYPE_MLFLOW_PORT", "mlflow", design="MLflow", after="mysql-init minio-init",
        needs="COVERTYPE_MLFLOW_HOST COVERTYPE_MLFLOW_PORT COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION "
        "COVERTYPE_MLFLOW_ALLOWED_HOSTS MLFLOW_S3_ENDPOINT_URL COVERTYPE_AUTH",
        secrets=pairs(S3_USER + "COVERTYPE_MLFLOW_BACKEND_STORE_URI=MYSQL_MLFLOW_PASSWORD "
                      "COVERTYPE_MLFLOW_AUTH_DB_URL=MYSQL_MLFLOW_AUTH_PASSWORD "
                      "COVERTYPE_METRICS_KEY COVERTYPE_MLFLOW_ADMIN_PASSWORD "
                      "COVERTYPE_MLFLOW_TRAIN_PASSWORD COVERTYPE_MLFLOW_SERVE_PASSWORD "
                      "COVERTYPE_MLFLOW_UI_PASSWORD"),
        login="COVERTYPE_MLFLOW_ADMIN_PASSWORD"),
    "source": Service("COVERTYPE_SOURCE_PORT", "source", volume="/var/lib/covertype",
                      design="source API", needs="COVERTYPE_HOME COVERTYPE_SOURCE_HOST "
                      "COVERTYPE_SOURCE_PORT COVERTYPE_SOURCE_DATA COVERTYPE_BATCH_SECONDS"),
    "api": Service(
        "COVERTYPE_SERVE_PORT", "inference", after="db-migrate mlflow", login="COVERTYPE_API_KEYS",
        needs=MLFLOW_CLIENT + MODEL + "COVERTYPE_HOME COVERTYPE_SERVE_HOST COVERTYPE_SERVE_PORT "
        "COVERTYPE_AUTH",
        secrets=pairs(DATA_DB + AS_USER.format("SERVE") + "COVERTYPE_API_KEYS "
                      "COVERTYPE_METRICS_KEY")),
    "api-gateway": Service(8085, "inference", design="inference API", after="api"),
    "ui": Service(
        "COVERTYPE_UI_PORT", "ui", design="Streamlit UI", after="api mlflow",
        needs=MLFLOW_CLIENT + "COVERTYPE_UI_HOST COVERTYPE_UI_PORT COVERTYPE_API_URL "
        "COVERTYPE_PUBLIC_HOST COVERTYPE_AUTH COVERTYPE_UI_USER",
        secrets=pairs(DATA_DB + AS_USER.format("UI") + "COVERTYPE_UI_PASSWORD COVERTYPE_API_KEY"),
        login="COVERTYPE_UI_PASSWORD"),
    "prometheus": Service(9090, "prometheus"),
    "grafana": Service(3000, "grafana", after="prometheus", login="GF_SECURITY_ADMIN_PASSWORD",
                       secrets=pairs("GF_SECURITY_ADMIN_PASSWORD=GRAFANA_ADMIN_PASSWORD")),
    "airflow-init": replace(AIRFLOW, job=True, after="postgres"),
    "airflow-apiserver": replace(
        AIRFLOW, port="COVERTYPE_AIRFLOW_PORT", design="Airflow",
        needs=AIRFLOW.needs + " COVERTYPE_AIRFLOW_ADMIN_USER",
        secrets=AIRFLOW.secrets | pairs("COVERTYPE_AIRFLOW_ADMIN_PASSWORD"),
        login="COVERTYPE_AIRFLOW_ADMIN_PASSWORD"),
    "airflow-scheduler": AIRFLOW,
    "airflow-dag-processor": AIRFLOW,
    "airflow-triggerer": AIRFLOW,
    "airflow-worker": replace(AIRFLOW, after=AIRFLOW.after + " source mlflow"),
    "ingest": Service(job=True, after="source db-migrate", secrets=pairs(DATA_DB), needs=(
        "COVERTYPE_SOURCE_URL COVERTYPE_GROUP_NUMBER COVERTYPE_BATCH_SECONDS")),
    "train": Service(job=True, after="db-migrate mlflow", needs=MLFLOW_CLIENT + MODEL,
                     secrets=pairs(DATA_DB + AS_USER.format("TRAIN"))),
    "locust-master": Service(
        "COVERTYPE_LOCUST_PORT", design="Locust", login="COVERTYPE_LOCUST_PASSWORD",
        needs="COVERTYPE_API_URL COVERTYPE_LOCUST_HOST COVERTYPE_LOCUST_PORT "
        "COVERTYPE_LOCUST_USER",
        secrets=pairs("COVERTYPE_LOCUST_PASSWORD COVERTYPE_API_KEY")),
    "locust-worker": Service(probe=False, after="locust-master", needs="COVERTYPE_API_URL",
                             secrets=pairs("COVERTYPE_API_KEY")),
}  # fmt: skip
# Inside a container a server listens on every interface (the public host: the browser's).
LISTEN_ANYWHERE = {v for s in SERVICES.values() for v in s.needs.split() if v.endswith("_HOST")}
LISTEN_ANYWHERE -= {"COVERTYPE_PUBLIC_HOST"}
# Published with no login: the course's public data; the gateway (the api replicas check keys).
OPEN_BY_DESIGN = {"source", "api-gateway"}
# What compose may take from .env: secrets, and settings that mean the same on the host and in
# a container. Hosts, ports, URLs and paths it sets itself (a local .env says 127.0.0.1).
PASSED_FROM_ENV_FILE = {v for s in SERVICES.values() for v in s.secrets.values()} | {
    "COVERTYPE_BATCH_SECONDS", "COVERTYPE_GROUP_NUMBER", "COVERTYPE_MODEL_NAME",
    "COVERTYPE_MODEL_ALIAS", "COVERTYPE_PUBLIC_HOST", "COVERTYPE_AIRFLOW_ADMIN_USER",
    "COVERTYPE_LOCUST_USER", "COVERTYPE_UI_USER", "COVERTYPE_MLFLOW_ADMIN_USER",
}  # fmt: skip
AGREED = {"COVERTYPE_BATCH_SECONDS", "COVERTYPE_GROUP_NUMBER", "COVERTYPE_MODEL_NAME"}
# The health routes Prometheus' and Grafana's documentation gives.
UPSTREAM_ROUTES = {"prometheus": {"/-/ready", "/-/healthy"}, "grafana": {"/api/health"}}
SECRET = "covertype-secrets"  # the Secret of the platform's own secrets (kustomization.yaml)
EXTERNAL = {"mysql", "minio"}  # outside the kustomization, reached by name (configmap.yaml)
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
URL_PASSWORD = re.compile(r"://[^/:@\s'\"]+:(\$\{[^}]*\}|[^@\s'\"]+)@")


@pytest.fixture(scope="module")
def compose() -> dict[str, dict]:
    return compose_services()


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, set[str]]:
    return served_routes(tmp_path_factory.mktemp("served")) | UPSTREAM_ROUTES


def listening_port(name: str, env: dict[str, str]) -> int | None:
    port = SERVICES[name].port
    return setting(port, env) if isinstance(port, str) else port


def secret_source(value: str) -> str | None:
    """The .env variable a secret takes: the whole value or a URL's password, `${VAR:?...}`."""
    password = URL_PASSWORD.search(value)
    required = REQUIRED.fullmatch(password[1] if password else value)
    return required and required[1]


def assert_urls_reach(where: str, env: dict[str, str], ports: dict[str, set]) -> None:
    for key, value in env.items():
        url = urlsplit(interpolate(value))
        if url.hostname and url.scheme != "s3" and url.hostname != "localhost":  # (a browser's)
            assert url.port in ports.get(url.hostname, ()), f"{where}: nothing at {key}={value}"


def design_ports(component: str) -> set[int]:
    """DESIGN.md's 'compose port' column of a component."""
    for line in (SHARED / "DESIGN.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip(" |").split("|")]
        if len(cells) == 4 and cells[0].startswith(component) and cells[2][:1].isdigit():
            return {int(port) for port in cells[2].split(" / ")}
    raise AssertionError(f"no {component} in DESIGN.md's table")


# ---------------------------------------------------------------- compose, by the table


def test_the_table_describes_every_compose_service(compose):
    assert set(SERVICES) == set(compose), "add the service to SERVICES (or drop its row)"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_runs_the_service_as_the_table_says(name, compose):
    row, service, image = SERVICES[name], compose[name], compose[name]["image"]
    if image.startswith("${"):  # ours; locust runs the project image the main file builds
        assert "build" in service or name.startswith("locust"), f"{name}: how is it built?"
    else:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and ":latest" not in image, image
    assert "container_name" not in service, f"{name}: a fixed name cannot scale"
    assert service.get("restart") == ("no" if row.job else "unless-stopped"), name
    probed = service.get("healthcheck", {}).get("test")
    assert row.job or not row.probe or probed, f"{name}: no healthcheck"
    depends = service.get("depends_on") or {}
    assert set(row.after.split()) == set(depends), f"{name} waits for {set(depends)}"
    for dependency, spec in depends.items():
        done = SERVICES[dependency].job  # a job's completion, else a service's health
        wanted = "service_completed_successfully" if done else "service_healthy"
        assert spec["condition"] == wanted, f"{name} waits for {dependency}: {wanted}"
        assert done or compose[dependency]["healthcheck"], f"{dependency} has no healthcheck"
    if row.volume:
        mounts = dict(v.split(":")[1::-1] for v in service["volumes"] if isinstance(v, str))
        assert mounts.get(row.volume) in load_yaml(MAIN_COMPOSE)["volumes"], f"{name}: no volume"
    published = [str(spec).split(":") for spec in service.get("ports", [])]  # [ip:]host:port
    if row.design:  # on the design's ports, the host's the container's
        ports = design_ports(row.design)
        assert {(int(p[-2]), int(p[-1])) for p in published} == {(p, p) for p in ports}, name
        assert listening_port(name, environment(service)) in ports, name
    outside = [p for p in published if p[0] != "127.0.0.1"]
    assert not outside or row.login or name in OPEN_BY_DESIGN, f"{name}: {outside}, no login"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_gives_the_service_its_settings_and_secrets(name, compose):
    row, env = SERVICES[name], environment(compose[name])
    missing = set(row.needs.split()) - set(env)
    assert not missing, f"{name} lacks {missing}"
    unknown = {k for k in env if k.startswith("COVERTYPE_")} - set(SETTINGS_ENV)
    assert not unknown, f"{name} sets {unknown}, which no setting reads"
    for host in LISTEN_ANYWHERE & set(row.needs.split()):
        assert setting(host, env) == "0.0.0.0", f"{name}: {host}"
    if "COVERTYPE_AUTH" in row.needs:
        assert env["COVERTYPE_AUTH"] == setting("COVERTYPE_AUTH", env) == "on", name
    assert not row.login or row.login in row.secrets, f"{name}: its login is one of its secrets"
    # Every secret a reference to the required .env variable of the table, none written here.
    secret = {k for k, v in env.items() if SECRET_NAME.search(k) or URL_PASSWORD.search(v)}
    assert secret <= set(row.secrets), f"{name}: {secret - set(row.secrets)} not in the table"
    for variable, source in row.secrets.items():
        assert secret_source(env.get(variable, "")) == source, f"{name}: {variable} not ${source}"
    # A client of MLflow signs in as the user of its role, with the password the server sets.
    source = row.secrets.get("MLFLOW_TRACKING_PASSWORD")  # COVERTYPE_MLFLOW_<ROLE>_PASSWORD
    assert ("MLFLOW_TRACKING_URI" in env) == bool(source), name
    if source:
        user = setting(source.replace("_PASSWORD", "_USER"), environment(compose["mlflow"]))
        assert env["MLFLOW_TRACKING_USERNAME"] == user and source in SERVICES["mlflow"].secrets
    assert ("COVERTYPE_API_URL" in env) == ("COVERTYPE_API_KEY" in row.secrets), "API clients"
    ports = {n: {listening_port(n, environment(s))} for n, s in compose.items()}
    assert_urls_reach(name, env, ports)
    # Settings every service must agree on: as the Airflow worker's, which sets them all.
    worker = environment(compose["airflow-worker"])
    for variable in AGREED & set(env):
        assert env[variable] == worker.get(variable), f"{name}: {variable}"


@pytest.mark.parametrize("name", [name for name, row in SERVICES.items() if row.health])
def test_healthchecks_and_probes_ask_a_route_the_service_serves(name, compose, routes):
    paths, service = routes[SERVICES[name].health], compose[name]
    url = healthcheck_url(service)
    assert url.port == listening_port(name, environment(service)), name
    assert url.path in paths, f"{name}'s healthcheck asks {url.path}, not one of {paths}"
    settings = by_kind("ConfigMap")["covertype-settings"]["data"]
    for container in pods().get(name, {"containers": []})["containers"]:  # not init containers
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if get := dig(container, f"{probe}.httpGet"):
                assert get["path"] in paths, f"{name} {probe}: {get['path']}"
                assert ports[get["port"]] == listening_port(name, settings), f"{name} {probe}"
    # Airflow's: tests/integration/test_deploy_commands.py (its routes come from Airflow).


# ---------------------------------------------------------------- compose, service by service


def test_api_scales_behind_a_gateway_that_passes_the_keys_on(compose):
    port = listening_port("api", environment(compose["api"]))
    assert "ports" not in compose["api"], "a host port clashes as soon as api has two replicas"
    assert compose["api"]["expose"] == [str(port)]
    conf = "./deploy/nginx/api-gateway.conf"
    assert compose["api-gateway"]["volumes"] == [f"{conf}:/etc/nginx/conf.d/default.conf:ro"]
    conf = (ROOT / conf).read_text()
    assert re.search(rf"^\s*listen {SERVICES['api-gateway'].port};", conf, re.M)
    # Resolved at request time through Docker's DNS: every replica, new ones within 10 s.
    assert re.search(r"^resolver 127\.0\.0\.11 valid=\d+s", conf, re.M)
    upstream = re.search(r"set \$(\w+) (http://[^;]+);", conf)
    assert f"proxy_pass ${upstream[1]};" in conf and urlsplit(upstream[2]).netloc == f"api:{port}"
    # nginx passes every request header unless told otherwise; X-API-Key has no underscore.
    assert not re.search(r"^\s*proxy_pass_request_headers\s+off", conf, re.M)
    assert not re.search(r"^\s*proxy_set_header\s+(Authorization|X-API-Key)\b", conf, re.M | re.I)


def test_the_locust_file_joins_the_stacks_network_and_the_source_mounts_its_data(compose):
    assert load_yaml(MAIN_COMPOSE)["networks"]["default"]["name"] == "covertype"
    networks = load_yaml(LOCUST_COMPOSE)["networks"]
    assert networks["covertype"] == {"name": "covertype", "external": True}
    [mount] = [v for v in compose["source"]["volumes"] if isinstance(v, dict)]
    assert mount["target"] == environment(compose["source"])["COVERTYPE_SOURCE_DATA"]
    assert mount["read_only"] is True and references(mount["source"]) == {"COVERTYPE_DATA_FILE"}
    assert mount["bind"]["create_host_path"] is False  # a missing file fails, not an empty dir


def test_mlflow_runs_its_server_with_the_stores_of_its_settings_and_its_user_db(compose):
    env = environment(compose["mlflow"])
    assert run_argv(compose["mlflow"]) == ["covertype", "mlflow"]
    command = server_command(settings_of(env))
    option = {key: command[command.index(key) + 1] for key in command if key.startswith("--")}
    assert command[1] == "server" and "--serve-artifacts" in command
    assert option["--backend-store-uri"].startswith("mysql+pymysql://mlflow:")
    assert option["--artifacts-destination"].startswith("s3://")
    assert "mlflow:8084" in option["--allowed-hosts"].split(",") and option["--host"] == "0.0.0.0"
    s3 = server_environment(settings_of(env))
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} <= set(s3)
    # Its user DB: a MySQL database and user of their own, which the init script makes.
    db = urlsplit(interpolate(env["COVERTYPE_MLFLOW_AUTH_DB_URL"]))
    assert (db.scheme, db.username, db.path) == ("mysql+pymysql", "mlflow_auth", "/mlflow_auth")
    init = (ROOT / "deploy/mysql/ensure-databases.sh").read_text()  # run: test_deploy_commands
    assert '"mlflow_auth:$MYSQL_MLFLOW_AUTH_PASSWORD"' in init


def test_airflow_components_run_covertype_airflow_configured_by_the_settings(compose):
    for name, service in airflow_services(compose).items():
        # The official entrypoint would prefix `airflow`; dumb-init only reaps and forwards.
        assert service["entrypoint"] == ["/usr/bin/dumb-init", "--"], name
        assert run_argv(service)[:2] == ["covertype", "airflow"], name
        env = {k: interpolate(v) for k, v in environment(service).items()}
        config = process_env(settings_of(env), base=env)
        database = urlsplit(config["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (database.scheme, database.hostname) == ("postgresql+psycopg2", "postgres"), name
        assert config["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert config["AIRFLOW__CELERY__BROKER_URL"] == env["COVERTYPE_AIRFLOW_BROKER_URL"], name
        execution = config["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        assert execution == "http://airflow-apiserver:8080/execution/", name
        assert config["AIRFLOW__API__HOST"] == "0.0.0.0", name
        assert config["AIRFLOW__CORE__DAGS_FOLDER"].endswith("covertype/dags"), name
        # Task logs: one volume shared by the workers and the api-server that shows them.
        assert f"airflow-logs:{config['AIRFLOW_HOME']}/logs" in service["volumes"], name


# ---------------------------------------------------------------- compose's .env


def filled_env(**changes: str | None) -> dict[str, str]:
    """A filled-in .env: every variable compose reads, long enough; `changes` (None: unset)."""
    names = set().union(*(references(path.read_text()) for path in COMPOSE_FILES))
    env = {name: f"{name.lower().replace('_', '-')}-0123456789abcdef" for name in names}
    return {k: v for k, v in (env | changes).items() if v is not None}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_reads_from_env_documented_portable_settings_and_secrets_only(path):
    example, used = (ROOT / ".env.example").read_text(), references(path.read_text())
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", example, re.M))
    assert not used - documented, f"{path.name} reads {used - documented}, not in .env.example"
    local = {name for name in used if name in SETTINGS_ENV} - PASSED_FROM_ENV_FILE
    assert not local, f"{path.name} interpolates local settings {local}"
    for name in {m[1] for m in REQUIRED.finditer(path.read_text())}:  # no usable secret
        lines = re.findall(rf"^(#? ?){name}=(.*)$", example, re.M)
        assert lines and all(c or v.startswith("<") for c, v in lines), name
    # Filled in, every secret lands in the services that take it.
    env = filled_env()
    for name, service in interpolated(path, env)["services"].items():
        for variable, source in SERVICES[name].secrets.items():
            assert env[source] in service["environment"][variable], (name, variable)


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize(("path", "variable", "says"), [
    (MAIN_COMPOSE, "COVERTYPE_API_KEYS", "comma-separated keys of 16 or more characters"),
    (LOCUST_COMPOSE, "COVERTYPE_API_KEY", "one of COVERTYPE_API_KEYS"),
], ids=["main", "locust"])  # fmt: skip
def test_compose_refuses_to_start_without_api_keys_and_says_which(path, variable, says, value):
    with pytest.raises(InterpolationError) as error:
        interpolated(path, filled_env(**{variable: value}))
    wanted = f"set {variable} in .env ({says})"
    assert str(error.value) == f"required variable {variable} is missing a value: {wanted}"


# ---------------------------------------------------------------- Kubernetes, as rendered


def secret_data(name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in by_kind("Secret")[name]["data"].items()}


def test_the_kustomization_renders_every_manifest_into_the_namespace():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "airflow-values.yaml"}
    assert {r for r in kustomization["resources"] if not r.startswith("../")} == manifests
    for obj in rendered():  # (the Namespace is named so)
        assert obj["metadata"].get("namespace", obj["metadata"]["name"]) == "covertype", obj


def test_workloads_run_pinned_images_as_non_root_with_probes_and_resources(compose):
    [ours] = load_yaml(K8S / "kustomization.yaml")["images"]
    user = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)[-1]
    for obj in (o for o in rendered() if dig(o, "spec.template")):
        name, template = obj["metadata"]["name"], obj["spec"]["template"]
        selector = dig(obj, "spec.selector.matchLabels") or {}
        assert selector.items() <= template["metadata"]["labels"].items(), name
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in containers(pod):
            if container["image"].startswith(ours["name"] + ":"):  # ours, as its image runs
                assert container["image"] == f"{ours['name']}:{ours['newTag']}", name
                assert container["command"][0] == "covertype", name
                assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0], name
            else:  # the pinned upstream image compose runs
                assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", container["image"]), name
                assert container["image"] == compose[name]["image"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"
        for container in pod["containers"] if obj["kind"] == "Deployment" else []:
            assert container["ports"], name
            for probe in ("readinessProbe", "livenessProbe"):
                assert dig(container, f"{probe}.httpGet.path"), f"{name}: {probe}"


def test_services_route_to_a_named_port_of_one_deployment():
    templates = [d["spec"]["template"] for d in by_kind("Deployment").values()]
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"].items()
        selected = [t["spec"] for t in templates if selector <= t["metadata"]["labels"].items()]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        ports = {
            p["name"]: p["containerPort"] for c in selected[0]["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert ports.get(port["targetPort"]) == port["port"], f"Service {name}: {port}"


def test_the_inference_api_is_ready_with_a_model_and_autoscaled_on_cpu():
    api = by_kind("Deployment")["api"]
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"  # a champion loaded
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "replicas" not in api["spec"], "the HorizontalPodAutoscaler owns the count"
    hpa = by_kind("HorizontalPodAutoscaler")["api"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu" and container["resources"]["requests"]["cpu"]


def test_the_settings_configmap_holds_settings_and_every_url_reaches_a_service():
    data = by_kind("ConfigMap")["covertype-settings"]["data"]
    assert set(data) <= set(SETTINGS_ENV), set(data) - set(SETTINGS_ENV)
    assert not {k for k in data if SECRET_NAME.search(k)}, "secrets belong in a Secret"
    assert "COVERTYPE_HOME" not in data, "the images set their own home"
    assert data["COVERTYPE_AUTH"] == "on"
    ports = {n: {p["port"] for p in s["spec"]["ports"]} for n, s in by_kind("Service").items()}
    ports |= {name: {SERVICES[name].port} for name in EXTERNAL}
    assert_urls_reach("k8s", data | secret_data(SECRET), ports)


def test_secrets_are_generated_only_and_reach_every_pod_as_in_compose():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True  # named elsewhere
    secrets = by_kind("Secret")  # none written in a manifest: each from a generator
    assert set(secrets) == {g["name"] for g in kustomization["secretGenerator"]}
    for name, pod in pods().items():
        env = {v["name"]: v for c in containers(pod) for v in c.get("env", [])}
        for variable in env.values():
            ref = dig(variable, "valueFrom.secretKeyRef")
            assert ref["key"] in secrets[ref["name"]]["data"] if ref else not SECRET_NAME.search(
                variable["name"]), (name, variable)  # fmt: skip
        for variable, source in SERVICES[name].secrets.items():
            ref = dig(env.get(variable, {}), "valueFrom.secretKeyRef") or {}
            assert ref.get("name") == SECRET, f"{name}: {variable} from the Secret"
            assert ref["key"] in {variable, source}, f"{name}: {variable} from {ref['key']}"
        if source := SERVICES[name].secrets.get("MLFLOW_TRACKING_PASSWORD"):
            user = setting(source.replace("_PASSWORD", "_USER"))
            assert env["MLFLOW_TRACKING_USERNAME"]["value"] == user, name
        for source in (s for c in containers(pod) for s in c.get("envFrom", [])):
            assert source["configMapRef"]["name"] in by_kind("ConfigMap"), name


def test_prometheus_reads_the_metrics_key_where_its_configs_say():
    """Both scrape configs read /run/secrets/metrics_key (test_monitoring_files.py pins it)."""
    # Compose: a secret from the .env variable the api and mlflow check the scraper against.
    main = load_yaml(MAIN_COMPOSE)
    assert main["services"]["prometheus"]["secrets"] == ["metrics_key"]
    assert main["secrets"]["metrics_key"] == {"environment": "COVERTYPE_METRICS_KEY"}
    assert all("COVERTYPE_METRICS_KEY" in SERVICES[n].secrets for n in ("api", "mlflow"))
    # Kubernetes: the same key of covertype-secrets, readable by Prometheus' group only.
    pod = pods()["prometheus"]
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    files = {f"{m['mountPath']}/{item['path']}": (volumes[m["name"]]["secretName"], item["key"])
             for m in pod["containers"][0]["volumeMounts"] if m["name"] in volumes
             for item in volumes[m["name"]]["items"]}  # fmt: skip
    assert files["/run/secrets/metrics_key"] == (SECRET, "COVERTYPE_METRICS_KEY")
    assert [v["defaultMode"] for v in volumes.values()] == [0o440]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # (Its port, on loopback only in compose: tests/unit/test_monitoring_files.py.)


def test_airflow_chart_values_run_our_image_with_its_dags_and_name_secrets_only(compose):
    values = load_yaml(K8S / "airflow-values.yaml")
    image = re.findall(r"^FROM\s+(\S+)", (ROOT / "deploy/airflow.Dockerfile").read_text(), re.M)[0]
    version, python = re.fullmatch(r"apache/airflow:([\d.]+)-python(3\.\d+)", image).groups()
    assert values["airflowVersion"] == values["defaultAirflowTag"] == version
    worker = compose["airflow-worker"]
    assert values["images"]["airflow"]["repository"] in interpolate(worker["image"])
    assert values["executor"] in ("CeleryExecutor", "KubernetesExecutor")
    # DAGs inside the image: the installed package's dags folder, nothing synced or mounted.
    dags = DAGS_FOLDER.relative_to(DAGS_FOLDER.parents[1])
    site = f"/home/airflow/.local/lib/python{python}/site-packages"
    assert values["config"]["core"]["dags_folder"] == f"{site}/{dags}"
    assert values["dags"]["gitSync"]["enabled"] is values["dags"]["persistence"]["enabled"] is False
    # Secrets by the name of a generated Secret only; no default admin/admin.
    for literal in ("fernetKey", "jwtSecret", "apiSecretKey", "webserverSecretKey"):
        assert values.get(literal) is None, literal
    assert dig(values, "data.metadataConnection") is None and not values["createUserJob"]["enabled"]
    names = [values[f"{n}SecretName"] for n in ("fernetKey", "apiSecretKey", "jwt")]
    assert {*names, values["data"]["metadataSecretName"]} == {"covertype-airflow"}
    keys = {"connection", "fernet-key", "api-secret-key", "jwt-secret"}
    assert keys <= set(secret_data("covertype-airflow"))
    # The tasks read the settings ConfigMap and, as compose's worker, the data DB and MLflow's
    # training user (the chart makes its own database, Fernet key and JWT secret).
    assert "name: covertype-settings" in values["extraEnvFrom"]
    from_env = SERVICES["airflow-worker"].secrets
    wanted = {"COVERTYPE_DATA_DB_URL", "MLFLOW_TRACKING_PASSWORD"}
    assert {s["envName"] for s in values["secret"]} == wanted
    for secret in values["secret"]:
        assert secret["secretName"] == SECRET, secret
        assert secret["secretKey"] in {secret["envName"], from_env[secret["envName"]]}, secret
        assert secret["secretKey"] in secret_data(SECRET), secret
    user = environment(worker)["MLFLOW_TRACKING_USERNAME"]
    assert values["env"] == [{"name": "MLFLOW_TRACKING_USERNAME", "value": user}]


# ---------------------------------------------------------------- secrets in the repository

# An upper-case variable named like a secret, given a value (NAME=value, NAME: value).
SECRET_ASSIGNMENT = re.compile(
    r"(?<![\w{$])([A-Z][A-Z0-9_]*(?:PASSWORD|SECRET|KEY|TOKEN)[A-Z0-9_]*)[ \t]*[:=][ \t]*(.*)"
)
# What a secret may be written as: nothing, a <placeholder>, a reference to a variable.
NOT_A_VALUE = re.compile(r"""["']?(<[^>]*>|\$\{[^}]*\}|\$\(|\$[A-Z_]|$)""")
# Code and tests hold throwaway passwords for the servers they start; the locks are hashes.
NOT_DEPLOYMENT = ("src/", "tests/", "benchmarks/")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_no_secret_value_is_in_any_tracked_file():
    listed = git("ls-files", "-z")
    assert listed.returncode == 0, listed.stderr
    paths = [p for p in listed.stdout.split("\0") if p and not p.startswith(NOT_DEPLOYMENT)]
    paths = [p for p in paths if not p.endswith(".lock") and (ROOT / p).is_file()]
    assert len(paths) > 20  # compose, .env.example, deploy/**, README, scripts
    for path in paths:
        text = (ROOT / path).read_bytes().decode(errors="replace")  # a PNG's text chunks too
        for number, line in enumerate(text.splitlines(), 1):
            assert "supersecret" not in line.lower(), f"{path}:{number}: the seed's password"
            for match in SECRET_ASSIGNMENT.finditer(line):
                assert NOT_A_VALUE.match(match[2].strip()), f"{path}:{number}: {match[1]}"
            for password in URL_PASSWORD.findall(line):
                assert NOT_A_VALUE.match(password), f"{path}:{number}: a password in a URL"


def test_the_files_of_real_secrets_are_git_ignored_and_their_examples_hold_placeholders():
    generators = load_yaml(K8S / "kustomization.yaml")["secretGenerator"]
    k8s = [f"deploy/k8s/{env}" for generator in generators for env in generator["envs"]]
    for path in [".env", *k8s]:
        assert git("check-ignore", "-q", path).returncode == 0, f"{path} is not git-ignored"
        assert not git("ls-files", path).stdout, f"{path} is tracked"
    for path in k8s:  # (.env.example's: test_compose_reads_from_env_...)
        example = (ROOT / f"{path}.example").read_text()
        for value in re.findall(r"^[^#\n][^=\n]*=(.*)$", example, re.M):
            assert "<" in value, f"{path}.example: placeholder values only, not {value}"


def test_kubernetes_upgrades_the_data_db_before_the_api_or_a_task_writes_to_it():
    """As compose's db-migrate: the api's pods and the Airflow workers run `covertype db
    upgrade` (safe in parallel: it takes the database's lock) with the data DB's URL first."""
    workers = load_yaml(K8S / "airflow-values.yaml")["workers"]["extraInitContainers"]
    url_key = "COVERTYPE_DATA_DB_URL"  # the Secret's key of the same name
    for where, inits in (("api", pods()["api"]["initContainers"]), ("airflow workers", workers)):
        (upgrade,) = [c for c in inits if c.get("command") == ["covertype", "db", "upgrade"]]
        url = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in upgrade["env"]}
        assert url["COVERTYPE_DATA_DB_URL"] == {"name": SECRET, "key": url_key}, where
    own = "{{ .Values.images.airflow.repository }}:{{ .Values.images.airflow.tag }}"
    assert workers[0]["image"] == own, "the workers' own image, templated by the chart"
