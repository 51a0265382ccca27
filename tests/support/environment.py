"""The repository, the venv and the environment the tests run `covertype` in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from covertype.processes import VENV_BIN, with_venv_path

BIN = VENV_BIN
REPO = Path(__file__).resolve().parents[2]
MYSQL_URL = os.environ.get("COVERTYPE_TEST_MYSQL_URL")  # set by .ci/run; absent: SQLite only

MLFLOW_LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without its COVERTYPE_* (and MLflow login) settings, the venv first
    on PATH, logins off (servers here listen on 127.0.0.1; the tests of the logins turn them
    on with COVERTYPE_AUTH=on), + `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COVERTYPE_") and k not in MLFLOW_LOGIN
    }
    return with_venv_path(env) | {"COVERTYPE_AUTH": "off"} | (extra or {})


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):
    """`covertype <args>` to its end, in a clean environment plus `env`."""
    return subprocess.run(
        [str(BIN / "covertype"), *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
