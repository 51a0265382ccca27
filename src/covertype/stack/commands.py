"""`covertype up`, `down`, `status` and `restart`: the local stack's commands.

`up` prepares the environment, checks every port, writes supervisord's configuration, runs
supervisord as its child and a watcher thread beside it, and waits for Ctrl-C, SIGTERM or
`covertype down`. Stopping: supervisord stops every service at once (each guard stops its
whole tree: SIGTERM, 20 s, SIGKILL) and shuts down; then `up` stops whatever is still in a
service's session. `down` does the same for an `up` that is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from covertype.processes import alive, memory_bytes, session_members, stop_processes, stop_sessions
from covertype.settings import Settings
from covertype.stack import logins, probes
from covertype.stack.services import (
    AIRFLOW,
    BY_NAME,
    INSTALL_HINTS,
    NOT_INSTALLED,
    SERVICES,
    ports_in_use,
    prepare_environment,
)
from covertype.stack.state import (
    BACKOFF,
    FAILED,
    RUNNING,
    STARTING,
    ServiceRecord,
    StackState,
    stack_dir,
)
from covertype.stack.supervisor import STOP_WAIT_SECONDS, Supervisor, SupervisorError
from covertype.stack.watch import Watcher, mib, now, table

Echo = Callable[[str], None]
SHUTDOWN_SECONDS = STOP_WAIT_SECONDS + 30
# Where the stack's services listen (COVERTYPE_AUTH=off needs every one on 127.0.0.1).
HOST_FIELDS = [s.host_field for s in SERVICES]


def say(line: str) -> None:
    print(line, flush=True)


def up_alive(state: StackState) -> bool:
    """The `covertype up` of this state still runs (not another process with its pid, nor
    an `up` that exited and waits, a zombie, for its parent to reap it)."""
    try:
        process = psutil.Process(state.pid)
        return process.create_time() <= state.created + 1 and alive(process)
    except psutil.Error:
        return False


def _records(home: Path) -> dict[str, ServiceRecord]:
    return {s.name: ServiceRecord.load(home, s.name) for s in SERVICES}


def _sessions(home: Path) -> list[int]:
    return [r.sid for r in _records(home).values() if r.sid]


def _ours(home: Path) -> Callable[[], list[psutil.Process]]:
    """The stack's processes still in the services' sessions (COVERTYPE_HOME tells them)."""
    sids = _sessions(home)

    def members() -> list[psutil.Process]:
        found = []
        for process in session_members(sids):
            with contextlib.suppress(psutil.Error):
                if process.environ().get("COVERTYPE_HOME") == str(home):
                    found.append(process)
        return found

    return members


def _stop(supervisor: Supervisor, process: psutil.Process | None, home: Path, echo: Echo):
    """Every service stopped at once, supervisord shut down, the sessions swept."""
    with contextlib.suppress(OSError, xmlrpc.client.Error):
        supervisor.stop_all()
    with contextlib.suppress(OSError, xmlrpc.client.Error):
        supervisor.shutdown()
    if process is not None:
        with contextlib.suppress(psutil.Error):
            try:
                process.wait(SHUTDOWN_SECONDS)
            except psutil.TimeoutExpired:
                echo(f"{now()} supervisord did not stop in {SHUTDOWN_SECONDS} s: SIGKILL")
                process.kill()
                process.wait(5)
    for pid, command in stop_processes(_ours(home), grace=5):
        echo(f"{now()} killed, left over: pid {pid} {command}")


# ---------------------------------------------------------------- up


def up(fast: bool = False, verbose: bool = False, echo: Echo = say) -> int:
    """Run the stack until Ctrl-C, SIGTERM or `covertype down`; 1 when it could not start or
    a service was failed when it stopped."""
    settings = prepare_environment(fast)
    home = settings.home
    if not settings.auth.on and (exposed := logins.exposed(settings, HOST_FIELDS)):
        echo(
            "covertype up: COVERTYPE_AUTH=off is only for a stack on 127.0.0.1, and these "
            f"listen elsewhere: {', '.join(exposed)}. Unset COVERTYPE_AUTH (logins on) or "
            "bind them to 127.0.0.1."
        )
        return 1
    generated = logins.prepare(home, os.environ) if settings.auth.on else {}
    settings = Settings()
    previous = StackState.load(home)
    if previous and up_alive(previous):
        echo(
            f"a stack already runs from {home} (pid {previous.pid}); "
            "`covertype status` shows it, `covertype down` stops it"
        )
        return 1
    if previous:  # an `up` that was killed: its services may still run
        _stop(Supervisor(home), _process(previous.supervisord_pid), home, echo)
    if problems := ports_in_use(settings):
        echo("covertype up: nothing started, because:\n  " + "\n  ".join(problems))
        echo("Stop what uses them, or choose other ports with these variables.")
        return 1

    from covertype.db.commands import upgrade_before_start

    if not upgrade_before_start(settings.data_db, echo):  # before any service writes to it
        return 1
    for path in (stack_dir(home) / "services").glob("*.json"):
        path.unlink()  # a new stack: no exits counted yet
    supervisor = Supervisor(home)
    # Airflow's components wait for their metadata DB (the watcher migrates it first).
    programs = [
        (
            s.name,
            s.command(),
            s.group != AIRFLOW,
            logins.service_environment(settings, s.name),
            s.nice,
        )
        for s in SERVICES
    ]
    supervisor.write_config(programs, cwd=Path.cwd())
    child = supervisor.spawn(os.environ, supervisor.log_path("supervisord"))
    try:
        supervisor.wait_ready(child)
    except SupervisorError as error:
        echo(f"covertype up: {error}; see {supervisor.log_path('supervisord')}")
        child.kill()
        return 1
    state = StackState(
        pid=os.getpid(),
        created=psutil.Process().create_time(),
        home=str(home),
        fast=fast,
        started_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        supervisord_pid=child.pid,
        socket=str(supervisor.socket),
        services={
            s.name: {
                "url": s.url(settings),
                "health": s.health_url(settings),
                "log": str(supervisor.log_path(s.name)),
            }
            for s in SERVICES
        },
    )
    state.save()
    echo(
        f"covertype up{' --fast' if fast else ''}: starting {', '.join(s.name for s in SERVICES)} "
        f"under supervisord (state: {home}; logs: {supervisor.logs}/<service>.log)"
    )
    for line in logins.describe(settings, generated):
        echo(line)
    for service in NOT_INSTALLED:
        echo(
            f"{service.title} is not installed ({INSTALL_HINTS[service.name]}): the stack "
            f"runs without it"
        )

    stop = threading.Event()
    handlers = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    watcher = Watcher(settings, supervisor, state, echo)
    watcher.start()
    follower = _LogFollower(supervisor, echo) if verbose else None
    while not stop.wait(0.5):
        if child.poll() is not None:
            echo(f"{now()} supervisord exited ({child.returncode}); stopping the stack")
            watcher.failed.add("supervisord")
            break
    echo(f"{now()} stopping the stack ...")
    watcher.stopping.set()
    if follower:
        follower.stopping.set()
    if watcher.airflow_init is not None and watcher.airflow_init.poll() is None:
        stop_sessions([watcher.airflow_init.pid], grace=5)
    _stop(supervisor, _process(child.pid), home, echo)
    child.poll()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    state.remove()
    if watcher.failed:
        echo(f"{now()} failed when the stack stopped: {', '.join(sorted(watcher.failed))}")
    if state.peak_memory_bytes:
        echo(f"{now()} stopped; peak memory of the stack: {mib(state.peak_memory_bytes)}")
    return 1 if watcher.failed else 0


def _process(pid: int | None) -> psutil.Process | None:
    try:
        return psutil.Process(pid) if pid else None
    except psutil.Error:
        return None


class _LogFollower(threading.Thread):
    """`-v`: every service's new log lines on the console, prefixed by its name."""

    def __init__(self, supervisor: Supervisor, echo: Echo):
        super().__init__(name="stack-logs", daemon=True)
        self.supervisor, self.echo = supervisor, echo
        self.stopping = threading.Event()
        self.offsets: dict[str, int] = {}
        self.start()

    def run(self) -> None:
        width = max(len(s.name) for s in SERVICES)
        while not self.stopping.wait(0.5):
            for service in SERVICES:
                path = self.supervisor.log_path(service.name)
                with contextlib.suppress(OSError):
                    with path.open("rb") as handle:
                        offset = self.offsets.get(service.name, 0)
                        if handle.seek(0, os.SEEK_END) < offset:
                            offset = 0  # rotated
                        handle.seek(offset)
                        text = handle.read()
                        self.offsets[service.name] = offset + len(text)
                    for line in text.decode("utf-8", "replace").splitlines():
                        self.echo(f"{service.name:>{width}} | {line}")


# ---------------------------------------------------------------- down, restart


def down(settings: Settings, echo: Echo = say) -> int:
    home = settings.home
    state = StackState.load(home)
    if state is None:
        echo(f"no stack runs from {home}")
        return 0
    if up_alive(state):
        echo(f"stopping the stack of pid {state.pid} ...")
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_SECONDS + 30
        while up_alive(state) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever is left: an `up` that was killed, or one that did not stop in time.
    _stop(Supervisor(home), _process(state.supervisord_pid), home, echo)
    state.remove()
    echo(f"stopped the stack of {home}")
    return 0


def restart(settings: Settings, name: str, echo: Echo = say) -> int:
    """Stop one service, forget its exits (so no backoff, no failure), start it again."""
    if name not in BY_NAME:
        echo(f"no service {name!r}; the stack's services: {', '.join(BY_NAME)}")
        return 2
    state = StackState.load(settings.home)
    supervisor = Supervisor(settings.home)
    if state is None or not supervisor.answers():
        echo(f"no stack runs from {settings.home} (`covertype up` starts it)")
        return 3
    supervisor.stop(name)
    record = ServiceRecord.load(settings.home, name)
    record.exits, record.failed_reason, record.log_tail = [], None, []
    record.save(settings.home)
    supervisor.start(name)
    echo(f"{name}: started again (`covertype status` shows it)")
    return 0


# ---------------------------------------------------------------- status


def describe_state(record: ServiceRecord, program: dict | None, healthy: bool) -> str:
    """One word for a service: running, starting, backoff, failed, stopped, ..."""
    if program is None:
        return "unknown"
    if record.state == FAILED:
        return "failed"
    if program["statename"] in ("STOPPED", "EXITED", "FATAL"):
        return "stopped" if program["statename"] == "STOPPED" else "exited"
    if record.state == BACKOFF:
        wait = (record.backoff_until or 0) - time.time()
        return f"backoff {wait:.0f} s" if wait > 0 else "starting"
    if record.state in (RUNNING, STARTING):
        return "running" if healthy else "starting"
    return record.state


def status(settings: Settings, echo: Echo = say) -> int:
    """What runs, healthy or not, what it serves; 0 when every service runs and answers."""
    home = settings.home
    state = StackState.load(home)
    if state is None:
        echo(f"no stack runs from {home} (`covertype up` starts it)")
        return 3
    alive = up_alive(state)
    supervisor = Supervisor(home)
    echo(
        f"stack of {state.home}, started {state.started_at}{' (--fast)' if state.fast else ''}: "
        f"covertype up pid {state.pid} "
        f"{'running' if alive else 'NOT RUNNING (`covertype down` cleans up)'}"
    )
    try:
        programs = supervisor.processes()
    except (OSError, xmlrpc.client.Error):
        programs = {}
        echo(f"supervisord does not answer on {supervisor.socket}")
    rows = [("service", "state", "restarts", "last exit", "memory", "health", "URL")]
    all_good = alive and bool(programs)
    with probes.client(settings) as client:
        health = probes.Health(settings, client)
        records = _records(home)
        for service in SERVICES:
            record = records[service.name]
            members = session_members([record.sid]) if record.sid else []
            good = bool(members) and health.healthy(service)
            word = describe_state(record, programs.get(service.name), good)
            all_good &= word == "running"
            last = record.last_exit
            rows.append(
                (
                    service.name,
                    word,
                    str(record.restarts),
                    f"{last.describe()} at {datetime.fromtimestamp(last.at):%H:%M:%S}"
                    if last
                    else "–",
                    mib(memory_bytes(members)) if members else "–",
                    "healthy" if good else ("not answering" if members else "–"),
                    service.url(settings) if service.listens else "",
                )
            )
        served = "no model yet"
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, KeyError):
            answer = client.get(state.services["serve"]["url"] + "/ready").json()
            if answer.get("model"):
                served = f"{settings.mlflow.model_name} version {answer['model']['version']}"
    for line in table(rows):
        echo(line)
    for name, record in records.items():
        if record.state == FAILED:
            echo(f"{name} failed: {record.failed_reason}; `covertype restart {name}` tries again")
    total = sum(probes.rows_by_batch(settings).values())
    echo(f"served: {served}; data DB: {total:,} rows")
    extra = []
    if state.first_prediction_seconds is not None:
        extra.append(f"first prediction {state.first_prediction_seconds:.0f} s after up")
    if state.peak_memory_bytes:
        extra.append(f"peak memory {mib(state.peak_memory_bytes)}")
    if extra:
        echo("; ".join(extra))
    return 0 if all_good else 1
