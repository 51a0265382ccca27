"""The data DB: `cover_type` (valid rows, stored once by row key) and its quarantine, the
prediction log and the challenger's shadow answers, drift reports, retraining decisions
and the release ledger; its schema under Alembic.

Works on SQLite (local), MySQL/MariaDB (compose, CI) and PostgreSQL. `from covertype import
db` stays cheap: each name below loads its module on first use (`covertype --help` would
otherwise import SQLAlchemy, pandas and Alembic: +0.35 s for every command).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING


class _StepsOnly(logging.Filter):
    """Alembic's "Running upgrade A -> B" lines, not its "Context impl" and "Will assume"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("Running ")


# Set before Alembic is imported: it logs each of its plugins at INFO then.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
logging.getLogger("alembic.runtime.migration").addFilter(_StepsOnly())

_HOMES = {
    "tables": (
        "ROW_KEY_LENGTH",
        "metadata",
        "cover_type",
        "quarantine",
        "predictions",
        "drift_reports",
        "retrain_decisions",
        "releases",
        "shadow_predictions",
    ),
    "engine": ("make_engine",),
    "rows": ("row_key", "insert_new", "store_rows", "rows_by_batch", "count_rows"),
    "prediction_log": (
        "Prediction",
        "ShadowPrediction",
        "insert_predictions",
        "insert_shadow_predictions",
    ),
    "reports": ("add_drift_report", "latest_drift_report", "add_retrain_decision", "rows_after"),
    "schema_version": ("SchemaError", "ensure_schema"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = [  # the same names: what `from covertype.db import *` and type checkers see
    "ROW_KEY_LENGTH",
    "Prediction",
    "SchemaError",
    "ShadowPrediction",
    "add_drift_report",
    "add_retrain_decision",
    "count_rows",
    "cover_type",
    "drift_reports",
    "ensure_schema",
    "insert_new",
    "insert_predictions",
    "insert_shadow_predictions",
    "latest_drift_report",
    "make_engine",
    "metadata",
    "predictions",
    "quarantine",
    "releases",
    "retrain_decisions",
    "row_key",
    "rows_after",
    "rows_by_batch",
    "shadow_predictions",
    "store_rows",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from covertype.db.engine import make_engine
    from covertype.db.prediction_log import (
        Prediction,
        ShadowPrediction,
        insert_predictions,
        insert_shadow_predictions,
    )
    from covertype.db.reports import (
        add_drift_report,
        add_retrain_decision,
        latest_drift_report,
        rows_after,
    )
    from covertype.db.rows import count_rows, insert_new, row_key, rows_by_batch, store_rows
    from covertype.db.schema_version import SchemaError, ensure_schema
    from covertype.db.tables import (
        ROW_KEY_LENGTH,
        cover_type,
        drift_reports,
        metadata,
        predictions,
        quarantine,
        releases,
        retrain_decisions,
        shadow_predictions,
    )
