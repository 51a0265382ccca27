"""The Dockerfiles' installs, run: each image's Python environment made as its Dockerfile makes
it (a fresh Python 3.11 virtualenv, the Dockerfile's COPY and `pip install` lines replayed),
then every service's command, imports and the DAGs checked in it. No Docker engine runs here;
the Dockerfiles themselves are read in tests/unit/test_dockerfiles.py.

Time goes to pip and to Python start-ups: the lock's wheels are downloaded once, both
environments built at once without byte-compiling (see `_replay`), and the checks of each
run side by side.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from covertype.orchestrate import schedule
from tests.deploy_files import (
    ROOT,
    airflow_services,
    argv,
    compose_services,
    environment,
    interpolate,
    run_argv,
)
from tests.support.commands import help_env, project_services, run_at_once, run_help
from tests.support.dockerfiles import dockerfile, pins, run_command

PYTHON311 = shutil.which("python3.11") or sys.executable


def _copy_into(source: str, destination: Path) -> None:
    if (ROOT / source).is_dir():
        shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, destination)


def _download_wheels(folder: Path) -> Path:
    """The runtime lock's wheels and the package's build requirements, fetched once for both
    images as BuildKit's pip cache would keep them. (pip's own HTTP cache keeps nothing when
    the index sends no caching headers, as the proxy of this machine does.)"""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    lock = ROOT / "requirements-runtime.lock"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(folder),
         "-r", str(lock), *build],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _replay(
    path: Path, root: Path, venv: Path, variables: dict[str, str], log: Path, wheels: Path
) -> tuple[int, float]:
    """Replay the COPY, WORKDIR and `pip install` RUNs of a Dockerfile's build stage (the one
    named `build`, else the only one) with `root` as the filesystem and `venv` first on PATH,
    as the Dockerfile's ENV PATH puts it, pip installing from `wheels`. Returns how many pip
    RUNs ran, and their seconds."""
    instructions = dockerfile(path)
    froms = [i for i in instructions if i.keyword == "FROM"]
    stage = next((i.stage for i in froms if i.args.endswith(" AS build")), froms[-1].stage)
    env = help_env(root) | {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    # No byte-compiling, two thirds of pip's CPU time (the runtime lock: 95 CPU-s with it,
    # 32 without): it only adds .pyc files, pip never fails on it, and the checks compile
    # what they import. Not PIP_NO_COMPILE=1: pip reads it as --no-compile's own boolean.
    env["PIP_COMPILE"] = "0"
    # The pinned files the index serves, fetched once; no index, else pip would take the
    # index's link over the local file of the same name (36 CPU-s of each install here).
    env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"{wheels} {env.get('PIP_FIND_LINKS', '')}"}
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
                out.write(f"$ PIP_COMPILE=0 PIP_NO_INDEX=1 PIP_FIND_LINKS={wheels} {command}\n")
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


def _build_project_env(root: Path, wheels: Future[Path]) -> BuiltEnv:
    """The project image's virtualenv: a fresh venv, then the Dockerfile's build-stage RUNs."""
    started = time.monotonic()
    venv, log = root / "opt/venv", root / "install.log"
    subprocess.run([PYTHON311, "-m", "venv", str(venv)], check=True)
    runs, seconds = _replay(ROOT / "Dockerfile", root, venv, {}, log, wheels.result())
    return BuiltEnv(venv, time.monotonic() - started, seconds, log, runs)


def _build_airflow_env(root: Path, wheels: Future[Path]) -> BuiltEnv:
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
    path = ROOT / "deploy/airflow.Dockerfile"
    runs, seconds = _replay(path, root, venv, variables, log, wheels.result())
    return BuiltEnv(venv, time.monotonic() - started, seconds, log, runs)


@pytest.fixture(scope="module")
def image_envs(tmp_path_factory):
    """Both images' Python environments, built side by side once the wheels are there."""
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        wheels = pool.submit(_download_wheels, tmp_path_factory.mktemp("wheels"))
        roots = {name: tmp_path_factory.mktemp(f"{name}-image") for name in ("project", "airflow")}
        yield {
            "project": pool.submit(_build_project_env, roots["project"], wheels),
            "airflow": pool.submit(_build_airflow_env, roots["airflow"], wheels),
        }


@pytest.fixture(scope="module")
def all_services() -> dict[str, dict]:
    return compose_services()


def _image_env(home: Path) -> dict[str, str]:
    """help_env, bytecode written as in an image: pip compiled nothing (see _replay), so the
    first check compiles what it imports and the others read it (where the caller's
    environment says PYTHONDONTWRITEBYTECODE, each would compile it all again)."""
    env = help_env(home)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _python(bin_dir: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "python"), "-c", script], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _pip_check(bin_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "pip"), "check"], capture_output=True, text=True)


IMPORT_EVERYTHING = """
import importlib, pkgutil
import covertype
# Airflow's; Locust's (patches with gevent); Alembic's scripts (run by `covertype db upgrade`).
skip = ("covertype.dags", "covertype.loadtest.locustfile", "covertype.db.migrations.")
for module in pkgutil.walk_packages(covertype.__path__, "covertype."):
    if not module.name.startswith(skip):
        importlib.import_module(module.name)
import boto3, cryptography, lightgbm, mlflow.server, pymysql, streamlit
"""


def test_project_dockerfile_installs_a_covertype_that_runs_every_service(
    image_envs, all_services, tmp_path
):
    built: BuiltEnv = image_envs["project"].result()
    print(f"\nproject image: the Dockerfile's pip RUNs took {built.dockerfile_seconds:.0f}s")
    assert built.pip_runs == 2, "the lock, then the package"
    bin_dir, home = built.venv / "bin", tmp_path / "home"
    env = _image_env(home)
    services = project_services(all_services)
    helps = [["covertype"], *(argv(service) for service in services.values())]
    # Everything the services import at run time is there (help does not import it all),
    # with the drivers and clients their URLs need (MySQL, S3).
    imports = (IMPORT_EVERYTHING, "import locust")  # locust patches ssl: on its own
    # The migrations ship in the package: db-migrate's command makes a data DB at head.
    data_db = {"COVERTYPE_DATA_DB_URL": f"sqlite:///{tmp_path / 'data.db'}"}
    upgrade = [str(bin_dir / "covertype"), "db", "upgrade"]
    check, upgraded, *results = run_at_once(
        [
            functools.partial(_pip_check, bin_dir),
            functools.partial(
                subprocess.run, upgrade, env=env | data_db, capture_output=True, text=True
            ),
            *(functools.partial(run_help, args, bin_dir, home, env) for args in helps),
            *(functools.partial(_python, bin_dir, script, env) for script in imports),
        ]
    )
    assert check.returncode == 0, check.stdout
    assert upgraded.returncode == 0 and "(head)" in upgraded.stdout, upgraded.stderr
    covertype_help, *service_helps = results[: len(helps)]
    assert covertype_help.returncode == 0 and "serve" in covertype_help.stdout, (
        covertype_help.stderr
    )
    for name, result in zip(services, service_helps, strict=True):
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    for result in results[len(helps) :]:
        assert result.returncode == 0, result.stderr[-3000:]


DAGS_PARSE = """
import json, os
from covertype.orchestrate import airflow_config, schedule
from covertype.settings import get_settings
os.environ.update(airflow_config.process_env(get_settings()))
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(str(schedule.DAGS_FOLDER))
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": sorted(bag.dag_ids)}))
"""


def test_airflow_dockerfile_installs_covertype_beside_a_working_airflow(
    image_envs, all_services, tmp_path
):
    built: BuiltEnv = image_envs["airflow"].result()
    print(
        f"\nairflow image: stand-in {built.seconds - built.dockerfile_seconds:.0f}s, "
        f"the Dockerfile's pip RUNs {built.dockerfile_seconds:.0f}s"
    )
    assert built.pip_runs == 2, "the lock with Airflow pinned, then the package"
    bin_dir, home = built.venv / "bin", tmp_path / "home"
    image_env = _image_env(home)
    commands = []
    for name, service in airflow_services(all_services).items():
        commands.append((name, run_argv(service)))
        test = service["healthcheck"]["test"] if "healthcheck" in service else []
        if test and test[0] == "CMD-SHELL" and "covertype airflow" in test[1]:
            line = test[1].split("|")[0].replace("$${HOSTNAME}", "host").replace("$$", "$")
            commands.append((f"{name} healthcheck", shlex.split(line.replace("$HOSTNAME", "h"))))
    # The DAGs of the installed package parse there, configured as the scheduler is.
    scheduler = all_services["airflow-scheduler"]
    scheduler_env = {k: interpolate(v) for k, v in environment(scheduler).items()}
    scheduler_env |= {"COVERTYPE_HOME": str(tmp_path / "scheduler-home")}
    check, parse, *results = run_at_once(
        [
            functools.partial(_pip_check, bin_dir),
            functools.partial(_python, bin_dir, DAGS_PARSE, image_env | scheduler_env),
            *(functools.partial(run_help, args, bin_dir, home, image_env) for _, args in commands),
        ]
    )
    assert check.returncode == 0, check.stdout
    for (name, args), result in zip(commands, results, strict=True):
        assert result.returncode == 0, f"{name}: {args}\n{result.stdout[-1500:]}{result.stderr}"
    assert parse.returncode == 0, parse.stderr[-3000:]
    parsed = json.loads(parse.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {
        schedule.COLLECT_DAG,
        schedule.TRAIN_DAG,
        schedule.MONITOR_DAG,
    }
