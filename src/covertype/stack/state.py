"""What the local stack writes down: the stack's own state, and one record per service.

`COVERTYPE_HOME/stack/state.json` is written by `covertype up` (what runs, where, the first
prediction, peak memory) for `status` and `down`. `COVERTYPE_HOME/stack/services/<name>.json`
is written only by that service's guard (`covertype.stack.guard`): its state, its session,
every exit. Both are replaced by rename, so a reader never sees half a file. Light on
imports: every guard process loads this module.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# A service's states, as the guard records them; `covertype status` adds health.
STARTING, RUNNING, BACKOFF, EXITED, FAILED, STOPPED = (
    "starting", "running", "backoff", "exited", "failed", "stopped",
)  # fmt: skip
KEEP_EXITS = 50


def stack_dir(home: Path) -> Path:
    return home / "stack"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _known(cls, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Exit:
    at: float  # epoch seconds
    code: int  # the exit code, or 128 + signal number when a signal ended it
    ran_seconds: float

    def describe(self) -> str:
        if self.code > 128:
            import signal

            try:
                name = signal.Signals(self.code - 128).name
            except ValueError:
                name = f"signal {self.code - 128}"
            return f"killed by {name}"
        return f"exit code {self.code}"


@dataclass
class ServiceRecord:
    """One service as its guard last wrote it down."""

    name: str
    state: str = STARTING
    guard_pid: int | None = None
    sid: int | None = None  # session of the service's process tree (its leader's pid)
    command: list[str] = field(default_factory=list)
    started_at: float | None = None  # when the current (or last) tree was started
    starts: int = 0
    exits: list[Exit] = field(default_factory=list)
    backoff_until: float | None = None
    failed_reason: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def last_exit(self) -> Exit | None:
        return self.exits[-1] if self.exits else None

    @classmethod
    def path(cls, home: Path, name: str) -> Path:
        return stack_dir(home) / "services" / f"{name}.json"

    @classmethod
    def load(cls, home: Path, name: str) -> ServiceRecord:
        data = _read_json(cls.path(home, name))
        if data is None:
            return cls(name)
        record = cls(**_known(cls, data))
        record.exits = [Exit(**_known(Exit, e)) for e in data.get("exits", [])]
        return record

    def save(self, home: Path) -> None:
        self.exits = self.exits[-KEEP_EXITS:]
        _write_json(self.path(home, self.name), asdict(self))

    def record_exit(self, code: int, now: float | None = None) -> Exit:
        now = time.time() if now is None else now
        ran = now - self.started_at if self.started_at else 0.0
        done = Exit(at=now, code=code, ran_seconds=round(ran, 3))
        self.exits.append(done)
        return done


@dataclass
class StackState:
    """The running stack, as `covertype up` writes it down."""

    pid: int
    created: float  # the process's create time: tells it from a later process with its pid
    home: str
    fast: bool
    started_at: str
    supervisord_pid: int | None = None
    socket: str | None = None
    services: dict[str, dict] = field(default_factory=dict)  # name → url, health, log
    first_prediction_seconds: float | None = None
    peak_memory_bytes: int = 0

    @staticmethod
    def path(home: Path) -> Path:
        return stack_dir(home) / "state.json"

    @classmethod
    def load(cls, home: Path) -> StackState | None:
        data = _read_json(cls.path(home))
        return None if data is None else cls(**_known(cls, data))

    def save(self) -> None:
        _write_json(self.path(Path(self.home)), asdict(self))

    def remove(self) -> None:
        self.path(Path(self.home)).unlink(missing_ok=True)
