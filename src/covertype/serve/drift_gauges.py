"""The latest drift reports as the API's gauges: `covertype_drift_*` and `covertype_live_*`.

The monitoring (covertype.monitor, run by Airflow) stores its reports in the data DB's
`drift_reports`; a thread per worker reads the newest of each kind for the served model every
REFRESH_SECONDS and sets the gauges, so Prometheus scrapes drift where it scrapes the API.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from covertype.serve.metrics import Metrics
from covertype.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15.0
KINDS = ("batch", "predictions")


class DriftGauges:
    def __init__(self, settings: Settings, metrics: Metrics, interval: float = REFRESH_SECONDS):
        self.url, self.model_name = settings.data_db, settings.mlflow.model_name
        self.metrics, self.interval = metrics, interval
        self.seen: dict[str, int] = {}  # kind → id of the report the gauges show
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None  # made by the first refresh

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drift-gauges", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine is not None:
            self._engine.dispose()

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception as error:  # no data DB or no table yet: nothing to show
                log.debug("drift reports not read", extra={"error": str(error)})
            if self._stop.wait(self.interval):
                return

    def refresh(self) -> None:
        from covertype import db

        if self._engine is None:
            self._engine = db.make_engine(self.url)
        for kind in KINDS:
            report = db.latest_drift_report(self._engine, kind, self.model_name)
            if report is not None and self.seen.get(kind) != report["id"]:
                self.metrics.drift_reported(report)
                self.seen[kind] = report["id"]
