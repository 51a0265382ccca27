"""The deployment files read as data, for the deploy tests of both layers.

Compose services (their environment, command and compose's interpolation), Dockerfile
instructions by stage, the Kubernetes objects of the kustomization, the routes the services
serve (from their app factories, in-process) and `--help` runs of the commands they start.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
import importlib.util
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml

from covertype.settings import Settings, env_name
from tests.support.environment import REPO

ROOT = REPO
SHARED = REPO.parent / "shared"
COMPOSE_SCHEMA = SHARED / "schemas/compose-spec.json"
MAIN_COMPOSE = ROOT / "docker-compose.yaml"
LOCUST_COMPOSE = ROOT / "docker-compose-locust.yaml"
COMPOSE_FILES = [MAIN_COMPOSE, LOCUST_COMPOSE]
K8S = ROOT / "deploy/k8s"

SETTINGS_ENV = {env_name(field): field for field in Settings.model_fields}
# Ports the infrastructure services listen on (their images' defaults).
INFRA_PORTS = {
    "mysql": 3306, "postgres": 5432, "redis": 6379, "minio": 9000, "prometheus": 9090,
    "grafana": 3000,
}  # fmt: skip
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")
# Checks run at once: each is a Python start-up, mostly CPU (Airflow's takes seconds).
PARALLEL = max(2, os.cpu_count() or 1)
T = TypeVar("T")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ---------------------------------------------------------------- compose


def compose_services() -> dict[str, dict]:
    """The services of both compose files, by name."""
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


def interpolate_tree(obj, env: dict[str, str]):
    """A compose file's every string interpolated strictly with `env` (compose's .env), as
    `docker compose config` does before anything starts."""
    if isinstance(obj, dict):
        return {key: interpolate_tree(value, env) for key, value in obj.items()}
    if isinstance(obj, list):
        return [interpolate_tree(value, env) for value in obj]
    return interpolate(obj, env, strict=True) if isinstance(obj, str) else obj


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
    return _of_image(services, "${COVERTYPE_IMAGE")


def airflow_services(services: dict) -> dict[str, dict]:
    return _of_image(services, "${COVERTYPE_AIRFLOW_IMAGE")


def _of_image(services: dict, prefix: str) -> dict[str, dict]:
    return {name: s for name, s in services.items() if s.get("image", "").startswith(prefix)}


def settings_of(service: dict) -> Settings:
    """The Settings a service's container would see (its environment, interpolated)."""
    values = {}
    for key, value in environment(service).items():
        if key in SETTINGS_ENV:
            values[SETTINGS_ENV[key]] = interpolate(value)
    return Settings(_env_file=None, **values)


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


def healthcheck_url(service: dict) -> SplitResult:
    """The one local URL a service's healthcheck asks."""
    [url] = re.findall(r"http://127\.0\.0\.1:\d+[^'\" ]*", " ".join(service["healthcheck"]["test"]))
    return urlsplit(url)


def tracked_files() -> list[Path]:
    """The repository's files as git has them (none outside a git checkout)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: " + listed.stderr.strip())
    return [ROOT / name for name in listed.stdout.split("\0") if name]


def git_ignored(path: Path) -> bool:
    checked = subprocess.run(
        ["git", "check-ignore", "-q", str(path.relative_to(ROOT))], cwd=ROOT, check=False
    )
    return checked.returncode == 0


# ---------------------------------------------------------------- Dockerfiles


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


# ---------------------------------------------------------------- Kubernetes


def k8s_objects() -> list[dict]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    objects = []
    for resource in kustomization["resources"]:
        if (K8S / resource).is_file():  # a folder is a kustomization of generated ConfigMaps
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


@dataclass
class ServedPaths:
    """OpenAPI paths and their methods of our two APIs, from their app factories."""

    inference_api: dict[str, set[str]]
    source_api: dict[str, set[str]]

    def health_paths(self) -> dict[str, set[str]]:
        """GET paths each service really serves, by compose service name (Airflow's apart:
        reading them imports Airflow, which the integration layer does in a child process)."""
        from streamlit.web.server.starlette.starlette_routes import ROUTE_HEALTH

        return {
            "api": _gets(self.inference_api),
            "api-gateway": _gets(self.inference_api),  # proxies everything to api
            "source": _gets(self.source_api),
            "mlflow": mlflow_health_endpoints(),
            "ui": {"/" + ROUTE_HEALTH.lstrip("/")},
        }


def served_paths(home: Path) -> ServedPaths:
    """Both APIs' OpenAPI documents; the inference API's with the registry unreachable (the
    document needs no model)."""
    from covertype.serve import create_app as create_inference_api
    from covertype.source import create_app as create_source_api

    with pytest.MonkeyPatch.context() as mp:
        # create_app sets MLflow's HTTP options in os.environ; restored after.
        for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
            mp.setenv(name, os.environ.get(name, "0"))
        serve = Settings(
            _env_file=None,
            home=home / "serve",
            mlflow_tracking_uri="http://127.0.0.1:9",
            api_keys="served-paths-key-0123456789",  # the app as deployed: logins on
        )
        inference = create_inference_api(serve).openapi()
    source = create_source_api(Settings(_env_file=None, home=home / "source")).openapi()
    return ServedPaths(_methods(inference), _methods(source))


def _methods(document: dict) -> dict[str, set[str]]:
    return {path: set(methods) for path, methods in document["paths"].items()}


def _gets(paths: dict[str, set[str]]) -> set[str]:
    return {path for path, methods in paths.items() if "get" in methods}


def mlflow_health_endpoints() -> set[str]:
    """MLflow's HEALTH_ENDPOINTS, read from its source (importing mlflow.server is slow)."""
    spec = importlib.util.find_spec("mlflow")
    source = Path(spec.origin).parent / "server/security_utils.py"
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "HEALTH_ENDPOINTS":
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"no HEALTH_ENDPOINTS in {source}")


# ---------------------------------------------------------------- commands, with --help


def help_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERTYPE_", "AIRFLOW"))}
    return env | {"COVERTYPE_HOME": str(home), "NO_COLOR": "1"}


def run_help(
    args: Sequence[str], bin_dir: Path, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`args --help` with args[0] taken from `bin_dir`: exit 0 means every subcommand and
    option in `args` exists (argparse and click reject unknown ones before printing help).
    `env` defaults to help_env(home)."""
    program = bin_dir / args[0]
    return subprocess.run(
        [str(program), *args[1:], "--help"],
        env=help_env(home) if env is None else env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_helps(
    commands: Sequence[Sequence[str]], bin_dir: Path, home: Path
) -> list[subprocess.CompletedProcess]:
    """run_help of each command, PARALLEL at a time; results in the order of `commands`."""
    return run_at_once([functools.partial(run_help, args, bin_dir, home) for args in commands])


def run_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each call in a thread, PARALLEL at a time; results in the order of `calls`."""
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda call: call(), calls))
