"""Drift reports: a collected batch, or the logged predictions, against the champion's
reference rows; each stored in `drift_reports` and logged to MLflow.

`batch_report(settings, batch_number)`: the batch's rows that the champion did not train
on, and the champion's live accuracy and macro F1 on them (the "before" of a retraining).
The collection DAG makes it as soon as the batch is stored, against the champion serving
then; `batch_reports` (the training DAG) reuses that one and makes only what is missing.
`predictions_report(settings)`: the predictions logged since the last computed predictions
report (by id, so each is compared once), at most `MAX_CURRENT_ROWS` of them (a seeded sample).

Bad input is a report with `computed=False` and a `reason` (stored too), never a crash: no
rows, fewer than `COVERTYPE_DRIFT_MIN_ROWS`, no champion, a champion without lineage, no
reference rows. A batch of a single class is a normal *data* drift report (only the 12
features are compared, and they are as comparable as ever); its live accuracy is kept,
its macro F1 is None (over 7 classes it would be that one class's F1 / 7, not a score).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from covertype import db, schema
from covertype.monitor import MonitoringError, reference
from covertype.monitor.drift import Drift, compare
from covertype.settings import Settings, get_settings, safe_url
from covertype.tracking.client import connect

log = logging.getLogger(__name__)
MAX_CURRENT_ROWS = 100_000


@dataclass
class DriftReport:
    kind: str  # "batch" or "predictions"
    model_name: str
    computed: bool = False
    reason: str = ""  # the summary, or "not computed: why"
    champion_version: str | None = None
    batch_number: int | None = None
    predictions_from_id: int | None = None
    predictions_to_id: int | None = None
    reference_rows: int = 0
    current_rows: int = 0
    current_classes: int | None = None
    live_accuracy: float | None = None
    live_macro_f1: float | None = None
    drift: Drift | None = field(default=None, repr=False)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    report_id: int | None = None
    mlflow_run_id: str | None = None

    @property
    def dataset_drift(self) -> bool | None:
        return self.drift.dataset_drift if self.drift else None

    def skip(self, why: str) -> DriftReport:
        self.computed, self.reason = False, f"not computed: {why}"
        return self

    def as_dict(self) -> dict:
        """The stored row's values (JSON-friendly, without the HTML), e.g. for an XCom."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "drift"}
        values["created_at"] = self.created_at.isoformat()
        drift = self.drift
        return values | {
            "dataset_drift": self.dataset_drift,
            "drifted_features": drift.drifted_features if drift else None,
            "features": drift.features if drift else None,
            "drift_share": drift.share if drift else None,
            "drift_share_threshold": drift.threshold if drift else None,
            "feature_scores": {k: asdict(v) for k, v in drift.feature_scores.items()}
            if drift
            else None,
        }

    def row(self) -> dict:
        values = self.as_dict() | {"created_at": self.created_at}
        values["feature_scores"] = self.drift.scores_json() if self.drift else None
        values.pop("report_id")
        return values


def batch_report(settings: Settings | None, batch_number: int, client=None) -> DriftReport:
    """The drift report of one collected batch, with the champion's live scores on it."""
    settings = settings or get_settings()
    report = DriftReport("batch", settings.mlflow.model_name, batch_number=batch_number)
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        table = db.cover_type
        rows = _read(engine, table, "row_key", table.c.batch_number == batch_number)
        report.current_rows = len(rows)
        compared = None
        if rows.empty:
            report.skip(f"batch {batch_number} has no rows in cover_type of {_db(settings)}")
        else:
            compared = _against_champion(settings, engine, report, rows, client)
        if compared:
            _live_scores(report, *compared)
        return _finish(settings, engine, report, compared and compared[0])
    finally:
        engine.dispose()


def batch_reports(settings: Settings, batches: list[int]) -> list[dict]:
    """Each batch's computed report (`DriftReport.as_dict()` without the feature scores): the
    one stored at collection, else one made now. Made later, a batch that arrived during a
    training would be compared with a champion that trained on it (nothing new to compare)."""
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        stored = {
            batch: db.latest_drift_report(engine, "batch", settings.mlflow.model_name, None, batch)
            for batch in batches
        }
    finally:
        engine.dispose()
    reports = []
    for batch in batches:
        if row := stored[batch]:
            values = {k: v for k, v in row.items() if k not in ("id", "feature_scores")}
            values |= {"report_id": row["id"], "created_at": row["created_at"].isoformat()}
            log.info("batch %s, reported at collection: %s", batch, row["reason"])
        else:
            values = batch_report(settings, batch).as_dict()
            values.pop("feature_scores")
            log.info("batch %s: %s", batch, values["reason"])
        reports.append(values)
    return reports


def predictions_report(settings: Settings | None = None, client=None) -> DriftReport:
    """The drift report of the predictions logged since the last computed one."""
    settings = settings or get_settings()
    report = DriftReport("predictions", settings.mlflow.model_name)
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        last = db.latest_drift_report(engine, "predictions", settings.mlflow.model_name)
        after = (last or {}).get("predictions_to_id") or 0
        table = db.predictions
        rows = _read(engine, table, "id", table.c.id > after)
        report.current_rows = len(rows)
        since = f" since report #{last['id']}" if last else " yet"
        compared = None
        if rows.empty:
            report.skip(f"no predictions logged{since} in {_db(settings)}")
        else:
            report.predictions_from_id, report.predictions_to_id = (
                int(rows["id"].min()),
                int(rows["id"].max()),
            )
            if len(rows) > MAX_CURRENT_ROWS:
                rows = rows.sample(MAX_CURRENT_ROWS, random_state=0)
            compared = _against_champion(settings, engine, report, rows, client)
        if not report.computed:  # the window stays open: these rows count towards the next
            report.predictions_from_id = report.predictions_to_id = None
        return _finish(settings, engine, report, compared and compared[0])
    finally:
        engine.dispose()


def _db(settings: Settings) -> str:
    return f"the data DB {safe_url(settings.data_db)}"


def _read(engine: sa.Engine, table: sa.Table, key: str, where) -> pd.DataFrame:
    """The 12 features (and the label, where the table has it) and `key` of some rows."""
    names = [*schema.FEATURES, *([schema.LABEL] if schema.LABEL in table.c else []), key]
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(*(table.c[n] for n in names)).where(where), conn)
    return reference.typed(frame)


def _against_champion(
    settings: Settings, engine: sa.Engine, report: DriftReport, rows: pd.DataFrame, client
) -> tuple[reference.Reference, pd.DataFrame] | None:
    """Fill `report` with the drift of `rows` against the champion's reference (a batch: only
    its rows the champion did not train on); the reference and the rows compared, or None
    (and `report` says why) when it cannot."""
    client = client or connect(settings)
    try:
        champion = reference.find_champion(client, settings)
    except MonitoringError as error:
        report.skip(str(error))
        return None
    if champion is None:
        name, alias = settings.mlflow.model_name, settings.mlflow.model_alias
        report.skip(
            f"{name} has no version '{alias}' yet, so there are no training rows to compare with"
        )
        return None
    report.champion_version = champion.version
    ref = reference.load_reference(engine, champion, settings)
    report.reference_rows = len(ref.rows)
    if ref.rows.empty:
        batches = ",".join(map(str, champion.trained_batches))
        report.skip(
            f"no reference rows: champion v{champion.version} trained on batches {batches} "
            f"({champion.rows:,} rows read by {champion.trained_at:%Y-%m-%d %H:%M:%S} UTC), "
            f"and {_db(settings)} holds none of them"
        )
        return None
    if report.kind == "batch":
        rows = rows[~rows["row_key"].isin(ref.trained_keys)]
        report.current_rows = len(rows)
        if rows.empty:
            report.skip(
                f"every row of batch {report.batch_number} was in champion "
                f"v{champion.version}'s training; nothing new to compare"
            )
            return None
    if len(rows) < settings.monitor.drift_min_rows:
        what = "new rows" if report.kind == "batch" else "predictions"
        report.skip(
            f"{len(rows)} {what} to compare; a drift report needs at least "
            f"{settings.monitor.drift_min_rows} (COVERTYPE_DRIFT_MIN_ROWS)"
        )
        return None
    report.drift = compare(ref.rows, rows)
    report.computed = True
    subject = f"batch {report.batch_number}" if report.kind == "batch" else "predictions"
    report.reason = (
        f"{subject} ({len(rows):,} rows) against champion v{champion.version}'s "
        f"{len(ref.rows):,} reference rows: {report.drift.summary()}"
    )
    return ref, rows


def _live_scores(report: DriftReport, ref: reference.Reference, rows: pd.DataFrame) -> None:
    """The champion's accuracy and macro F1 on the batch (its labels are known)."""
    import mlflow

    from covertype.train import evaluate

    champion = ref.champion
    with tempfile.TemporaryDirectory() as tmp:
        model = mlflow.sklearn.load_model(
            f"models:/{champion.model_name}/{champion.version}", dst_path=tmp
        )
    y = rows[schema.LABEL].to_numpy()
    scores = evaluate.scores(y, model.predict(rows[list(schema.FEATURES)]), "live")
    report.current_classes = len(set(y))
    report.live_accuracy = scores["live_accuracy"]
    report.live_macro_f1 = scores["live_macro_f1"] if report.current_classes > 1 else None
    report.reason += f"; champion's live accuracy {report.live_accuracy:.4f}" + (
        f", macro F1 {report.live_macro_f1:.4f}" if report.live_macro_f1 is not None else ""
    )


def _finish(
    settings: Settings, engine: sa.Engine, report: DriftReport, ref: reference.Reference | None
) -> DriftReport:
    if report.computed:
        assert ref is not None  # a computed report was compared with the champion's reference
        report.mlflow_run_id = _log_to_mlflow(settings, report, ref)
    report.report_id = db.add_drift_report(engine, report.row())
    summary = {k: v for k, v in report.as_dict().items() if k != "feature_scores"}
    log.info("drift report", extra=summary)
    return report


def _log_to_mlflow(settings: Settings, report: DriftReport, ref: reference.Reference) -> str:
    """One run in the monitoring experiment: metrics, tags, the HTML report."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow.tracking_uri)
    name = settings.monitor.experiment
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    drift = report.drift
    assert drift is not None  # only a computed report is logged
    where = report.batch_number if report.kind == "batch" else report.predictions_to_id
    metrics = {
        "dataset_drift": float(drift.dataset_drift),
        "drift_share": drift.share,
        "drifted_features": drift.drifted_features,
        "reference_rows": report.reference_rows,
        "current_rows": report.current_rows,
        **{f"drift_score.{k}": v.score for k, v in drift.feature_scores.items()},
    }
    for key in ("live_accuracy", "live_macro_f1"):
        if getattr(report, key) is not None:
            metrics[key] = getattr(report, key)
    tags = {
        "kind": f"drift-{report.kind}",
        "model_name": report.model_name,
        "champion_version": report.champion_version,
        "champion_run_id": ref.champion.run_id,
        "reference_exact": str(ref.exact).lower(),
        "dataset_drift": str(drift.dataset_drift).lower(),
        "summary": report.reason,
        "batch_number": str(report.batch_number or ""),
        "predictions_ids": f"{report.predictions_from_id or ''}-{report.predictions_to_id or ''}",
    }
    run_name = f"drift-{report.kind}-{where}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        mlflow.log_text(drift.html, "drift_report.html")
        mlflow.log_dict({k: asdict(v) for k, v in drift.feature_scores.items()}, "drift.json")
        return run.info.run_id
