"""Deployment: docker compose, the two Dockerfiles, Kubernetes manifests, the Airflow chart values.

No Docker engine or cluster runs here, so the files are checked by construction: the compose
files against the compose spec, every command against the installed entry points (run with
`--help`), every setting a service needs against `covertype.settings`, every probe against the
routes of the service it probes, and the Dockerfiles' install commands by running them in fresh
virtualenvs.
"""

from __future__ import annotations

import ast
import concurrent.futures
import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from covertype import orchestrate, tracking
from covertype.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COMPOSE_SCHEMA = SHARED / "schemas/compose-spec.json"
MAIN_COMPOSE = ROOT / "docker-compose.yaml"
LOCUST_COMPOSE = ROOT / "docker-compose-locust.yaml"
COMPOSE_FILES = [MAIN_COMPOSE, LOCUST_COMPOSE]
K8S = ROOT / "deploy/k8s"
BIN = Path(sys.executable).parent
PYTHON311 = shutil.which("python3.11") or sys.executable

SETTINGS_ENV = {env_name(field): field for field in Settings.model_fields}

# Settings compose may take from .env: they mean the same on the host and in a container.
# Every host, port, URL and path it sets itself (a local .env says 127.0.0.1 and ./.covertype).
PASSED_FROM_ENV_FILE = {
    "COVERTYPE_BATCH_SECONDS",
    "COVERTYPE_GROUP_NUMBER",
    "COVERTYPE_MODEL_NAME",
    "COVERTYPE_MODEL_ALIAS",
    "COVERTYPE_PUBLIC_HOST",
    "COVERTYPE_AIRFLOW_ADMIN_USER",
    "COVERTYPE_AIRFLOW_ADMIN_PASSWORD",
    "COVERTYPE_LOCUST_USER",
    "COVERTYPE_LOCUST_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}

# The settings each service's code reads to do its job there (field names of Settings).
AIRFLOW_SETTINGS = {
    "home", "airflow_db_url", "airflow_executor", "airflow_broker_url", "airflow_host",
    "airflow_port", "source_url", "group_number", "batch_seconds", "data_db_url",
    "mlflow_tracking_uri", "model_name", "model_alias",
}  # fmt: skip
NEEDED_SETTINGS = {
    "source": {"home", "source_host", "source_port", "source_data", "batch_seconds"},
    "mlflow": {
        "mlflow_host", "mlflow_port", "mlflow_backend_store_uri", "mlflow_artifacts_destination",
        "mlflow_allowed_hosts", "mlflow_s3_endpoint_url", "aws_access_key_id",
        "aws_secret_access_key",
    },
    "api": {"home", "serve_host", "serve_port", "mlflow_tracking_uri", "model_name", "model_alias"},
    "ui": {"ui_host", "ui_port", "api_url", "mlflow_tracking_uri", "public_host"},
    "airflow-init": AIRFLOW_SETTINGS,
    "airflow-apiserver": AIRFLOW_SETTINGS | {"airflow_admin_user", "airflow_admin_password"},
    "airflow-scheduler": AIRFLOW_SETTINGS,
    "airflow-dag-processor": AIRFLOW_SETTINGS,
    "airflow-triggerer": AIRFLOW_SETTINGS,
    "airflow-worker": AIRFLOW_SETTINGS,
    "ingest": {"source_url", "group_number", "batch_seconds", "data_db_url"},
    "train": {"data_db_url", "mlflow_tracking_uri", "model_name", "model_alias"},
    "locust-master": {"api_url", "locust_host", "locust_port", "locust_user", "locust_password"},
    "locust-worker": {"api_url"},
}  # fmt: skip
# Inside a container a server must listen on every interface.
LISTEN_ANYWHERE = {
    "source_host", "mlflow_host", "serve_host", "ui_host", "airflow_host", "locust_host"
}  # fmt: skip

# Ports the infrastructure services listen on (their images' defaults).
INFRA_PORTS = {"mysql": 3306, "postgres": 5432, "redis": 6379, "minio": 9000}
# Published ports by the component names of DESIGN.md's table.
DESIGN_COMPONENTS = {
    "source": "source API",
    "airflow-apiserver": "Airflow",
    "mlflow": "MLflow",
    "minio": "MinIO",
    "mysql": "MySQL",
    "api-gateway": "inference API",
    "ui": "Streamlit UI",
    "locust-master": "Locust",
}
ONE_SHOT = {"minio-init", "airflow-init", "ingest", "train"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}")


# ---------------------------------------------------------------- helpers


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def main_compose() -> dict:
    return load_yaml(MAIN_COMPOSE)


@pytest.fixture(scope="module")
def all_services() -> dict[str, dict]:
    services = {}
    for path in COMPOSE_FILES:
        services |= load_yaml(path)["services"]
    return services


_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def references(text: str) -> set[str]:
    """The variables a compose value interpolates."""
    return {m["name"] or m["bare"] for m in _REFERENCE.finditer(text) if m[0] != "$$"}


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$. Variables not in
    `env` take their default; a required one without a value becomes `test-<name>`."""
    env = env or {}

    def substitute(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        name = m["name"] or m["bare"]
        if name in env:
            return env[name]
        if m["op"] and m["op"].lstrip(":") == "-":
            return m["arg"]
        return f"test-{name.lower().replace('_', '-')}"

    return _REFERENCE.sub(substitute, text)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def argv(service: dict) -> list[str]:
    """What the container runs: entrypoint + command (exec form)."""
    entrypoint, command = service.get("entrypoint") or [], service.get("command") or []
    assert isinstance(entrypoint, list) and isinstance(command, list), "use exec form"
    return [*entrypoint, *command]


def run_argv(service: dict) -> list[str]:
    """argv without the Airflow image's init (dumb-init), which only reaps and forwards."""
    args = argv(service)
    return args[2:] if args[:2] == ["/usr/bin/dumb-init", "--"] else args


def project_services(services: dict) -> dict[str, dict]:
    return {
        name: s
        for name, s in services.items()
        if s.get("image", "").startswith("${COVERTYPE_IMAGE")
    }


def airflow_services(services: dict) -> dict[str, dict]:
    return {
        name: s
        for name, s in services.items()
        if s.get("image", "").startswith("${COVERTYPE_AIRFLOW_IMAGE")
    }


def settings_of(service: dict) -> Settings:
    """The Settings a service's container would see (its environment, interpolated)."""
    values = {}
    for key, value in environment(service).items():
        if key in SETTINGS_ENV:
            values[SETTINGS_ENV[key]] = interpolate(value)
    return Settings(_env_file=None, **values)


def help_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERTYPE_", "AIRFLOW"))}
    return env | {"COVERTYPE_HOME": str(home), "NO_COLOR": "1"}


def run_help(args: list[str], bin_dir: Path, home: Path) -> subprocess.CompletedProcess:
    """`args --help` with args[0] taken from `bin_dir`: exit 0 means every subcommand and
    option in `args` exists (argparse and click reject unknown ones before printing help)."""
    program = bin_dir / args[0]
    return subprocess.run(
        [str(program), *args[1:], "--help"],
        env=help_env(home),
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def design_ports() -> dict[str, set[int]]:
    """DESIGN.md's 'compose port' column, by component name."""
    ports = {}
    for line in (SHARED / "DESIGN.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d+( / \d+)?", cells[2]):
            ports[cells[0]] = {int(p) for p in cells[2].split(" / ")}
    return ports


def published(service: dict) -> dict[int, int]:
    """Published ports: container port -> host port."""
    result = {}
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        assert len(parts) >= 2, f"{spec}: publish with a fixed host port or not at all"
        result[int(parts[-1])] = int(parts[-2])
    return result


def listening_port(name: str, service: dict) -> int | None:
    """The port a service's process listens on in its container."""
    if name in INFRA_PORTS:
        return INFRA_PORTS[name]
    if name == "api-gateway":
        return 8085
    settings = settings_of(service)
    ports = ("source_port", "mlflow_port", "serve_port", "ui_port", "airflow_port", "locust_port")
    for field in ports:
        if env_name(field) in environment(service):
            return getattr(settings, field)
    return None


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int


def dockerfile(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions (continuations joined, comments dropped), by stage."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    instructions, stage = [], -1
    for text in joined:
        keyword, _, args = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    return instructions


def run_command(instruction: Instruction) -> str:
    """A RUN's shell command without its flags (--mount=...)."""
    return re.sub(r"^(--\S+\s+)+", "", instruction.args)


def from_image(instructions: list[Instruction], stage: int) -> str:
    """A stage's base image, ARG defaults substituted."""
    args = dict(i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and i.stage == -1)
    line = next(i.args for i in instructions if i.keyword == "FROM" and i.stage == stage)
    image = line.split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)


def pins(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {
        name.lower(): version for name, version in re.findall(r"^([\w.\-]+)==(\S+)", text, re.M)
    }


def k8s_objects() -> list[dict]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    objects = []
    for resource in kustomization["resources"]:
        objects += load_all_yaml(K8S / resource)
    return objects


def by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def env_file_keys(path: Path) -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*)=", path.read_text(), re.M))


def dig(obj, dotted: str):
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


# ---------------------------------------------------------------- what the services serve


@pytest.fixture(scope="module")
def inference_api_paths(tmp_path_factory) -> dict[str, set[str]]:
    """The inference API's OpenAPI paths and methods, from its app factory with the registry
    unreachable (the document needs no model)."""
    from covertype.serve import create_app

    home = tmp_path_factory.mktemp("serve-home")
    with pytest.MonkeyPatch.context() as mp:
        # create_app sets MLflow's HTTP options in os.environ; restored after.
        for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
            mp.setenv(name, os.environ.get(name, "0"))
        settings = Settings(_env_file=None, home=home, mlflow_tracking_uri="http://127.0.0.1:9")
        document = create_app(settings).openapi()
    return {path: set(methods) for path, methods in document["paths"].items()}


@pytest.fixture(scope="module")
def source_api_paths(tmp_path_factory) -> dict[str, set[str]]:
    from covertype.source import create_app

    settings = Settings(_env_file=None, home=tmp_path_factory.mktemp("source-home"))
    document = create_app(settings).openapi()
    return {path: set(methods) for path, methods in document["paths"].items()}


@pytest.fixture(scope="module")
def airflow_health(tmp_path_factory) -> dict:
    """The Airflow api-server's health route and the scheduler's health server, read from the
    installed Airflow (in a child process: importing Airflow writes its home)."""
    home = tmp_path_factory.mktemp("airflow-home")
    script = (
        "import inspect, json\n"
        "from airflow.configuration import conf\n"
        "from airflow.api_fastapi.core_api.routes.public import public_router\n"
        "import airflow.utils.scheduler_health as health\n"
        "print(json.dumps({'routes': [r.path for r in public_router.routes],\n"
        "  'scheduler_port': conf.getint('scheduler', 'scheduler_health_check_server_port'),\n"
        "  'scheduler_path': '/health' in inspect.getsource(health)}))\n"
    )
    env = help_env(home) | {"AIRFLOW_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def mlflow_health_endpoints() -> set[str]:
    """MLflow's HEALTH_ENDPOINTS, read from its source (importing mlflow.server is slow)."""
    spec = importlib.util.find_spec("mlflow")
    source = Path(spec.origin).parent / "server/security_utils.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HEALTH_ENDPOINTS":
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"no HEALTH_ENDPOINTS in {source}")


@pytest.fixture(scope="module")
def health_paths(inference_api_paths, source_api_paths, airflow_health) -> dict[str, set[str]]:
    """GET paths each service really serves, by compose service name."""
    from streamlit.web.server.starlette.starlette_routes import ROUTE_HEALTH

    def gets(paths: dict[str, set[str]]) -> set[str]:
        return {path for path, methods in paths.items() if "get" in methods}

    return {
        "api": gets(inference_api_paths),
        "api-gateway": gets(inference_api_paths),  # proxies everything to api
        "source": gets(source_api_paths),
        "mlflow": mlflow_health_endpoints(),
        "ui": {"/" + ROUTE_HEALTH.lstrip("/")},
        "airflow-apiserver": set(airflow_health["routes"]),
    }


# ---------------------------------------------------------------- compose: shape


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_spec(path):
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load_yaml(path))
    ]
    assert not errors, "\n".join(errors)


def test_every_service_names_a_pinned_image(all_services):
    for name, service in all_services.items():
        image = service.get("image")
        assert image, f"{name} names no image"
        if name in project_services(all_services) or name in airflow_services(all_services):
            assert "build" in service or name.startswith("locust"), f"{name}: how is it built?"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin the tag of {image}"


def test_no_service_has_a_fixed_container_name(all_services):
    assert not [name for name, s in all_services.items() if "container_name" in s]


def test_api_scales_behind_a_gateway_on_the_design_port(main_compose):
    services = main_compose["services"]
    api = services["api"]
    assert "ports" not in api, "a published port clashes as soon as api has two replicas"
    assert [str(p) for p in api["expose"]] == ["8085"]
    assert published(services["api-gateway"]) == {8085: 8085}
    mount = "./deploy/nginx/api-gateway.conf:/etc/nginx/conf.d/default.conf:ro"
    assert services["api-gateway"]["volumes"] == [mount]
    conf = (ROOT / "deploy/nginx/api-gateway.conf").read_text()
    # Resolved at request time through Docker's DNS: every replica, new ones within 10 s.
    assert re.search(r"^resolver 127\.0\.0\.11 valid=\d+s", conf, re.M)
    upstream = re.search(r"set \$(\w+) (http://[^;]+);", conf)
    assert upstream and f"proxy_pass ${upstream[1]};" in conf
    url = urlsplit(upstream[2])
    assert (url.hostname, url.port) == ("api", settings_of(api).serve_port)


def test_stack_network_is_the_one_the_locust_file_joins(main_compose):
    assert main_compose["networks"]["default"]["name"] == "covertype"
    locust = load_yaml(LOCUST_COMPOSE)
    assert locust["networks"]["covertype"] == {"name": "covertype", "external": True}


def test_long_running_services_have_a_healthcheck_and_a_restart_policy(all_services):
    for name, service in all_services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a job: it must not restart"
            continue
        if name == "locust-worker":  # scaled worker processes with no port to probe
            assert service["restart"] == "unless-stopped"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_dependencies_wait_for_health_or_completion(all_services):
    for name, service in all_services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            target = all_services[dependency]
            if dependency in ONE_SHOT:
                assert spec["condition"] == "service_completed_successfully", (name, dependency)
            else:
                assert spec["condition"] == "service_healthy", (name, dependency)
                assert target.get("healthcheck"), f"{name} waits for {dependency}'s health"


def test_jobs_run_before_the_services_that_need_them(main_compose):
    services = main_compose["services"]
    assert "minio-init" in services["mlflow"]["depends_on"]  # the bucket exists first
    for name in airflow_services(services):
        if name != "airflow-init":
            assert "airflow-init" in services[name]["depends_on"], name  # `db migrate` first


def test_stateful_services_keep_their_data_in_named_volumes(main_compose):
    expected = {
        "mysql": "/var/lib/mysql",
        "minio": "/data",
        "postgres": "/var/lib/postgresql/data",
        "source": "/var/lib/covertype",
    }
    for name in airflow_services(main_compose["services"]):
        expected[name] = "/opt/airflow/covertype/airflow/logs"
    for name, target in expected.items():
        mounts = {
            v.split(":")[1]: v.split(":")[0]
            for v in main_compose["services"][name]["volumes"]
            if isinstance(v, str)
        }
        assert target in mounts, f"{name}: no volume on {target}"
        assert mounts[target] in main_compose["volumes"], f"{name}: {mounts[target]} not named"


def test_source_serves_a_read_only_data_file_that_must_exist(main_compose):
    source = main_compose["services"]["source"]
    data = environment(source)["COVERTYPE_SOURCE_DATA"]
    [mount] = [v for v in source["volumes"] if isinstance(v, dict)]
    assert mount["target"] == data
    assert mount["read_only"] is True
    assert mount["bind"]["create_host_path"] is False  # a missing file fails, not an empty dir
    assert references(mount["source"]) == {"COVERTYPE_DATA_FILE"}


# ---------------------------------------------------------------- compose: commands


def test_project_services_run_covertype_commands_that_exist(all_services, tmp_path):
    for name, service in project_services(all_services).items():
        args = argv(service)
        assert args[0] == "covertype", f"{name} runs {args}, not a covertype command"
        result = run_help(args, BIN, tmp_path / "home")
        assert result.returncode == 0, f"{name}: {args} --help\n{result.stdout}{result.stderr}"


def test_mlflow_service_runs_mlflow_server_with_the_stores_of_its_settings(main_compose, tmp_path):
    mlflow = main_compose["services"]["mlflow"]
    assert argv(mlflow) == ["covertype", "mlflow"]
    settings = settings_of(mlflow)
    command = tracking.server_command(settings)
    assert command[1:2] == ["server"] and "--serve-artifacts" in command
    assert command[command.index("--backend-store-uri") + 1].startswith("mysql+pymysql://mlflow:")
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    assert "mlflow:8084" in command[command.index("--allowed-hosts") + 1].split(",")
    assert command[command.index("--host") + 1] == "0.0.0.0"
    s3 = tracking.server_environment(settings)
    assert s3["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(s3)
    # The same `mlflow server ...` line with --help: every option exists in this MLflow.
    result = subprocess.run(
        [*command, "--help"], env=help_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_airflow_services_run_covertype_airflow_under_the_images_init(main_compose):
    for name, service in airflow_services(main_compose["services"]).items():
        # The official entrypoint would prefix `airflow`; dumb-init only reaps and forwards.
        assert service["entrypoint"] == ["/usr/bin/dumb-init", "--"], name
        assert run_argv(service)[:2] == ["covertype", "airflow"], name


def test_airflow_services_get_the_compose_configuration_through_the_settings(main_compose):
    services = main_compose["services"]
    for name, service in airflow_services(services).items():
        env = {k: interpolate(v) for k, v in environment(service).items()}
        config = orchestrate.process_env(settings_of(service), base=env)
        assert config["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert config["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0", name
        database = urlsplit(config["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (database.scheme, database.hostname, database.port) == (
            "postgresql+psycopg2",
            "postgres",
            5432,
        ), name
        assert config["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
            "http://airflow-apiserver:8080/execution/"
        ), name
        assert config["AIRFLOW__API__HOST"] == "0.0.0.0", name
        assert config["AIRFLOW__CORE__DAGS_FOLDER"].endswith("covertype/dags"), name
        # Task logs: one volume shared by the workers and the api-server that shows them.
        logs = f"{config['AIRFLOW_HOME']}/logs"
        assert f"airflow-logs:{logs}" in service["volumes"], name
        # Every component signs and reads the same tokens and encrypted values.
        for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
            assert references(environment(service)[secret]) == {secret}, name


def test_worker_and_scheduler_use_the_same_batch_window_as_the_source(all_services):
    windows = {
        name: environment(s)["COVERTYPE_BATCH_SECONDS"]
        for name, s in all_services.items()
        if "COVERTYPE_BATCH_SECONDS" in environment(s)
    }
    assert {"source", "airflow-scheduler", "airflow-dag-processor"} <= set(windows)
    assert len(set(windows.values())) == 1, windows


# ---------------------------------------------------------------- compose: settings, ports


@pytest.mark.parametrize("name", sorted(NEEDED_SETTINGS))
def test_service_gets_every_setting_it_needs(all_services, name):
    env = environment(all_services[name])
    missing = {field for field in NEEDED_SETTINGS[name] if env_name(field) not in env}
    assert not missing, f"{name} lacks {sorted(env_name(f) for f in missing)}"
    settings = settings_of(all_services[name])
    for field in NEEDED_SETTINGS[name] & LISTEN_ANYWHERE:
        assert getattr(settings, field) == "0.0.0.0", f"{name}: {env_name(field)}"


def test_every_covertype_variable_a_service_sets_is_a_setting(all_services):
    for name, service in all_services.items():
        for key in environment(service):
            if key.startswith("COVERTYPE_"):
                assert key in SETTINGS_ENV, f"{name} sets {key}, which no setting reads"


def test_every_url_a_service_gets_names_a_service_on_the_port_it_listens_on(all_services):
    for name, service in all_services.items():
        for key, value in environment(service).items():
            url = urlsplit(interpolate(value))
            if not url.hostname or url.scheme == "s3" or url.hostname == "localhost":
                continue  # not a URL, a bucket, or a URL for a browser (the public host)
            assert url.hostname in all_services, f"{name}: {key} names {url.hostname}"
            port = listening_port(url.hostname, all_services[url.hostname])
            assert url.port == port, f"{name}: {key} says port {url.port}, it listens on {port}"


def test_published_ports_match_the_design(all_services):
    design = design_ports()
    for name, component in DESIGN_COMPONENTS.items():
        [ports] = [p for c, p in design.items() if c.startswith(component)]
        mapping = published(all_services[name])
        assert set(mapping) == ports, f"{name} publishes {sorted(mapping)}, DESIGN says {ports}"
        assert all(host == container for container, host in mapping.items()), name
        if name not in INFRA_PORTS and name != "api-gateway":
            assert {listening_port(name, all_services[name])} <= ports, name


def test_healthchecks_probe_the_port_and_a_path_the_service_serves(all_services, health_paths):
    for name, paths in health_paths.items():
        test = " ".join(all_services[name]["healthcheck"]["test"])
        [url] = re.findall(r"http://127\.0\.0\.1:\d+[^'\" ]*", test)
        url = urlsplit(url)
        assert url.port == listening_port(name, all_services[name]), name
        assert url.path in paths, f"{name}'s healthcheck asks {url.path}, not one of {paths}"


def test_scheduler_healthcheck_asks_the_schedulers_health_server(main_compose, airflow_health):
    service = main_compose["services"]["airflow-scheduler"]
    assert environment(service)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    url = urlsplit(service["healthcheck"]["test"][-1])
    assert url.port == airflow_health["scheduler_port"] and url.path == "/health"
    assert airflow_health["scheduler_path"]


# ---------------------------------------------------------------- compose: secrets, .env


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_no_credential_is_written_in_a_compose_file(path):
    for name, service in load_yaml(path)["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_REFERENCE.fullmatch(value), f"{name}: {key} must be ${{VAR:?}}"
            for password in re.findall(r"://[^/:@\s]+:(\$\{[^}]*\}|[^@\s]+)@", value):
                assert REQUIRED_REFERENCE.fullmatch(password), f"{name}: password in {key}"


def test_compose_takes_no_host_url_port_or_path_setting_from_the_env_file():
    for path in COMPOSE_FILES:
        used = references(path.read_text())
        wrong = {name for name in used if name in SETTINGS_ENV} - PASSED_FROM_ENV_FILE
        assert not wrong, f"{path.name} interpolates local settings {wrong}"


def test_env_example_documents_every_variable_compose_reads():
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    for path in COMPOSE_FILES:
        missing = references(path.read_text()) - documented
        assert not missing, f"{path.name} reads {missing}, absent from .env.example"


def test_env_example_gives_no_compose_secret_a_usable_value():
    text = (ROOT / ".env.example").read_text()
    for path in COMPOSE_FILES:
        for match in REQUIRED_REFERENCE.finditer(path.read_text()):
            name = references(match[0]).pop()
            lines = re.findall(rf"^(#? ?){name}=(.*)$", text, re.M)
            assert lines, name
            for commented, value in lines:
                assert commented or value.startswith("<"), f"{name}={value} in .env.example"


def test_mysql_init_script_makes_both_databases_with_their_own_users(main_compose, tmp_path):
    mysql = main_compose["services"]["mysql"]
    assert "./deploy/mysql/init:/docker-entrypoint-initdb.d:ro" in mysql["volumes"]
    script = ROOT / "deploy/mysql/init/01-databases.sh"
    # Not executable: the mysql entrypoint sources it, which provides docker_process_sql.
    assert not script.stat().st_mode & stat.S_IXUSR
    env = {k: references(v).pop() for k, v in environment(mysql).items()}
    assert env == {k: k for k in env}, "the container gets the .env names unchanged"
    harness = f'docker_process_sql() {{ cat; }}\nsource "{script}"\n'
    passwords = {"MYSQL_COVER_TYPE_PASSWORD": "o'brien\\x", "MYSQL_MLFLOW_PASSWORD": "m1"}
    result = subprocess.run(
        ["bash", "-c", harness], env={"PATH": os.environ["PATH"], **passwords},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    for database in ("cover_type", "mlflow"):
        assert f"CREATE DATABASE IF NOT EXISTS {database} " in sql
        assert f"GRANT ALL PRIVILEGES ON {database}.* TO '{database}'@'%';" in sql
    assert "IDENTIFIED BY 'o''brien\\\\x';" in sql  # quotes and backslashes escaped
    assert "root" not in sql
    missing = subprocess.run(
        ["bash", "-c", harness], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "MYSQL_COVER_TYPE_PASSWORD" in missing.stderr


def test_minio_job_makes_the_bucket_and_a_user_limited_to_it(main_compose, tmp_path):
    job = main_compose["services"]["minio-init"]
    assert job["entrypoint"] == ["/bin/sh", "/deploy/create-bucket.sh"]
    assert "./deploy/minio/create-bucket.sh:/deploy/create-bucket.sh:ro" in job["volumes"]
    bucket = interpolate(environment(job)["BUCKET"])
    destination = settings_of(main_compose["services"]["mlflow"]).mlflow_artifacts_destination
    assert destination == f"s3://{bucket}/"
    # `mc` stubbed: record its calls and the policy it is given.
    (tmp_path / "bin").mkdir()
    mc = tmp_path / "bin/mc"
    mc.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\ncase "$*" in *policy\\ create*) '
                  f'cat "$6" > {tmp_path}/policy.json;; esac\n')  # fmt: skip
    mc.chmod(0o755)
    env = {k: interpolate(v) for k, v in environment(job).items()}
    env |= {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["sh", str(ROOT / "deploy/minio/create-bucket.sh")],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text()
    assert f"mb --ignore-existing covertype/{bucket}" in calls
    assert f"admin user add covertype {env['AWS_ACCESS_KEY_ID']} " in calls
    policy = json.loads((tmp_path / "policy.json").read_text())
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}


# ---------------------------------------------------------------- images


def test_project_dockerfile_is_multi_stage_pinned_slim_and_non_root():
    instructions = dockerfile(ROOT / "Dockerfile")
    stages = max(i.stage for i in instructions) + 1
    assert stages >= 2, "build and runtime stages"
    for stage in range(stages):
        image = from_image(instructions, stage)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image
    build = [run_command(i) for i in instructions if i.stage == 0 and i.keyword == "RUN"]
    assert build[0] == "python -m venv /opt/venv", "the venv the runtime stage copies"
    final = [i for i in instructions if i.stage == stages - 1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage runs as a user"
    installs = " ".join(run_command(i) for i in final if i.keyword == "RUN")
    assert "libgomp1" in installs, "LightGBM needs the OpenMP runtime"
    assert "--from=build /opt/venv /opt/venv" in " ".join(
        i.args for i in final if i.keyword == "COPY"
    )
    assert any("PATH=/opt/venv/bin" in i.args for i in final if i.keyword == "ENV")


def test_airflow_dockerfile_extends_the_official_image_of_the_locked_airflow():
    instructions = dockerfile(ROOT / "deploy/airflow.Dockerfile")
    image = from_image(instructions, 0)
    match = re.fullmatch(r"apache/airflow:([\d.]+)-python(3\.\d+)", image)
    assert match, image
    assert match[1] == pins(ROOT / "requirements.lock")["apache-airflow"]
    assert match[2] == "3.11"
    runs = [run_command(i) for i in instructions if i.keyword == "RUN"]
    lock_install = next(r for r in runs if "requirements-runtime.lock" in r)
    # Airflow pinned in the same pip call: the lock's pins cannot move it.
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in lock_install
    assert any("libgomp1" in r for r in runs)
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users[-1] == "airflow"


def test_runtime_lock_pins_what_requirements_lock_pins_without_airflow_or_dev_tools():
    runtime, full = pins(ROOT / "requirements-runtime.lock"), pins(ROOT / "requirements.lock")
    differing = {name: (v, full.get(name)) for name, v in runtime.items() if full.get(name) != v}
    assert not differing, (
        f"{differing}; recompile: uv pip compile pyproject.toml deploy/requirements-runtime.in "
        "-c requirements.lock --python-version 3.11 -o requirements-runtime.lock"
    )
    # (pytest is there: locust requires it.)
    assert not {"apache-airflow", "ruff", "moto", "selenium", "schemathesis"} & set(runtime)
    assert {"mlflow", "lightgbm", "streamlit", "locust", "pymysql", "boto3"} <= set(runtime)


def test_docker_context_holds_only_what_the_images_copy():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "ignore everything, then name what the builds need"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for path in (ROOT / "Dockerfile", ROOT / "deploy/airflow.Dockerfile"):
        for instruction in dockerfile(path):
            if instruction.keyword == "COPY" and "--from=" not in instruction.args:
                sources = [a for a in shlex.split(instruction.args) if not a.startswith("--")]
                for source in sources[:-1]:
                    assert source in included, f"{path.name} copies {source}, not in the context"
                    assert (ROOT / source).exists(), source
    assert not {".env", ".venv", "data", ".covertype"} & included


# ---------------------------------------------------------------- images: their installs, run


def _copy_into(source: str, destination: Path) -> None:
    if (ROOT / source).is_dir():
        shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, destination)


def _replay(
    path: Path, root: Path, venv: Path, variables: dict[str, str], log: Path
) -> tuple[int, float]:
    """Replay the COPY, WORKDIR and `pip install` RUNs of a Dockerfile's build stage (the one
    named `build`, else the only one) with `root` as the filesystem and `venv` first on PATH,
    as the Dockerfile's ENV PATH puts it. Returns how many pip RUNs ran, and their seconds."""
    instructions = dockerfile(path)
    froms = [i for i in instructions if i.keyword == "FROM"]
    stage = next((i.stage for i in froms if i.args.endswith(" AS build")), froms[-1].stage)
    env = help_env(root) | {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    workdir, copied, pip_runs, seconds = root, {"/opt/venv"}, 0, 0.0
    for instruction in (i for i in instructions if i.stage == stage):
        args = instruction.args
        if instruction.keyword == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY" and "--from=" not in args:
            *sources, target = [a for a in shlex.split(args) if not a.startswith("--")]
            if target.startswith("/"):
                copied.add(target.rstrip("/"))
            base = root / target.lstrip("/") if target.startswith("/") else workdir / target
            for source in sources:
                _copy_into(source, base / Path(source).name if target.endswith("/") else base)
        elif instruction.keyword == "RUN" and "pip install" in args:
            command = run_command(instruction)
            for name, value in variables.items():
                command = command.replace("${" + name + "}", value)
            # Container paths -> the same paths under root (the venv: the one made here).
            container_paths = "|".join(map(re.escape, sorted(copied, key=len, reverse=True)))
            command = re.sub(
                rf"(?<![\w/.-])({container_paths})(?=/|\s|\"|$)",
                lambda m: str(venv if m[1] == "/opt/venv" else root / m[1].lstrip("/")),
                command,
            )
            started = time.monotonic()
            with log.open("a") as out:
                out.write(f"$ {command}\n")
                out.flush()
                result = subprocess.run(
                    ["bash", "-c", command], cwd=workdir, env=env, stdout=out, stderr=out,
                    timeout=600,
                )  # fmt: skip
                took = time.monotonic() - started
                out.write(f"# exit {result.returncode} after {took:.0f}s\n")
            assert result.returncode == 0, f"{command}\n{log.read_text()[-4000:]}"
            pip_runs, seconds = pip_runs + 1, seconds + took
    return pip_runs, seconds


@dataclass
class BuiltEnv:
    venv: Path
    seconds: float  # all of it
    dockerfile_seconds: float  # the Dockerfile's pip RUNs
    log: Path
    pip_runs: int


def _build_project_env(root: Path) -> BuiltEnv:
    """The project image's virtualenv: a fresh venv, then the Dockerfile's build-stage RUNs."""
    started = time.monotonic()
    venv, log = root / "opt/venv", root / "install.log"
    subprocess.run([PYTHON311, "-m", "venv", str(venv)], check=True)
    runs, seconds = _replay(ROOT / "Dockerfile", root, venv, {}, log)
    return BuiltEnv(venv, time.monotonic() - started, seconds, log, runs)


def _build_airflow_env(root: Path) -> BuiltEnv:
    """The Airflow image's virtualenv: a fresh venv standing in for the official image (the
    locked Airflow with the Celery and PostgreSQL providers and drivers it ships), then the
    Dockerfile's RUNs on top."""
    started = time.monotonic()
    venv, log = root / "venv", root / "install.log"
    subprocess.run([PYTHON311, "-m", "venv", str(venv)], check=True)
    version = pins(ROOT / "requirements.lock")["apache-airflow"]
    official = [f"apache-airflow[celery,postgres]=={version}"]  # two of the image's extras
    # The stand-in is not what is under test: uv (which the official image ships too) makes it
    # in seconds where pip takes a minute. The Dockerfile's own RUNs below use pip, as it does.
    pip, uv = str(venv / "bin/pip"), str(venv / "bin/uv")
    with log.open("w") as out:
        for command in (
            [pip, "install", "--disable-pip-version-check", "uv"],
            [uv, "pip", "install", "--python", str(venv / "bin/python"), *official],
        ):
            subprocess.run(command, stdout=out, stderr=out, check=True, timeout=600)
    variables = {"AIRFLOW_VERSION": version}
    runs, seconds = _replay(ROOT / "deploy/airflow.Dockerfile", root, venv, variables, log)
    return BuiltEnv(venv, time.monotonic() - started, seconds, log, runs)


@pytest.fixture(scope="module")
def image_envs(tmp_path_factory):
    """Both images' Python environments, built side by side (each takes about a minute)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield {
            "project": pool.submit(_build_project_env, tmp_path_factory.mktemp("project-image")),
            "airflow": pool.submit(_build_airflow_env, tmp_path_factory.mktemp("airflow-image")),
        }


def test_project_dockerfile_installs_a_covertype_that_runs_every_service(
    image_envs, all_services, tmp_path
):
    built: BuiltEnv = image_envs["project"].result()
    print(f"\nproject image: the Dockerfile's pip RUNs took {built.dockerfile_seconds:.0f}s")
    assert built.pip_runs == 2, "the lock, then the package"
    bin_dir = built.venv / "bin"
    result = run_help(["covertype"], bin_dir, tmp_path / "home")
    assert result.returncode == 0 and "serve" in result.stdout, result.stderr
    for name, service in project_services(all_services).items():
        result = run_help(argv(service), bin_dir, tmp_path / "home")
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    check = subprocess.run([str(bin_dir / "pip"), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    # Everything the services import at run time is there (help does not import it all),
    # with the drivers and clients their URLs need (MySQL, S3).
    for script in (IMPORT_EVERYTHING, "import locust"):  # locust patches ssl: on its own
        result = subprocess.run(
            [str(bin_dir / "python"), "-c", script], env=help_env(tmp_path),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]


IMPORT_EVERYTHING = """
import importlib, pkgutil
import covertype
skip = ("covertype.dags", "covertype.loadtest.locustfile")  # need Airflow / patch with gevent
for module in pkgutil.walk_packages(covertype.__path__, "covertype."):
    if not module.name.startswith(skip):
        importlib.import_module(module.name)
import boto3, cryptography, lightgbm, mlflow.server, pymysql, streamlit
"""

DAGS_PARSE = """
import json, os
from covertype import orchestrate
from covertype.settings import get_settings
os.environ.update(orchestrate.process_env(get_settings()))
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(str(orchestrate.DAGS_FOLDER))
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids)}))
"""


def test_airflow_dockerfile_installs_covertype_beside_a_working_airflow(
    image_envs, main_compose, tmp_path
):
    built: BuiltEnv = image_envs["airflow"].result()
    print(
        f"\nairflow image: stand-in {built.seconds - built.dockerfile_seconds:.0f}s, "
        f"the Dockerfile's pip RUNs {built.dockerfile_seconds:.0f}s"
    )
    assert built.pip_runs == 2, "the lock with Airflow pinned, then the package"
    bin_dir = built.venv / "bin"
    check = subprocess.run([str(bin_dir / "pip"), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    commands = []
    for name, service in airflow_services(main_compose["services"]).items():
        commands.append((name, run_argv(service)))
        test = service["healthcheck"]["test"] if "healthcheck" in service else []
        if test and test[0] == "CMD-SHELL" and "covertype airflow" in test[1]:
            line = test[1].split("|")[0].replace("$${HOSTNAME}", "host").replace("$$", "$")
            commands.append((f"{name} healthcheck", shlex.split(line.replace("$HOSTNAME", "h"))))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # Airflow's CLI starts slowly
        results = pool.map(
            lambda command: run_help(command[1], bin_dir, tmp_path / "home"), commands
        )
        for (name, args), result in zip(commands, results, strict=True):
            assert result.returncode == 0, f"{name}: {args}\n{result.stdout[-1500:]}{result.stderr}"
    # The DAGs of the installed package parse there, configured as the scheduler is.
    scheduler = main_compose["services"]["airflow-scheduler"]
    env = {k: interpolate(v) for k, v in environment(scheduler).items()}
    env |= {"COVERTYPE_HOME": str(tmp_path / "scheduler-home")}
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", DAGS_PARSE], env=help_env(tmp_path) | env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {orchestrate.COLLECT_DAG, orchestrate.TRAIN_DAG}


# ---------------------------------------------------------------- Kubernetes

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
            assert container["image"] == "covertype", f"{name}: the project image"
            assert container["command"][0] == "covertype", name
            assert container["ports"], name
            for probe in ("readinessProbe", "livenessProbe"):
                assert dig(container, f"{probe}.httpGet.path"), f"{name}: {probe}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{name}: {kind}"


def test_kubernetes_containers_run_covertype_commands_that_exist(tmp_path):
    for name, deployment in by_kind("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            result = run_help(container["command"], BIN, tmp_path / "home")
            assert result.returncode == 0, f"{name}: {result.stderr}"


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


def test_every_probe_asks_a_path_its_service_serves(health_paths):
    for name, deployment in by_kind("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = dig(container, f"{probe}.httpGet.path")
                if path is not None:
                    assert path in health_paths[name], f"{name} {probe}: {path}"


def test_inference_api_is_ready_with_a_model_alive_with_health_and_autoscaled(
    inference_api_paths,
):
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
    text = "\n".join((K8S / r).read_text() for r in kustomization["resources"])
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
    assert set(kustomization["resources"]) == manifests - helm_values
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
         "secretKey": "COVERTYPE_DATA_DB_URL"}
    ]  # fmt: skip
    assert "COVERTYPE_DATA_DB_URL" in keys["covertype-secrets"]
