"""The prediction log of a real `covertype serve` process, on SQLite and (with
COVERTYPE_TEST_MYSQL_URL) MariaDB: every answer of /predict and /predict/batch is in the
data DB's `predictions` once, the features as normalised, with version and request id."""

from __future__ import annotations

import time

import httpx
import sqlalchemy as sa

from covertype import db
from covertype.serve.records import EXAMPLE
from tests.support.data import records_of
from tests.support.servers import ServerProcess, free_port


def test_a_real_api_logs_every_answer_into_the_data_db(
    champion, mlflow_server, data_db_url, real_frame, tmp_path
):
    api = ServerProcess(
        ["serve", "--port", str(free_port())],
        env={
            "COVERTYPE_HOME": str(tmp_path / "home"),
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": champion["model_name"],
            "COVERTYPE_DATA_DB_URL": data_db_url,
            "COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
        },
        cwd=tmp_path,
        log_path=tmp_path / "serve.log",
    ).start(ready_path="/ready", timeout=120)
    try:
        batch = records_of(real_frame.iloc[30000:30100])
        one = httpx.post(f"{api.url}/predict", json=EXAMPLE, headers={"X-Request-ID": "one"})
        many = httpx.post(f"{api.url}/predict/batch", json=batch, headers={"X-Request-ID": "b"})
        assert one.status_code == many.status_code == 200
        engine = db.make_engine(data_db_url)
        deadline = time.monotonic() + 30
        rows: list = []
        while time.monotonic() < deadline and len(rows) < 101:
            time.sleep(0.2)
            with engine.connect() as conn:
                if sa.inspect(conn).has_table("predictions"):
                    query = sa.select(db.predictions).order_by(db.predictions.c.id)
                    rows = [dict(r) for r in conn.execute(query).mappings()]
        engine.dispose()
    finally:
        api.stop()
    assert len(rows) == 101, api.log()[-3000:]
    assert rows[0]["request_id"] == "one" and rows[0]["Elevation"] == EXAMPLE["Elevation"]
    assert {r["model_version"] for r in rows} == {champion["version"]}
    answers = [one.json()["cover_type"]] + [a["cover_type"] for a in many.json()]
    assert [r["predicted_cover_type"] for r in rows] == answers
    assert [r["Soil_Type"] for r in rows[1:]] == [b["Soil_Type"] for b in batch]
