"""The project's compose services and `--help` runs of the commands they start, for
tests/integration/test_deploy_commands.py and tests/integration/test_image_installs.py."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

# Checks run at once: each is a Python start-up, mostly CPU (Airflow's takes seconds).
PARALLEL = max(2, os.cpu_count() or 1)


def project_services(services: dict) -> dict[str, dict]:
    return {n: s for n, s in services.items() if s["image"].startswith("${COVERTYPE_IMAGE")}


def help_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERTYPE_", "AIRFLOW"))}
    return env | {"COVERTYPE_HOME": str(home), "NO_COLOR": "1"}


def run_help(
    args: Sequence[str], bin_dir: Path, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`args --help` with args[0] taken from `bin_dir`: exit 0 means every subcommand and
    option in `args` exists (argparse and click reject unknown ones before printing help).
    `env` defaults to help_env(home)."""
    command = [str(bin_dir / args[0]), *args[1:], "--help"]
    env = help_env(home) if env is None else env
    return subprocess.run(
        command, env=env, cwd=home.parent, capture_output=True, text=True, timeout=120
    )


def run_helps(commands: Sequence[Sequence[str]], bin_dir: Path, home: Path) -> list:
    """run_help of each command, PARALLEL at a time; results in the order of `commands`."""
    return run_at_once([functools.partial(run_help, args, bin_dir, home) for args in commands])


def run_at_once(calls: Sequence[Callable]) -> list:
    """Each call in a thread, PARALLEL at a time; results in the order of `calls`."""
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda call: call(), calls))
