"""A new session keeps its parent's CPU priority (Linux autogroups).

Linux weighs sessions, not processes, against each other (autogroups, on by default): a
process's nice value counts only within its session, so a child started in a session of its
own (every server, guard and supervisord the platform starts) would take a full share of the
CPU from `nice covertype up` or from a niced test run. Standard library only: every guard of
the local stack imports this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def autogroup_nice(pid: int | str = "self") -> int:
    """The niceness of the process's session (`/proc/PID/autogroup`: "/autogroup-85 nice 0")."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])


def session_nice() -> int:
    """The niceness a new session should keep: this process's, or its session's if higher."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError, ValueError, IndexError):  # not Linux, or no autogroups
        nice = max(nice, autogroup_nice())
    return nice


def keep_priority(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A `preexec_fn` for a child started in a session of its own (`start_new_session` runs
    first): its session gets the niceness of the parent's, then `then` runs."""
    nice = session_nice()  # read in the parent, before the fork

    def preexec() -> None:
        if nice > 0:
            with contextlib.suppress(OSError):
                AUTOGROUP.write_text(str(nice))
        if then is not None:
            then()

    return preexec
