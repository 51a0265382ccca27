"""Shadow predictions: the challenger predicts a sampled share of the /predict and
/predict/batch requests beside the champion, off the request path.

A route whose request is sampled (`Shadow.sampled`: COVERTYPE_SHADOW_SHARE of them, evenly)
times the champion's predict and says so through `prediction_log.answered`. Once the answer
is sent, the middleware hands it with its request id to `Shadow.submit`, which queues it (at
most COVERTYPE_SHADOW_QUEUE requests; a full queue: not shadowed, counted in
covertype_shadow_dropped_total). One daemon thread per worker predicts each queued request
with the challenger it was sampled for, timed, every exception caught and its text kept;
it counts the outcomes and the seconds per record (`covertype_shadow_*`) and hands one row
per record to the prediction log's writer: the data DB's `shadow_predictions`, beside the
champion's row of the same request id in `predictions`. The answer, its latency and its
status code come from the champion alone: nothing the challenger does reaches a request.

Both predicts are timed in their thread's CPU time (`time.thread_time`): a background
thread's wall clock under load is mostly waits for the GIL and a core (measured: 3,347 µs a
record at p99 for a model whose predict costs ~120 µs), which is not what the model costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import SimpleQueue
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


class Shadowed(NamedTuple):
    """A sampled request's part for the challenger (`prediction_log.answered`)."""

    challenger: ServedModel  # the one loaded when the request was answered
    champion_seconds: float  # the champion's predict of the request's records


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
        self.share = settings.release.shadow_share
        self.capacity = settings.release.shadow_queue
        self.holder, self.metrics, self.predictions = holder, metrics, predictions
        self.queue: SimpleQueue = SimpleQueue()  # jobs; None: stop
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
        if self.queue.qsize() >= self.capacity:
            self.metrics.shadow_dropped.inc()
            self._figures(shadowed.challenger.version).dropped += 1
            return
        self.queue.put((records, labels, version, shadowed, request_id, time.time()))

    # ------------------------------------------------------------ the shadow thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """What is queued is predicted first, for at most `timeout` seconds."""
        self.queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            try:
                self.predict(*job)
            except Exception:  # the thread must outlive any surprise
                log.exception("shadow prediction not recorded")

    def predict(
        self,
        records: Sequence[Mapping[str, object]],
        labels: Sequence[int],
        version: str,
        shadowed: Shadowed,
        request_id: str,
        at: float,
    ) -> None:
        """The challenger's prediction of one request's records: counted, timed, recorded."""
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
            queued_requests=self.queue.qsize(),
        )
