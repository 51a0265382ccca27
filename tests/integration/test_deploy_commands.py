"""What the deployment runs, run: every covertype command of compose and Kubernetes and the
MLflow server line with `--help` from this venv, Airflow's health routes read from the
installed Airflow, the MySQL init script and the MinIO job executed with stand-ins for the
tools of their images. The files themselves are checked in tests/unit (test_deploy_contracts.py,
test_deploy_validators.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from covertype.tracking.server import server_command
from tests.deploy_files import (
    ROOT,
    argv,
    compose_services,
    containers,
    environment,
    healthcheck_url,
    help_env,
    interpolate,
    pods,
    project_services,
    references,
    run_helps,
    setting,
    settings_of,
)
from tests.support.environment import BIN


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


def test_mysql_init_script_makes_the_databases_with_their_own_users(all_services):
    mysql = all_services["mysql"]
    assert "./deploy/mysql/init:/docker-entrypoint-initdb.d:ro" in mysql["volumes"]
    script = ROOT / "deploy/mysql/init/01-databases.sh"
    # Not executable: the mysql entrypoint sources it, which provides docker_process_sql.
    assert not script.stat().st_mode & stat.S_IXUSR
    env = {k: references(v).pop() for k, v in environment(mysql).items()}
    assert env == {k: k for k in env}, "the container gets the .env names unchanged"
    harness = f'docker_process_sql() {{ cat; }}\nsource "{script}"\n'
    passwords = {"MYSQL_COVER_TYPE_PASSWORD": "o'brien\\x", "MYSQL_MLFLOW_PASSWORD": "m1",
                 "MYSQL_MLFLOW_AUTH_PASSWORD": "a1"}  # fmt: skip
    result = subprocess.run(
        ["bash", "-c", harness], env={"PATH": os.environ["PATH"], **passwords},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    for database in ("cover_type", "mlflow", "mlflow_auth"):  # MLflow's users in the last
        assert f"CREATE DATABASE IF NOT EXISTS {database} " in sql
        assert f"GRANT ALL PRIVILEGES ON {database}.* TO '{database}'@'%';" in sql
    assert "IDENTIFIED BY 'o''brien\\\\x';" in sql  # quotes and backslashes escaped
    assert "root" not in sql
    missing = subprocess.run(
        ["bash", "-c", harness], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "MYSQL_COVER_TYPE_PASSWORD" in missing.stderr


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
