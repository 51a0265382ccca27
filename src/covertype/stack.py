"""The whole platform on one machine: `covertype up`, `covertype down`, `covertype status`.

`up` runs the services of the Procfile beside this module with honcho, each in a session of
its own, their output in `COVERTYPE_HOME/logs/<service>.log`. A watcher thread waits until
every service answers its health check, prints where they are, then follows the first cycle
(collection → training → alias → inference API) until a champion is served.

Stopping (Ctrl-C, SIGTERM, `covertype down`, or a service that dies): honcho sends SIGTERM to
every service's process group, and `up` to what left its group (Airflow puts each task in a
group of its own, in the same session); what is still alive after `STOP_GRACE_SECONDS` gets
SIGKILL. `COVERTYPE_HOME/stack.json` says what runs, for `status` and `down`, which also
cleans up the sessions of an `up` that was itself killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from covertype import orchestrate
from covertype.settings import Settings, env_name

PROCFILE = Path(__file__).with_name("Procfile")
STOP_GRACE_SECONDS = 20
HEALTH_TIMEOUT_SECONDS = 300  # Airflow's first start creates its metadata DB
POLL_SECONDS = 2

# Every local run: two Airflow task slots on a laptop, unbuffered logs. `--fast` also makes
# the first cycle take minutes: batches of 30 s, collection 5 s after each move, one candidate
# per family, the API looking at the alias every 2 s. A variable set in the environment wins.
LOCAL = {"COVERTYPE_AIRFLOW_PARALLELISM": "2", "PYTHONUNBUFFERED": "1"}
FAST = {
    "COVERTYPE_BATCH_SECONDS": "30",
    "COVERTYPE_COLLECT_MARGIN_SECONDS": "5",
    "COVERTYPE_COLLECT_PROBE_SECONDS": "60",
    "COVERTYPE_TRAIN_N_ITER": "3",
    "COVERTYPE_SERVE_WATCH_SECONDS": "2",
}
# Ports Airflow's scheduler and triggerer open for their task logs (Airflow's defaults).
AIRFLOW_LOG_PORTS = {
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": ("Airflow's task log server", 8793),
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": ("Airflow's triggerer log server", 8794),
}
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Service:
    name: str  # as in the Procfile
    title: str
    host_field: str
    port_field: str
    health_path: str

    def url(self, settings: Settings) -> str:
        return f"http://{_client_host(getattr(settings, self.host_field))}:{self.port(settings)}"

    def port(self, settings: Settings) -> int:
        return getattr(settings, self.port_field)

    def health_url(self, settings: Settings) -> str:
        return self.url(settings) + self.health_path


SERVICES = (
    Service("source", "source API", "source_host", "source_port", "/"),
    Service("mlflow", "MLflow", "mlflow_host", "mlflow_port", "/health"),
    Service("airflow", "Airflow", "airflow_host", "airflow_port", "/api/v2/monitor/health"),
    Service("serve", "inference API", "serve_host", "serve_port", "/health"),
    Service("ui", "Streamlit UI", "ui_host", "ui_port", "/_stcore/health"),
)
BY_NAME = {s.name: s for s in SERVICES}


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def say(line: str) -> None:
    print(line, flush=True)


def now() -> str:
    return datetime.now().strftime("%H:%M:%S")


# ---------------------------------------------------------------- settings of the stack


def prepare_environment(fast: bool) -> Settings:
    """Put the stack's settings in this process's environment (what every service inherits)
    and return them:
    the local defaults (and `--fast`'s) where the environment sets nothing, one absolute
    COVERTYPE_HOME, and the URLs the services call each other by, from their hosts and ports."""
    environ = os.environ
    for key, value in (LOCAL | (FAST if fast else {})).items():
        environ.setdefault(key, value)
    settings = Settings()
    environ["COVERTYPE_HOME"] = str(settings.home)
    environ["COVERTYPE_SOURCE_URL"] = BY_NAME["source"].url(settings)
    environ["MLFLOW_TRACKING_URI"] = BY_NAME["mlflow"].url(settings)
    environ["COVERTYPE_API_URL"] = BY_NAME["serve"].url(settings)
    # The Procfile runs `covertype ...`; Airflow standalone runs `airflow ...`: both by name.
    bin_dir = str(Path(sys.executable).parent)
    environ["PATH"] = os.pathsep.join([bin_dir, environ.get("PATH", "")])
    return Settings()


def ports_in_use(settings: Settings, environ=os.environ) -> list[str]:
    """Each port the stack needs that is taken or given twice, named with its variable."""
    wanted = [
        (s.title, env_name(s.port_field), getattr(settings, s.host_field), s.port(settings))
        for s in SERVICES
    ]
    wanted += [
        (title, variable, "0.0.0.0", int(environ.get(variable, default)))
        for variable, (title, default) in AIRFLOW_LOG_PORTS.items()
    ]
    problems, seen = [], {}
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


# ---------------------------------------------------------------- state and sessions


def state_path(settings: Settings) -> Path:
    return settings.home / "stack.json"


def read_state(settings: Settings) -> dict | None:
    try:
        return json.loads(state_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(settings: Settings, state: dict) -> None:
    path = state_path(settings)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)


def up_alive(state: dict) -> bool:
    """The `covertype up` of this state still runs (not another process with its pid)."""
    try:
        process = psutil.Process(state["pid"])
        return process.create_time() <= state["created"] + 1 and process.is_running()
    except (psutil.Error, KeyError):
        return False


def session_members(sids: Iterable[int]) -> list[psutil.Process]:
    """Live processes of these services, in one pass over the process table. honcho starts
    each service in a session of its own, which also holds what its processes move to
    process groups of their own (Airflow runs each task so); zombies are dead already."""
    sids = set(sids)
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getsid(process.pid) in sids and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_sessions(sids: Iterable[int], grace: float = STOP_GRACE_SECONDS, term: bool = True):
    """SIGTERM every process of these sessions (with `term=False`, only those outside the
    session's first process group: honcho signalled that group already), wait up to `grace`
    seconds, SIGKILL what is left. Returns the killed processes as (pid, command) pairs."""
    sids = list(sids)
    for process in session_members(sids):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if term or os.getpgid(process.pid) != os.getsid(process.pid):
                process.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and session_members(sids):
        time.sleep(0.2)
    killed = []
    for process in session_members(sids):
        with contextlib.suppress(psutil.Error):
            killed.append((process.pid, " ".join(process.cmdline()[:4])))
            process.kill()
    # SIGKILL is delivered asynchronously: return once the processes are really gone.
    deadline = time.monotonic() + 5
    while killed and time.monotonic() < deadline and session_members(sids):
        time.sleep(0.05)
    return killed


def memory_bytes(processes: Iterable[psutil.Process]) -> int:
    """Memory of these processes: proportional set sizes, so pages that forked workers share
    are counted once; resident sizes where PSS is not readable."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            try:
                total += process.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += process.memory_info().rss
    return total


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as aligned, indented lines."""
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        ("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True))).rstrip()
        for row in rows
    ]


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


# ---------------------------------------------------------------- what the services say


def healthy(name: str, health_url: str, client: httpx.Client) -> bool:
    try:
        answer = client.get(health_url)
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    if name == "airflow":  # every component: metadata DB, scheduler, dag processor, triggerer
        with contextlib.suppress(ValueError, AttributeError):
            return all(part.get("status") == "healthy" for part in answer.json().values())
        return False
    return True


def champion_version(settings: Settings, client: httpx.Client) -> str | None:
    answer = client.get(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/registered-models/alias",
        params={"name": settings.model_name, "alias": settings.model_alias},
    )
    if answer.status_code != 200:
        return None
    return answer.json()["model_version"]["version"]


def experiment_id(settings: Settings, client: httpx.Client) -> str | None:
    answer = client.get(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": settings.experiment_name},
    )
    return answer.json()["experiment"]["experiment_id"] if answer.status_code == 200 else None


def runs_since(
    settings: Settings, client: httpx.Client, experiment: str, since_ms: int
) -> list[dict]:
    """Runs of the experiment started at `since_ms` (epoch ms) or later, oldest first."""
    answer = client.post(
        f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment],
            "filter": f"attributes.start_time >= {since_ms}",
            "order_by": ["attributes.start_time ASC"],
            "max_results": 1000,
        },
    )
    answer.raise_for_status()
    return answer.json().get("runs", [])


class TrainingNews:
    """What the training runs say, each thing once: a training started, a candidate done.
    Runs of earlier stacks are left out (one killed mid-training stays RUNNING for ever)."""

    def __init__(self, since: float):
        self.cursor = int(since * 1000)  # runs before it are all told
        self.told: set[str] = set()
        self.experiment: str | None = None  # until the first training creates it

    def poll(self, settings: Settings, client: httpx.Client) -> list[str]:
        self.experiment = self.experiment or experiment_id(settings, client)
        if self.experiment is None:
            return []
        news, open_starts = [], []
        runs = runs_since(settings, client, self.experiment, self.cursor)
        for run in runs:
            info, data = run["info"], run["data"]
            tags = {t["key"]: t["value"] for t in data.get("tags", [])}
            metrics = {m["key"]: m["value"] for m in data.get("metrics", [])}
            run_id, status = info["run_id"], info["status"]
            if "mlflow.parentRunId" not in tags:  # a training
                if status == "RUNNING":
                    open_starts.append(int(info["start_time"]))
                if run_id not in self.told:
                    self.told.add(run_id)
                    news.append(f"training: run {info.get('run_name', run_id)} started")
            elif status == "RUNNING":
                open_starts.append(int(info["start_time"]))
            elif run_id not in self.told:  # a candidate, done
                self.told.add(run_id)
                family = tags.get("family", "a")
                if status == "FINISHED" and "validation_macro_f1" in metrics:
                    news.append(
                        f"training: {family} candidate, validation macro F1 "
                        f"{metrics['validation_macro_f1']:.4f} "
                        f"(fit {metrics.get('fit_seconds', 0):.1f} s)"
                    )
                else:
                    news.append(f"training: {family} candidate {status.lower()}")
        if runs:
            newest = max(int(r["info"]["start_time"]) for r in runs)
            self.cursor = min(open_starts, default=newest)
        return news


def rows_by_batch(settings: Settings) -> dict[int, int]:
    from covertype import db

    try:
        return db.rows_by_batch(settings.data_db)
    except Exception:  # the data DB does not exist before the first collection
        return {}


# ---------------------------------------------------------------- up


class ServiceLogs:
    """honcho's printer: each service's output to its log file, honcho's lines to the console
    (with `verbose`, the services' lines too)."""

    def __init__(self, folder: Path, echo: Echo, verbose: bool):
        self.folder, self.echo, self.verbose = folder, echo, verbose
        self.width = 0  # honcho sets it
        self.files: dict = {}

    def write(self, message) -> None:
        text = message.data
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if message.name == "system":
            self.echo(f"{message.time:%H:%M:%S} honcho: {text.rstrip()}")
            return
        if message.name not in self.files:
            self.files[message.name] = open(self.path(message.name), "a", buffering=1)  # noqa: SIM115
        self.files[message.name].write(text)
        if self.verbose:
            for line in text.splitlines():
                self.echo(f"{message.name:>7} | {line}")

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def close(self) -> None:
        for file in self.files.values():
            file.close()


class Watcher(threading.Thread):
    """Waits for the services, prints where they are, follows the cycle to a served champion;
    keeps the state file (sessions, memory, first prediction) up to date."""

    def __init__(self, settings: Settings, manager, logs: ServiceLogs, echo: Echo, fast: bool):
        super().__init__(name="stack-watcher", daemon=True)
        self.settings, self.manager, self.logs, self.echo = settings, manager, logs, echo
        self.fast = fast
        self.started, self.started_at = time.monotonic(), time.time()
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.sids: dict[str, int] = {}
        self.peak_memory = 0
        self.state: dict = {
            "pid": os.getpid(),
            "created": psutil.Process().create_time(),
            "home": str(settings.home),
            "fast": fast,
            "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "services": {},
        }

    def run(self) -> None:
        try:
            self._wait_for_sessions()
            if self._wait_until_healthy():
                self._print_table()
                self._follow()
        except Exception as error:  # a bug here must not leave the stack half watched
            self.fail(f"the watcher stopped: {error!r}")

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.echo(f"{now()} {reason}; stopping the stack")
        self.manager.terminate()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _wait_for_sessions(self) -> None:
        # honcho learns each service's pid (= its session id) from its reader process.
        while not self.stopping.is_set():
            pids = {name: p.get("pid") for name, p in self.manager._processes.items()}
            if all(pids.values()):
                self.sids = pids
                break
            time.sleep(0.05)
        for name, sid in self.sids.items():
            service = BY_NAME[name]
            self.state["services"][name] = {
                "sid": sid,
                "url": service.url(self.settings),
                "health": service.health_url(self.settings),
                "log": str(self.logs.path(name)),
            }
        self._save()

    def _save(self) -> None:
        self.state["peak_memory_bytes"] = self.peak_memory
        write_state(self.settings, self.state)

    def _sample_memory(self) -> None:
        used = memory_bytes([*session_members(self.sids.values()), psutil.Process()])
        if used > self.peak_memory:
            self.peak_memory = used
            self._save()

    def _wait_until_healthy(self) -> bool:
        waiting = list(SERVICES)
        with httpx.Client(timeout=5) as client:
            while waiting and not self.stopping.is_set():
                for service in list(waiting):
                    if healthy(service.name, service.health_url(self.settings), client):
                        waiting.remove(service)
                        self.echo(
                            f"{now()} ✔ {service.title} healthy ({self.elapsed():.0f} s): "
                            f"{service.url(self.settings)}"
                        )
                if waiting and self.elapsed() > HEALTH_TIMEOUT_SECONDS:
                    names = ", ".join(f"{s.title} ({self.logs.path(s.name)})" for s in waiting)
                    self.fail(f"not healthy after {HEALTH_TIMEOUT_SECONDS} s: {names}")
                    return False
                self._sample_memory()
                self.stopping.wait(0.5)
        return not waiting

    def _print_table(self) -> None:
        settings = self.settings
        rows = [(s.title, s.url(settings), str(self.logs.path(s.name))) for s in SERVICES]
        rows.insert(4, ("  API docs", BY_NAME["serve"].url(settings) + "/docs", ""))
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        self.echo("")
        for line in table([("service", "URL", "log"), tuple("-" * w for w in width), *rows]):
            self.echo(line)
        passwords = orchestrate.passwords_file(settings)
        if settings.airflow_admin_password is not None:
            login = "the password in COVERTYPE_AIRFLOW_ADMIN_PASSWORD"
        else:
            login = f"the password Airflow generated, in {passwords}"
        self.echo(f"  Airflow login: {settings.airflow_admin_user} with {login}")
        self.echo(f"  data DB: {settings.data_db}; state and logs: {settings.home}")
        self.echo("")

    def _follow(self) -> None:
        """Progress until the first champion is served, then news: new batches, new champions."""
        seen_rows: dict[int, int] | None = None
        training = TrainingNews(self.started_at)
        champion = served = None
        if self.fast:
            self.echo(
                f"{now()} fast demo: a batch every {self.settings.batch_seconds:.0f} s, "
                f"{self.settings.train_n_iter} candidates per training"
            )
        self.echo(f"{now()} waiting for the first champion: collection → training → alias → API")
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                rows = rows_by_batch(self.settings)
                if rows and rows != seen_rows:
                    new = sorted(set(rows) - set(seen_rows)) if seen_rows is not None else []
                    self.echo(
                        f"{now()} collection: {sum(rows.values()):,} rows of "
                        f"{_ranges(rows)} in the data DB"
                        + (f" (new: batch {', '.join(map(str, new))})" if new else "")
                    )
                    seen_rows = rows
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    for line in training.poll(self.settings, client):
                        self.echo(f"{now()} {line}")
                    version = champion_version(self.settings, client)
                    if version and version != champion:
                        champion = version
                        self.echo(
                            f"{now()} registry: {self.settings.model_name} version {version} "
                            f"is {self.settings.model_alias}"
                        )
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    served = self._check_served(client, served)
                self._sample_memory()
                self.stopping.wait(POLL_SECONDS)

    def _check_served(self, client: httpx.Client, served: str | None) -> str | None:
        from covertype.serve.records import EXAMPLE

        ready = client.get(self.settings.api_url + "/ready")
        if ready.status_code != 200:
            return served
        started = time.perf_counter()
        answer = client.post(self.settings.api_url + "/predict", json=EXAMPLE)
        answer.raise_for_status()
        took = (time.perf_counter() - started) * 1000
        result = answer.json()
        version = result["model_version"]
        if version == served:
            return served
        what = f"{result['cover_type_name']} (class {result['cover_type']})"
        self.echo(f"{now()} inference API: version {version} answers; a real record → {what}")
        if served is None:
            self.state["first_prediction_seconds"] = round(self.elapsed(), 1)
            self._save()
            self.echo(
                f"{now()} first prediction {self.elapsed():.0f} s after `covertype up` "
                f"({took:.0f} ms): the stack is up. UI: {BY_NAME['ui'].url(self.settings)}\n"
                f"{now()} Ctrl-C or `covertype down` stops it; `covertype status` shows it."
            )
        return version


def _ranges(rows: dict[int, int]) -> str:
    batches = sorted(rows)
    if not batches:
        return "no batch"
    if len(batches) == 1:
        return f"batch {batches[0]}"
    if batches == list(range(batches[0], batches[-1] + 1)) and len(batches) > 2:
        return f"batches {batches[0]}–{batches[-1]}"
    return "batches " + ", ".join(map(str, batches))


def up(fast: bool = False, verbose: bool = False, echo: Echo = say) -> int:
    """Run the stack until Ctrl-C, SIGTERM or `covertype down`; 1 when it could not start or
    a service failed."""
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    settings = prepare_environment(fast)
    state = read_state(settings)
    if state and up_alive(state):
        echo(
            f"a stack already runs from {settings.home} (pid {state['pid']}); "
            "`covertype status` shows it, `covertype down` stops it"
        )
        return 1
    if problems := ports_in_use(settings):
        echo("covertype up: nothing started, because:\n  " + "\n  ".join(problems))
        echo("Stop what uses them, or choose other ports with these variables.")
        return 1
    if state:  # an `up` that was killed: its services may still run
        stop_sessions(s["sid"] for s in state.get("services", {}).values())

    folder = settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    logs = ServiceLogs(folder, echo, verbose)
    manager = Manager(printer=logs)
    for name, command in parse_procfile(PROCFILE.read_text()).processes.items():
        manager.add_process(name, command, env=dict(os.environ))
    echo(
        f"covertype up{' --fast' if fast else ''}: starting {', '.join(s.name for s in SERVICES)} "
        f"(state: {settings.home}; logs: {folder}/<service>.log)"
    )
    watcher = Watcher(settings, manager, logs, echo, fast)
    watcher.start()
    try:
        manager.loop()  # returns when every service stopped; handles SIGINT and SIGTERM
    finally:
        watcher.stopping.set()
        killed = stop_sessions(watcher.sids.values(), term=False)
        logs.close()
        state_path(settings).unlink(missing_ok=True)
    for pid, command in killed:
        echo(f"{now()} killed after {STOP_GRACE_SECONDS} s: pid {pid} {command}")
    crashed = _crashed(manager)
    for name in crashed:
        tail = logs.path(name).read_text(errors="replace").splitlines()[-15:]
        echo(f"{now()} {name} failed; the end of {logs.path(name)}:\n  " + "\n  ".join(tail))
    if watcher.peak_memory:
        echo(f"{now()} stopped; peak memory of the stack: {mib(watcher.peak_memory)}")
    return 1 if watcher.failure or crashed else 0


def _crashed(manager) -> list[str]:
    """Services that ended by themselves with an error (not by a stop signal)."""
    stopped_by_signal = {0, 130, 143, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL}
    return [
        name
        for name, process in manager._processes.items()
        if process.get("returncode") not in stopped_by_signal | {None}
    ]


# ---------------------------------------------------------------- down, status


def down(settings: Settings, echo: Echo = say) -> int:
    state = read_state(settings)
    if state is None:
        echo(f"no stack runs from {settings.home}")
        return 0
    if up_alive(state):
        echo(f"stopping the stack of pid {state['pid']} ...")
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS + 30
        while up_alive(state) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left (an `up` that was killed, or one that did not stop in time).
    killed = stop_sessions(s["sid"] for s in state.get("services", {}).values())
    for pid, command in killed:
        echo(f"killed: pid {pid} {command}")
    state_path(settings).unlink(missing_ok=True)
    echo(f"stopped the stack of {settings.home}")
    return 0


def status(settings: Settings, echo: Echo = say) -> int:
    """What runs, healthy or not, and what it serves; 0 when all runs and answers."""
    state = read_state(settings)
    if state is None:
        echo(f"no stack runs from {settings.home} (`covertype up` starts it)")
        return 3
    alive = up_alive(state)
    echo(
        f"stack of {state['home']}, started {state['started_at']}"
        f"{' (--fast)' if state.get('fast') else ''}: covertype up pid {state['pid']} "
        f"{'running' if alive else 'NOT RUNNING (`covertype down` cleans up)'}"
    )
    rows = [("service", "processes", "memory", "health", "URL")]
    all_good = alive
    with httpx.Client(timeout=5) as client:
        for name, info in state.get("services", {}).items():
            members = session_members([info["sid"]])
            good = bool(members) and healthy(name, info["health"], client)
            all_good &= good
            memory = mib(memory_bytes(members)) if members else "–"
            health = "healthy" if good else ("not answering" if members else "stopped")
            rows.append((name, str(len(members)), memory, health, info["url"]))
        served = "no model yet"
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, KeyError):
            answer = client.get(state["services"]["serve"]["url"] + "/ready").json()
            if answer.get("model"):
                served = f"{settings.model_name} version {answer['model']['version']}"
    for line in table(rows):
        echo(line)
    total = sum(rows_by_batch(settings).values())
    echo(f"served: {served}; data DB: {total:,} rows")
    extra = []
    if state.get("first_prediction_seconds") is not None:
        extra.append(f"first prediction {state['first_prediction_seconds']:.0f} s after up")
    if state.get("peak_memory_bytes"):
        extra.append(f"peak memory {mib(state['peak_memory_bytes'])}")
    if extra:
        echo("; ".join(extra))
    return 0 if all_good else 1
