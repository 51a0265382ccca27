"""Fixtures every layer shares: data files and frames; each test marked by its layer.

`tests/unit` runs in-process with no server (`pytest -m unit`, under a minute); `tests/data`
holds expectations on every batch of the real data, `tests/model` the champion's quality and
behaviour; `tests/integration` starts real processes, servers and databases
(`pytest -m integration`). ./scripts/test.sh runs the local stack's file beside the others,
which run in two workers at nice 10, a file each (`-n 2 --dist loadfile`, the longest files
first so the workers end together): every test makes its own ports, homes and databases.
SIGTERM ends a run as Ctrl-C does, fixtures stopping their servers (test.sh's streams run in
the background, where Ctrl-C does not reach them).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from covertype.settings import Settings
from tests.support.browser import SCREENSHOTS
from tests.support.data import real_frame as load_real_frame
from tests.support.data import write_uci_file

SESSION_START = time.time()


# The longest files first (measured in a full run), so the two workers end together.
LONGEST_FIRST = (
    "test_dags.py", "test_api_keys.py", "test_artifact_store.py", "test_image_installs.py",
    "test_serve.py",
)  # fmt: skip


def pytest_sessionstart(session) -> None:
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in ("unit", "data", "model", "integration"):
            item.add_marker(layer)
    # Stable: within a file, and among the other files, the collection order stays.
    order = {name: rank for rank, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(Path(str(item.fspath)).name, len(order)))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A generated UCI-layout file: 2,000 valid rows (fast start-up for API tests)."""
    return write_uci_file(tmp_path_factory.mktemp("data") / "small.csv", rows=2000, seed=1)


@pytest.fixture(scope="session")
def real_data(tmp_path_factory) -> Path:
    """The real covtype file from the settings (COVERTYPE_SOURCE_DATA); on a machine without
    it, a generated 40,000-row file of the same layout."""
    configured = Settings(_env_file=None).source.data
    if configured is not None:
        assert Path(configured).is_file(), f"COVERTYPE_SOURCE_DATA={configured} does not exist"
        return Path(configured).resolve()
    return write_uci_file(tmp_path_factory.mktemp("data") / "generated.csv.gz", 40000, seed=2)


@pytest.fixture(scope="session")
def real_frame(real_data, tmp_path_factory):
    """The real rows in the course format (cached conversion)."""
    return load_real_frame(real_data, tmp_path_factory.mktemp("frame-home"))


def pytest_terminal_summary(terminalreporter):
    """Say where the UI screenshot of this run is (tests/integration/test_ui.py takes it)."""
    shot = SCREENSHOTS / "ui-prediction.png"
    if shot.is_file() and shot.stat().st_mtime >= SESSION_START:
        terminalreporter.write_line(f"UI screenshot (headless Chromium): {shot}")
