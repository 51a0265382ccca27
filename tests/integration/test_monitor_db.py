"""The monitoring's tables on each data DB (SQLite; MariaDB with COVERTYPE_TEST_MYSQL_URL):
the prediction log's bulk insert, drift reports, and the rows a champion trained on."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event

from covertype import dataset, db, ingest, schema
from covertype.monitor.reference import Champion, training_rows
from covertype.train import data
from tests.support.data import records_of


def predictions_of(frame: pd.DataFrame, at: datetime) -> list[db.Prediction]:
    return [
        db.Prediction(record, int(label), "7", 1.5 + i / 1000, at, f"req-{i // 20}")
        for i, (record, label) in enumerate(
            zip(records_of(frame), frame[schema.LABEL], strict=True)
        )
    ]


def test_a_list_of_predictions_is_stored_in_bulk_statements(data_engine, real_frame):
    at = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    records = predictions_of(real_frame.iloc[:2_000], at)
    calls = []
    columns = len(db.predictions.columns) - 1  # all but the id

    @event.listens_for(data_engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            rows = len(parameters) if executemany else len(parameters) // columns
            calls.append((executemany, rows))

    assert db.insert_predictions(data_engine, records) == 2_000
    assert db.insert_predictions(data_engine, []) == 0
    if data_engine.dialect.name == "sqlite":  # its executemany lets go of the GIL every row
        assert calls == [(False, 500)] * 4  # multi-row INSERTs
    else:
        assert calls == [(True, 2_000)]  # one executemany (pymysql makes multi-row INSERTs)
    with data_engine.connect() as conn:
        stored = pd.read_sql(sa.select(db.predictions).order_by(db.predictions.c.id), conn)
    assert len(stored) == 2_000 and stored["id"].is_unique
    first = stored.iloc[0]
    assert first[list(schema.FEATURES)].to_dict() == records[0].features
    assert (first["predicted_cover_type"], first["model_version"]) == (records[0].cover_type, "7")
    assert first["request_id"] == "req-0" and abs(first["latency_ms"] - 1.5) < 1e-9
    assert pd.Timestamp(first["predicted_at"]).to_pydatetime().replace(tzinfo=None) == at.replace(
        tzinfo=None
    )


def test_latest_drift_report_is_the_newest_computed_one_of_its_kind(data_engine):
    def report(**values):
        row = dict(
            kind="batch",
            created_at=datetime.now(UTC),
            model_name="covertype",
            champion_version="2",
            reference_rows=5000,
            current_rows=4000,
            computed=True,
            reason="a summary",
            dataset_drift=False,
            drift_share=0.25,
        )
        return db.add_drift_report(data_engine, row | values)

    first = report(batch_number=3)
    newest = report(batch_number=4, dataset_drift=True, drift_share=0.75)
    report(batch_number=5, computed=False, reason="not computed: batch 5 has no rows")
    report(batch_number=6, champion_version="3")
    report(kind="predictions", predictions_from_id=1, predictions_to_id=500)
    assert newest > first
    latest = db.latest_drift_report(data_engine, "batch", "covertype", "2")
    assert latest["id"] == newest and latest["batch_number"] == 4
    assert latest["dataset_drift"] is True and latest["drift_share"] == 0.75
    assert db.latest_drift_report(data_engine, "batch", "covertype")["champion_version"] == "3"
    predictions = db.latest_drift_report(data_engine, "predictions", "covertype")
    assert predictions["predictions_to_id"] == 500
    assert db.latest_drift_report(data_engine, "batch", "other-model") is None


def test_training_rows_are_those_stored_before_the_champion_trained(data_engine, real_frame):
    rows = dataset.to_course_rows(real_frame.iloc[:1_500])
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    for k, (batch, at) in enumerate([(1, 0), (2, 10), (2, 600), (3, 620)]):
        part = ingest.Batch(7, batch, rows[k * 375 : (k + 1) * 375])
        ingest.store_batch(data_engine, part, start + timedelta(seconds=at))
    # The champion read batches 1 and 2 after the second ingest (750 rows), before the third.
    with data_engine.connect() as conn:
        stored = pd.read_sql(sa.select(db.cover_type.c.row_key, db.cover_type.c.ingested_at), conn)
    assert len(stored) == 1_500
    first_two = stored.sort_values("ingested_at")["row_key"].iloc[:750]
    champion = Champion(
        model_name="covertype",
        version="1",
        run_id="r",
        trained_batches=(1, 2),
        trained_at=start + timedelta(seconds=25),
        rows=750,
        content_hash=data.content_hash(first_two),
    )
    read = training_rows(data_engine, champion)
    assert len(read) == 750 and set(read["row_key"]) == set(first_two)
    assert data.content_hash(read["row_key"]) == champion.content_hash
    assert read[schema.NUMERIC[0]].dtype == "int64" and read[schema.SOIL].map(type).eq(str).all()
