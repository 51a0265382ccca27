"""The challenger in shadow as users see it: a real `covertype serve` process, a real MLflow
server, versions really trained by `covertype.train`, real HTTP, the data DB on SQLite and
(with COVERTYPE_TEST_MYSQL_URL) MariaDB.

Setting the challenger alias makes the API load that version beside the champion and
shadow the requests with it; pointing it at the champion's version or removing it drops
it; the champion serves every request meanwhile, never swapped. A challenger that cannot
be loaded is counted and changes nothing. In-process cases (a challenger that raises or
sleeps, the sampled share) are in tests/unit/test_shadow.py.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import mlflow
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from covertype import db, schema
from covertype.release import ledger
from covertype.train import fit_pipeline, train
from tests.support.data import fill_data_db, records_of, training_frame, training_settings
from tests.support.load import PredictLoad
from tests.support.servers import ServerProcess, free_port, metric_samples, sample, wait_for

FAMILIES = {
    "lightgbm": ("lightgbm", {"n_estimators": 20, "num_leaves": 15, "num_threads": 1}),
    "extra_trees": (
        "extra_trees",
        {"n_estimators": 20, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5},
    ),
}
CHECK_ROWS = slice(20000, 20400)  # never trained on


@dataclass
class Registry:
    url: str
    name: str
    versions: dict[str, str]  # family → registered version
    pipelines: dict[str, object]  # family → the pipeline as MLflow loads it
    client: MlflowClient

    def expected(self, family: str, records: list[dict]) -> list[int]:
        return [int(v) for v in self.pipelines[family].predict(training_frame(records))]


@pytest.fixture(scope="module")
def registry(mlflow_server, tmp_path_factory, real_frame) -> Registry:
    """One registered model, a LightGBM and an extra-trees version trained on real rows."""
    tmp = tmp_path_factory.mktemp("shadow-registry")
    settings = training_settings(
        tmp, mlflow_server.url, "covertype-shadow", env={"COVERTYPE_SERVE_BUDGET_US": 0}
    )
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=2)
    versions = {
        family: train(settings, candidates=[candidate]).version
        for family, candidate in FAMILIES.items()
    }
    mlflow.set_tracking_uri(mlflow_server.url)
    name = settings.mlflow.model_name
    pipelines = {
        family: mlflow.sklearn.load_model(f"models:/{name}/{version}")
        for family, version in versions.items()
    }
    return Registry(mlflow_server.url, name, versions, pipelines, MlflowClient(mlflow_server.url))


@pytest.fixture(scope="module")
def check_records(real_frame) -> list[dict]:
    return records_of(real_frame.iloc[CHECK_ROWS])


@pytest.fixture
def serve(tmp_path):
    """Factory: a `covertype serve` process of the registry's model, stopped at teardown."""
    started: list[ServerProcess] = []

    def start(registry: Registry, **env: str) -> ServerProcess:
        port = free_port()
        server = ServerProcess(
            ["serve", "--port", str(port)],
            env={
                "COVERTYPE_HOME": str(tmp_path / "serve-home"),
                "MLFLOW_TRACKING_URI": registry.url,
                "COVERTYPE_MODEL_NAME": registry.name,
                "COVERTYPE_SERVE_WATCH_SECONDS": "0.3",
                "COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
            }
            | env,
            cwd=tmp_path,
            log_path=tmp_path / f"serve-{port}.log",
        )
        started.append(server)
        return server.start(ready_path="/ready", timeout=120)

    yield start
    for server in started:
        server.stop()


def challenger_shown(url: str) -> dict | None:
    return httpx.get(url + "/model", timeout=10).json()["challenger"]


def rows_of(url: str, table: sa.Table, prefix: str) -> list[dict]:
    """The rows of `table` whose request id starts with `prefix`, in order."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table.name):
                return []
            query = sa.select(table).where(table.c.request_id.startswith(prefix))
            return [dict(r) for r in conn.execute(query.order_by(table.c.id)).mappings()]
    finally:
        engine.dispose()


def fresh_aliases() -> dict[str, str]:
    """Aliases of this test's own: moving them disturbs no other test of the model."""
    tag = uuid.uuid4().hex[:6]
    return {"champion": f"champ-{tag}", "challenger": f"chall-{tag}"}


def serve_pair(serve, registry, champion: str, challenger: str, **env):
    """The API serving `champion` and shadowing `challenger` under aliases of its own."""
    aliases = fresh_aliases()
    registry.client.set_registered_model_alias(registry.name, aliases["champion"], champion)
    registry.client.set_registered_model_alias(registry.name, aliases["challenger"], challenger)
    server = serve(
        registry,
        COVERTYPE_MODEL_ALIAS=aliases["champion"],
        COVERTYPE_CHALLENGER_ALIAS=aliases["challenger"],
        **env,
    )
    return aliases, server


def messages(server: ServerProcess) -> list[dict]:
    import json

    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


# ---------------------------------------------------------------- the alias's life


def test_the_challenger_alias_is_loaded_shadowed_and_dropped_while_the_champion_serves_on(
    serve, registry, check_records, data_db_url
):
    champion, challenger = registry.versions["lightgbm"], registry.versions["extra_trees"]
    aliases = fresh_aliases()
    registry.client.set_registered_model_alias(registry.name, aliases["champion"], champion)
    engine = db.make_engine(data_db_url)  # the ledger's moves, read by the API at its start
    db.ensure_schema(engine)
    with engine.begin() as conn:
        for action in (ledger.PROMOTE, ledger.CHALLENGE, ledger.PROMOTE):
            move = ledger.Move(registry.name, "champion", action, "1", "2", "test", "why")
            ledger.record(conn, move)
    engine.dispose()
    server = serve(
        registry,
        COVERTYPE_MODEL_ALIAS=aliases["champion"],
        COVERTYPE_CHALLENGER_ALIAS=aliases["challenger"],
        COVERTYPE_DATA_DB_URL=data_db_url,
    )
    first = httpx.get(server.url + "/model").json()
    assert first["version"] == champion and first["challenger"] is None
    counted = wait_for(
        lambda: (
            (s := metric_samples(server.url))
            and sample(s, "covertype_releases_total", action="promote") == 2
            and s
        ),
        30,
        "the ledger's gauges",
    )
    assert sample(counted, "covertype_releases_total", action="challenge") == 1
    assert sample(counted, "covertype_releases_total", action="rollback") == 0
    gauge = {"model_name": registry.name, "alias": aliases["challenger"]}
    assert sample(counted, "covertype_challenger_version", **gauge) == 0

    def move_challenger(version: str | None) -> None:
        if version is None:
            registry.client.delete_registered_model_alias(registry.name, aliases["challenger"])
        else:
            registry.client.set_registered_model_alias(
                registry.name, aliases["challenger"], version
            )

    with PredictLoad(server.url, check_records[:100], clients=2) as load:
        move_challenger(challenger)
        shown = wait_for(lambda: challenger_shown(server.url), 60, "the challenger loaded")
        assert (shown["version"], shown["alias"]) == (challenger, aliases["challenger"])
        assert shown["family"] == "extra_trees" and shown["predictor"] == "fast"
        assert shown["run_id"] and shown["serving_cost"]["single_row_us"] > 0
        assert shown["shadow"]["share"] == 1.0

        # Requests of ours, beside the load's: each answered by the champion, shadowed.
        singles, batch = check_records[:30], check_records[100:400]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answers = [
                client.post("/predict", json=r, headers={"X-Request-ID": f"ours-{k:02d}"}).json()
                for k, r in enumerate(singles)
            ]
            many = client.post("/predict/batch", json=batch, headers={"X-Request-ID": "ours-b"})
        records = singles + batch
        answers += many.json()
        ours = registry.expected("lightgbm", records)
        assert [a["cover_type"] for a in answers] == ours
        assert {a["model_version"] for a in answers} == {champion}
        shadows = wait_for(
            lambda: len(r := rows_of(data_db_url, db.shadow_predictions, "ours-")) == 330 and r,
            60,
            "the shadow rows",
        )
        logged = wait_for(
            lambda: len(r := rows_of(data_db_url, db.predictions, "ours-")) == 330 and r,
            30,
            "the prediction log's rows",
        )
        assert [r["request_id"] for r in shadows] == [r["request_id"] for r in logged]
        assert [r["champion_cover_type"] for r in shadows] == [
            r["predicted_cover_type"] for r in logged
        ]
        theirs = registry.expected("extra_trees", records)
        assert [r["challenger_cover_type"] for r in shadows] == theirs
        assert {(r["champion_version"], r["challenger_version"]) for r in shadows} == {
            (champion, challenger)
        }
        assert {r["error"] for r in shadows} == {None}
        assert all(r["challenger_predict_us"] > 0 for r in shadows)
        agreed = sum(a == b for a, b in zip(ours, theirs, strict=True))
        assert 0 < agreed < 330  # two families: mostly the same class, not always
        counted = metric_samples(server.url)
        agree = sample(counted, "covertype_shadow_predictions_total", outcome="agree")
        disagree = sample(counted, "covertype_shadow_predictions_total", outcome="disagree")
        assert agree >= agreed and disagree >= 330 - agreed  # the load's requests too
        assert sample(counted, "covertype_shadow_predictions_total", outcome="error") == 0
        assert sample(counted, "covertype_challenger_version", **gauge) == int(challenger)
        figures = challenger_shown(server.url)["shadow"]
        assert figures["records"] >= 330 and figures["errors"] == 0
        assert figures["agreement_rate"] == pytest.approx(
            agree / (agree + disagree), abs=0.05
        )  # read a moment apart

        # Pointing at the champion's version: nothing to shadow.
        move_challenger(champion)
        wait_for(lambda: challenger_shown(server.url) is None, 30, "the challenger dropped")
        move_challenger(challenger)
        wait_for(lambda: challenger_shown(server.url), 60, "the challenger back")
        move_challenger(None)  # retired or promoted: the alias goes
        wait_for(lambda: challenger_shown(server.url) is None, 30, "the challenger dropped")
        time.sleep(1)  # a few more watcher intervals under load

    assert load.requests > 100 and load.failures() == []
    after = httpx.get(server.url + "/model").json()
    assert (after["version"], after["loaded_at"]) == (champion, first["loaded_at"])
    counted = metric_samples(server.url)
    assert sample(counted, "covertype_challenger_version", **gauge) == 0
    assert sample(counted, "covertype_model_swaps_total") == 0
    assert sample(counted, "covertype_model_loads_total", source="registry", outcome="ok") == 1
    loads = {"source": "registry (challenger)", "outcome": "ok"}
    assert sample(counted, "covertype_model_loads_total", **loads) == 2
    lines = messages(server)
    dropped = [line["reason"] for line in lines if line["message"] == "challenger dropped"]
    assert dropped == [
        f"it points at the version the {aliases['champion']} serves",
        "the alias was removed",
    ]
    assert [line["message"] for line in lines].count("challenger loaded") == 2


def test_a_promoted_challenger_answers_as_champion_and_is_no_longer_shadowed(
    serve, registry, check_records
):
    champion, challenger = registry.versions["lightgbm"], registry.versions["extra_trees"]
    aliases, server = serve_pair(serve, registry, champion, challenger)
    wait_for(lambda: challenger_shown(server.url), 60, "the challenger loaded")

    def promoted() -> bool:
        info = httpx.get(server.url + "/model").json()
        return info["version"] == challenger and info["challenger"] is None

    with PredictLoad(server.url, check_records[:100], clients=2) as load:
        # The champion alias moves first; the challenger alias still points at it.
        registry.client.set_registered_model_alias(registry.name, aliases["champion"], challenger)
        wait_for(promoted, 60, "the challenger promoted")
        registry.client.delete_registered_model_alias(registry.name, aliases["challenger"])
        time.sleep(1)  # a few watcher intervals more
    assert load.requests > 50 and load.failures() == []
    assert promoted()
    rows = check_records[100:200]
    answers = httpx.post(server.url + "/predict/batch", json=rows).json()
    assert {a["model_version"] for a in answers} == {challenger}
    assert [a["cover_type"] for a in answers] == registry.expected("extra_trees", rows)
    lines = messages(server)
    dropped = [line["reason"] for line in lines if line["message"] == "challenger dropped"]
    assert dropped == [f"it points at the version the {aliases['champion']} serves"]
    [swap] = [line for line in lines if line["message"] == "model swapped in"]
    assert swap["previous_version"] == champion and swap["model"].endswith(f"/{challenger}")
    counted = metric_samples(server.url)
    gauge = {"model_name": registry.name, "alias": aliases["challenger"]}
    assert sample(counted, "covertype_challenger_version", **gauge) == 0


def test_the_api_gathers_the_shadowed_requests_as_its_settings_say(serve, registry, check_records):
    champion, challenger = registry.versions["lightgbm"], registry.versions["extra_trees"]
    gather = {"COVERTYPE_SHADOW_GATHER_RECORDS": "5", "COVERTYPE_SHADOW_GATHER_SECONDS": "60"}
    _, server = serve_pair(
        serve, registry, champion, challenger, COVERTYPE_SERVE_WORKERS="1", **gather
    )
    wait_for(lambda: challenger_shown(server.url), 60, "the challenger loaded")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for record in check_records[:4]:
            assert client.post("/predict", json=record).status_code == 200
        time.sleep(0.5)  # time to predict them; the gathering holds them (60 s)
        waiting = challenger_shown(server.url)["shadow"]
        assert (waiting["records"], waiting["queued_requests"]) == (0, 4)
        assert client.post("/predict", json=check_records[4]).status_code == 200
    done = wait_for(
        lambda: (s := challenger_shown(server.url)["shadow"])["records"] == 5 and s,
        30,
        "the five records predicted",
    )
    assert done["queued_requests"] == 0 and done["errors"] == 0
    counted = metric_samples(server.url)
    assert sample(counted, "covertype_shadow_predict_seconds_count", role="challenger") == 5


# ---------------------------------------------------------------- a challenger that fails


def test_a_challenger_that_cannot_be_loaded_is_counted_and_the_champion_answers_on(
    serve, registry, check_records, real_frame, tmp_path
):
    champion = registry.versions["lightgbm"]
    aliases = fresh_aliases()
    registry.client.set_registered_model_alias(registry.name, aliases["champion"], champion)
    # A version saved as a pickle: the API refuses to unpack it (it would run any code).
    rows = real_frame.iloc[:1000]
    pipeline = fit_pipeline(
        *FAMILIES["lightgbm"], training_frame(records_of(rows)), rows[schema.LABEL].to_numpy(), 0
    )
    mlflow.set_tracking_uri(registry.url)
    mlflow.set_experiment(f"covertype-shadow-pickle-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(pipeline, name="model", serialization_format="cloudpickle")
    pickled = str(mlflow.register_model(info.model_uri, registry.name).version)
    server = serve(
        registry,
        COVERTYPE_MODEL_ALIAS=aliases["champion"],
        COVERTYPE_CHALLENGER_ALIAS=aliases["challenger"],
        COVERTYPE_HOME=str(tmp_path / "failing-home"),
    )
    failed = {"source": "registry (challenger)", "outcome": "failed"}
    with PredictLoad(server.url, check_records[:100], clients=2) as load:
        registry.client.set_registered_model_alias(registry.name, aliases["challenger"], pickled)
        wait_for(
            lambda: sample(metric_samples(server.url), "covertype_model_loads_total", **failed),
            60,
            "the challenger's failed load",
        )
        time.sleep(3)  # ten watcher intervals: retried after 1, 2, 4... of them, not each
        attempts = sample(metric_samples(server.url), "covertype_model_loads_total", **failed)
    assert 1 <= attempts <= 5
    assert load.requests > 50 and load.failures() == []
    info_now = httpx.get(server.url + "/model").json()
    assert info_now["version"] == champion and info_now["challenger"] is None
    failure = "challenger load failed; keeping the model in memory"
    errors = [line for line in messages(server) if line["message"] == failure]
    assert errors and "pickle" in errors[0]["error"]
    assert errors[0]["model"] == f"models:/{registry.name}/{pickled}"


# ---------------------------------------------------------------- several workers


def test_each_worker_shadows_with_its_own_challenger_and_the_counts_add_up(
    serve, registry, check_records
):
    champion, challenger = registry.versions["lightgbm"], registry.versions["extra_trees"]
    aliases, server = serve_pair(serve, registry, champion, challenger, COVERTYPE_SERVE_WORKERS="2")

    def every_worker_shadows() -> bool:  # a new connection each: either worker answers
        return all((challenger_shown(server.url) or {}).get("version") == challenger
                   for _ in range(10))  # fmt: skip

    wait_for(every_worker_shadows, 120, "both workers' challengers")
    rows = check_records[:40]
    for row in rows:
        answer = httpx.post(server.url + "/predict", json=row)
        assert answer.status_code == 200 and answer.json()["model_version"] == champion

    def outcomes() -> float:
        counted = metric_samples(server.url)
        return sum(
            sample(counted, "covertype_shadow_predictions_total", outcome=k)
            for k in ("agree", "disagree", "error")
        )

    wait_for(lambda: outcomes() == 40, 30, "40 shadowed records over both workers")
    counted = metric_samples(server.url)
    assert sample(counted, "covertype_shadow_predictions_total", outcome="error") == 0
    assert sample(counted, "covertype_shadow_predict_seconds_count", role="champion") == 40
    by_worker = [
        value
        for (name, labels), value in counted.items()
        if name == "covertype_challenger_version"
        and dict(labels).get("alias") == aliases["challenger"]
    ]
    assert by_worker == [int(challenger), int(challenger)]  # one gauge per live worker
