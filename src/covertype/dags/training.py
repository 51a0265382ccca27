"""
### Training: random search on the data DB, registered in MLflow, gated into the champion

Runs when the Asset `cover_type` was updated (a collection run stored new rows; updates that
arrive while a training runs are taken together by the next run), or by hand with params:
`n_iter` (candidates; empty: `COVERTYPE_TRAIN_N_ITER`) and `families`.

- **train_model** calls `covertype.train.train` (what `covertype train` does): every stored
  row, a random search over the families, one MLflow run per candidate, the best registered as
  a new version; the gate moves the alias `champion` only when that version beats the
  champion on the same held-out rows. Its XCom is the result: version, family, holdout
  metrics, `promoted` and the gate's `decision`. Retried when MLflow is unreachable; a
  training that cannot start (no rows, one class) fails at once.
- **publish_champion** updates the Asset `covertype_champion` (extra: version, metrics,
  decision) for whatever serves or reports on the champion; skipped when the champion did not
  change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from covertype import orchestrate
from covertype.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()
COVER_TYPE = orchestrate.cover_type_asset()
CHAMPION = orchestrate.champion_asset(settings)
# covertype.train.FAMILIES, spelled out: importing the trainer here would slow every parse.
FAMILIES = ["lightgbm", "extra_trees", "svm"]


@dag(
    dag_id=orchestrate.TRAIN_DAG,
    schedule=[COVER_TYPE],
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "n_iter": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Candidates of the random search (empty: COVERTYPE_TRAIN_N_ITER).",
        ),
        "families": Param(
            FAMILIES,
            type="array",
            items={"type": "string", "enum": FAMILIES},
            minItems=1,
            uniqueItems=True,
            description="Model families to search, in turn.",
        ),
    },
    doc_md=__doc__,
    tags=["covertype"],
)
def covertype_train():
    @task(
        retries=2,
        retry_delay=timedelta(minutes=1),
        retry_exponential_backoff=2.0,
        execution_timeout=timedelta(seconds=settings.train_timeout_seconds),
    )
    def train_model(params: dict | None = None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from covertype.train import TrainingError, train

        for asset, events in (triggering_asset_events or {}).items():
            log.info("triggered by %s: %s", asset, [event.extra for event in events])
        try:
            result = train(get_settings(), params["n_iter"], params["families"], log.info)
        except TrainingError as error:
            raise AirflowFailException(f"training cannot run: {error}") from error
        log.info("version %s: %s", result.version, result.decision)
        return result.as_dict()

    @task(outlets=[CHAMPION])
    def publish_champion(result: dict, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["promoted"]:
            raise AirflowSkipException(f"champion unchanged: {result['decision']}")
        extra = {
            key: result[key]
            for key in ("model_name", "version", "family", "holdout_macro_f1", "decision")
        }
        outlet_events[CHAMPION].extra = extra
        return extra

    publish_champion(train_model())


covertype_train()
