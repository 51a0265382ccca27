"""The challenger in shadow, in-process: the app of `create_app(watch=False)` through
TestClient, a LightGBM champion and an extra-trees challenger fitted here on real rows
(served through the same compile, check and swap as registry versions), the prediction log
writing to a SQLite data DB file. Every answer is the champion's whatever the challenger
does; sampled requests are predicted again by the challenger off the request path, counted
and recorded beside the champion's rows.

What needs the registry (the challenger alias loaded, moved, removed) is in
tests/integration/test_shadow.py.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from covertype import db, schema
from covertype.release import ledger
from covertype.serve import create_app
from covertype.serve.metrics import Metrics
from covertype.serve.predictors import records_frame
from covertype.serve.release_gauges import ReleaseGauges
from covertype.settings import Settings, SettingsError
from covertype.train import fit_pipeline
from tests.support.data import records_of
from tests.support.servers import wait_for

LIGHTGBM = {"n_estimators": 20, "num_leaves": 15, "learning_rate": 0.1, "num_threads": 1}
TREES = {"n_estimators": 10, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5}
CHECK_ROWS = slice(20000, 20300)  # never trained on
CHAMPION, CHALLENGER = "3", "4"


@pytest.fixture(scope="module")
def champion(real_frame):
    return fit(real_frame, "lightgbm", LIGHTGBM, slice(0, 2000))


@pytest.fixture(scope="module")
def challenger(real_frame):
    # Other rows, another family: it disagrees with the champion on some records.
    return fit(real_frame, "extra_trees", TREES, slice(5000, 6000))


@pytest.fixture(scope="module")
def records(real_frame) -> list[dict]:
    return records_of(real_frame.iloc[CHECK_ROWS])


def fit(real_frame, family: str, params: dict, rows: slice):
    frame = real_frame.iloc[rows]
    labels = frame[schema.LABEL].to_numpy()
    return fit_pipeline(family, params, records_frame(records_of(frame)), labels, seed=0)


def expected(pipeline, records: list[dict]) -> list[int]:
    return [int(v) for v in pipeline.predict(records_frame(records))]


def settings_for(tmp_path, **env) -> Settings:
    base = {
        "COVERTYPE_AUTH": "off",
        "COVERTYPE_HOME": tmp_path,
        "COVERTYPE_MODEL_NAME": "covertype-shadow",
        "COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS": 0.05,
        "COVERTYPE_SHADOW_GATHER_SECONDS": 0.2,  # the gathering's own tests set theirs
    }
    return Settings.from_env(base | env)


def app_for(tmp_path, champion, challenger=None, wrap=None, **env):
    """The app serving `champion` as v3 and, if given, `challenger` as v4 (its predictor
    wrapped by `wrap`: a challenger that breaks or sleeps after it was loaded)."""
    app = create_app(settings_for(tmp_path, **env), watch=False)
    app.state.holder.serve_pipeline(champion, CHAMPION, tags={"family": "lightgbm"})
    if challenger is not None:
        holder = app.state.challenger
        served = holder.serve_pipeline(challenger, CHALLENGER, tags={"family": "extra_trees"})
        if wrap is not None:
            holder.current = dataclasses.replace(served, predictor=wrap(served.predictor))
    return app


class Raising:
    """A challenger whose every prediction raises (it passed its load's check)."""

    def __init__(self, predictor):
        self.kind = predictor.kind

    def classify_one(self, record):
        raise RuntimeError("the challenger broke")

    def classify_many(self, records):
        raise RuntimeError("the challenger broke")


class Sleeping:
    """A challenger that takes `seconds` for every prediction."""

    seconds = 0.2

    def __init__(self, predictor):
        self.predictor, self.kind = predictor, predictor.kind

    def classify_one(self, record):
        time.sleep(self.seconds)
        return self.predictor.classify_one(record)

    def classify_many(self, records):
        time.sleep(self.seconds)
        return self.predictor.classify_many(records)


def table(tmp_path, name: str) -> list[dict]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cover_type.db'}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(name):
                return []
            rows = conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY id")).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def outcome(counted: dict, outcome: str) -> float:
    return counted[("covertype_shadow_predictions_total", frozenset({("outcome", outcome)}))]


def role_count(counted: dict, role: str) -> float:
    key = ("covertype_shadow_predict_seconds_count", frozenset({("role", role)}))
    return counted.get(key, 0.0)


def shadow_figures(client: TestClient) -> dict:
    return client.get("/model").json()["challenger"]["shadow"]


# ---------------------------------------------------------------- both answers recorded


def test_shadow_rows_land_beside_the_champions_with_both_versions_and_its_request_id(
    tmp_path, champion, challenger, records
):
    ours, theirs = expected(champion, records), expected(challenger, records)
    assert ours != theirs and sum(a == b for a, b in zip(ours, theirs, strict=True)) > 100
    singles, batch = records[:40], records[40:300]
    app = app_for(tmp_path, champion, challenger)
    with TestClient(app) as client:
        for k, record in enumerate(singles):
            answer = client.post("/predict", json=record, headers={"X-Request-ID": f"one-{k}"})
            assert answer.status_code == 200
            assert answer.json()["model_version"] == CHAMPION
            assert answer.json()["cover_type"] == ours[k]
        many = client.post("/predict/batch", json=batch, headers={"X-Request-ID": "many"})
        assert [a["cover_type"] for a in many.json()] == ours[40:300]
        assert {a["model_version"] for a in many.json()} == {CHAMPION}
        wait_for(lambda: shadow_figures(client)["records"] == 300, 30, "the shadow thread")
        counted = samples(client)
        info = client.get("/model").json()
    agreed = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert outcome(counted, "agree") == agreed
    assert outcome(counted, "disagree") == 300 - agreed
    assert outcome(counted, "error") == 0
    assert role_count(counted, "champion") == role_count(counted, "challenger") == 41  # requests
    gauge = ("covertype_challenger_version",
             frozenset({("model_name", "covertype-shadow"), ("alias", "challenger")}))  # fmt: skip
    assert counted[gauge] == int(CHALLENGER)

    assert info["version"] == CHAMPION
    shown = info["challenger"]
    assert (shown["version"], shown["alias"], shown["family"]) == (CHALLENGER, "challenger",
                                                                  "extra_trees")  # fmt: skip
    assert shown["predictor"] == "fast" and shown["serving_cost"] is None
    assert shown["shadow"] == {
        "share": 1.0,
        "records": 300,
        "agreement_rate": pytest.approx(agreed / 300),
        "errors": 0,
        "dropped_requests": 0,
        "queued_requests": 0,
    }

    answers, shadows = table(tmp_path, "predictions"), table(tmp_path, "shadow_predictions")
    assert len(answers) == len(shadows) == 300
    assert [r["request_id"] for r in shadows] == [r["request_id"] for r in answers]
    assert [r["request_id"] for r in shadows] == [f"one-{k}" for k in range(40)] + ["many"] * 260
    assert [r["champion_cover_type"] for r in shadows] == [
        r["predicted_cover_type"] for r in answers
    ]
    assert [r["champion_cover_type"] for r in shadows] == ours
    assert [r["challenger_cover_type"] for r in shadows] == theirs
    assert {(r["champion_version"], r["challenger_version"]) for r in shadows} == {
        (CHAMPION, CHALLENGER)
    }
    assert all(r["champion_predict_us"] > 0 and r["challenger_predict_us"] > 0 for r in shadows)
    assert {r["error"] for r in shadows} == {None}
    batch_rows = shadows[40:]  # one request: the same per-record times
    assert len({(r["champion_predict_us"], r["challenger_predict_us"]) for r in batch_rows}) == 1


# ---------------------------------------------------------------- a challenger that fails


def test_a_challenger_that_raises_changes_no_answer_and_its_errors_are_counted_and_recorded(
    tmp_path, champion, challenger, records
):
    ours = expected(champion, records[:60])
    app = app_for(tmp_path, champion, challenger, wrap=Raising)
    with TestClient(app) as client:
        singles = [client.post("/predict", json=r) for r in records[:30]]
        many = client.post("/predict/batch", json=records[30:60])
        assert [a.status_code for a in singles] == [200] * 30 and many.status_code == 200
        answers = [a.json() for a in singles] + many.json()
        assert [a["cover_type"] for a in answers] == ours
        assert {a["model_version"] for a in answers} == {CHAMPION}
        wait_for(lambda: shadow_figures(client)["errors"] == 60, 30, "the shadow thread")
        counted = samples(client)
        figures = shadow_figures(client)
        assert client.get("/ready").json()["model"]["version"] == CHAMPION
    assert outcome(counted, "error") == 60
    assert outcome(counted, "agree") == outcome(counted, "disagree") == 0
    assert role_count(counted, "champion") == 31 and role_count(counted, "challenger") == 0
    assert figures["records"] == 60 and figures["agreement_rate"] is None
    ok = ("covertype_requests_total",
          frozenset({("endpoint", "/predict"), ("method", "POST"), ("status", "200")}))  # fmt: skip
    assert counted[ok] == 30
    shadows = table(tmp_path, "shadow_predictions")
    assert len(shadows) == 60
    assert {r["error"] for r in shadows} == {"RuntimeError: the challenger broke"}
    assert {r["challenger_cover_type"] for r in shadows} == {None}
    assert {r["challenger_predict_us"] for r in shadows} == {None}
    assert [r["champion_cover_type"] for r in shadows] == ours


def test_a_slow_challenger_leaves_the_champions_latency_and_a_full_queue_drops(
    tmp_path, champion, challenger, records
):
    app = app_for(tmp_path, champion, challenger, wrap=Sleeping, COVERTYPE_SHADOW_QUEUE=3)
    rows = records[:60]
    ours = expected(champion, rows)

    def latencies(client: TestClient) -> list[float]:
        seconds = []
        for k, record in enumerate(rows):
            started = time.perf_counter()
            answer = client.post("/predict", json=record)
            seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.json()["cover_type"] == ours[k]
        return seconds

    with TestClient(app) as client:
        sleeping = app.state.challenger.current
        app.state.challenger.drop("measuring the champion alone")
        assert client.get("/model").json()["challenger"] is None
        alone = latencies(client)
        app.state.challenger.current = sleeping
        shadowed = latencies(client)
        counted = samples(client)
        figures = shadow_figures(client)
    # Each shadowed prediction sleeps 0.2 s in the shadow thread; none of it is the request's.
    assert statistics.median(shadowed) < 3 * statistics.median(alone) + 0.02, (alone, shadowed)
    dropped = counted[("covertype_shadow_dropped_total", frozenset())]
    assert dropped == figures["dropped_requests"] >= 40  # 60 requests in far less than 0.8 s
    shadows = table(tmp_path, "shadow_predictions")  # the queued ones, predicted at the stop
    assert len(shadows) + dropped == 60
    # Predict times are CPU times: a sleep is a wait, not the model's cost (the queue shows it).
    assert all(r["challenger_predict_us"] < 100_000 for r in shadows)
    assert all(r["champion_predict_us"] < 100_000 for r in shadows)


# ---------------------------------------------------------------- the share


def test_a_share_of_zero_shadows_nothing(tmp_path, champion, challenger, records):
    app = app_for(tmp_path, champion, challenger, COVERTYPE_SHADOW_SHARE=0)
    with TestClient(app) as client:
        assert all(client.post("/predict", json=r).status_code == 200 for r in records[:20])
        assert client.post("/predict/batch", json=records[:50]).status_code == 200
        counted = samples(client)
        shown = client.get("/model").json()["challenger"]
    assert shown["version"] == CHALLENGER  # loaded, shown, never asked
    assert shown["shadow"]["share"] == 0 and shown["shadow"]["records"] == 0
    assert sum(outcome(counted, k) for k in ("agree", "disagree", "error")) == 0
    assert role_count(counted, "champion") == 0
    assert len(table(tmp_path, "predictions")) == 70
    assert table(tmp_path, "shadow_predictions") == []


def test_a_share_of_a_tenth_shadows_every_tenth_request(tmp_path, champion, challenger, records):
    app = app_for(tmp_path, champion, challenger, COVERTYPE_SHADOW_SHARE=0.1)
    with TestClient(app) as client:
        for k, record in enumerate(records[:50]):
            client.post("/predict", json=record, headers={"X-Request-ID": f"r{k}"})
        wait_for(lambda: shadow_figures(client)["records"] == 5, 30, "the shadow thread")
    shadows = table(tmp_path, "shadow_predictions")
    assert [r["request_id"] for r in shadows] == [f"r{k}" for k in range(9, 50, 10)]


def test_with_the_prediction_log_off_shadows_are_counted_not_stored(
    tmp_path, champion, challenger, records
):
    app = app_for(tmp_path, champion, challenger, COVERTYPE_PREDICTION_LOG="off")
    with TestClient(app) as client:
        assert all(client.post("/predict", json=r).status_code == 200 for r in records[:20])
        wait_for(lambda: shadow_figures(client)["records"] == 20, 30, "the shadow thread")
        counted = samples(client)
    assert outcome(counted, "agree") + outcome(counted, "disagree") == 20
    assert table(tmp_path, "shadow_predictions") == []


# ---------------------------------------------------------------- no challenger


def test_without_a_challenger_nothing_is_shadowed_and_model_says_null(
    tmp_path, champion, challenger, records
):
    app = app_for(tmp_path, champion, challenger)
    with TestClient(app) as client:
        app.state.challenger.drop("retired")
        assert client.get("/model").json()["challenger"] is None
        assert client.post("/predict", json=records[0]).status_code == 200
        assert client.post("/predict/batch", json=records[:5]).status_code == 200
        counted = samples(client)
    gauge = ("covertype_challenger_version",
             frozenset({("model_name", "covertype-shadow"), ("alias", "challenger")}))  # fmt: skip
    assert counted[gauge] == 0
    assert role_count(counted, "champion") == 0
    assert table(tmp_path, "shadow_predictions") == []
    assert len(table(tmp_path, "predictions")) == 6


def test_the_served_challenger_is_documented_in_the_model_answer(tmp_path, champion):
    document = create_app(settings_for(tmp_path), watch=False).openapi()
    schemas = document["components"]["schemas"]
    challenger = schemas["ModelInfo"]["properties"]["challenger"]
    assert {"$ref": "#/components/schemas/ChallengerInfo"} in challenger["anyOf"]
    assert "null when there is none" in challenger["description"]
    assert {"version", "run_id", "loaded_at", "predictor", "serving_cost", "shadow"} <= set(
        schemas["ChallengerInfo"]["properties"]
    )
    assert set(schemas["ShadowFigures"]["properties"]) == {
        "share", "records", "agreement_rate", "errors", "dropped_requests", "queued_requests"
    }  # fmt: skip


# ---------------------------------------------------------------- the release ledger


def release_counts(metrics: Metrics) -> dict[str, float]:
    return {
        sample.labels["action"]: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == "covertype_releases_total"
    }


def test_release_gauges_show_the_ledgers_moves_of_the_served_model(tmp_path):
    settings = settings_for(tmp_path)
    before = Metrics()
    ReleaseGauges(settings, before).refresh()  # a data DB without the ledger yet: no moves
    assert release_counts(before) == dict.fromkeys(ledger.ACTIONS, 0)
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    with engine.begin() as conn:
        for action, alias, model in [
            (ledger.PROMOTE, "champion", "covertype-shadow"),
            (ledger.CHALLENGE, "challenger", "covertype-shadow"),
            (ledger.PROMOTE, "champion", "covertype-shadow"),
            (ledger.AUTOMATIC_ROLLBACK, "champion", "covertype-shadow"),
            (ledger.PROMOTE, "champion", "another-model"),  # not the served model's
        ]:
            ledger.record(conn, ledger.Move(model, alias, action, "1", "2", "test", "why"))
    engine.dispose()
    metrics = Metrics()
    gauges = ReleaseGauges(settings, metrics)
    gauges.refresh()
    gauges.stop()
    assert release_counts(metrics) == {"promote": 2, "challenge": 1, "retire": 0, "rollback": 0,
                     "automatic_rollback": 1}  # fmt: skip


def test_a_shadow_job_for_a_challenger_that_answers_too_few_classes_is_an_error(
    tmp_path, champion, challenger, records
):
    class Short:
        def __init__(self, predictor):
            self.kind, self.predictor = predictor.kind, predictor

        def classify_one(self, record):
            return self.predictor.classify_one(record)

        def classify_many(self, records):
            labels, proba = self.predictor.classify_many(records)
            return labels[:-1], proba

    app = app_for(tmp_path, champion, challenger, wrap=Short)
    with TestClient(app) as client:
        assert client.post("/predict/batch", json=records[:10]).status_code == 200
        wait_for(lambda: shadow_figures(client)["errors"] == 10, 30, "the shadow thread")
    shadows = table(tmp_path, "shadow_predictions")
    assert {r["error"] for r in shadows} == {"ValueError: 9 classes for 10 records"}


# ---------------------------------------------------------------- gathering


class Recording:
    """A challenger that notes each predict it is asked for, (method, Elevation of each
    record), in order, and raises on the records whose Elevation is in `poison`."""

    poison: frozenset[int] = frozenset()

    def __init__(self, predictor):
        self.predictor, self.kind = predictor, predictor.kind
        self.calls: list[tuple[str, list[int]]] = []

    def classify_one(self, record):
        self.calls.append(("one", [record["Elevation"]]))
        if record["Elevation"] in self.poison:
            raise RuntimeError("a record it cannot take")
        return self.predictor.classify_one(record)

    def classify_many(self, records):
        self.calls.append(("many", [r["Elevation"] for r in records]))
        if any(r["Elevation"] in self.poison for r in records):
            raise RuntimeError("a record it cannot take")
        return self.predictor.classify_many(records)


def recorded_calls(app) -> list[tuple[str, list[int]]]:
    return app.state.challenger.current.predictor.calls


def distinct(records: list[dict], n: int) -> list[dict]:
    """`n` records of distinct Elevations (each predict's record told apart by it)."""
    seen: dict[int, dict] = {}
    for record in records:
        seen.setdefault(record["Elevation"], record)
    assert len(seen) >= n
    return list(seen.values())[:n]


def test_requests_wait_until_n_records_are_queued_then_are_predicted_one_after_the_other(
    tmp_path, champion, challenger, records
):
    rows = distinct(records, 13)
    singles, batch = rows[:7], rows[7:13]
    gather = {"COVERTYPE_SHADOW_GATHER_RECORDS": 10, "COVERTYPE_SHADOW_GATHER_SECONDS": 60}
    app = app_for(tmp_path, champion, challenger, wrap=Recording, **gather)
    with TestClient(app) as client:
        for k, record in enumerate(singles):
            client.post("/predict", json=record, headers={"X-Request-ID": f"one-{k}"})
        time.sleep(0.5)  # the thread had time to predict; the gathering holds them (60 s)
        waiting = shadow_figures(client)
        assert (waiting["records"], waiting["queued_requests"]) == (0, 7)
        assert recorded_calls(app) == []
        # 13 records: more than 10, in whole requests.
        client.post("/predict/batch", json=batch, headers={"X-Request-ID": "many"})
        done = wait_for(lambda: (f := shadow_figures(client))["records"] == 13 and f, 30,
                        "the gathered requests predicted")  # fmt: skip
        assert done["queued_requests"] == 0 and done["errors"] == 0
        calls = recorded_calls(app)
    elevations = [r["Elevation"] for r in rows]
    # The first records once untimed (the trees into cache), then each request as the
    # champion predicted it: a single-row predict each, the batch's records in one.
    warm_up = [("one", [e]) for e in elevations[:4]]
    assert calls == warm_up + [("one", [e]) for e in elevations[:7]] + [("many", elevations[7:])]
    shadows = table(tmp_path, "shadow_predictions")
    assert [r["request_id"] for r in shadows] == [f"one-{k}" for k in range(7)] + ["many"] * 6
    assert [r["challenger_cover_type"] for r in shadows] == expected(challenger, rows)
    assert [r["champion_cover_type"] for r in shadows] == expected(champion, rows)


def test_a_trickle_below_n_records_is_predicted_once_the_time_limit_passed(
    tmp_path, champion, challenger, records
):
    # 64 records by default: three requests wait for the time limit.
    app = app_for(tmp_path, champion, challenger, wrap=Recording, COVERTYPE_SHADOW_GATHER_SECONDS=3)
    with TestClient(app) as client:
        first_sent = time.monotonic()
        for record in records[:3]:
            assert client.post("/predict", json=record).status_code == 200
        wait_for(lambda: shadow_figures(client)["records"] == 3, 30, "the trickle predicted")
        predicted = time.monotonic()
        calls = recorded_calls(app)
    # Not before the time limit since the first was queued, and not one at a time: the
    # three gathered (three warm-up predicts, then one each).
    assert predicted - first_sent >= 3.0
    elevations = [[r["Elevation"]] for r in records[:3]]
    assert calls == [("one", e) for e in elevations] * 2
    assert len(table(tmp_path, "shadow_predictions")) == 3


def test_a_full_queue_is_predicted_at_once_instead_of_waiting_and_dropping(
    tmp_path, champion, challenger, records
):
    full = {"COVERTYPE_SHADOW_QUEUE": 3, "COVERTYPE_SHADOW_GATHER_SECONDS": 60}
    app = app_for(tmp_path, champion, challenger, **full)
    with TestClient(app) as client:
        for record in records[:3]:
            assert client.post("/predict", json=record).status_code == 200
        # 3 records, far below 64, long before 60 s: the queue is full, waiting only drops.
        wait_for(lambda: shadow_figures(client)["records"] == 3, 30, "the full queue predicted")
        assert shadow_figures(client)["dropped_requests"] == 0


def test_stopping_predicts_and_records_what_is_queued_without_waiting_for_the_gathering(
    tmp_path, champion, challenger, records
):
    app = app_for(tmp_path, champion, challenger, COVERTYPE_SHADOW_GATHER_SECONDS=60)
    with TestClient(app) as client:
        for k, record in enumerate(records[:5]):
            client.post("/predict", json=record, headers={"X-Request-ID": f"r{k}"})
        assert shadow_figures(client)["queued_requests"] == 5
    # The stop waits 5 s at most for the shadow thread: had it waited for the gathering
    # (60 s), the rows would have missed the prediction log's last flush.
    shadows = table(tmp_path, "shadow_predictions")
    assert [r["request_id"] for r in shadows] == [f"r{k}" for k in range(5)]
    assert [r["challenger_cover_type"] for r in shadows] == expected(challenger, records[:5])


def test_a_request_the_challenger_fails_loses_none_of_the_gathered_others_rows(
    tmp_path, champion, challenger, records
):
    rows = distinct(records, 12)
    bad = rows[0]["Elevation"]  # the first: its warm-up predict fails too

    class Picky(Recording):
        poison = frozenset({bad})

    gather = {"COVERTYPE_SHADOW_GATHER_RECORDS": 13, "COVERTYPE_SHADOW_GATHER_SECONDS": 60}
    app = app_for(tmp_path, champion, challenger, wrap=Picky, **gather)
    with TestClient(app) as client:
        for k, record in enumerate(rows[:6]):
            client.post("/predict", json=record, headers={"X-Request-ID": f"one-{k}"})
        # A batch holding the bad record fails as one predict; the requests around it do not.
        client.post("/predict/batch", json=[rows[6], rows[0]], headers={"X-Request-ID": "bad"})
        for k, record in enumerate(rows[7:12], 7):
            client.post("/predict", json=record, headers={"X-Request-ID": f"one-{k}"})
        figures = wait_for(lambda: (f := shadow_figures(client))["records"] == 13 and f, 30,
                           "the gathered requests predicted")  # fmt: skip
    assert figures["errors"] == 3
    shadows = table(tmp_path, "shadow_predictions")
    ids = [f"one-{k}" for k in range(6)] + ["bad", "bad"] + [f"one-{k}" for k in range(7, 12)]
    assert [r["request_id"] for r in shadows] == ids
    failed = {"RuntimeError: a record it cannot take"}
    assert {shadows[k]["error"] for k in (0, 6, 7)} == failed
    fine = [r for k, r in enumerate(shadows) if k not in (0, 6, 7)]
    assert {r["error"] for r in fine} == {None} and len(fine) == 10
    good = rows[1:6] + rows[7:12]
    assert [r["challenger_cover_type"] for r in fine] == expected(challenger, good)
    assert all(r["challenger_predict_us"] > 0 for r in fine)


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("COVERTYPE_SHADOW_GATHER_RECORDS", "0", "greater than or equal to 1"),
        ("COVERTYPE_SHADOW_GATHER_RECORDS", "20000", "less than or equal to 10000"),
        ("COVERTYPE_SHADOW_GATHER_RECORDS", "many", "valid integer"),
        ("COVERTYPE_SHADOW_GATHER_SECONDS", "-1", "greater than or equal to 0"),
        ("COVERTYPE_SHADOW_GATHER_SECONDS", "61", "less than or equal to 60"),
    ],
)
def test_gathering_settings_out_of_range_are_refused_naming_the_variable(
    tmp_path, variable, value, allowed
):
    with pytest.raises(SettingsError) as refused:
        settings_for(tmp_path, **{variable: value})
    assert f"{variable}='{value}'" in str(refused.value)
    assert allowed in str(refused.value)
