"""
### Monitoring: drift of what the API was asked, against what the champion learned from

Every `COVERTYPE_MONITOR_PREDICTIONS_SECONDS` (default hourly), one run of
**report_predictions** calls `covertype.monitor.predictions_report`: the predictions the
inference API logged since the last report (table `predictions`) against the champion's
training rows, an Evidently drift report stored in `drift_reports` and logged to the MLflow
experiment `covertype-monitoring` (HTML report as an artifact). Fewer than
`COVERTYPE_DRIFT_MIN_ROWS` new predictions: the report says so and the rows count towards the
next one. Batches get their report in the training DAG, before the retraining policy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import DeltaTriggerTimetable, dag, task

from covertype.orchestrate import schedule
from covertype.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()


@dag(
    dag_id=schedule.MONITOR_DAG,
    schedule=DeltaTriggerTimetable(schedule.predictions_interval(settings)),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["covertype"],
)
def covertype_monitor():
    @task(retries=2, retry_delay=timedelta(minutes=1))
    def report_predictions() -> dict:
        from covertype.monitor.reports import predictions_report

        report = predictions_report(get_settings())
        log.info(report.reason)
        return {k: v for k, v in report.as_dict().items() if k != "feature_scores"}

    report_predictions()


covertype_monitor()
