"""Shadow predictions: the challenger predicts a sampled share of the /predict and
/predict/batch requests beside the champion, off the request path.

A route whose request is sampled (`Shadow.sampled`: COVERTYPE_SHADOW_SHARE of them, evenly)
times the champion's predict and says so through `prediction_log.answered`. Once the answer
is sent, the middleware hands it with its request id to `Shadow.submit`, which queues it (at
most COVERTYPE_SHADOW_QUEUE requests; a full queue: not shadowed, counted in
covertype_shadow_dropped_total). One daemon thread per worker gathers the queued requests
until they hold COVERTYPE_SHADOW_GATHER_RECORDS records, the queue is full, or
COVERTYPE_SHADOW_GATHER_SECONDS passed since the first was queued; then it predicts them
with the challenger each was sampled for, one request after the other, as the champion did
(one record: a single-row predict; more: one predict of the request's records), each timed,
every exception caught and its text kept; it counts the outcomes and the seconds per record
(`covertype_shadow_*`) and hands one row per record to the prediction log's writer: the data
DB's `shadow_predictions`, beside the champion's row of the same request id in
`predictions`. The answer, its latency and its status code come from the champion alone:
nothing the challenger does reaches a request.

Why gather: a model bigger than the cache predicts cold after the other model ran, and
evicts it in turn. Predicted one request at a time, every shadow predict was cold and so was
the champion's next one (measured 2026-12-07, 3,500 trees: 10 % shadow kept 62 % of the
req/s). Gathered, the challenger's trees stay in cache from one predict to the next. The
first predicts of a gathering would still be cold, which is the shadow's cost, not what the
model costs serving: `WARM_UP_RECORDS` of its records are predicted first, untimed and not
recorded, so every timed predict follows predicts of the same trees, as a champion's does
(docs/benchmarks.md, "With a challenger in shadow"). One predict of every gathered record
would be cheaper but would time a batch's cost a record, not comparable with the champion's
single-row predicts that the promotion rule holds it against.

Both predicts are timed in their thread's CPU time (`time.thread_time`): a background
thread's wall clock under load is mostly waits for the GIL and a core (measured: 3,347 µs a
record at p99 for a model whose predict costs ~120 µs), which is not what the model costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import NamedTuple

from covertype.serve.alias_lookup import short
from covertype.serve.metrics import Metrics
from covertype.serve.model_holder import ModelHolder
from covertype.serve.prediction_log import PredictionLog
from covertype.serve.responses import ShadowFigures
from covertype.serve.served_model import ServedModel
from covertype.settings import Settings

log = logging.getLogger(__name__)

ERROR_LOG_SECONDS = 60.0  # a challenger that keeps failing: one log line a minute
# Records of a gathering predicted first, untimed: the predicts after them are as warm as a
# champion's (3,500 trees, in process: p99 507-518 µs a record against the champion's
# 522-535 µs; 656-685 µs after one; 1,377-1,442 µs after none).
WARM_UP_RECORDS = 4


class Shadowed(NamedTuple):
    """A sampled request's part for the challenger (`prediction_log.answered`)."""

    challenger: ServedModel  # the one loaded when the request was answered
    champion_seconds: float  # the champion's predict of the request's records


class Job(NamedTuple):
    """A queued request: what `Shadow.predict` takes, and when it was queued."""

    records: Sequence[Mapping[str, object]]
    labels: Sequence[int]
    version: str  # the champion's
    shadowed: Shadowed
    request_id: str
    at: float  # time.time(): the rows' predicted_at
    queued: float  # time.monotonic(): the gathering's time limit


@dataclass
class Figures:
    """The shadow's counts for one challenger version in this worker (`/model`)."""

    version: str
    records: int = 0
    agreed: int = 0
    errors: int = 0
    dropped: int = 0  # requests


class Shadow:
    """The sampling, the bounded queue and the thread that predicts with the challenger
    (`holder`); start/stop with the app."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        holder: ModelHolder,
        predictions: PredictionLog | None,
    ):
        release = settings.release
        self.share, self.capacity = release.shadow_share, release.shadow_queue
        self.gather_records = release.shadow_gather_records
        self.gather_seconds = release.shadow_gather_seconds
        self.holder, self.metrics, self.predictions = holder, metrics, predictions
        self.jobs: deque[Job] = deque()  # the queue, guarded by `_ready`
        self._waiting = 0  # records in `jobs`
        self._ready = threading.Condition()
        self._stopping = False
        self.figures = Figures("")
        self._credit = 0.0
        self._next_error_log = 0.0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the request's side

    def sampled(self) -> bool:
        """Whether this request is shadowed: `share` of them, evenly (with 0.1, every tenth),
        the same requests in every run (the event loop asks, one request at a time)."""
        credit = self._credit + self.share
        if credit >= 1.0 - 1e-9:  # 0.1 ten times adds up to 0.999...
            self._credit = credit - 1.0
            return True
        self._credit = credit
        return False

    def submit(
        self,
        records: Sequence[Mapping[str, object]],
        labels: Sequence[int],
        version: str,
        shadowed: Shadowed,
        request_id: str,
    ) -> None:
        """Queue an answered request for the challenger (the middleware, after the answer);
        a full queue: not shadowed, counted."""
        if not records:
            return
        with self._ready:
            full = len(self.jobs) >= self.capacity
            if not full:
                at, queued = time.time(), time.monotonic()
                self.jobs.append(Job(records, labels, version, shadowed, request_id, at, queued))
                self._waiting += len(records)
                if len(self.jobs) == 1 or self._gathered():  # a time limit starts, or done
                    self._ready.notify()
        if full:
            self.metrics.shadow_dropped.inc()
            self._figures(shadowed.challenger.version).dropped += 1

    # ------------------------------------------------------------ the shadow thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """What is queued is predicted first, without waiting for a gathering, for at most
        `timeout` seconds; what is left then is neither predicted in time nor recorded."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while jobs := self.gather():
            self._warm_up(jobs)
            for job in jobs:  # one after the other, each as the champion predicted it
                try:
                    self.predict(job)
                except Exception:  # the thread must outlive any surprise
                    log.exception("shadow prediction not recorded")

    def _gathered(self) -> bool:
        return self._waiting >= self.gather_records or len(self.jobs) >= self.capacity

    def gather(self) -> list[Job]:
        """The next requests to predict, oldest first: once they hold `gather_records`
        records, the queue is full, `gather_seconds` passed since the first was queued, or
        at the stop (then at once); [] once stopped with nothing queued."""
        with self._ready:
            while not self.jobs:
                if self._stopping:
                    return []
                self._ready.wait()
            deadline = self.jobs[0].queued + self.gather_seconds
            while not (self._stopping or self._gathered()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            jobs, records = [], 0
            while self.jobs and records < self.gather_records:
                jobs.append(self.jobs.popleft())
                records += len(jobs[-1].records)
            self._waiting -= records
            return jobs

    def _warm_up(self, jobs: list[Job]) -> None:
        """The first records' predicts, untimed and not recorded: the timed ones after them
        find the challenger's trees in cache, as a champion's predicts do."""
        firsts = ((job.shadowed.challenger, r) for job in jobs for r in job.records)
        for challenger, record in islice(firsts, WARM_UP_RECORDS):
            with suppress(Exception):  # the timed predict records the failure
                challenger.predictor.classify_one(record)

    def predict(self, job: Job) -> None:
        """The challenger's prediction of one request's records: counted, timed, recorded."""
        records, labels, version, shadowed, request_id, at, _ = job
        challenger, n = shadowed.challenger, len(records)
        theirs: list[int | None]
        error = None
        started = time.thread_time()  # as the champion's: CPU, not the waits for the GIL
        try:
            if n == 1:
                theirs = [int(challenger.predictor.classify_one(records[0])[0])]
            else:
                theirs = [int(v) for v in challenger.predictor.classify_many(records)[0]]
            if len(theirs) != n:
                raise ValueError(f"{len(theirs)} classes for {n} records")
        except Exception as failure:  # whatever the challenger does, it is only recorded
            error = f"{type(failure).__name__}: {short(failure)}"
        seconds = (time.thread_time() - started) / n
        champion_seconds = shadowed.champion_seconds / n
        metrics, figures = self.metrics, self._figures(challenger.version)
        metrics.shadow_roles["champion"].observe(champion_seconds)
        figures.records += n
        if error is None:
            metrics.shadow_roles["challenger"].observe(seconds)
            agreed = sum(1 for ours, their in zip(labels, theirs, strict=True) if ours == their)
            metrics.shadow_outcomes["agree"].inc(agreed)
            metrics.shadow_outcomes["disagree"].inc(n - agreed)
            figures.agreed += agreed
        else:
            theirs = [None] * n
            metrics.shadow_outcomes["error"].inc(n)
            figures.errors += n
            self._log_error(challenger, error)
        if self.predictions is not None:
            when = datetime.fromtimestamp(at, UTC)
            champion_us, their_us = champion_seconds * 1e6, None if error else seconds * 1e6
            rows = [  # db.ShadowPrediction's fields, in order
                (
                    request_id,
                    when,
                    version,
                    ours,
                    champion_us,
                    challenger.version,
                    their,
                    their_us,
                    error,
                )
                for ours, their in zip(labels, theirs, strict=True)
            ]
            self.predictions.add_shadows(rows)

    def _figures(self, version: str) -> Figures:
        figures = self.figures
        if figures.version != version:  # a new challenger: its own counts
            figures = self.figures = Figures(version)
            self._next_error_log = 0.0
        return figures

    def _log_error(self, challenger: ServedModel, error: str) -> None:
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + ERROR_LOG_SECONDS
            log.warning(
                "the challenger failed to predict; the champion answered as always",
                extra={"model": challenger.uri, "errors": self.figures.errors, "error": error},
            )

    # ------------------------------------------------------------ what /model shows

    def shown(self, version: str) -> ShadowFigures:
        """This worker's shadow figures for the challenger `version`."""
        figures = self.figures if self.figures.version == version else Figures(version)
        answered = figures.records - figures.errors
        return ShadowFigures(
            share=self.share,
            records=figures.records,
            agreement_rate=figures.agreed / answered if answered else None,
            errors=figures.errors,
            dropped_requests=figures.dropped,
            queued_requests=len(self.jobs),
        )
