"""Gauges the API reads from the data DB: a thread per worker that reads every
REFRESH_SECONDS and sets them (`drift_gauges`, `release_gauges`), so Prometheus scrapes them
where it scrapes the API. A DB or a table not there yet: nothing shown, asked again."""

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


class DbGauges:
    """The reading thread; a subclass says what it reads (`read`) and names its thread."""

    thread_name = "db-gauges"

    def __init__(self, settings: Settings, metrics: Metrics, interval: float = REFRESH_SECONDS):
        self.url, self.model_name = settings.data_db, settings.mlflow.model_name
        self.metrics, self.interval = metrics, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None  # made by the first refresh

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
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
                log.debug(f"{self.thread_name}: not read", extra={"error": str(error)})
            if self._stop.wait(self.interval):
                return

    def refresh(self) -> None:
        from covertype import db

        if self._engine is None:
            self._engine = db.make_engine(self.url)
        self.read(self._engine)

    def read(self, engine: Engine) -> None:
        raise NotImplementedError
