"""A server started in a session of its own keeps the niceness of the one that started it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from covertype.priority import session_nice

CHILD = """
import sys, time
from pathlib import Path
from covertype.priority import autogroup_nice
from covertype.processes import Server
server = Server(["sleep", "30"], Path(sys.argv[1])).spawn()
time.sleep(0.3)  # past the fork's preexec
print(autogroup_nice(server.pid))
server.stop()
"""


def autogroup_nice_of_a_server_started_under(nice: int, tmp_path: Path) -> int:
    started = subprocess.run(
        ["nice", "-n", str(nice), sys.executable, "-c", CHILD, str(tmp_path / "server.log")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(started.stdout)


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="a kernel without autogroups")
def test_a_niced_parent_s_server_session_is_niced_too(tmp_path):
    base = session_nice()  # scripts/test.sh runs this file at 10
    assert base <= 12, f"at nice {base}, a nicer server could not be told apart"
    assert autogroup_nice_of_a_server_started_under(7, tmp_path) == base + 7
    assert autogroup_nice_of_a_server_started_under(0, tmp_path) == base
