"""
### Collection: one batch of the source API into the data DB, every batch window

Each run calls `covertype.ingest.ingest_once` once (what `covertype ingest` does): it fetches
the source's current batch, validates it and stores every new row once in `cover_type`
(invalid rows in `cover_type_quarantine`). Runs come every `COVERTYPE_BATCH_SECONDS` +
`COVERTYPE_COLLECT_MARGIN_SECONDS`, one at a time, without catch-up: the source moves on one
batch at the first call after a window and never skips one, so each run gets the next batch.

- **collect** fetches and stores; retried with exponential backoff, bounded by
  `COVERTYPE_COLLECT_TIMEOUT_SECONDS` per try. Storing is idempotent: a retry stores only
  what is missing. XCom: received, stored, duplicates, quarantined, batch number.
- **report_batch**: the batch's drift report and the champion's live accuracy on it
  (`covertype.monitor.batch_report`), made now, against the champion serving while the batch
  arrived: made by the training run instead, a batch stored during a training would be
  compared with a champion that trained on it. It never holds collection up: when it cannot
  be made (MLflow down), it says why and the training run makes it.
- **review_release**: the release review (`covertype.release.review`, what `covertype
  releases review` does): a challenger is promoted or retired on the batch's rows neither
  it nor the champion trained on; a champion promoted since the last review is checked
  against the one it replaced, and rolled back when it lost by more than
  `COVERTYPE_ROLLBACK_MARGIN`. It runs whatever the collection did (a challenger waiting
  past `COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS` is decided without a new batch); skipped,
  moving nothing, when MLflow does not answer (the log says why): the next run decides.
- **publish_cover_type** updates the Asset `cover_type` (extra: batch, rows stored, ...),
  which schedules the training DAG; skipped when the run stored no new rows.

When the source says all data was collected, the run ends without failing (both tasks
skipped) and collection pauses: the Airflow Variable `covertype_collection_paused` records it,
and later runs skip **collect** without calling the source, except one every
`COVERTYPE_COLLECT_PROBE_SECONDS` that asks again (restarted source, new data). Trigger with
`resume: true` to ask at once. The pause ends as soon as the source serves rows again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import DeltaTriggerTimetable, Param, dag, task

from covertype.orchestrate import schedule
from covertype.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()
COVER_TYPE = schedule.cover_type_asset()


@dag(
    dag_id=schedule.COLLECT_DAG,
    schedule=DeltaTriggerTimetable(schedule.collect_interval(settings)),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "resume": Param(
            False, type="boolean", description="Ask the source now even if collection is paused."
        )
    },
    doc_md=__doc__,
    tags=["covertype"],
)
def covertype_collect():
    @task(
        retries=3,
        retry_delay=timedelta(seconds=15),
        retry_exponential_backoff=2.0,
        max_retry_delay=timedelta(minutes=5),
        execution_timeout=timedelta(seconds=settings.airflow.collect_timeout_seconds),
    )
    def collect(params: dict | None = None) -> dict:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowSkipException

        from covertype.ingest import ingest_once

        assert params is not None  # Airflow hands every task the run's params
        current = get_settings()
        marker = Variable.get(schedule.PAUSE_VARIABLE, default=None, deserialize_json=True)
        if reason := schedule.paused_reason(marker, current, resume=params["resume"]):
            raise AirflowSkipException(reason)
        result = ingest_once(current)
        log.info(result.summary())
        if result.exhausted:
            marker = schedule.pause_marker(current, result.detail, marker)
            Variable.set(schedule.PAUSE_VARIABLE, marker, serialize_json=True)
            raise AirflowSkipException(
                f"{result.detail} Collection paused until the source serves rows again."
            )
        if marker is not None:
            Variable.delete(schedule.PAUSE_VARIABLE)
            log.info("the source serves rows again: collection resumed")
        return result.as_dict()

    @task
    def report_batch(result: dict) -> dict:
        from covertype.monitor.reports import batch_report

        if not result["stored"]:
            return {"batch_number": result["batch_number"], "reason": "no new rows stored"}
        try:
            report = batch_report(get_settings(), result["batch_number"])
        except Exception as error:  # whatever it is, a report must never stop collection
            log.warning("no drift report of batch %s now: %s", result["batch_number"], error)
            why = f"not made at collection ({error}); the training run makes it"
            return {"batch_number": result["batch_number"], "reason": why}
        log.info(report.reason)
        return {k: v for k, v in report.as_dict().items() if k != "feature_scores"}

    @task(trigger_rule="all_done")
    def review_release(dag_run=None) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        from covertype.errors import Unavailable
        from covertype.release.review import review

        # On the newest batch collected: this run's, or (none stored) the last one.
        actor = f"Airflow {schedule.COLLECT_DAG} run {dag_run.run_id if dag_run else '?'}"
        try:
            return review(get_settings(), actor)
        except Unavailable as error:  # MLflow down: nothing moved, the next run decides
            raise AirflowSkipException(f"no release review now: {error}") from error

    @task(outlets=[COVER_TYPE])
    def publish_cover_type(result: dict, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["stored"]:
            # No event, so no training for rows it has already seen.
            raise AirflowSkipException("no new rows stored: cover_type unchanged")
        extra = {
            key: result[key]
            for key in ("group_number", "batch_number", "stored", "duplicates", "quarantined")
        }
        outlet_events[COVER_TYPE].extra = extra
        return extra

    collected = collect()
    # (Airflow types a task's call with its function's parameters, not the XComArgs it takes.)
    reported = report_batch(collected)  # type: ignore[arg-type]
    reported >> publish_cover_type(collected)  # type: ignore[arg-type]
    reported >> review_release()


covertype_collect()
