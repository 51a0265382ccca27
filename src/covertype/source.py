"""Source API: serves the covertype rows in 10 batches that rotate over time.

Compatible with the course's data API. Per group 1..10: the first call starts batch 1; each
call returns a fresh random tenth of the current batch; the first call after
`COVERTYPE_BATCH_SECONDS` moves to the next batch (one step per call, so no batch is skipped
by a slow collector); after the last batch's window the answer is HTTP 400 "all data was
collected" until `/restart_data_generation`. Group state lives in a SQLite file, so a restart
of the process resumes where it was, and `BEGIN IMMEDIATE` makes a batch move exactly once
under concurrent calls (also across worker processes).

`COVERTYPE_SOURCE_ORDER` is the drift scenario: how the rows are cut into the 10 batches
(`partition`). `random` is the course's behaviour; `elevation` and `wilderness` make later
batches differ from earlier ones the way real collection drifts.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field

from covertype import dataset, schema
from covertype.errors import CovertypeError
from covertype.http_errors import error_response
from covertype.settings import Settings

log = logging.getLogger(__name__)

BATCHES = 10
GROUPS = range(1, 11)
PARTITION_SEED = 0  # the same split into batches for every group and every restart
ORDERS = {
    "random": "a seeded random permutation cut into 10 equal batches",
    "elevation": "rows sorted by Elevation, cut into 10 equal bands: batch 1 the lowest",
    "wilderness": (
        "the wilderness areas one after another (Rawah, Neota, Commanche, Cache), "
        "cut into 10 equal batches"
    ),
}
EXHAUSTED_DETAIL = (
    "All data was collected for group {group}: all {batches} batches were served. "
    "Call /restart_data_generation?group_number={group} to start again."
)


@dataclass(frozen=True)
class GroupState:
    batch_number: int  # 1..BATCHES, or BATCHES + 1 once exhausted
    started_at: float

    @property
    def exhausted(self) -> bool:
        return self.batch_number > BATCHES


class StateStore:
    """Per-group batch position, persisted in SQLite."""

    def __init__(self, path: Path, batch_seconds: float):
        self.path = path
        self.batch_seconds = batch_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS group_state ("
                " group_number INTEGER PRIMARY KEY,"
                " batch_number INTEGER NOT NULL,"
                " started_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def advance(self, group: int, now: float) -> GroupState:
        """The state that serves this call, moving to the next batch when the window is over."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT batch_number, started_at FROM group_state WHERE group_number = ?",
                    (group,),
                ).fetchone()
                if row is None:
                    state = GroupState(1, now)
                else:
                    state = GroupState(*row)
                    if not state.exhausted and now - state.started_at >= self.batch_seconds:
                        state = GroupState(state.batch_number + 1, now)
                db.execute(
                    "INSERT OR REPLACE INTO group_state VALUES (?, ?, ?)",
                    (group, state.batch_number, state.started_at),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return state

    def restart(self, group: int, now: float) -> GroupState:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO group_state VALUES (?, 1, ?)", (group, now))
        return GroupState(1, now)

    def all(self) -> dict[int, GroupState]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM group_state ORDER BY group_number").fetchall()
        return {group: GroupState(batch, started) for group, batch, started in rows}


def partition(frame: pd.DataFrame, order: str = "random") -> list[np.ndarray]:
    """The dataset's 10 batches as row positions, the same for every group and restart.

    Every order starts from the same seeded permutation, so `random` is today's split and
    the others break ties (same elevation, same area) in that random order: a batch is
    never sorted by anything else, and calls within it sample it uniformly."""
    shuffled = np.random.default_rng(PARTITION_SEED).permutation(len(frame))
    if order == "elevation":
        key = frame["Elevation"].to_numpy()[shuffled]
    elif order == "wilderness":
        codes = pd.Categorical(frame[schema.WILDERNESS], categories=schema.WILDERNESS_AREAS).codes
        key = codes[shuffled]
    elif order == "random":
        key = None
    else:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if key is not None:
        shuffled = shuffled[np.argsort(key, kind="stable")]
    return np.array_split(shuffled, BATCHES)


def call_rows(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What one call serves of a batch: a random tenth of its rows, in dataset order."""
    return np.sort(rng.choice(batch, size=math.ceil(len(batch) / 10), replace=False))


class BatchAnswer(BaseModel):
    group_number: int = Field(examples=[7])
    batch_number: int = Field(ge=1, le=BATCHES, examples=[1])
    data: list[list[str]] = Field(
        description="rows of the 13 fields (schema.FIELDS) in order, every value a string",
        examples=[[["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah",
                    "C7745", "4"]]],
    )  # fmt: skip


class Refused(BaseModel):
    detail: str = Field(examples=["group_number must be a whole number from 1 to 10; got '12'"])


REFUSED = {"model": Refused, "description": "A bad group, or every batch already served"}


class SourceRequestError(CovertypeError):
    """A request the course's data API refuses with 400: a bad group, or all data served."""

    status = 400


def parse_group(value: str | None) -> int:
    """The course API answers 400 (not 422) to a bad group; so do we, naming what is allowed."""
    try:
        group = int(value) if value is not None else None
    except ValueError:
        group = None
    if group is None or group not in GROUPS:
        got = "nothing" if value is None else repr(value)
        allowed = f"a whole number from {GROUPS.start} to {GROUPS.stop - 1}"
        raise SourceRequestError(f"group_number must be {allowed}; got {got}")
    return group


class _GroupStates:
    """Each group's batch at scrape time, from the state store (so right after a restart too)."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self):
        batch = GaugeMetricFamily(
            "covertype_source_batch",
            "Current batch of each group that has started",
            labels=["group_number"],
        )
        exhausted = GaugeMetricFamily(
            "covertype_source_exhausted",
            "1 once the group's last batch window has passed (all data was collected)",
            labels=["group_number"],
        )
        store = getattr(self.app.state, "store", None)  # None until the lifespan ran
        for group, state in (store.all() if store else {}).items():
            batch.add_metric([str(group)], state.batch_number)
            exhausted.add_metric([str(group)], 1 if state.exhausted else 0)
        yield batch
        yield exhausted


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        started = time.perf_counter()
        frame = dataset.load_dataset(settings)
        app.state.frame = frame
        app.state.batches = partition(frame, settings.source.order)
        app.state.store = StateStore(settings.source.state_path, settings.source.batch_seconds)
        log.info(
            "source ready",
            extra={
                "rows": len(frame),
                "order": settings.source.order,
                "batch_seconds": settings.source.batch_seconds,
                "startup_seconds": round(time.perf_counter() - started, 3),
            },
        )
        yield

    registry = CollectorRegistry()
    rows_served = Counter(
        "covertype_source_rows_served",
        "Rows answered by /data, by group",
        ["group_number"],
        registry=registry,
    )

    app = FastAPI(
        title="covertype source API",
        description="Covertype rows in 10 batches rotating every COVERTYPE_BATCH_SECONDS.",
        lifespan=lifespan,
    )
    # (Starlette types a handler as taking any Exception, not the class it is registered for.)
    app.add_exception_handler(CovertypeError, error_response)  # type: ignore[arg-type]
    registry.register(_GroupStates(app))

    @app.get("/", summary="What this source serves: rows, batches, order, each group's batch")
    def root(request: Request) -> dict:
        state = request.app.state
        return {
            "service": "covertype source API",
            "serves": "UCI Covertype rows in the course format, every value a string",
            "source": str(settings.source.data or "sklearn.datasets.fetch_covtype"),
            "rows": len(state.frame),
            "fields": list(schema.FIELDS),
            "batches": BATCHES,
            "order": settings.source.order,
            "order_detail": ORDERS[settings.source.order],
            "rows_per_batch": [len(b) for b in state.batches],
            "rows_per_call": "a random tenth of the current batch",
            "batch_seconds": settings.source.batch_seconds,
            "groups": f"{GROUPS.start}..{GROUPS.stop - 1}",
            "group_state": {
                g: {"batch_number": s.batch_number, "exhausted": s.exhausted}
                for g, s in state.store.all().items()
            },
            "endpoints": [
                "/data?group_number=G",
                "/restart_data_generation?group_number=G",
                "/metrics",
            ],
        }

    @app.get(
        "/data",
        summary="A random tenth of the group's current batch (the next batch once the window "
        "is over), every value a string in the record's order",
        responses={200: {"model": BatchAnswer}, 400: REFUSED},
    )
    def data(request: Request, group_number: str | None = None) -> dict:
        group = parse_group(group_number)
        state = request.app.state
        current = state.store.advance(group, time.time())
        if current.exhausted:
            raise SourceRequestError(EXHAUSTED_DETAIL.format(group=group, batches=BATCHES))
        picked = call_rows(state.batches[current.batch_number - 1], np.random.default_rng())
        rows = dataset.to_course_rows(state.frame.iloc[picked])
        rows_served.labels(str(group)).inc(len(rows))
        log.info(
            "data served",
            extra={"group_number": group, "batch_number": current.batch_number, "rows": len(rows)},
        )
        return {"group_number": group, "batch_number": current.batch_number, "data": rows}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        """Prometheus: rows served, and each group's batch (read from the state file)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/restart_data_generation",
        summary="Start the group again at batch 1",
        responses={400: REFUSED},
    )
    def restart(request: Request, group_number: str | None = None) -> dict:
        group = parse_group(group_number)
        state = request.app.state.store.restart(group, time.time())
        log.info("group restarted", extra={"group_number": group})
        return {
            "ok": True,
            "group_number": group,
            "batch_number": state.batch_number,
            "detail": f"group {group} restarts at batch 1",
        }

    return app
