"""The latest drift reports as the API's gauges: `covertype_drift_*` and `covertype_live_*`.

The monitoring (covertype.monitor, run by Airflow) stores its reports in the data DB's
`drift_reports`; a thread per worker (`db_gauges`) reads the newest of each kind for the
served model every REFRESH_SECONDS and sets the gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from covertype.serve.db_gauges import REFRESH_SECONDS, DbGauges

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["KINDS", "REFRESH_SECONDS", "DriftGauges"]

KINDS = ("batch", "predictions")


class DriftGauges(DbGauges):
    thread_name = "drift-gauges"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: dict[str, int] = {}  # kind → id of the report the gauges show

    def read(self, engine: Engine) -> None:
        from covertype import db

        for kind in KINDS:
            report = db.latest_drift_report(engine, kind, self.model_name)
            if report is not None and self.seen.get(kind) != report["id"]:
                self.metrics.drift_reported(report)
                self.seen[kind] = report["id"]
