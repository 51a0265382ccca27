"""What the deployment runs, run: every covertype command of compose and Kubernetes and the
MLflow server line with `--help` from this venv, Airflow's health routes read from the
installed Airflow, compose's MySQL init against the real MariaDB server, the MinIO job with
a stand-in for its image's tool. The files themselves are checked in tests/unit
(test_deploy_contracts.py, test_deploy_validators.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from covertype.tracking.server import server_command
from tests.deploy_files import (
    ROOT,
    argv,
    compose_services,
    containers,
    environment,
    healthcheck_url,
    interpolate,
    pods,
    setting,
    settings_of,
)
from tests.support.commands import help_env, project_services, run_helps
from tests.support.environment import BIN, MYSQL_URL


@pytest.fixture(scope="module")
def all_services() -> dict[str, dict]:
    return compose_services()


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


# ---------------------------------------------------------------- commands


def test_project_services_run_covertype_commands_that_exist(all_services, tmp_path):
    services = project_services(all_services)
    for name, service in services.items():
        args = argv(service)
        assert args[0] == "covertype", f"{name} runs {args}, not a covertype command"
    commands = [argv(service) for service in services.values()]
    results = run_helps(commands, BIN, tmp_path / "home")
    for name, args, result in zip(services, commands, results, strict=True):
        assert result.returncode == 0, f"{name}: {args} --help\n{result.stdout}{result.stderr}"


def test_mlflow_service_command_has_only_options_this_mlflow_knows(all_services, tmp_path):
    # The same `mlflow server ...` line with --help: every option exists in this MLflow.
    command = server_command(settings_of(environment(all_services["mlflow"])))
    result = subprocess.run(
        [*command, "--help"], env=help_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_kubernetes_containers_run_covertype_commands_that_exist(tmp_path):
    ours = [  # (Prometheus and Grafana run their images' own)
        (name, container)
        for name, pod in pods().items()
        for container in containers(pod)
        if container["image"].startswith("covertype:")
    ]
    assert {"source", "mlflow", "api", "ui"} <= {name for name, _ in ours}
    results = run_helps([c["command"] for _, c in ours], BIN, tmp_path / "home")
    for (name, _), result in zip(ours, results, strict=True):
        assert result.returncode == 0, f"{name}: {result.stderr}"


# ---------------------------------------------------------------- Airflow's health routes


def test_airflow_healthcheck_probes_the_port_and_a_path_the_apiserver_serves(
    all_services, airflow_health
):
    name, paths = "airflow-apiserver", set(airflow_health["routes"])
    url = healthcheck_url(all_services[name])
    assert url.port == setting("COVERTYPE_AIRFLOW_PORT", environment(all_services[name])), name
    assert url.path in paths, f"{name}'s healthcheck asks {url.path}, not one of {paths}"


def test_scheduler_healthcheck_asks_the_schedulers_health_server(all_services, airflow_health):
    service = all_services["airflow-scheduler"]
    assert environment(service)["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    url = urlsplit(service["healthcheck"]["test"][-1])
    assert url.port == airflow_health["scheduler_port"] and url.path == "/health"
    assert airflow_health["scheduler_path"]


# ---------------------------------------------------------------- scripts


OLD_VOLUME = ("cover_type", "mlflow")  # a volume of the release before mlflow_auth


@pytest.mark.skipif(not MYSQL_URL, reason="needs COVERTYPE_TEST_MYSQL_URL (.ci/run sets it)")
def test_mysql_init_brings_an_old_volume_up_to_date_without_a_manual_step(all_services):
    """compose's mysql-init, run as its container runs it, against the real MariaDB server on
    the databases of an older release (no mlflow_auth, old passwords, rows in cover_type)."""
    job = all_services["mysql-init"]
    assert job["entrypoint"] == ["bash", "/deploy/ensure-databases.sh"]
    assert "./deploy/mysql:/deploy:ro" in job["volumes"]
    server = sa.create_engine(MYSQL_URL)
    with server.begin() as conn:
        found = {r[0] for r in conn.execute(sa.text("SHOW DATABASES"))} & {
            *OLD_VOLUME,
            "mlflow_auth",
        }
        assert not found, f"this server already has {found}: the test would change them"
    admin, admin_password = f"init_admin_{uuid.uuid4().hex[:8]}", "root-password-0123"
    passwords = {"MYSQL_COVER_TYPE_PASSWORD": "o'brien\\x-123", "MYSQL_MLFLOW_PASSWORD": "m-1234",
                 "MYSQL_MLFLOW_AUTH_PASSWORD": "a-1234"}  # fmt: skip
    try:
        with server.begin() as conn:
            for name in OLD_VOLUME:  # made by the old init script, with other passwords
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
                conn.execute(sa.text(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'old-password'"))
                conn.execute(sa.text(f"GRANT ALL PRIVILEGES ON {name}.* TO '{name}'@'%'"))
            conn.execute(sa.text("CREATE TABLE cover_type.kept (id INT PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO cover_type.kept VALUES (7)"))
            conn.execute(sa.text(f"CREATE USER '{admin}'@'%' IDENTIFIED BY '{admin_password}'"))
            conn.execute(sa.text(f"GRANT ALL ON *.* TO '{admin}'@'%' WITH GRANT OPTION"))
        url = sa.engine.make_url(MYSQL_URL)
        env = {k: interpolate(v) for k, v in environment(job).items()} | passwords | {
            "PATH": os.environ["PATH"], "MYSQL_ROOT_PASSWORD": admin_password,
            "MYSQL_ADMIN_USER": admin, "MYSQL_HOST": url.host, "MYSQL_PORT": str(url.port or 3306),
        }  # fmt: skip
        for _ in range(2):  # at every `up`: the second run changes nothing
            done = subprocess.run(
                ["bash", str(ROOT / "deploy/mysql/ensure-databases.sh")],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        for name, variable in (("cover_type", "MYSQL_COVER_TYPE_PASSWORD"),
                               ("mlflow", "MYSQL_MLFLOW_PASSWORD"),
                               ("mlflow_auth", "MYSQL_MLFLOW_AUTH_PASSWORD")):  # fmt: skip
            user = url.set(username=name, password=passwords[variable], database=name)
            engine = sa.create_engine(user)  # the new password opens its own database
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT DATABASE()")).scalar() == name
            engine.dispose()
        with server.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM cover_type.kept")).scalar() == 7
        unset = {k: v for k, v in env.items() if k != "MYSQL_MLFLOW_AUTH_PASSWORD"}
        missing = subprocess.run(["bash", str(ROOT / "deploy/mysql/ensure-databases.sh")],
                                 env=unset, capture_output=True, text=True)  # fmt: skip
        assert missing.returncode != 0 and "MYSQL_MLFLOW_AUTH_PASSWORD is not set" in missing.stderr
    finally:
        with server.begin() as conn:
            for name in (*OLD_VOLUME, "mlflow_auth"):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
                conn.execute(sa.text(f"DROP USER IF EXISTS '{name}'@'%'"))
            conn.execute(sa.text(f"DROP USER IF EXISTS '{admin}'@'%'"))
        server.dispose()


def test_the_data_db_is_upgraded_before_any_service_writes_to_it(all_services):
    job = all_services["db-migrate"]
    assert argv(job) == ["covertype", "db", "upgrade"] and job["restart"] == "no"
    writers = ["api", "airflow-worker", "airflow-scheduler", "ingest", "train"]
    for name in writers:
        waits = all_services[name]["depends_on"]
        assert waits["db-migrate"]["condition"] == "service_completed_successfully", name


def test_minio_job_makes_the_bucket_and_a_user_limited_to_it(all_services, tmp_path):
    job = all_services["minio-init"]
    assert job["entrypoint"] == ["/bin/sh", "/deploy/create-bucket.sh"]
    assert "./deploy/minio/create-bucket.sh:/deploy/create-bucket.sh:ro" in job["volumes"]
    bucket = interpolate(environment(job)["BUCKET"])
    destination = setting(
        "COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION", environment(all_services["mlflow"])
    )
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
