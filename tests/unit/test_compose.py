"""docker compose, read as data: each file against the compose spec; images, health, restarts
and start order; the settings, URLs and ports each service gets; secrets only by reference,
every variable in .env.example. The commands and scripts themselves run in
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
    airflow_services,
    argv,
    compose_services,
    environment,
    healthcheck_url,
    interpolate,
    listening_port,
    load_yaml,
    project_services,
    references,
    run_argv,
    served_paths,
    settings_of,
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
