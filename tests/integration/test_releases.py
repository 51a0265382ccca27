"""Releases against a real MLflow server and a real data DB: the gate names a challenger,
the review promotes or retires it on the next batch's rows, a champion forced by hand is
rolled back automatically, `covertype rollback` and `promote` refuse what the API could not
serve, and every move is one ledger row (`covertype releases`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from covertype import db
from covertype.release import ledger, review
from covertype.release.moves import move
from covertype.settings import Settings
from covertype.tracking.client import TrackingUnreachable
from covertype.train import train
from tests.support.data import fill_data_db, training_settings
from tests.support.environment import run_cli
from tests.support.servers import free_port

WEAK = ("lightgbm", {"n_estimators": 2, "num_leaves": 3, "learning_rate": 0.05})
STRONG = ("lightgbm", {"n_estimators": 150, "num_leaves": 63, "learning_rate": 0.1})
ROWS = 4000  # batches 1 and 2, what the versions train on; later batches are fresh


@pytest.fixture
def settings(tmp_path, mlflow_server, real_frame) -> Settings:
    found = training_settings(tmp_path, mlflow_server.url, env={"COVERTYPE_MLFLOW_ATTEMPTS": 2})
    fill_data_db(found.data_db, real_frame, rows=ROWS, batches=2)
    return found


def add_batch(settings: Settings, real_frame, number: int, rows: int = 2000) -> None:
    start = ROWS + (number - 3) * rows
    fill_data_db(settings.data_db, real_frame, rows=rows, batches=1, start=start,
                 batch_number=number)  # fmt: skip


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "COVERTYPE_HOME": str(settings.home),
        "COVERTYPE_DATA_DB_URL": settings.data_db,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "COVERTYPE_MODEL_NAME": settings.mlflow.model_name,
        "COVERTYPE_EXPERIMENT_NAME": settings.mlflow.experiment_name,
    }


def aliases(settings: Settings) -> dict[str, str]:
    client = MlflowClient(settings.mlflow.tracking_uri)
    return dict(client.get_registered_model(settings.mlflow.model_name).aliases)


def moves(settings: Settings) -> list[tuple]:
    engine = db.make_engine(settings.data_db)
    try:
        found = ledger.moves(engine, settings.mlflow.model_name)
    finally:
        engine.dispose()
    return [(m.alias, m.action, m.from_version, m.to_version) for m in found]


def test_a_challenger_is_named_waits_and_is_promoted_on_the_next_batch(
    settings, real_frame, tmp_path
):
    first = train(settings, candidates=[WEAK])
    second = train(settings, candidates=[STRONG])
    assert first.alias == "champion" and second.alias == "challenger", second.decision
    assert second.decision.startswith("challenger: macro F1 ") and "shadowed" in second.decision
    assert aliases(settings) == {"champion": first.version, "challenger": second.version}

    # Batches 1-2 are what both trained on: nothing fresh to judge on, nothing moves.
    said = review.review(settings, "test")
    assert said == [f"challenger v{second.version}: no fresh labelled rows yet"]
    assert aliases(settings) == {"champion": first.version, "challenger": second.version}

    add_batch(settings, real_frame, 3)
    [line] = review.review(settings, "test")
    assert line.startswith(f"promoted v{second.version} over v{first.version}: macro F1 ")
    assert "fresh rows of batch 3" in line and "judged on its measured serving cost" in line
    assert aliases(settings) == {"champion": second.version}
    assert moves(settings) == [
        ("champion", "promote", None, first.version),
        ("challenger", "challenge", None, second.version),
        ("champion", "promote", first.version, second.version),
        ("challenger", "promote", second.version, None),
    ]
    client = MlflowClient(settings.mlflow.tracking_uri)
    tags = client.get_model_version(settings.mlflow.model_name, second.version).tags
    assert tags["release.last_action"] == "promote (challenger)" and tags["release.champion_since"]
    assert client.get_model_version(settings.mlflow.model_name, first.version).tags[
        "release.champion_until"
    ]

    # The promotion is checked on the next batch against the champion it replaced: kept.
    add_batch(settings, real_frame, 4)
    none, line = review.review(settings, "test")
    assert none == "no challenger"
    assert line.startswith(f"kept v{second.version}: macro F1 ") and "batch 4" in line
    assert review.review(settings, "test") == ["no challenger"]  # checked once

    shown = run_cli(["releases"], env_of(settings), tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:5] == ["#", "when", "(UTC)", "alias", "action"]
    assert len(lines) == 5 and f"{first.version} → {second.version}" in lines[3]
    assert "training run " in lines[2] and lines[3].split()[4] == "promote"

    back = run_cli(["rollback", "--reason", "users report odd answers"], env_of(settings), tmp_path)
    assert back.returncode == 0, back.stderr
    assert f"champion {second.version} → {first.version}: users report odd answers" in back.stdout
    assert aliases(settings) == {"champion": first.version}
    assert moves(settings)[-1] == ("champion", "rollback", second.version, first.version)


def test_a_challenger_worse_on_the_next_batch_is_retired_and_never_serves(settings, real_frame):
    champion = train(settings, candidates=[STRONG])
    weak = train(settings, candidates=[WEAK])  # refused by the gate: named by hand below
    assert weak.alias is None and aliases(settings) == {"champion": champion.version}
    client = MlflowClient(settings.mlflow.tracking_uri)
    move(client, settings, alias="challenger", action="challenge", to_version=weak.version,
         actor="test", reason="a weak challenger")  # fmt: skip

    add_batch(settings, real_frame, 3)
    [line] = review.review(settings, "test")
    assert line.startswith(f"retired v{weak.version}: macro F1 ") and "below champion" in line
    assert aliases(settings) == {"champion": champion.version}
    assert moves(settings)[-1] == ("challenger", "retire", weak.version, None)
    tags = client.get_model_version(settings.mlflow.model_name, weak.version).tags
    assert tags["release.last_action"] == "retire (challenger)"
    assert "release.champion_since" not in tags


def test_a_bad_champion_forced_by_hand_is_rolled_back_on_the_next_batch(
    settings, real_frame, tmp_path
):
    good = train(settings, candidates=[STRONG])
    bad = train(settings, candidates=[WEAK])
    forced = run_cli(["promote", bad.version, "--reason", "a test forces it"], env_of(settings),
                     tmp_path)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert aliases(settings) == {"champion": bad.version}

    add_batch(settings, real_frame, 3)
    reviewed = run_cli(["releases", "review"], env_of(settings), tmp_path, timeout=300)
    assert reviewed.returncode == 0, reviewed.stderr
    assert f"rolled back v{bad.version} to v{good.version}: its macro F1 " in reviewed.stdout
    assert "COVERTYPE_ROLLBACK_MARGIN" in reviewed.stdout
    assert aliases(settings) == {"champion": good.version}
    assert moves(settings)[-2:] == [
        ("champion", "promote", good.version, bad.version),
        ("champion", "automatic_rollback", bad.version, good.version),
    ]
    engine = db.make_engine(settings.data_db)
    assert ledger.counts(engine, settings.mlflow.model_name)["automatic_rollback"] == 1
    engine.dispose()
    # After a rollback, nothing is checked again: no ping-pong between the two.
    add_batch(settings, real_frame, 4)
    assert review.review(settings, "test") == ["no challenger"]


def test_manual_moves_refuse_what_the_api_could_not_serve_and_move_nothing(settings, tmp_path):
    import mlflow

    champion = train(settings, candidates=[WEAK])
    client = MlflowClient(settings.mlflow.tracking_uri)
    name = settings.mlflow.model_name
    # A version whose model files are not there, and one saved as pickle (the API loads
    # only skops).
    empty = client.create_model_version(name, f"runs:/{champion.run_id}/nothing-here",
                                        champion.run_id).version  # fmt: skip
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_experiment(settings.mlflow.experiment_name)
    with mlflow.start_run() as run:
        model = mlflow.sklearn.load_model(f"models:/{name}/{champion.version}")
        mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
    pickled = mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version
    before = moves(settings)

    def refused(args: list[str]) -> str:
        done = run_cli(args, env_of(settings), tmp_path)
        assert done.returncode == 2, (done.stdout, done.stderr)
        [line] = done.stderr.strip().splitlines()[-1:]
        return line

    assert refused(["rollback", "--to", "99", "--reason", "x"]) == (
        f"covertype rollback: {name} has no version '99'; its versions: "
        f"{champion.version}, {empty}, {pickled}"
    )
    assert refused(["rollback", "--to", empty, "--reason", "x"]) == (
        f"covertype rollback: v{empty} has no model files at runs:/{champion.run_id}/nothing-here"
    )
    assert "cannot be served: model is saved as 'cloudpickle'" in refused(
        ["promote", pickled, "--reason", "x"]
    )
    assert "--reason is empty" in refused(["promote", pickled, "--reason", " "])
    assert "no champion before" in refused(["rollback", "--reason", "x"])
    assert f"v{champion.version} is the champion already" in refused(
        ["promote", champion.version, "--reason", "x"]
    )
    assert moves(settings) == before
    assert aliases(settings) == {"champion": champion.version}


def test_mlflow_down_during_a_review_moves_nothing(settings, real_frame):
    first = train(settings, candidates=[WEAK])
    second = train(settings, candidates=[STRONG])
    add_batch(settings, real_frame, 3)
    down = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={
            "tracking_uri": f"http://127.0.0.1:{free_port()}", "backoff_seconds": 0.1,
        })}
    )  # fmt: skip
    with pytest.raises(TrackingUnreachable):
        review.review(down, "test")
    assert aliases(settings) == {"champion": first.version, "challenger": second.version}
    assert len(moves(settings)) == 2
    # The next review, with MLflow back, decides.
    [line] = review.review(settings, "test")
    assert line.startswith(f"promoted v{second.version}")
    engine = db.make_engine(settings.data_db)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.releases)).scalar() == 4
    engine.dispose()
