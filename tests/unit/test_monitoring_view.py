"""The Monitoring tab's readers and charts (covertype.ui.monitoring_data, _charts) on a SQLite
data DB of their own: what they read, what they say when a source is missing, and that
every chart is a valid Vega-Lite spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from covertype import db, schema
from covertype.release import ledger
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
    assert data.release_moves(settings).empty
    assert data.serving_accuracy(settings).empty
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
    with pytest.raises(data.SourceUnavailable, match=r"^Release moves come from the data DB"):
        data.release_moves(down)


T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# A release history: v1 the first champion; v2 challenges and wins; v3 challenges and
# loses; v2 loses on the next batch and the champion rolls back to v1.
STORY = [
    ("champion", ledger.PROMOTE, None, "1", "gate", "first champion", 0),
    ("challenger", ledger.CHALLENGE, None, "2", "gate", "passed the gate", 10),
    ("champion", ledger.PROMOTE, "1", "2", "review", "F1 0.81 >= 0.80 - 0.005 on batch 2", 20),
    ("challenger", ledger.CHALLENGE, None, "3", "gate", "passed the gate", 30),
    ("challenger", ledger.RETIRE, "3", None, "review", "F1 0.70 < 0.81 - 0.005 on batch 3", 40),
    ("champion", ledger.AUTOMATIC_ROLLBACK, "2", "1", "review", "F1 0.62 < 0.79 - 0.02", 50),
]


def release_db(settings: Settings) -> None:
    """The data DB at head, with STORY in the ledger (and a move of another model) and the
    batch reports scoring each serving version."""
    settings.home.mkdir()
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    with engine.begin() as conn:
        for alias, action, old, new, actor, reason, minute in STORY:
            move = ledger.Move("covertype", alias, action, old, new, actor, reason,
                               scores={"macro_f1": 0.8}, moved_at=at(minute))  # fmt: skip
            ledger.record(conn, move)
        other = ledger.Move("other", "champion", ledger.PROMOTE, None, "9", "gate", "x")
        ledger.record(conn, other)
    scored = [(1, "1", 0.90, 5), (2, "1", 0.85, 15), (3, "2", 0.70, 25), (3, "2", 0.72, 35),
              (4, "1", 0.88, 55)]  # fmt: skip
    for batch, version, accuracy, minute in scored:
        row = report(batch, False, 0.1, accuracy) | {
            "champion_version": version, "created_at": at(minute)
        }  # fmt: skip
        db.add_drift_report(engine, row)
    uncomputed = report(5, False, 0.1, 0.5) | {"computed": False, "created_at": at(58)}
    db.add_drift_report(engine, uncomputed)
    engine.dispose()


def test_the_release_timeline_shows_which_version_each_alias_held_and_when(settings):
    release_db(settings)
    moves = data.release_moves(settings)
    assert moves["action"].tolist() == [row[1] for row in STORY]  # oldest first, one model
    assert moves["moved_at"].tolist() == [at(row[-1]) for row in STORY]
    now = pd.Timestamp(at(60))
    periods = data.alias_periods(moves, now)
    assert [(p.alias, p.version, p.start, p.end, p.current) for p in periods.itertuples()] == [
        ("champion", "1", at(0), at(20), False),
        ("challenger", "2", at(10), at(20), False),  # ends where it was promoted
        ("champion", "2", at(20), at(50), False),
        ("challenger", "3", at(30), at(40), False),  # retired: no period after
        ("champion", "1", at(50), now, True),  # rolled back to, serving now
    ]
    table = data.ledger_table(moves, limit=3)
    assert table.columns.tolist() == ["when", "alias", "action", "from → to", "actor", "reason"]
    assert table.to_dict("records")[0] == {
        "when": "2026-12-08 09:50:00 UTC", "alias": "champion", "action": "automatic_rollback",
        "from → to": "v2 → v1", "actor": "review", "reason": "F1 0.62 < 0.79 - 0.02",
    }  # fmt: skip
    assert table["from → to"].tolist() == ["v2 → v1", "v3 → –", "– → v3"]  # newest 3


def test_the_live_accuracy_of_each_serving_version(settings):
    release_db(settings)
    accuracy = data.serving_accuracy(settings)
    assert accuracy.columns.tolist() == [*data.SERVING_COLUMNS, "stint"]
    # Batch 3's rerun replaces its first report; the uncomputed report of batch 5 is left out.
    assert accuracy[["batch_number", "version", "live_accuracy"]].values.tolist() == [
        [1, "1", 0.90], [2, "1", 0.85], [3, "2", 0.72], [4, "1", 0.88]
    ]  # fmt: skip
    assert accuracy["created_at"].tolist() == [at(5), at(15), at(35), at(55)]


def test_the_release_charts_line_up_and_colour_each_version_alike(settings):
    release_db(settings)
    moves = data.release_moves(settings)
    periods = data.alias_periods(moves, pd.Timestamp(at(60)))
    timeline, served = charts.release_charts(periods, moves, data.serving_accuracy(settings))
    timeline, served = timeline.to_dict(), served.to_dict()
    assert timeline["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    bars, _, marks = timeline["layer"]
    line, _ = served["layer"]
    assert bars["encoding"]["color"] == line["encoding"]["color"]
    assert bars["encoding"]["color"]["scale"]["domain"] == ["1", "2", "3"]
    # One time scale, from the first move to `now` (padded), in both.
    assert bars["encoding"]["x"]["scale"] == line["encoding"]["x"]["scale"]
    low, high = (
        datetime(
            d["year"], d["month"], d["date"], d["hours"], d["minutes"], d["seconds"], tzinfo=UTC
        )
        for d in bars["encoding"]["x"]["scale"]["domain"]
    )
    assert at(-2) < low < at(0) and at(60) < high < at(62)  # padded by 2% and 30 s
    assert {t["field"] for t in marks["encoding"]["tooltip"]} >= {"action", "change", "reason"}
    assert marks["encoding"]["shape"]["scale"]["domain"] == list(ledger.ACTIONS)
    # v1's line stops while v2 serves: one line per stint, not per version.
    assert line["encoding"]["detail"]["field"] == "stint"
    [values] = [v for v in served["datasets"].values()]
    assert [(r["version"], r["stint"]) for r in values] == [
        ("1", 1), ("1", 1), ("2", 2), ("1", 3)
    ]  # fmt: skip


def test_a_data_db_from_before_the_ledger_has_no_moves(settings):
    release_db(settings)
    engine = db.make_engine(settings.data_db)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE releases")
    engine.dispose()
    assert data.release_moves(settings).empty
    assert len(data.serving_accuracy(settings)) == 4
