"""supervisord for the local stack: its configuration, its process, a client.

`covertype up` writes `COVERTYPE_HOME/stack/supervisord.conf`, one program per service: the
guard of `covertype.stack.guard` around the service's command, restarted by supervisord
whenever it exits (except when the guard gave up), its output in
`COVERTYPE_HOME/logs/<service>.log` (rotated at 50 MB). `up` runs `supervisord -n` as its
child, in a session of its own and dying with `up`, and talks to it over XML-RPC on a unix
socket: what runs, start or stop one service, shut down.
`supervisorctl -c COVERTYPE_HOME/stack/supervisord.conf status` works on the same stack.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Mapping
from pathlib import Path

from covertype.errors import CovertypeError
from covertype.priority import keep_priority
from covertype.processes import VENV_BIN
from covertype.settings import write_secret
from covertype.stack import guard
from covertype.stack.state import stack_dir

# name, command, started with supervisord, environment of its own (beside supervisord's),
# niceness of its session
Program = tuple[str, list[str], bool, dict[str, str], int]

STOP_WAIT_SECONDS = guard.GRACE_SECONDS + 15  # then supervisord SIGKILLs the guard
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes


class SupervisorError(CovertypeError):
    """supervisord did not start or does not answer."""


def _value(text: str) -> str:
    # supervisord expands %(name)s in values: a literal % is %%.
    return text.replace("%", "%%")


def _environment(variables: dict[str, str]) -> str:
    # KEY="value",...: supervisord splits it with a non-POSIX shlex (no escapes), then strips
    # the quotes: a value is quoted with a quote it does not contain.
    def quoted(name: str, value: str) -> str:
        for quote in "\"'":
            if quote not in value:
                return quote + value + quote
        raise ValueError(f"{name}: supervisord cannot pass a value holding both ' and \"")

    return ",".join(f"{k}={_value(quoted(k, v))}" for k, v in variables.items())


class Supervisor:
    """The stack's supervisord: files under COVERTYPE_HOME/stack, a unix socket."""

    def __init__(self, home: Path):
        self.home = home
        self.folder = stack_dir(home)
        self.config = self.folder / "supervisord.conf"
        self.logs = home / "logs"
        socket = self.folder / "supervisor.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:  # a deep COVERTYPE_HOME
            digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
            socket = Path("/tmp") / f"covertype-{digest}.sock"
        self.socket = socket

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def write_config(self, programs: Iterable[Program], cwd: Path) -> None:
        """One supervisord program per service, each run by its guard."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        sections = [
            "[unix_http_server]",
            f"file={_value(str(self.socket))}",
            "chmod=0700",
            "",
            "[supervisord]",
            "nodaemon=true",
            "silent=true",
            f"logfile={_value(str(self.folder / 'supervisord.log'))}",
            "logfile_maxbytes=10MB",
            f"pidfile={_value(str(self.folder / 'supervisord.pid'))}",
            f"childlogdir={_value(str(self.logs))}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_value(str(self.socket))}",
            "",
        ]
        for name, command, autostart, environment, nice in programs:
            if any("\n" in part for part in [*command, *environment.values()]):
                raise ValueError(f"{name}: supervisord's config cannot hold a newline")
            log = self.log_path(name)
            # A niced guard gives the service's session its niceness (covertype.priority).
            niced = ["nice", "-n", str(nice)] if nice else []
            guarded = [*niced, sys.executable, "-m", "covertype.stack.guard", name, str(log), "--"]
            sections += [
                f"[program:{name}]",
                f"command={_value(shlex.join([*guarded, *command]))}",
                f"directory={_value(str(cwd))}",
                f"autostart={str(autostart).lower()}",
                "autorestart=unexpected",
                f"exitcodes={guard.GAVE_UP}",
                "startsecs=0",  # the guard keeps the restart policy (see covertype.stack.guard)
                "stopsignal=TERM",
                f"stopwaitsecs={STOP_WAIT_SECONDS}",
                f"stdout_logfile={_value(str(log))}",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=2",
                "redirect_stderr=true",
                *([f"environment={_environment(environment)}"] if environment else []),
                "",
            ]
        # A service's own MLflow login is in here: this user's eyes only.
        write_secret(self.config, "\n".join(sections))

    def spawn(self, env: Mapping[str, str], log: Path) -> subprocess.Popen:
        """`supervisord -n` in a session of its own, SIGTERMed when this process dies."""
        from covertype.stack.guard import die_with_parent

        self.socket.unlink(missing_ok=True)
        with log.open("ab") as output:
            return subprocess.Popen(
                [str(VENV_BIN / "supervisord"), "-n", "-c", str(self.config)],
                env=dict(env),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=keep_priority(die_with_parent(signal_number=15)),
            )

    def client(self) -> xmlrpc.client.ServerProxy:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def wait_ready(self, process: subprocess.Popen, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SupervisorError(f"supervisord exited with {process.returncode}")
            if self.answers():
                return
            time.sleep(0.05)
        raise SupervisorError(f"supervisord does not answer on {self.socket} after {timeout} s")

    def answers(self) -> bool:
        try:
            state = self.client().supervisor.getState()
        except (OSError, xmlrpc.client.Error):
            return False
        assert isinstance(state, dict)  # supervisord's getState answers a struct
        return state["statename"] == "RUNNING"

    def processes(self) -> dict[str, dict]:
        """supervisord's view of each program: statename, pid, start, stop, exitstatus."""
        infos = self.client().supervisor.getAllProcessInfo()
        assert isinstance(infos, list)  # of structs, one a program
        return {info["name"]: info for info in infos}

    def start(self, name: str) -> None:
        self.client().supervisor.startProcess(name, False)

    def stop(self, name: str) -> None:
        """Stop one service and wait until its guard stopped the tree."""
        try:
            self.client().supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise

    def stop_all(self) -> None:
        """Stop every service at once and wait until they all stopped."""
        self.client().supervisor.stopAllProcesses(True)

    def shutdown(self) -> None:
        self.client().supervisor.shutdown()
