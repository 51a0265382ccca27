"""Processes the platform starts and stops: one helper for the stack, the tests and benchmarks.

A server runs as a *process tree* in a session of its own: its leader, and whatever the leader
starts (Airflow moves each task into a process group of its own, still in the session, so a
group signal would miss it). Stopping a tree is SIGTERM to every member, a grace period,
SIGKILL for what is left, then waiting until the members are really gone: SIGKILL is
delivered asynchronously, and a port is free only once its owner is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import httpx
import psutil

from covertype.priority import keep_priority

# The venv's bin: `covertype`, `airflow`, `mlflow`, `uvicorn` are started by name from it
# (`mlflow models serve` runs `uvicorn` from PATH), also when the venv is not activated.
VENV_BIN = Path(sys.executable).parent


def with_venv_path(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with the venv's bin first on PATH."""
    env = dict(os.environ if env is None else env)
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(VENV_BIN)]
    env["PATH"] = os.pathsep.join([str(VENV_BIN), *rest])
    return env


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def session_members(sids: Iterable[int]) -> list[psutil.Process]:
    """Live processes of these sessions, in one pass over the process table."""
    sids = set(sids)
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(process.pid) in sids:
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def terminate(processes: Iterable[psutil.Process], sig: int = signal.SIGTERM) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            process.send_signal(sig)


def stop_processes(
    members: Callable[[], list[psutil.Process]],
    grace: float,
    term: bool = True,
    reap: Callable[[], object] = lambda: None,
) -> list[tuple[int, str]]:
    """SIGTERM what `members()` returns (unless `term` is False: someone signalled it
    already), wait up to `grace` seconds, SIGKILL what is left and wait until it is gone.
    `reap` collects exited children meanwhile (for a parent of the members). Returns the
    SIGKILLed processes as (pid, command) pairs."""
    if term:
        terminate(members())
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        if not members():
            return []
        time.sleep(0.1)
    killed = []
    for process in members():
        with contextlib.suppress(psutil.Error):
            killed.append((process.pid, " ".join(process.cmdline()[:4])))
            process.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        reap()
        if not members():
            break
        time.sleep(0.05)
    return killed


def stop_sessions(sids: Iterable[int], grace: float = 20, term: bool = True):
    """Stop every process of these sessions (see `stop_processes`)."""
    sids = list(sids)
    return stop_processes(lambda: session_members(sids), grace, term)


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


def answers(url: str, timeout: float = 2.0) -> bool:
    """`url` answers 200."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class Server:
    """A command in a session of its own, its output appended to a log file; stopped as a
    session. `url` is where it answers, for `start`'s readiness check."""

    def __init__(
        self,
        command: list[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        url: str | None = None,
    ):
        self.command, self.log_path, self.cwd, self.url = command, log, cwd, url
        self.env = with_venv_path(env)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def spawn(self) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=keep_priority(),
            )
        return self

    def start(self, ready_path: str = "/", timeout: float = 60) -> Server:
        """Spawn, then wait until `url + ready_path` answers 200."""
        assert self.url is not None, "a server without a url cannot be waited for"
        process = self.spawn().process
        assert process is not None  # spawn() started it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited {process.returncode}:\n{self.log()[-5000:]}"
                )
            if answers(self.url + ready_path):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.command} not ready after {timeout} s:\n{self.log()[-5000:]}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def members(self) -> list[psutil.Process]:
        return session_members([self.pid]) if self.process is not None else []

    def stop(self, grace: float = 15) -> list[tuple[int, str]]:
        """SIGTERM the session, SIGKILL what is left after `grace` seconds."""
        process = self.process
        if process is None:
            return []
        killed = stop_processes(self.members, grace, reap=process.poll)
        process.poll()
        return killed

    def kill(self) -> None:
        """SIGKILL the whole session (a crash, not a shutdown)."""
        process = self.process
        if process is not None:
            stop_processes(self.members, grace=0, term=False, reap=process.poll)
            process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
