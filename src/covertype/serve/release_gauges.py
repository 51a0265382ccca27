"""The release ledger as the API's gauge `covertype_releases_total{action}`: how many moves
of each action (promote, challenge, retire, rollback, automatic_rollback) the served model
has had, read from the data DB's `releases` every REFRESH_SECONDS (`db_gauges`). The ledger
only appends, so the gauge only grows: `increase()` over it shows new moves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from covertype.serve.db_gauges import DbGauges

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class ReleaseGauges(DbGauges):
    thread_name = "release-gauges"

    def read(self, engine: Engine) -> None:
        import sqlalchemy as sa

        from covertype.release import ledger

        with engine.connect() as conn:
            kept = sa.inspect(conn).has_table("releases")
        # A data DB the ledger's migration has not reached yet has recorded no move: 0 of
        # each from the start, so a panel draws (a DB that does not answer shows nothing).
        counts = ledger.counts(engine, self.model_name) if kept else {}
        for action in ledger.ACTIONS:
            self.metrics.releases.labels(action).set(counts.get(action, 0))
