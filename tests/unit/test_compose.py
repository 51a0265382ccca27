"""docker compose, read as data: each file against the compose spec; images, health, restarts
and start order; the settings, URLs and ports each service gets; a login on every published
service, the clients' MLflow users and API keys; secrets only by reference, none in any
tracked file, a missing one failing compose with its message; every variable in
.env.example. The commands and scripts themselves run in
tests/integration/test_deploy_commands.py."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import jsonschema
import pytest

from covertype import orchestrate, tracking
from covertype.settings import env_name
from tests.deploy_files import (
    COMPOSE_FILES,
    COMPOSE_SCHEMA,
    INFRA_PORTS,
    LOCUST_COMPOSE,
    MAIN_COMPOSE,
    ROOT,
    SECRET_NAME,
    SETTINGS_ENV,
    SHARED,
    InterpolationError,
    airflow_services,
    argv,
    compose_services,
    environment,
    git_ignored,
    healthcheck_url,
    interpolate,
    interpolate_tree,
    listening_port,
    load_yaml,
    project_services,
    references,
    run_argv,
    served_paths,
    settings_of,
    tracked_files,
)

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
    # The logins (README: Logins).
    "COVERTYPE_API_KEYS",
    "COVERTYPE_API_KEY",
    "COVERTYPE_METRICS_KEY",
    "COVERTYPE_UI_USER",
    "COVERTYPE_UI_PASSWORD",
    "COVERTYPE_MLFLOW_ADMIN_USER",
    "COVERTYPE_MLFLOW_ADMIN_PASSWORD",
    "COVERTYPE_MLFLOW_TRAIN_PASSWORD",
    "COVERTYPE_MLFLOW_SERVE_PASSWORD",
    "COVERTYPE_MLFLOW_UI_PASSWORD",
}

# The settings each service's code reads to do its job there (field names of Settings).
MLFLOW_CLIENT = {"mlflow_tracking_uri", "mlflow_tracking_username", "mlflow_tracking_password"}
AIRFLOW_SETTINGS = MLFLOW_CLIENT | {
    "home", "airflow_db_url", "airflow_executor", "airflow_broker_url", "airflow_host",
    "airflow_port", "source_url", "group_number", "batch_seconds", "data_db_url",
    "model_name", "model_alias",
}  # fmt: skip
NEEDED_SETTINGS = {
    "source": {"home", "source_host", "source_port", "source_data", "batch_seconds"},
    "mlflow": {
        "mlflow_host", "mlflow_port", "mlflow_backend_store_uri", "mlflow_artifacts_destination",
        "mlflow_allowed_hosts", "mlflow_s3_endpoint_url", "aws_access_key_id",
        "aws_secret_access_key", "auth", "mlflow_auth_db_url", "mlflow_admin_password",
        "mlflow_train_password", "mlflow_serve_password", "mlflow_ui_password", "metrics_key",
    },
    "api": MLFLOW_CLIENT | {
        "home", "serve_host", "serve_port", "model_name", "model_alias", "auth", "api_keys",
        "metrics_key",
    },
    "ui": MLFLOW_CLIENT | {
        "ui_host", "ui_port", "api_url", "public_host", "auth", "ui_user", "ui_password",
        "api_key",
    },
    "airflow-init": AIRFLOW_SETTINGS,
    "airflow-apiserver": AIRFLOW_SETTINGS | {"airflow_admin_user", "airflow_admin_password"},
    "airflow-scheduler": AIRFLOW_SETTINGS,
    "airflow-dag-processor": AIRFLOW_SETTINGS,
    "airflow-triggerer": AIRFLOW_SETTINGS,
    "airflow-worker": AIRFLOW_SETTINGS,
    "ingest": {"source_url", "group_number", "batch_seconds", "data_db_url"},
    "train": MLFLOW_CLIENT | {"data_db_url", "model_name", "model_alias"},
    "locust-master": {
        "api_url", "locust_host", "locust_port", "locust_user", "locust_password", "api_key"
    },
    "locust-worker": {"api_url", "api_key"},
}  # fmt: skip
# Inside a container a server must listen on every interface.
LISTEN_ANYWHERE = {
    "source_host", "mlflow_host", "serve_host", "ui_host", "airflow_host", "locust_host"
}  # fmt: skip

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
REQUIRED_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}")

# Each published service's login: container variable -> the .env variable it comes from. The
# gateway's is the api's (it passes the key on); the source API serves public data, open.
LOGINS = {
    "mlflow": {
        "COVERTYPE_MLFLOW_ADMIN_PASSWORD": "COVERTYPE_MLFLOW_ADMIN_PASSWORD",
        "COVERTYPE_MLFLOW_TRAIN_PASSWORD": "COVERTYPE_MLFLOW_TRAIN_PASSWORD",
        "COVERTYPE_MLFLOW_SERVE_PASSWORD": "COVERTYPE_MLFLOW_SERVE_PASSWORD",
        "COVERTYPE_MLFLOW_UI_PASSWORD": "COVERTYPE_MLFLOW_UI_PASSWORD",
        "COVERTYPE_METRICS_KEY": "COVERTYPE_METRICS_KEY",
        "COVERTYPE_MLFLOW_AUTH_DB_URL": "MYSQL_MLFLOW_AUTH_PASSWORD",
    },
    "api": {
        "COVERTYPE_API_KEYS": "COVERTYPE_API_KEYS",
        "COVERTYPE_METRICS_KEY": "COVERTYPE_METRICS_KEY",
    },
    "ui": {"COVERTYPE_UI_PASSWORD": "COVERTYPE_UI_PASSWORD"},
    "airflow-apiserver": {"COVERTYPE_AIRFLOW_ADMIN_PASSWORD": "COVERTYPE_AIRFLOW_ADMIN_PASSWORD"},
    "minio": {"MINIO_ROOT_USER": "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD": "MINIO_ROOT_PASSWORD"},
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD": "GRAFANA_ADMIN_PASSWORD"},
    "locust-master": {"COVERTYPE_LOCUST_PASSWORD": "COVERTYPE_LOCUST_PASSWORD"},
}
OPEN_BY_DESIGN = {"source"}
# The MLflow user each client signs in as, by role (Settings' mlflow_<role>_user); every
# Airflow component is a training client (its tasks train and report drift).
MLFLOW_ROLES = {"api": "serve", "ui": "ui", "train": "train"}


@pytest.fixture(scope="module")
def main_compose() -> dict:
    return load_yaml(MAIN_COMPOSE)


@pytest.fixture(scope="module")
def all_services() -> dict[str, dict]:
    return compose_services()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return served_paths(tmp_path_factory.mktemp("served"))


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


def test_mlflow_service_runs_mlflow_server_with_the_stores_of_its_settings(main_compose):
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
    # Every option of that line exists in this MLflow: tests/integration/test_deploy_commands.py


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


def test_healthchecks_probe_the_port_and_a_path_the_service_serves(all_services, served):
    for name, paths in served.health_paths().items():
        url = healthcheck_url(all_services[name])
        assert url.port == listening_port(name, all_services[name]), name
        assert url.path in paths, f"{name}'s healthcheck asks {url.path}, not one of {paths}"
    # Airflow's: tests/integration/test_deploy_commands.py (its routes come from Airflow).


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


# ---------------------------------------------------------------- compose: logins


def login_reference(value: str) -> set[str]:
    """The .env variables a login value takes: a required reference, alone or as the
    password of a URL."""
    required = REQUIRED_REFERENCE.findall(value)
    assert required, f"{value}: not a required ${{VAR:?}} reference"
    return {references(ref).pop() for ref in required}


def test_every_published_service_asks_for_a_login_from_the_env_file(all_services):
    for name, variables in LOGINS.items():
        env = environment(all_services[name])
        for variable, source in variables.items():
            assert variable in env, f"{name} lacks its login {variable}"
            assert login_reference(env[variable]) == {source}, f"{name}: {variable}"
    for name in ("mlflow", "api", "ui"):
        assert environment(all_services[name])["COVERTYPE_AUTH"] == "on", name
        assert settings_of(all_services[name]).auth == "on", name
    # Every port a browser or client reaches from another machine has a login behind it.
    for name, service in all_services.items():
        outside = [p for p in service.get("ports", []) if not str(p).startswith("127.0.0.1:")]
        if outside and name not in OPEN_BY_DESIGN | {"api-gateway"}:
            assert name in LOGINS, f"{name} publishes {outside} with no login"


def test_the_gateway_passes_the_api_key_headers_on(main_compose):
    conf = (ROOT / "deploy/nginx/api-gateway.conf").read_text()
    # nginx passes every request header unless told otherwise; X-API-Key has no underscore.
    assert not re.search(r"^\s*proxy_pass_request_headers\s+off", conf, re.M)
    assert not re.search(r"^\s*proxy_set_header\s+(Authorization|X-API-Key)\b", conf, re.M | re.I)
    assert "api" in main_compose["services"]["api-gateway"]["depends_on"]


def test_every_mlflow_client_signs_in_as_its_roles_user(all_services):
    mlflow = all_services["mlflow"]
    server = settings_of(mlflow)
    clients = {n: s for n, s in all_services.items() if "MLFLOW_TRACKING_URI" in environment(s)}
    roles = MLFLOW_ROLES | {name: "train" for name in airflow_services(all_services)}
    assert set(clients) == set(roles), "an MLflow client without a role, or a role unused"
    for name, service in clients.items():
        role = roles[name]
        env = environment(service)
        assert env["MLFLOW_TRACKING_USERNAME"] == getattr(server, f"mlflow_{role}_user"), name
        # The same .env password the server sets for that user.
        server_password = environment(mlflow)[f"COVERTYPE_MLFLOW_{role.upper()}_PASSWORD"]
        assert login_reference(env["MLFLOW_TRACKING_PASSWORD"]) == references(server_password)
        assert settings_of(service).mlflow_tracking_password is not None, name
    # The user DB: its own MySQL database and user, made by the init script.
    auth_db = urlsplit(interpolate(environment(mlflow)["COVERTYPE_MLFLOW_AUTH_DB_URL"]))
    assert (auth_db.scheme, auth_db.hostname, auth_db.path) == (
        "mysql+pymysql", "mysql", "/mlflow_auth"
    )  # fmt: skip
    assert auth_db.username == "mlflow_auth"
    init = (ROOT / "deploy/mysql/init/01-databases.sh").read_text()
    assert "CREATE DATABASE IF NOT EXISTS mlflow_auth " in init
    assert "GRANT ALL PRIVILEGES ON mlflow_auth.* TO 'mlflow_auth'@'%';" in init
    assert "MYSQL_MLFLOW_AUTH_PASSWORD" in environment(all_services["mysql"])


def test_every_api_client_sends_a_key(all_services):
    clients = {n: s for n, s in all_services.items() if "COVERTYPE_API_URL" in environment(s)}
    assert {"ui", "locust-master", "locust-worker"} <= set(clients)
    for name, service in clients.items():
        env = environment(service)
        assert login_reference(env.get("COVERTYPE_API_KEY", "")) == {"COVERTYPE_API_KEY"}, name


def test_prometheus_scrapes_with_the_metrics_key_as_a_secret_and_listens_on_loopback(
    main_compose,
):
    secrets = main_compose["secrets"]
    prometheus = main_compose["services"]["prometheus"]
    [name] = prometheus["secrets"]
    # The same .env variable the api and mlflow check the scraper's credential against.
    assert secrets[name] == {"environment": "COVERTYPE_METRICS_KEY"}
    assert "COVERTYPE_METRICS_KEY" in LOGINS["api"] and "COVERTYPE_METRICS_KEY" in LOGINS["mlflow"]
    config = load_yaml(ROOT / "deploy/monitoring/prometheus/compose.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["covertype-api"]["authorization"] == {
        "type": "Bearer", "credentials_file": f"/run/secrets/{name}"
    }  # fmt: skip
    assert jobs["mlflow"]["basic_auth"] == {
        "username": settings_of(main_compose["services"]["mlflow"]).mlflow_metrics_user,
        "password_file": f"/run/secrets/{name}",
    }
    # No login of its own: the host's loopback only (Grafana and the UI use the network).
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]


def compose_env(**changes: str | None) -> dict[str, str]:
    """A filled-in .env: every variable the compose files read with a value of the right
    length, then `changes` (None: unset)."""
    names = set().union(*(references(path.read_text()) for path in COMPOSE_FILES))
    env = {name: f"{name.lower().replace('_', '-')}-0123456789abcdef" for name in names}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_a_filled_in_env_file_interpolates_every_value(path):
    env = compose_env()
    services = interpolate_tree(load_yaml(path), env)["services"]
    for name, variables in LOGINS.items():
        if name in services:
            for variable, source in variables.items():
                assert env[source] in services[name]["environment"][variable], (name, variable)


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_api_keys_and_says_which(value):
    env = compose_env(COVERTYPE_API_KEYS=value)
    with pytest.raises(InterpolationError) as error:
        interpolate_tree(load_yaml(MAIN_COMPOSE), env)
    assert str(error.value) == (
        "required variable COVERTYPE_API_KEYS is missing a value: set COVERTYPE_API_KEYS in .env"
        " (comma-separated keys of 16 or more characters)"
    )
    with pytest.raises(InterpolationError, match=r"set COVERTYPE_API_KEY in \.env "):
        interpolate_tree(load_yaml(LOCUST_COMPOSE), compose_env(COVERTYPE_API_KEY=value))


# ---------------------------------------------------------------- secrets in tracked files

# An upper-case variable named like a secret, given a value (NAME=value, NAME: value).
SECRET_ASSIGNMENT = re.compile(
    r"(?<![\w{$])([A-Z][A-Z0-9_]*(?:PASSWORD|SECRET|KEY|TOKEN)[A-Z0-9_]*)[ \t]*[:=][ \t]*(.*)"
)
URL_PASSWORD = re.compile(r"://[^/:@\s'\"]+:([^@\s'\"]+)@")
# What a secret may be written as: nothing, a <placeholder>, a reference to a variable.
NOT_A_VALUE = re.compile(r"""["']?(<[^>]*>|\$\{[^}]*\}|\$\(|\$[A-Z_]|$)""")
# Code and tests hold throwaway passwords for the servers they start; the locks are hashes.
NOT_DEPLOYMENT = ("src/", "tests/", "benchmarks/")


def test_no_secret_value_is_in_any_tracked_file():
    checked = 0
    for path in tracked_files():
        relative = str(path.relative_to(ROOT))
        if relative.startswith(NOT_DEPLOYMENT) or path.suffix == ".lock" or not path.is_file():
            continue
        checked += 1
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{relative}:{number}"
            assert "supersecret" not in line.lower(), f"{where}: the seed's password"
            for match in SECRET_ASSIGNMENT.finditer(line):
                assert NOT_A_VALUE.match(match[2].strip()), f"{where}: {match[1]} has a value"
            for password in URL_PASSWORD.findall(line):
                assert NOT_A_VALUE.match(password), f"{where}: a password in a URL"
    assert checked > 20  # compose, .env.example, deploy/**, README, scripts


def test_the_files_that_hold_real_secrets_are_git_ignored_and_untracked():
    tracked = {str(p.relative_to(ROOT)) for p in tracked_files()}
    for name in (".env", "deploy/k8s/secrets.env", "deploy/k8s/airflow-secrets.env"):
        assert git_ignored(ROOT / name), f"{name} is not git-ignored"
        assert name not in tracked, f"{name} is tracked"
