"""The prediction log in-process: the app of `create_app(watch=False)` serving a small
LightGBM, through TestClient, its log writing to a SQLite data DB file. Every answer is
recorded once, normalised, with its version, latency and request id; a full queue drops and
counts instead of making requests wait; `off` records nothing."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from covertype import db, schema
from covertype.serve import create_app
from covertype.serve.predictors import records_frame
from covertype.serve.records import EXAMPLE
from covertype.settings import Settings
from covertype.train import fit_pipeline
from tests.support.data import records_of

LIGHTGBM = {"n_estimators": 10, "num_leaves": 15, "num_threads": 1}


@pytest.fixture(scope="module")
def pipeline(real_frame):
    rows = real_frame.iloc[:1500]
    frame = records_frame(records_of(rows))
    return fit_pipeline("lightgbm", LIGHTGBM, frame, rows[schema.LABEL].to_numpy(), seed=0)


def app_for(tmp_path, pipeline, **env):
    base = {"COVERTYPE_AUTH": "off", "COVERTYPE_HOME": tmp_path}
    app = create_app(
        Settings.from_env(base | {"COVERTYPE_MODEL_NAME": "covertype-log"} | env), watch=False
    )
    app.state.holder.serve_pipeline(pipeline, "7")
    return app


def stored(tmp_path) -> list[dict]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cover_type.db'}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("predictions"):
                return []
            query = sa.select(db.predictions).order_by(db.predictions.c.id)
            return [dict(row) for row in conn.execute(query).mappings()]
    finally:
        engine.dispose()


def metric(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def test_every_answer_is_logged_once_normalised_with_version_latency_and_request_id(
    tmp_path, pipeline, real_frame
):
    batch = records_of(real_frame.iloc[30000:30005])
    spelled = EXAMPLE | {"Wilderness_Area": "Comanche", "Soil_Type": 29}  # accepted spellings
    app = app_for(tmp_path, pipeline, COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS=0.05)
    with TestClient(app) as client:
        one = client.post("/predict", json=spelled, headers={"X-Request-ID": "req-one"})
        many = client.post("/predict/batch", json=batch, headers={"X-Request-ID": "req-many"})
        assert one.status_code == many.status_code == 200
        client.post("/predict", json=EXAMPLE | {"Elevation": 1})  # 422: not an answer
    rows = stored(tmp_path)  # the app's stop flushed the queue
    assert len(rows) == 6
    first = rows[0]
    assert first["request_id"] == "req-one" and first["model_version"] == "7"
    assert first["Wilderness_Area"] == "Commanche" and first["Soil_Type"] == "C7745"
    assert first["predicted_cover_type"] == one.json()["cover_type"]
    assert first["latency_ms"] > 0
    assert [r["request_id"] for r in rows[1:]] == ["req-many"] * 5
    assert [r["predicted_cover_type"] for r in rows[1:]] == [a["cover_type"] for a in many.json()]
    assert [r["Elevation"] for r in rows[1:]] == [b["Elevation"] for b in batch]
    with TestClient(app_for(tmp_path, pipeline)) as client:  # a new process' metrics
        assert metric(client, "covertype_prediction_log_dropped_total") == 0


def test_a_full_queue_drops_and_counts_and_requests_still_answer(tmp_path, pipeline, real_frame):
    records = records_of(real_frame.iloc[40000:40030])
    app = app_for(
        tmp_path,
        pipeline,
        COVERTYPE_PREDICTION_LOG_QUEUE=10,
        COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS=3600,
    )
    with TestClient(app) as client:
        answers = [client.post("/predict", json=record) for record in records]
        assert [a.status_code for a in answers] == [200] * 30
        assert metric(client, "covertype_prediction_log_dropped_total") == 20
        big = client.post("/predict/batch", json=records)  # no room at all: all 30 dropped
        assert big.status_code == 200 and len(big.json()) == 30
        assert metric(client, "covertype_prediction_log_dropped_total") == 50
    rows = stored(tmp_path)
    assert len(rows) == 10  # the first ten, stored once when the app stopped
    assert [r["Elevation"] for r in rows] == [r["Elevation"] for r in records[:10]]


def test_off_logs_nothing(tmp_path, pipeline):
    with TestClient(app_for(tmp_path, pipeline, COVERTYPE_PREDICTION_LOG="off")) as client:
        assert client.post("/predict", json=EXAMPLE).status_code == 200
    assert stored(tmp_path) == []


def test_a_bad_switch_names_the_variable_and_what_is_allowed(tmp_path):
    from covertype.settings import SettingsError, get_settings

    get_settings.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COVERTYPE_PREDICTION_LOG", "yes")
        with pytest.raises(
            SettingsError, match="COVERTYPE_PREDICTION_LOG='yes': Input should be 'on' or 'off'"
        ):
            get_settings()
    get_settings.cache_clear()


def test_the_writer_keeps_up_beside_a_thread_that_never_lets_go_of_the_gil(tmp_path):
    """A loaded worker's event loop holds the GIL; sqlite3's executemany lets go of it at
    every row and then waits for it to come back: 20,000 rows took ~15 s beside a busy thread
    (1,250 a second; measured here). Multi-row INSERTs take it once every 500 rows."""
    from covertype.serve.metrics import Metrics
    from covertype.serve.prediction_log import PredictionLog

    env = {"COVERTYPE_HOME": tmp_path, "COVERTYPE_PREDICTION_LOG_QUEUE": 50_000}
    settings = Settings.from_env(env)
    log = PredictionLog(settings, Metrics())
    for i in range(20_000):
        log.add((EXAMPLE,), (1,), "7", 1.0, f"busy-{i}")
    log.start()  # its first flush writes the queue, beside the loop below
    deadline = time.monotonic() + 5  # a Python loop: never lets go of the GIL by itself
    while log.queue and time.monotonic() < deadline:  # a batch leaves it as it is written
        sum(range(100))
    left = len(log.queue)
    log.stop()
    assert left == 0, f"{left} rows still queued after 5 s beside a busy thread"
    assert len(stored(tmp_path)) == 20_000
