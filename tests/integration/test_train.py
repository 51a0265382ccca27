"""Training against a real MLflow server process (local, and MariaDB + S3 in CI)."""

import json
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.metrics import f1_score

from covertype import db, schema
from covertype.release import ledger
from covertype.settings import Settings
from covertype.tracking.client import TrackingUnreachable
from covertype.train import TrainingError, load_rows, split, train
from tests.support.data import fill_data_db, training_settings
from tests.support.servers import S3_BUCKET, S3_TEST_ENV, free_port

WEAK = ("lightgbm", {"n_estimators": 2, "num_leaves": 3, "learning_rate": 0.05})
STRONG = ("lightgbm", {"n_estimators": 150, "num_leaves": 63, "learning_rate": 0.1})


def settings_for(tmp_path, server) -> Settings:
    retries = {"COVERTYPE_MLFLOW_ATTEMPTS": 2, "COVERTYPE_MLFLOW_BACKOFF_SECONDS": 0.1}
    return training_settings(tmp_path, server.url, env=retries)


def test_training_tracks_everything_and_registers_the_champion(
    any_mlflow_server, tmp_path, real_frame
):
    settings = settings_for(tmp_path, any_mlflow_server)
    fill_data_db(settings.data_db, real_frame, rows=5000, batches=3)
    lines: list[str] = []
    result = train(settings, n_iter=3, progress=lines.append)

    assert lines[0].startswith("training on ") and "of batches 1,2,3; 3 candidates" in lines[0]
    assert [line[:5] for line in lines[1:4]] == ["[1/3]", "[2/3]", "[3/3]"]
    assert result.promoted
    assert result.decision == f"promoted: {settings.mlflow.model_name} had no champion yet"
    assert result.rows == 5000 and 700 < result.holdout_rows < 1300
    client = MlflowClient(any_mlflow_server.url)

    # Parent run: data tags, lineage input, best metrics, confusion matrix, the model.
    parent = client.get_run(result.run_id)
    assert parent.data.tags["data.rows"] == "5000" and parent.data.tags["data.batches"] == "1,2,3"
    assert parent.data.metrics["holdout_macro_f1"] == pytest.approx(result.holdout_macro_f1)
    for k in range(7):
        assert f"holdout_f1_class_{k}" in parent.data.metrics
    inputs = {i.dataset.name: i.dataset for i in parent.inputs.dataset_inputs}
    assert sorted(inputs) == ["cover_type.holdout", "cover_type.train", "cover_type.validation"]
    assert inputs["cover_type.train"].digest == parent.data.tags["manifest.train_digest"][:16]
    rows = [json.loads(d.profile)["num_rows"] for d in inputs.values()]
    assert sum(rows) == 5000 and json.loads(inputs["cover_type.holdout"].profile)["num_rows"] == (
        result.holdout_rows
    )
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.csv", "confusion_matrix.json"} <= artifacts

    # One child run per candidate, each with its validation metrics and confusion matrix
    # (the holdout judges only the refit winner, in the parent run).
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert sorted(c.data.tags["family"] for c in children) == ["extra_trees", "lightgbm", "svm"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"validation_macro_f1", "validation_f1_class_0", "fit_seconds"} <= set(
            child.data.metrics
        )
        assert not any(k.startswith("holdout") for k in child.data.metrics)
        # Timed on the serving path: what the budget is read against.
        cost = child.data.metrics["serving_single_row_us"]
        assert 0 < cost <= child.data.metrics["serving_single_row_p90_us"]
        assert child.data.metrics["serving_batch_row_us"] > 0
        within = cost <= settings.serve.budget_us
        assert child.data.tags["serving.within_budget"] == str(within).lower()
        assert "confusion_matrix.png" in {a.path for a in client.list_artifacts(child.info.run_id)}

    # The registered version carries the gate's decision and serving metadata; alias set.
    version = client.get_model_version_by_alias(settings.mlflow.model_name, "champion")
    assert version.version == result.version
    assert version.tags["gate.decision"] == result.decision
    assert version.tags["run_id"] == result.run_id
    assert version.tags["trained_batches"] == "1,2,3"
    assert 0 < float(version.tags["serving.single_row_us"]) <= settings.serve.budget_us
    assert version.tags["gate.budget_us"] == f"{settings.serve.budget_us:g}"
    s3 = getattr(any_mlflow_server, "s3", None)
    if s3 is not None:  # artifacts went through the server into the S3 bucket
        keys = {o["Key"] for o in _bucket_objects(s3)}
        assert any(k.endswith(f"{result.run_id}/artifacts/confusion_matrix.png") for k in keys)
        assert any(k.endswith("model.skops") for k in keys), sorted(keys)[:20]
    model = mlflow.sklearn.load_model(f"models:/{settings.mlflow.model_name}@champion")
    holdout = split(load_rows(db.make_engine(settings.data_db)), settings).holdout
    predicted = model.predict(holdout.X)
    f1 = f1_score(holdout.y, predicted, average="macro", labels=range(7))
    assert f1 == pytest.approx(result.holdout_macro_f1)


def _bucket_objects(s3) -> list[dict]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3.url,
        region_name="us-east-1",
        aws_access_key_id=S3_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET)
    return [o for page in pages for o in page.get("Contents", [])]


def test_the_gate_moves_the_alias_only_for_a_better_model(mlflow_server, tmp_path, real_frame):
    settings = settings_for(tmp_path, mlflow_server)
    fill_data_db(settings.data_db, real_frame, rows=4000, batches=2)
    first = train(settings, candidates=[WEAK])
    better = train(settings, candidates=[STRONG])
    weaker = train(settings, candidates=[WEAK])

    assert first.promoted and better.promoted and not weaker.promoted
    # The first is champion at once; the better one waits as challenger (shadow mode).
    assert (first.alias, better.alias, weaker.alias) == ("champion", "challenger", None)
    assert better.champion_version == first.version
    assert better.holdout_macro_f1 > better.champion_macro_f1
    assert weaker.champion_version == first.version
    assert weaker.decision.startswith(f"kept champion v{first.version}: its macro F1 ")
    client = MlflowClient(mlflow_server.url)
    assert client.get_registered_model(settings.mlflow.model_name).aliases == {
        "champion": first.version,
        "challenger": better.version,
    }
    tags = client.get_model_version(settings.mlflow.model_name, weaker.version).tags
    assert tags["gate.promoted"] == "false"
    assert float(tags["gate.champion_macro_f1"]) == pytest.approx(
        weaker.champion_macro_f1, abs=1e-6
    )
    assert tags["gate.champion_version"] == first.version
    promoted_tags = client.get_model_version(settings.mlflow.model_name, better.version).tags
    assert promoted_tags["gate.promoted"] == "true"
    assert promoted_tags["gate.decision"] == better.decision


def test_direct_mode_makes_a_better_model_champion_at_once(mlflow_server, tmp_path, real_frame):
    settings = training_settings(
        tmp_path, mlflow_server.url, env={"COVERTYPE_RELEASE_MODE": "direct"}
    )
    fill_data_db(settings.data_db, real_frame, rows=4000, batches=2)
    first = train(settings, candidates=[WEAK])
    better = train(settings, candidates=[STRONG])
    assert better.alias == "champion" and better.decision.startswith("promoted: macro F1 ")
    client = MlflowClient(mlflow_server.url)
    assert client.get_registered_model(settings.mlflow.model_name).aliases == {
        "champion": better.version
    }
    engine = db.make_engine(settings.data_db)
    moved = [(m.action, m.from_version, m.to_version, m.actor) for m in ledger.moves(
        engine, settings.mlflow.model_name)]  # fmt: skip
    engine.dispose()
    assert moved == [
        ("promote", None, first.version, f"training run {first.run_id}"),
        ("promote", first.version, better.version, f"training run {better.run_id}"),
    ]


def test_the_champion_predicts_the_same_in_a_fresh_process(mlflow_server, tmp_path, real_frame):
    settings = settings_for(tmp_path, mlflow_server)
    fill_data_db(settings.data_db, real_frame, rows=4000, batches=2)
    result = train(settings, candidates=[STRONG])
    rows = real_frame.iloc[10000:12000][list(schema.FEATURES)]
    rows.to_json(tmp_path / "rows.json", orient="records")
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({mlflow_server.url!r})\n"
        f"model = mlflow.pyfunc.load_model('models:/{settings.mlflow.model_name}@champion')\n"
        f"rows = pd.read_json({str(tmp_path / 'rows.json')!r}, orient='records')\n"
        "print(json.dumps([int(v) for v in model.predict(rows)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    here = mlflow.sklearn.load_model(f"runs:/{result.run_id}/model").predict(rows)
    assert fresh == here.tolist()
    assert set(fresh) <= set(range(7))


def test_a_failed_candidate_is_recorded_and_the_search_goes_on(mlflow_server, tmp_path, real_frame):
    settings = settings_for(tmp_path, mlflow_server)
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=1)
    lines: list[str] = []
    broken = ("lightgbm", {"num_leaves": 1})  # LightGBM refuses fewer than 2 leaves
    result = train(settings, candidates=[broken, STRONG], progress=lines.append)
    assert lines[1].startswith("[1/2] lightgbm failed: ")
    assert result.params == STRONG[1]
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment_name)
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    status = sorted((c.info.status, c.data.params.get("num_leaves")) for c in children)
    assert status == [("FAILED", "1"), ("FINISHED", "63")]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "num_leaves" in failed.data.tags["error"]


# A wide gap in serving cost between two real candidates (a budget between them holds on a
# loaded machine): 2 trees of 3 leaves cost the encoder's ~15 µs a row, 400 × 7 trees of 63
# leaves several hundred.
CHEAP = ("lightgbm", {"n_estimators": 2, "num_leaves": 3, "learning_rate": 0.05})
DEAR = ("lightgbm", {"n_estimators": 400, "num_leaves": 63, "learning_rate": 0.1})
BUDGET_US = 100


def test_a_candidate_over_the_serving_budget_is_never_the_winner(
    mlflow_server, tmp_path, real_frame
):
    settings = training_settings(
        tmp_path, mlflow_server.url, env={"COVERTYPE_SERVE_BUDGET_US": BUDGET_US}
    )
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=1)
    lines: list[str] = []
    result = train(settings, candidates=[DEAR, CHEAP], progress=lines.append)
    assert result.params == CHEAP[1] and result.promoted
    client = MlflowClient(mlflow_server.url)
    children = {
        c.data.params["n_estimators"]: c
        for c in client.search_runs(
            [client.get_experiment_by_name(settings.mlflow.experiment_name).experiment_id],
            f"tags.mlflow.parentRunId = '{result.run_id}'",
        )
    }
    dear, cheap = children["400"], children["2"]
    # The dearer candidate was the better one: only the budget kept it out.
    assert dear.data.metrics["validation_macro_f1"] > cheap.data.metrics["validation_macro_f1"]
    assert dear.data.metrics["serving_single_row_us"] > BUDGET_US
    assert dear.data.tags["serving.within_budget"] == "false"
    assert f"over the {BUDGET_US} µs budget" in lines[1] and "over the" not in lines[2]
    assert cheap.data.metrics["serving_single_row_us"] <= BUDGET_US
    version = client.get_model_version(settings.mlflow.model_name, result.version)
    assert float(version.tags["serving.single_row_us"]) <= BUDGET_US


def test_no_candidate_within_the_budget_registers_nothing_and_names_the_cheapest(
    mlflow_server, tmp_path, real_frame
):
    settings = training_settings(tmp_path, mlflow_server.url, env={"COVERTYPE_SERVE_BUDGET_US": 1})
    fill_data_db(settings.data_db, real_frame, rows=2000, batches=1)
    with pytest.raises(TrainingError) as raised:
        train(settings, candidates=[DEAR, CHEAP])
    message = str(raised.value)
    assert "no candidate within the serving budget of 1 µs a row (COVERTYPE_SERVE_BUDGET_US)" in (
        message
    )
    assert "the cheapest of 2, lightgbm n_estimators=2" in message, message
    assert "nothing was registered or promoted" in message
    client = MlflowClient(mlflow_server.url)
    assert client.search_model_versions(f"name = '{settings.mlflow.model_name}'") == []


def test_a_champion_over_a_lowered_budget_gives_way_to_one_within_it(
    mlflow_server, tmp_path, real_frame
):
    unbounded = training_settings(tmp_path, mlflow_server.url, env={"COVERTYPE_SERVE_BUDGET_US": 0})
    fill_data_db(unbounded.data_db, real_frame, rows=3000, batches=1)
    first = train(unbounded, candidates=[DEAR])
    assert first.promoted  # no budget: any cost
    lowered = unbounded.model_copy(
        update={"serve": unbounded.serve.model_copy(update={"budget_us": BUDGET_US})}
    )
    second = train(lowered, candidates=[CHEAP])
    assert second.holdout_macro_f1 < first.holdout_macro_f1  # worse, yet cheap enough
    assert second.promoted, second.decision
    assert second.decision.startswith(f"promoted: champion v{first.version} costs ")
    assert second.decision.endswith(f"µs a row, over the budget of {BUDGET_US} µs")


def test_every_candidate_failing_registers_nothing(mlflow_server, tmp_path, real_frame):
    settings = settings_for(tmp_path, mlflow_server)
    fill_data_db(settings.data_db, real_frame, rows=2000, batches=1)
    with pytest.raises(TrainingError, match="all 1 candidates failed"):
        train(settings, candidates=[("lightgbm", {"num_leaves": 1})])
    assert (
        MlflowClient(mlflow_server.url).search_model_versions(
            f"name = '{settings.mlflow.model_name}'"
        )
        == []
    )


def test_no_rows_is_a_clear_error_and_nothing_is_registered(mlflow_server, tmp_path):
    settings = settings_for(tmp_path, mlflow_server)
    with pytest.raises(TrainingError, match=r"cover_type in the data DB sqlite:///.* has no rows"):
        train(settings, n_iter=1)
    assert (
        MlflowClient(mlflow_server.url).search_model_versions(
            f"name = '{settings.mlflow.model_name}'"
        )
        == []
    )


def test_a_single_class_is_a_clear_error(mlflow_server, tmp_path, real_frame):
    settings = settings_for(tmp_path, mlflow_server)
    one_class = real_frame[real_frame[schema.LABEL] == 3].head(300)
    fill_data_db(settings.data_db, one_class, rows=300, batches=1)
    with pytest.raises(TrainingError, match="300 rows of a single class \\(Cottonwood/Willow\\)"):
        train(settings, n_iter=1)


def test_unknown_family_names_what_is_allowed(mlflow_server, tmp_path):
    with pytest.raises(TrainingError, match="allowed: lightgbm, extra_trees, svm"):
        train(settings_for(tmp_path, mlflow_server), families=["xgboost"])


def test_an_unreachable_tracking_server_fails_with_its_url(tmp_path, real_frame):
    url = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(tmp_path, type("S", (), {"url": url}))
    fill_data_db(settings.data_db, real_frame, rows=1000, batches=1)
    with pytest.raises(TrackingUnreachable, match=f"MLflow tracking server {url} unreachable"):
        train(settings, n_iter=1)
