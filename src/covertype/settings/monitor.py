"""Drift reports and the retraining policy."""

from __future__ import annotations

from covertype.settings.values import Group, setting


class MonitorSettings(Group):
    predictions_seconds: float = setting(
        3600.0,
        "COVERTYPE_MONITOR_PREDICTIONS_SECONDS",
        "how often the logged predictions get a drift report",
        gt=0,
    )
    experiment: str = setting(
        "covertype-monitoring",
        "COVERTYPE_MONITORING_EXPERIMENT",
        "the MLflow experiment of the drift reports",
    )
    drift_reference_rows: int = setting(
        5000,
        "COVERTYPE_DRIFT_REFERENCE_ROWS",
        "seeded sample of the champion's training rows drift compares to",
        ge=1,
    )
    drift_min_rows: int = setting(
        100,
        "COVERTYPE_DRIFT_MIN_ROWS",
        "fewest current rows (batch or predictions) a drift report needs",
        ge=1,
    )
    retrain_min_new_rows_percent: float = setting(
        20.0,
        "COVERTYPE_RETRAIN_MIN_NEW_ROWS_PERCENT",
        "new rows, as % of the champion's, that call for a training",
        ge=0,
    )
