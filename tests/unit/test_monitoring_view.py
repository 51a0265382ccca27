"""The Monitoring tab's readers and charts (covertype.ui.monitoring_data, _charts) on a SQLite
data DB of their own: what they read, what they say when a source is missing, and that
every chart is a valid Vega-Lite spec."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from covertype import db, schema
from covertype.settings import Settings
from covertype.ui import monitoring_charts as charts
from covertype.ui import monitoring_data as data


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"COVERTYPE_HOME": tmp_path / "home"})


def report(batch: int, drifted: bool, share: float, accuracy: float, id_note: str = "") -> dict:
    return {
        "kind": "batch", "created_at": datetime.now(UTC), "model_name": "covertype",
        "champion_version": "1", "batch_number": batch, "reference_rows": 5000,
        "current_rows": 4000, "computed": True, "reason": f"test {id_note}",
        "dataset_drift": drifted, "drifted_features": int(share * 12), "features": 12,
        "drift_share": share, "drift_share_threshold": 0.5, "feature_scores": "{}",
        "live_accuracy": accuracy, "live_macro_f1": accuracy - 0.1,
    }  # fmt: skip


def test_nothing_collected_yet_is_empty_and_creates_no_file(settings):
    assert data.batches(settings).empty
    assert data.batch_drift(settings).empty
    assert not settings.home.exists()  # the UI only reads


def test_batches_and_the_latest_report_of_each_batch(settings):
    settings.home.mkdir()
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    rows = [
        {"row_key": f"k{i}", **{f: 1 for f in schema.NUMERIC}, schema.WILDERNESS: "Rawah",
         schema.SOIL: "C7745", schema.LABEL: 1, "batch_number": 1 + i % 2, "group_number": 7,
         "ingested_at": datetime.now(UTC)}
        for i in range(5)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(db.cover_type.insert(), rows)
    for row in (report(1, False, 0.1, 0.9), report(2, False, 0.2, 0.8, "old"),
                report(2, True, 0.75, 0.6, "rerun")):  # fmt: skip
        db.add_drift_report(engine, row)
    engine.dispose()
    assert data.batches(settings).to_dict("list") == {"batch_number": [1, 2], "rows": [3, 2]}
    drift = data.batch_drift(settings)
    assert drift["batch_number"].tolist() == [1, 2]
    assert drift["drift_share"].tolist() == [0.1, 0.75]  # the rerun, not the older report
    assert drift["dataset_drift"].tolist() == [False, True]
    for chart in (
        charts.rows_per_batch_chart(data.batches(settings)),
        charts.drift_share_chart(drift),
    ):
        assert chart.to_dict()["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    # A batch without drift is labelled "0/12"-style, told apart from a batch with no report.
    spec = charts.drift_share_chart(drift).to_dict()
    [text] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert text["encoding"]["text"]["field"] == "label"
    [values] = spec["datasets"].values()
    assert [row["label"] for row in values] == ["1/12", "9/12"]


def test_accuracy_after_is_the_version_promoted_once_trained_on_the_batch():
    drift = pd.DataFrame({"batch_number": [1, 2, 3], "live_accuracy": [0.9, 0.6, 0.7]})
    history = pd.DataFrame(
        {
            "version": [1, 2, 3], "promoted": [True, True, False],
            "last_batch": [1, 2, 3], "holdout_accuracy": [0.91, 0.88, 0.5],
        }
    )  # fmt: skip
    frame = data.accuracy_before_after(drift, history)
    after = frame[frame["when"] == "after retraining"]
    assert after[["batch_number", "accuracy"]].values.tolist() == [[1, 0.91], [2, 0.88]]
    assert len(frame[frame["when"] == "before"]) == 3  # batch 3's training was not promoted
    assert charts.accuracy_chart(frame).to_dict()
    assert len(data.accuracy_before_after(drift, None)) == 3  # MLflow down: before only


def test_champion_history_chart_marks_the_champion():
    history = pd.DataFrame(
        {
            "version": [1, 2], "family": ["lightgbm", "extra_trees"],
            "holdout_accuracy": [0.9, 0.8], "holdout_macro_f1": [0.85, 0.7],
            "registered_at": pd.to_datetime(["2026-12-03", "2026-12-03"], utc=True),
            "promoted": [True, False], "decision": ["first champion", "kept v1"],
            "last_batch": [1, 2], "champion": [True, False],
        }
    )  # fmt: skip
    spec = charts.champion_history_chart(history).to_dict()
    assert len(spec["layer"]) == 3


def test_traffic_without_prometheus_says_so(settings):
    with pytest.raises(data.SourceUnavailable, match="COVERTYPE_PROMETHEUS_URL is unset"):
        data.traffic(settings)


def test_an_unreachable_prometheus_or_data_db_is_named(tmp_path):
    down = Settings.from_env(
        {
            "COVERTYPE_HOME": tmp_path,
            "COVERTYPE_PROMETHEUS_URL": "http://127.0.0.1:9",
            "COVERTYPE_DATA_DB_URL": "mysql+pymysql://nobody:secret@127.0.0.1:9/cover_type",
        }
    )
    with pytest.raises(data.SourceUnavailable, match=r"Prometheus at http://127.0.0.1:9 did not"):
        data.traffic(down)
    with pytest.raises(data.SourceUnavailable) as error:
        data.batches(down)
    assert "127.0.0.1:9/cover_type" in str(error.value) and "secret" not in str(error.value)
