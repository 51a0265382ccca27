"""One service of the local stack, as supervisord runs it: its whole process tree as one unit.

    python -m covertype.stack.guard NAME LOG -- COMMAND [ARGS...]

supervisord runs this guard for each service (COVERTYPE_HOME from the environment) and starts
it again whenever it exits. The guard runs COMMAND in a session of its own and keeps the
tree together:

- it is the subreaper of everything below it and the leader dies with it (PDEATHSIG), so
  while it lives no member is orphaned to init;
- when the leader exits (it crashed, was killed, or a worker died and took it down), the
  rest of the tree is stopped (SIGTERM, `GRACE_SECONDS`, SIGKILL) before the guard exits, so
  nothing is left holding the service's port;
- asked to stop (SIGTERM, SIGINT, SIGHUP), it stops the tree the same way;
- at start it stops what is left of the session the previous guard started (a guard that
  was SIGKILLed could not), waits out the backoff of the last exits (`backoff_seconds`), or
  gives up after `FAIL_EXITS` exits within `FAIL_WINDOW_SECONDS` (`gives_up`): it records the
  service failed with the end of its log and exits with `GAVE_UP`, the one exit code
  supervisord does not restart.

supervisord's own backoff only covers a process that dies within `startsecs` and grows by a
second a try; a server that crashes after running a while is restarted at once, for ever.
That is why the policy lives here. Light on imports: eight of these run beside the stack.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from covertype.priority import keep_priority
from covertype.stack.state import (
    BACKOFF,
    EXITED,
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    Exit,
    ServiceRecord,
)

GAVE_UP = 99  # supervisord's `exitcodes`: the only exit it does not restart
GRACE_SECONDS = 20  # a task inside LightGBM's C code ignores SIGTERM until it returns
FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 30.0
STABLE_SECONDS = 60  # a run this long ends a streak of crashes
FAIL_EXITS, FAIL_WINDOW_SECONDS = 5, 120
LOG_TAIL_LINES = 20

_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def backoff_seconds(exits: Sequence[Exit]) -> float:
    """How long to wait before the next start: nothing before the first, then 1 s doubling
    to 30 s for each exit of the current streak (a run of STABLE_SECONDS starts a new one)."""
    streak = 0
    for done in reversed(exits):
        streak += 1
        if done.ran_seconds >= STABLE_SECONDS:
            break
    if streak == 0:
        return 0.0
    return min(FIRST_BACKOFF_SECONDS * 2 ** (streak - 1), MAX_BACKOFF_SECONDS)


def gives_up(exits: Sequence[Exit], now: float) -> bool:
    """FAIL_EXITS exits within FAIL_WINDOW_SECONDS: the service keeps failing."""
    recent = [e for e in exits if now - e.at <= FAIL_WINDOW_SECONDS]
    return len(recent) >= FAIL_EXITS


def exit_code(status: int) -> int:
    """A wait status as a shell would show it: the code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent(signal_number: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `signal_number` when the process that started it
    dies, and none of the stop signals blocked (the mask is inherited)."""

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal_number)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    return preexec


class Stop(Exception):
    """A stop signal arrived (control flow of the guard, not an error)."""


class Guard:
    def __init__(self, name: str, log: Path, command: list[str], home: Path):
        self.name, self.log, self.command, self.home = name, log, command, home
        self.record = ServiceRecord.load(home, name)
        self.leader: subprocess.Popen | None = None
        self.stopping = False

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError):  # supervisord (our stdout's reader) may be gone
            print(f"{stamp} covertype stack: {self.name} {message}", flush=True)

    def save(self, state: str, **changes) -> None:
        for key, value in changes.items():
            setattr(self.record, key, value)
        self.record.state = state
        self.record.guard_pid = os.getpid()
        self.record.save(self.home)

    # ------------------------------------------------------------ the tree

    def members(self) -> list[psutil.Process]:
        """Everything below this guard, and whatever is left in the tree's session."""
        found = {}
        with contextlib.suppress(psutil.Error):
            for process in psutil.Process().children(recursive=True):
                found[process.pid] = process
        sid = self.record.sid
        if sid:
            for process in psutil.process_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if os.getsid(process.pid) == sid and self._ours(process):
                        found.setdefault(process.pid, process)
        return [p for p in found.values() if _alive(p)]

    def _ours(self, process: psutil.Process) -> bool:
        # A session id is a pid: after a reboot it may name someone else's session.
        try:
            return process.environ().get("COVERTYPE_HOME") == str(self.home)
        except psutil.Error:
            return False

    def reap(self) -> None:
        """Collect every exited child (orphans of the tree are ours: we are the subreaper)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.leader is not None and pid == self.leader.pid:
                self.leader.returncode = exit_code(status)

    def stop_tree(self, why: str) -> None:
        from covertype.processes import stop_processes

        members = self.members()
        if members:
            self.say(f"{why}: stopping {len(members)} process(es) of its tree")
        killed = stop_processes(self.members, GRACE_SECONDS, reap=self.reap)
        for pid, command in killed:
            self.say(f"killed after {GRACE_SECONDS} s: pid {pid} {command}")
        self.reap()

    # ------------------------------------------------------------ one run

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        try:
            return self._run()
        except Stop:
            self.stopping = True
            self.stop_tree("asked to stop")
            self.save(STOPPED, backoff_until=None)
            return 0

    def _on_stop(self, signum, frame) -> None:
        if not self.stopping:
            self.stopping = True
            raise Stop

    def _run(self) -> int:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # supervisord gone: stop the tree
        if os.getppid() == 1:  # it went before that took effect
            raise Stop
        if self.record.sid and self.members():
            self.stop_tree(f"left over from session {self.record.sid}")
        now = time.time()
        if gives_up(self.record.exits, now):
            reason = (
                f"{FAIL_EXITS} exits within {FAIL_WINDOW_SECONDS} s "
                f"(last: {self.record.exits[-1].describe()}); not restarted"
            )
            self.say(f"failed: {reason}")
            self.save(FAILED, failed_reason=reason, log_tail=self._log_tail(), sid=None)
            return GAVE_UP
        if delay := backoff_seconds(self.record.exits):
            self.say(f"restarting in {delay:g} s")
            self.save(BACKOFF, backoff_until=now + delay)
            time.sleep(delay)
        leader = self._start()
        while True:  # the leader's end; orphans of the tree are reaped on the way
            pid, status = os.waitpid(-1, 0)
            if pid == leader.pid:
                break
        code = exit_code(status)
        leader.returncode = code
        done = self.record.record_exit(code)
        self.stop_tree(f"exited ({done.describe()} after {done.ran_seconds:.0f} s)")
        self.save(EXITED, sid=self.record.sid)
        return 1 if code in (0, GAVE_UP) else code

    def _start(self) -> subprocess.Popen:
        """The leader, started and written down (`self.leader`)."""
        self.save(STARTING, backoff_until=None, failed_reason=None, log_tail=[])
        # A stop signal waits until the leader is written down (then stops it).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.leader = leader = subprocess.Popen(
                self.command, start_new_session=True, preexec_fn=keep_priority(die_with_parent())
            )
            self._started(leader)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return leader

    def _started(self, leader: subprocess.Popen) -> None:
        self.save(
            RUNNING,
            sid=leader.pid,
            command=self.command,
            started_at=time.time(),
            starts=self.record.starts + 1,
        )
        self.say(f"started: pid {leader.pid}: {' '.join(self.command)}")

    def _log_tail(self) -> list[str]:
        try:
            with self.log.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(handle.tell() - 64_000, 0))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return lines[-LOG_TAIL_LINES:]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: Sequence[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m covertype.stack.guard NAME LOG -- COMMAND...", file=sys.stderr)
        return 2
    home = Path(os.environ["COVERTYPE_HOME"])
    return Guard(argv[0], Path(argv[1]), list(argv[3:]), home).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
