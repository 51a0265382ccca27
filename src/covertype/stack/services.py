"""The services of the local stack, and the environment they all start in.

One row per supervised process tree: its `covertype` command, where it listens, how its
health is read. Airflow runs as its four components (api-server, scheduler, dag-processor,
triggerer) rather than `airflow standalone`, which neither restarts a component that dies
nor exits when one does; each is supervised on its own, after the metadata DB is migrated.
A service added to the table is started, watched, restarted and stopped like the others.
Airflow's scheduler (whose task processes collect, report drift and train) and DAG processor
run at `BATCH_NICE`: on a laptop, batch work yields the CPU to the services someone waits on
(measured beside two drift reports: the inference API took 12 s to restart at equal priority).
Prometheus is in the table when its binary is on PATH (Debian's `prometheus` package) and
left out otherwise, which `covertype up` says.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from operator import attrgetter

from covertype.processes import VENV_BIN, with_venv_path
from covertype.settings import Settings, client_host, env_name

# Every local run: two Airflow task slots on a laptop, unbuffered logs, an orphaned task (its
# scheduler was killed) noticed in a minute, not Airflow's five, and training fits that leave
# a core to the services: LightGBM's OpenMP threads spin on a core another process holds
# (measured on 2 cores beside a busy stack: 8k rows, 250 trees, 7-8 s with one thread,
# 21-75 s with two). `--fast` also
# makes the first cycle take minutes: batches of 30 s, collection 5 s after each move, one
# candidate per family, the API looking at the alias every 2 s. The environment wins.
LOCAL = {
    "COVERTYPE_AIRFLOW_PARALLELISM": "2",
    "PYTHONUNBUFFERED": "1",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
    "COVERTYPE_TRAIN_THREADS": str(max(1, (os.cpu_count() or 1) - 1)),
}
FAST = {
    "COVERTYPE_BATCH_SECONDS": "30",
    "COVERTYPE_COLLECT_MARGIN_SECONDS": "5",
    "COVERTYPE_COLLECT_PROBE_SECONDS": "60",
    "COVERTYPE_TRAIN_N_ITER": "3",
    "COVERTYPE_SERVE_WATCH_SECONDS": "2",
    "COVERTYPE_MONITOR_PREDICTIONS_SECONDS": "120",
}
# Ports Airflow's scheduler and triggerer open for their task logs (Airflow's defaults).
AIRFLOW_LOG_PORTS = {
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": ("Airflow's task log server", 8793),
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": ("Airflow's triggerer log server", 8794),
}
AIRFLOW = "airflow"  # the group started once the metadata DB is migrated
BATCH_NICE = 10


@dataclass(frozen=True)
class Service:
    name: str  # the supervisord program, its log file and its record
    title: str
    args: tuple[str, ...]  # of `covertype`
    host_field: str  # the settings' path of its address (`serve.host`)
    port_field: str
    health_path: str
    component: str | None = None  # its key in Airflow's /api/v2/monitor/health
    group: str | None = None
    listens: bool = True  # the port is its own (Airflow's components share the api-server's)
    needs: str | None = None  # a program that must be on PATH, else the stack runs without it
    nice: int = 0  # its session's CPU priority (covertype.priority)

    def url(self, settings: Settings) -> str:
        return f"http://{client_host(self.host(settings))}:{self.port(settings)}"

    def host(self, settings: Settings) -> str:
        return attrgetter(self.host_field)(settings)

    def port(self, settings: Settings) -> int:
        return attrgetter(self.port_field)(settings)

    def health_url(self, settings: Settings) -> str:
        return self.url(settings) + self.health_path

    def command(self) -> list[str]:
        return [str(VENV_BIN / "covertype"), *self.args]


_MONITOR = "/api/v2/monitor/health"
TABLE = (
    Service("source", "source API", ("source",), "source.host", "source.port", "/"),
    Service("mlflow", "MLflow", ("mlflow",), "mlflow.host", "mlflow.port", "/health"),
    Service(
        "airflow-api-server", "Airflow", ("airflow", "api-server"),
        "airflow.host", "airflow.port", _MONITOR, "metadatabase", AIRFLOW,
    ),
    Service(
        "airflow-scheduler", "Airflow scheduler", ("airflow", "scheduler"),
        "airflow.host", "airflow.port", _MONITOR, "scheduler", AIRFLOW, listens=False,
        nice=BATCH_NICE,
    ),
    Service(
        "airflow-dag-processor", "Airflow DAG processor", ("airflow", "dag-processor"),
        "airflow.host", "airflow.port", _MONITOR, "dag_processor", AIRFLOW, listens=False,
        nice=BATCH_NICE,
    ),
    Service(
        "airflow-triggerer", "Airflow triggerer", ("airflow", "triggerer"),
        "airflow.host", "airflow.port", _MONITOR, "triggerer", AIRFLOW, listens=False,
    ),
    Service("serve", "inference API", ("serve",), "serve.host", "serve.port", "/health"),
    Service("ui", "Streamlit UI", ("ui",), "ui.host", "ui.port", "/_stcore/health"),
    Service(
        "prometheus", "Prometheus", ("prometheus",),
        "prometheus.host", "prometheus.port", "/-/ready", needs="prometheus",
    ),
)  # fmt: skip


def installed(table: tuple[Service, ...], path: str | None = None) -> tuple[Service, ...]:
    """The services whose program (if they need one beside the venv's) is on PATH."""
    return tuple(s for s in table if s.needs is None or shutil.which(s.needs, path=path))


SERVICES = installed(TABLE)
NOT_INSTALLED = tuple(s for s in TABLE if s not in SERVICES)
BY_NAME = {s.name: s for s in SERVICES}
INSTALL_HINTS = {"prometheus": "Debian/Ubuntu: sudo apt-get install prometheus"}


def prepare_environment(fast: bool, environ: MutableMapping[str, str] | None = None) -> Settings:
    """Put the stack's settings in this process's environment (what every service inherits)
    and return them: the local defaults (and `--fast`'s) where the environment sets nothing,
    one absolute COVERTYPE_HOME, the URLs the services call each other by (from their hosts
    and ports), and the venv's bin first on PATH (services start `covertype`, `airflow` and
    `mlflow` by name)."""
    environ = os.environ if environ is None else environ
    for key, value in (LOCAL | (FAST if fast else {})).items():
        environ.setdefault(key, value)
    settings = Settings()
    environ["COVERTYPE_HOME"] = str(settings.home)
    environ["COVERTYPE_SOURCE_URL"] = BY_NAME["source"].url(settings)
    environ["MLFLOW_TRACKING_URI"] = BY_NAME["mlflow"].url(settings)
    environ["COVERTYPE_API_URL"] = BY_NAME["serve"].url(settings)
    # The UI links to what this stack runs (no MinIO, no Grafana here) and asks Prometheus.
    links = ["api", "mlflow", "airflow"]
    if "prometheus" in BY_NAME:
        links.append("prometheus")
        environ.setdefault("COVERTYPE_PROMETHEUS_URL", BY_NAME["prometheus"].url(settings))
    environ.setdefault("COVERTYPE_UI_LINKS", ",".join(links))
    environ["PATH"] = with_venv_path(environ)["PATH"]
    return Settings()


def ports_in_use(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Each port the stack needs that is taken or given twice, named with its variable."""
    wanted = [
        (s.title, env_name(s.port_field), s.host(settings), s.port(settings))
        for s in SERVICES
        if s.listens
    ]
    wanted += [
        (title, variable, "0.0.0.0", int(environ.get(variable, default)))
        for variable, (title, default) in AIRFLOW_LOG_PORTS.items()
    ]
    problems: list[str] = []
    seen: dict[int, str] = {}  # port → the variable that gave it
    for title, variable, host, port in wanted:
        if port in seen:
            problems.append(f"port {port} is given twice: {variable} and {seen[port]}")
        elif not _can_bind(host, port):
            problems.append(f"port {port} ({title}, {variable}) is already in use")
        seen[port] = variable
    return problems


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the servers do: a port in TIME_WAIT from a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
