"""Drift reports and the retraining decision against a real MLflow server and data DB:
a small LightGBM champion trained on real Rawah rows, then new batches and predictions."""

import json
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from covertype import dataset, db, ingest, schema
from covertype.monitor import reference
from covertype.monitor.reports import batch_report, predictions_report
from covertype.retraining import decisions
from covertype.tracking.client import connect
from tests.support.data import records_of, training_settings
from tests.support.environment import run_cli

TINY = {"n_estimators": 20, "num_leaves": 15, "num_threads": 1}
TRAINED = 3_000  # Rawah rows of batches 1 and 2, the champion's training


@pytest.fixture(scope="module")
def areas(real_frame):
    """Real rows of two wilderness areas, each in a fixed random order."""
    by_area = real_frame.groupby(schema.WILDERNESS, observed=True)
    return {
        area: by_area.get_group(area).sample(frac=1, random_state=0)
        for area in ("Rawah", "Commanche")
    }


def store(settings, batch: int, frame) -> None:
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    ingest.store_batch(engine, ingest.Batch(7, batch, dataset.to_course_rows(frame)))
    engine.dispose()


@pytest.fixture(scope="module")
def monitored(mlflow_server, tmp_path_factory, areas):
    """Settings of a data DB whose champion (v1) trained on batches 1-2; batches 3-6 new."""
    from covertype.train import train

    tmp = tmp_path_factory.mktemp("monitor")
    settings = training_settings(
        tmp,
        mlflow_server.url,
        env={
            "COVERTYPE_MONITORING_EXPERIMENT": f"covertype-monitoring-{uuid.uuid4().hex[:6]}",
            "COVERTYPE_DRIFT_REFERENCE_ROWS": 1_500,
            "COVERTYPE_DRIFT_MIN_ROWS": 50,
        },
    )
    rawah, commanche = areas["Rawah"], areas["Commanche"]
    store(settings, 1, rawah.iloc[:1_500])
    store(settings, 2, rawah.iloc[1_500:TRAINED])
    champion = train(settings, candidates=[("lightgbm", TINY)])
    assert champion.version == "1" and champion.promoted
    store(settings, 3, rawah.iloc[TRAINED : TRAINED + 1_000])  # like the training rows
    store(settings, 4, commanche.iloc[:1_000])  # another area
    spruce = rawah.iloc[TRAINED + 1_000 :]
    store(settings, 5, spruce[spruce[schema.LABEL] == 0].iloc[:300])  # one class
    store(settings, 6, rawah.iloc[-10:])  # too few rows
    return settings


def stored(settings, report_id: int) -> dict:
    engine = db.make_engine(settings.data_db)
    with engine.connect() as conn:
        row = conn.execute(sa.select(db.drift_reports).where(db.drift_reports.c.id == report_id))
        result = dict(row.mappings().one())
    engine.dispose()
    return result


def live_scores(settings, batch: int) -> dict[str, float]:
    """Champion v1 on every row of `batch` (none of them trained on), scored here."""
    import mlflow

    from covertype.train import evaluate

    engine = db.make_engine(settings.data_db)
    table = db.cover_type
    with engine.connect() as conn:
        rows = reference.typed(
            pd.read_sql(sa.select(table).where(table.c.batch_number == batch), conn)
        )
    engine.dispose()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{settings.mlflow.model_name}/1")
    predicted = model.predict(rows[list(schema.FEATURES)])
    return evaluate.scores(rows[schema.LABEL].to_numpy(), predicted, "live")


def test_a_batch_like_the_training_rows_has_no_drift(monitored):
    report = batch_report(monitored, 3)
    assert report.computed and report.dataset_drift is False
    assert (report.champion_version, report.reference_rows, report.current_rows) == (
        "1",
        1500,
        1000,
    )
    expected = live_scores(monitored, 3)
    assert report.current_classes > 1
    assert report.live_accuracy == pytest.approx(expected["live_accuracy"])
    assert report.live_macro_f1 == pytest.approx(expected["live_macro_f1"])
    assert report.reason.startswith(
        "batch 3 (1,000 rows) against champion v1's 1,500 reference rows: no drift ("
    )
    row = stored(monitored, report.report_id)
    assert row["computed"] and row["dataset_drift"] is False and row["kind"] == "batch"
    assert (row["batch_number"], row["reference_rows"], row["current_rows"]) == (3, 1500, 1000)
    assert row["live_accuracy"] == pytest.approx(report.live_accuracy)
    scores = json.loads(row["feature_scores"])
    assert list(scores) == list(schema.FEATURES)
    assert scores["Elevation"]["test"] == "Wasserstein distance (normed)"
    assert set(scores["Elevation"]) == {"score", "test", "threshold", "drifted"}


def test_the_report_is_logged_to_the_monitoring_experiment(monitored):
    report = batch_report(monitored, 4)
    client = connect(monitored)
    run = client.get_run(report.mlflow_run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == monitored.monitor.experiment
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["dataset_drift"] == 1.0 and metrics["drift_share"] == report.drift.share
    assert metrics["live_accuracy"] == pytest.approx(report.live_accuracy)
    assert metrics["current_rows"] == 1000 and "drift_score.Wilderness_Area" in metrics
    assert tags["champion_version"] == "1" and tags["batch_number"] == "4"
    assert tags["kind"] == "drift-batch" and tags["reference_exact"] == "true"
    artifacts = {a.path for a in client.list_artifacts(report.mlflow_run_id)}
    assert {"drift_report.html", "drift.json"} <= artifacts


def test_a_batch_of_another_area_drifts(monitored):
    report = batch_report(monitored, 4)
    assert report.computed and report.dataset_drift is True
    assert report.drift.feature_scores[schema.WILDERNESS].drifted
    assert report.drift.share >= 0.5
    assert report.reason.startswith("batch 4 (1,000 rows) against champion v1's 1,500 reference")
    assert ": drift (" in report.reason and "champion's live accuracy" in report.reason


def test_the_reference_is_a_sample_of_the_rows_the_champion_fitted_on(monitored):
    from covertype.train import data

    client = connect(monitored)
    champion = reference.find_champion(client, monitored)
    assert champion.trained_batches == (1, 2) and champion.rows == TRAINED
    engine = db.make_engine(monitored.data_db)
    ref = reference.load_reference(engine, champion, monitored)
    read = data.load_rows(engine)
    split = data.split(read[read["batch_number"] <= 2], monitored)  # what the training read
    engine.dispose()
    learned = set(split.train.keys) | set(split.validation.keys)
    assert ref.exact and len(ref.trained_keys) == TRAINED
    assert len(ref.rows) == 1_500 and ref.learned_rows == len(learned)
    assert set(ref.rows["row_key"]) <= learned  # never a holdout row
    assert not set(ref.rows["row_key"]) & set(split.holdout.keys)
    again = reference.load_reference(db.make_engine(monitored.data_db), champion, monitored)
    assert again.rows["row_key"].tolist() == ref.rows["row_key"].tolist()  # seeded


def test_a_batch_of_one_class_is_compared_and_keeps_its_accuracy(monitored):
    report = batch_report(monitored, 5)
    assert report.computed and report.current_rows == 300 and report.current_classes == 1
    assert report.live_accuracy == pytest.approx(live_scores(monitored, 5)["live_accuracy"])
    assert report.live_macro_f1 is None  # one class: its F1 / 7 would not be a score
    assert stored(monitored, report.report_id)["live_macro_f1"] is None


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        (9, "not computed: batch 9 has no rows in cover_type of the data DB sqlite:///"),
        (1, "not computed: every row of batch 1 was in champion v1's training"),
        (6, "not computed: 10 new rows to compare; a drift report needs at least 50"),
    ],
)
def test_a_batch_that_cannot_be_compared_says_why(monitored, batch, reason):
    report = batch_report(monitored, batch)
    assert not report.computed and report.reason.startswith(reason)
    assert report.drift is None and report.mlflow_run_id is None
    row = stored(monitored, report.report_id)
    assert not row["computed"] and row["reason"] == report.reason


def test_no_champion_says_so(monitored):
    other = monitored.with_env({"COVERTYPE_MODEL_NAME": f"nothing-{uuid.uuid4().hex[:6]}"})
    report = batch_report(other, 3)
    assert not report.computed
    assert report.reason == (
        f"not computed: {other.mlflow.model_name} has no version 'champion' yet, so there are no "
        "training rows to compare with"
    )


def test_a_champion_without_lineage_says_so(monitored):
    import mlflow

    client = connect(monitored)
    source = client.get_model_version(monitored.mlflow.model_name, "1").source
    name = f"by-hand-{uuid.uuid4().hex[:6]}"
    version = mlflow.register_model(source, name)  # the same model, without our tags
    client.set_registered_model_alias(name, "champion", version.version)
    report = batch_report(monitored.with_env({"COVERTYPE_MODEL_NAME": name}), 3)
    assert not report.computed
    assert report.reason.startswith(
        f"not computed: {name} v1 (alias champion) lacks trained_batches"
    )


def test_no_reference_rows_says_so(monitored, tmp_path, areas):
    elsewhere = monitored.with_env({"COVERTYPE_DATA_DB_URL": f"sqlite:///{tmp_path / 'other.db'}"})
    store(elsewhere, 3, areas["Rawah"].iloc[TRAINED : TRAINED + 500])
    report = batch_report(elsewhere, 3)
    assert not report.computed
    assert report.reason.startswith(
        "not computed: no reference rows: champion v1 trained on batches 1,2 (3,000 rows read by"
    )


def test_predictions_are_compared_once_each(monitored, areas):
    engine = db.make_engine(monitored.data_db)

    def log(frame):
        at = datetime.now(UTC)
        records = [db.Prediction(r, 1, "1", 2.0, at, "req") for r in records_of(frame)]
        db.insert_predictions(engine, records)

    log(areas["Commanche"].iloc[2_000:2_200])
    first = predictions_report(monitored)
    assert first.computed and first.dataset_drift is True and first.current_rows == 200
    assert (first.predictions_from_id, first.predictions_to_id) == (1, 200)
    assert first.live_accuracy is None  # predictions carry no labels
    again = predictions_report(monitored)
    assert not again.computed
    assert again.reason.startswith(
        f"not computed: no predictions logged since report #{first.report_id}"
    )
    log(areas["Rawah"].iloc[-40:])
    few = predictions_report(monitored)
    assert not few.computed and "40 predictions to compare" in few.reason
    log(areas["Rawah"].iloc[-100:-40])
    later = predictions_report(monitored)  # the 40 wait for the next report: 100 now
    assert later.computed and (later.predictions_from_id, later.predictions_to_id) == (201, 300)
    engine.dispose()


def test_the_gatherer_decides_from_the_registry_and_the_reports(monitored):
    stored_rows = db.count_rows(monitored.data_db)[0]
    batch_report(monitored, 4)  # drift
    decision = decisions.decide(monitored)
    assert decision.train and decision.reason.startswith("drift in batch 4 (")
    assert decision.facts.champion_version == "1" and decision.facts.champion_rows == TRAINED
    assert decision.facts.rows_now == stored_rows
    batch_report(monitored, 3)  # no drift, and the new rows are not enough at 500%
    strict = monitored.with_env({"COVERTYPE_RETRAIN_MIN_NEW_ROWS_PERCENT": 500})
    decision = decisions.decide(strict)
    new = stored_rows - TRAINED
    assert not decision.train
    assert decision.reason.startswith("no drift in batch 3 (")
    assert decision.reason.endswith(
        f"{new:,} new rows since v1's training are {100 * new / TRAINED:.0f}% of the 3,000 it "
        "read (< 500%)"
    )
    assert decisions.decide(monitored, manual=True).train
    nobody = monitored.with_env({"COVERTYPE_MODEL_NAME": f"nothing-{uuid.uuid4().hex[:6]}"})
    decision = decisions.decide(nobody)
    assert decision.train and decision.reason.startswith("no champion yet")


def test_the_monitor_command_reports_a_batch_and_says_why_it_cannot(monitored, tmp_path):
    env = {
        "COVERTYPE_HOME": str(monitored.home),
        "MLFLOW_TRACKING_URI": monitored.mlflow.tracking_uri,
        "COVERTYPE_MODEL_NAME": monitored.mlflow.model_name,
        "COVERTYPE_MONITORING_EXPERIMENT": monitored.monitor.experiment,
        "COVERTYPE_DRIFT_REFERENCE_ROWS": str(monitored.monitor.drift_reference_rows),
        "COVERTYPE_DRIFT_MIN_ROWS": str(monitored.monitor.drift_min_rows),
        "COVERTYPE_DATA_DB_URL": monitored.data_db,
    }
    drifted = run_cli(["monitor", "--batch", "4"], env, tmp_path)
    assert drifted.returncode == 0, drifted.stdout + drifted.stderr
    assert drifted.stdout.startswith("batch 4 (1,000 rows) against champion v1's")
    assert "drift (" in drifted.stdout and "champion v1 on it: accuracy 0." in drifted.stdout
    report_id = int(drifted.stdout.split("drift_reports id ")[1].split(",")[0])
    assert stored(monitored, report_id)["dataset_drift"]
    few = run_cli(["monitor", "--batch", "6"], env, tmp_path)
    assert few.returncode == 1
    assert few.stdout.startswith("not computed: 10 new rows to compare; a drift report needs")
