"""The prediction log: every answered record into the data DB's `predictions`, and the
challenger's shadow answers (`shadow`) into `shadow_predictions`, off the request's path.

A request only appends its records to a bounded in-memory queue (a deque: no lock, about a
microsecond); one writer thread per worker process flushes it in batches every
COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS (or sooner once a batch is waiting) with one
multi-row insert. When the queue is full (the DB slow or down) new records are dropped and
counted (`covertype_prediction_log_dropped_total`); a request never waits on the log. A batch
the DB refused is retried at the next flush while the queue has room for it. The shadow
thread's rows wait in a queue of their own, of the same size, written by the same flushes.
COVERTYPE_PREDICTION_LOG=off turns it all off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from covertype.serve.metrics import Metrics
from covertype.settings import Settings, safe_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

FLUSH_BATCH = 2000  # records per insert; a waiting batch this big is flushed at once
# What a request predicted, for the middleware to log (and shadow) once the answer is sent
# (it knows the latency and the request id): a list of (records, classes, model version,
# shadowed), shadowed None or what the challenger needs (`shadow.Shadowed`).
ANSWERED: ContextVar[list | None] = ContextVar("answered", default=None)


def answered(
    records: Sequence[Mapping[str, object]],
    labels: Sequence[int],
    version: str,
    shadowed: object = None,
) -> None:
    """Called by a route: these records were answered with these classes by `version`
    (and are to be shadowed by the challenger, when `shadowed` is given)."""
    slot = ANSWERED.get()
    if slot is not None:
        slot.append((records, labels, version, shadowed))


class PredictionLog:
    """The bounded queue and its writer thread (start/stop with the app)."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.url = settings.data_db
        self.capacity = settings.serve.prediction_log_queue
        self.interval = settings.serve.prediction_log_flush_seconds
        self.metrics = metrics
        self.queue: deque = deque()
        self.shadows: deque = deque()  # shadow answers: db.ShadowPrediction's fields
        self.dropped = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None  # made by the writer's first flush

    # ------------------------------------------------------------ the request's side

    def add(
        self,
        records: Sequence[Mapping[str, object]],
        labels: Sequence[int],
        version: str,
        latency_ms: float,
        request_id: str,
    ) -> None:
        """Queue answered records; drop (and count) those the queue has no room for."""
        room = self.capacity - len(self.queue)
        if room < len(records):
            dropped = len(records) - max(room, 0)
            self.dropped += dropped
            self.metrics.prediction_log_dropped.inc(dropped)
            records, labels = records[: max(room, 0)], labels[: max(room, 0)]
        now = time.time()
        for record, label in zip(records, labels, strict=True):
            self.queue.append((record, label, version, latency_ms, now, request_id))
        if len(self.queue) >= FLUSH_BATCH:
            self._wake.set()

    def add_shadows(self, rows: Sequence[tuple]) -> None:
        """Queue shadow answers (the shadow thread's); drop and count what has no room."""
        room = max(self.capacity - len(self.shadows), 0)
        if room < len(rows):
            self.dropped += len(rows) - room
            self.metrics.prediction_log_dropped.inc(len(rows) - room)
            rows = rows[:room]
        self.shadows.extend(rows)
        if len(self.shadows) >= FLUSH_BATCH:
            self._wake.set()

    # ------------------------------------------------------------ the writer

    def start(self) -> None:
        from covertype import db

        # The writer's modules (SQLAlchemy, the schema's Alembic) imported now, before the
        # first request: imported by the first flush, they held the GIL for most of a second
        # while the worker was serving (the worst latencies of a fresh worker).
        for name in ("make_engine", "ensure_schema", "Prediction", "insert_predictions",
                     "ShadowPrediction", "insert_shadow_predictions"):  # fmt: skip
            getattr(db, name)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the writer."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
        self.flush()  # what came in before the stop

    def flush(self) -> int:
        """Write what is queued, batch by batch; what the DB refused stays queued. How many
        answers were written (shadow answers not counted)."""
        written, refused = self._flush(self.queue, self._write)
        if not refused:  # the DB took the answers: their shadows next
            self._flush(self.shadows, self._write_shadows)
        self.metrics.prediction_log_queue.set(len(self.queue))
        return written

    def _flush(self, queue: deque, write: Callable[[list[tuple]], int]) -> tuple[int, bool]:
        """`queue` written batch by batch: how many rows, and whether the DB refused one
        (kept queued)."""
        written = 0
        while queue:
            batch = [queue.popleft() for _ in range(min(FLUSH_BATCH, len(queue)))]
            try:
                written += write(batch)
            except Exception as error:  # the DB is down or refuses: keep them, try later
                queue.extendleft(reversed(batch))
                overflow = len(queue) - self.capacity
                for _ in range(max(overflow, 0)):  # new ones came in meanwhile
                    queue.pop()
                if overflow > 0:
                    self.dropped += overflow
                    self.metrics.prediction_log_dropped.inc(overflow)
                log.warning(
                    "prediction log: the data DB refused a batch; retrying at the next flush",
                    extra={"db": safe_url(self.url), "queued": len(queue), "error": str(error)},
                )
                return written, True
        return written, False

    def _connected(self) -> Engine:
        from covertype import db

        if self._engine is None:
            engine = db.make_engine(self.url)
            db.ensure_schema(engine)
            self._engine = engine
        return self._engine

    def _write_shadows(self, batch: list[tuple]) -> int:
        from covertype import db

        engine = self._connected()
        rows = [db.ShadowPrediction(*row) for row in batch]
        return db.insert_shadow_predictions(engine, rows)

    def _write(self, batch: list[tuple]) -> int:
        from covertype import db

        engine = self._connected()
        rows = [
            db.Prediction(
                features=record,
                cover_type=label,
                model_version=version,
                latency_ms=latency,
                predicted_at=datetime.fromtimestamp(at, UTC),
                request_id=request_id,
            )
            for record, label, version, latency, at, request_id in batch
        ]
        stored = db.insert_predictions(engine, rows)
        self.metrics.prediction_log_written.inc(stored)
        return stored
