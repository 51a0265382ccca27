"""Supervision as the stack runs it, on small real programs: a real supervisord, the guard of
`covertype.stack.guard` around each program, real signals, real ports.

The "server" is a process tree like `mlflow server`: a parent that starts a child holding the
port and exits when the child dies. Killing either must end with the whole tree restarted and
no orphan left on the port; a program that keeps crashing is marked failed while the others
keep serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from covertype.priority import autogroup_nice, session_nice
from covertype.processes import session_members
from covertype.stack import guard
from covertype.stack.state import FAILED, RUNNING, ServiceRecord
from covertype.stack.supervisor import Supervisor
from tests.support.environment import clean_env
from tests.support.servers import free_port, wait_for

SERVER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "http.server", sys.argv[1], "--bind", "127.0.0.1"])
sys.exit(child.wait())
"""


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Supervised:
    """A real supervisord with the given programs, in its own COVERTYPE_HOME."""

    def __init__(self, tmp: Path, programs: dict[str, list[str]], nice: dict[str, int]):
        self.home = tmp / "home"
        self.supervisor = Supervisor(self.home)
        self.supervisor.write_config(
            [(name, command, True, {}, nice.get(name, 0)) for name, command in programs.items()],
            cwd=tmp,
        )
        env = clean_env({"COVERTYPE_HOME": str(self.home)})
        self.process = self.supervisor.spawn(env, tmp / "supervisord.out")
        self.supervisor.wait_ready(self.process)

    def record(self, name: str) -> ServiceRecord:
        return ServiceRecord.load(self.home, name)

    def tree(self, name: str) -> set[int]:
        sid = self.record(name).sid
        return {p.pid for p in session_members([sid])} if sid else set()

    def close(self) -> list[str]:
        """Stop everything; what is left of the programs' sessions (should be nothing)."""
        sids = [self.record(n).sid for n in self.supervisor.processes()]
        self.supervisor.stop_all()
        self.supervisor.shutdown()
        self.process.wait(30)
        return [" ".join(p.cmdline()) for p in session_members([s for s in sids if s])]


@pytest.fixture
def server(tmp_path) -> list[str]:
    """The command of the toy server (a port to add)."""
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return [sys.executable, str(path)]


@pytest.fixture
def supervised(tmp_path):
    started: list[Supervised] = []

    def start(programs: dict[str, list[str]], nice: dict[str, int] | None = None) -> Supervised:
        started.append(Supervised(tmp_path, programs, nice or {}))
        return started[-1]

    yield start
    for stack in started:
        if stack.process.poll() is None:
            stack.process.kill()


def test_a_killed_tree_is_stopped_whole_and_restarted_after_a_backoff(supervised, server):
    port = free_port()
    stack = supervised({"web": [*server, str(port)]})
    wait_for(lambda: answers(port), 30, "answer")
    first = stack.record("web")
    leader = first.sid
    [child] = stack.tree("web") - {leader}

    os.kill(leader, signal.SIGKILL)  # the parent only: its child still holds the port
    killed_at = time.time()
    wait_for(lambda: not psutil.pid_exists(child) or not _alive(child), 10, "orphan stopped")
    record = wait_for(lambda: (r := stack.record("web")).starts == 2 and r, 15, "restart")
    assert record.exits[-1].describe() == "killed by SIGKILL"
    assert record.started_at - killed_at >= guard.FIRST_BACKOFF_SECONDS - 0.2  # it waited
    wait_for(lambda: answers(port), 30, "answer after the restart")
    assert record.sid != leader and record.state == RUNNING

    # The child dying takes the parent down (as mlflow's uvicorn does): restarted again, after
    # a longer wait (the second exit of a streak).
    [child] = stack.tree("web") - {record.sid}
    os.kill(child, signal.SIGKILL)
    again = wait_for(lambda: (r := stack.record("web")).starts == 3 and r, 20, "second restart")
    assert again.exits[-1].code != 0
    assert again.started_at - again.exits[-1].at >= 2 * guard.FIRST_BACKOFF_SECONDS - 0.2
    wait_for(lambda: answers(port), 30, "answer after the second restart")
    assert stack.close() == []


def test_a_niced_service_runs_its_whole_tree_in_a_session_of_that_niceness(supervised, server):
    """Linux weighs sessions against each other: the niceness must be the session's."""
    ports = free_port(), free_port()
    stack = supervised({"batch": [*server, str(ports[0])], "web": [*server, str(ports[1])]},
                       nice={"batch": 10})  # fmt: skip
    for port in ports:
        wait_for(lambda port=port: answers(port), 30, "answer")

    def niceness(name: str) -> set[tuple[int, int]]:
        """(process nice, session's autogroup nice) of every member of the tree."""
        return {(psutil.Process(pid).nice(), autogroup_nice(pid)) for pid in stack.tree(name)}

    base = session_nice()  # scripts/test.sh runs this file at 10
    batch = min(19, base + 10)
    assert batch > base, f"at nice {base}, the niced service could not be told apart"
    assert niceness("batch") == {(batch, batch)}
    assert niceness("web") == {(base, base)}


def test_a_crash_looping_service_is_marked_failed_while_the_rest_serves(supervised, server):
    port = free_port()
    stack = supervised(
        {
            "web": [*server, str(port)],
            "broken": [sys.executable, "-c", "print('cannot start: no config'); exit(3)"],
        }
    )
    failed = wait_for(
        lambda: (r := stack.record("broken")).state == FAILED and r,
        60,
        "broken marked failed",
    )
    assert len(failed.exits) == guard.FAIL_EXITS
    assert [e.code for e in failed.exits] == [3] * guard.FAIL_EXITS
    assert failed.failed_reason.startswith(f"{guard.FAIL_EXITS} exits within")
    assert "cannot start: no config" in "\n".join(failed.log_tail)
    # Waits between the starts doubled: 1, 2, 4, 8 s.
    starts_gaps = [b.at - a.at for a, b in zip(failed.exits, failed.exits[1:], strict=False)]
    assert all(gap >= wait - 0.2 for gap, wait in zip(starts_gaps, [1, 2, 4, 8], strict=True))
    time.sleep(2)
    info = stack.supervisor.processes()
    assert info["broken"]["statename"] == "EXITED"  # supervisord did not start it again
    assert info["broken"]["exitstatus"] == guard.GAVE_UP
    assert stack.record("broken").state == FAILED
    assert info["web"]["statename"] == "RUNNING" and answers(port)
    assert stack.record("web").restarts == 0
    assert stack.close() == []


def test_a_guard_killed_with_its_tree_leaves_no_orphan_on_the_port(supervised, server):
    port = free_port()
    stack = supervised({"web": [*server, str(port)]})
    wait_for(lambda: answers(port), 30, "answer")
    record = stack.record("web")
    old_tree = stack.tree("web")
    os.kill(record.guard_pid, signal.SIGKILL)  # the leader dies with it; its child does not
    new = wait_for(
        lambda: (
            (r := stack.record("web")).guard_pid != record.guard_pid and r.sid != record.sid and r
        ),
        20,
        "a new guard with a new tree",
    )
    assert not any(_alive(pid) for pid in old_tree), "the old tree was swept"
    wait_for(lambda: answers(port), 30, "answer from the new tree")
    assert new.state == RUNNING
    assert stack.close() == []


def test_supervisord_gone_stops_every_tree(supervised, server):
    port = free_port()
    stack = supervised({"web": [*server, str(port)]})
    wait_for(lambda: answers(port), 30, "answer")
    members = stack.tree("web")
    stack.process.send_signal(signal.SIGKILL)  # not even a shutdown: the guards notice
    stack.process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in members), 30, "the tree gone")
    assert not answers(port)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_the_guard_refuses_a_call_without_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "covertype.stack.guard", "web"],
        env=clean_env({"COVERTYPE_HOME": "/nonexistent"}),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "usage:" in done.stderr
