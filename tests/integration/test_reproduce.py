"""`covertype reproduce` against a real MLflow server (local; MariaDB + S3 on SeaweedFS in CI),
a real data DB (SQLite; MariaDB in CI) and the real command: a version refitted from its
snapshot and from the DB, an edited row and a dropped DB, and every input it refuses."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from mlflow import MlflowClient

from covertype.reproduce.run import reproduce as run_reproduction
from covertype.train import snapshot, train
from tests.support.data import fill_data_db, training_settings
from tests.support.environment import run_cli
from tests.support.servers import free_port

GIVEN = [("lightgbm", {"n_estimators": 30, "num_leaves": 15})]


def cli_env(settings, home: Path) -> dict[str, str]:
    return {
        "COVERTYPE_HOME": str(home),
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "COVERTYPE_MODEL_NAME": settings.mlflow.model_name,
        "COVERTYPE_EXPERIMENT_NAME": settings.mlflow.experiment_name,
        "COVERTYPE_DATA_DB_URL": settings.data_db,
        "COVERTYPE_MLFLOW_ATTEMPTS": "1",
    }


def reproduce(settings, tmp_path: Path, version: str, source: str = "snapshot", env=None):
    args = ["reproduce", version, "--from", source]
    return run_cli(args, cli_env(settings, tmp_path / "cli") | (env or {}), tmp_path, timeout=300)


def error_line(done) -> str:
    """The one line a failed command ends with (the JSON logs before it are not for users)."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("covertype reproduce:")]
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


def snapshot_runs(client: MlflowClient, settings) -> list:
    experiment = client.get_experiment_by_name(
        snapshot.experiment_name(settings.mlflow.experiment_name)
    )
    return client.search_runs([experiment.experiment_id])


def test_a_version_is_rebuilt_from_its_snapshot_and_from_the_db(
    any_mlflow_server, tmp_path, real_frame, request
):
    s3 = getattr(any_mlflow_server, "s3", None)
    data_db = request.getfixturevalue("mysql_db_url") if s3 else f"sqlite:///{tmp_path / 'data.db'}"
    settings = training_settings(
        tmp_path, any_mlflow_server.url, env={"COVERTYPE_DATA_DB_URL": data_db}
    )
    fill_data_db(settings.data_db, real_frame, rows=3000, batches=3)
    first = train(settings, n_iter=3)  # a random search: its draws are checked again
    client = MlflowClient(any_mlflow_server.url)

    # Everything that made it, on the run and the version.
    version = client.get_model_version(settings.mlflow.model_name, first.version)
    run = client.get_run(first.run_id)
    for tags in (version.tags, run.data.tags):
        assert len(tags["manifest.data_digest"]) == 64
        assert tags["manifest.seed"] == "0" and tags["manifest.lib.lightgbm"] != "unknown"
        assert tags["manifest.snapshot_reused"] == "none"
    inputs = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"cover_type.train", "cover_type.validation", "cover_type.holdout"}
    assert inputs["cover_type.holdout"] == version.tags["manifest.holdout_digest"][:16]
    stored = snapshot_runs(client, settings)
    assert len(stored) == 3
    if s3 is not None:  # the rows went through MLflow into the S3 bucket
        keys = s3.objects()  # a bucket other tests train into too
        for run in stored:
            assert any(k.endswith(f"{run.info.run_id}/artifacts/{snapshot.FILE}") for k in keys)

    done = reproduce(settings, tmp_path, first.version, "snapshot")  # the command
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "holdout classes" in done.stdout and "DIFFERS" not in done.stdout
    assert "from snapshot: bit-identical" in done.stdout
    # The function under it (a command's start-up is seconds of imports).
    from_db = run_reproduction(settings, first.version, "db")
    assert from_db.identical and from_db.summary.startswith("bit-identical"), from_db.table()
    version = client.get_model_version(settings.mlflow.model_name, first.version)
    assert version.tags["reproduced.result"] == "identical"
    assert version.tags["reproduced.from"] == "db"
    recorded = client.get_run(version.tags["reproduced.run_id"])
    assert recorded.data.tags["reproduces.version"] == first.version
    assert recorded.data.metrics["max_score_difference"] == 0

    # The same rows again: the same shares, referenced, not stored twice.
    second = train(settings, candidates=GIVEN)
    assert len(snapshot_runs(client, settings)) == 3
    again = client.get_model_version(settings.mlflow.model_name, second.version).tags
    assert again["manifest.snapshot_reused"] == "train,validation,holdout"

    # One row edited in the data DB: the DB no longer rebuilds it; the snapshot still does.
    engine = sa.create_engine(settings.data_db)
    with engine.begin() as conn:
        key = conn.execute(
            sa.text("SELECT row_key FROM cover_type WHERE batch_number = 2 LIMIT 1")
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE cover_type SET Elevation = Elevation + 1 WHERE row_key = :k"),
            {"k": key},
        )
    engine.dispose()
    done = reproduce(settings, tmp_path, first.version, "db")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "1 row changed (batch 2)" in done.stdout and "not refitted" in done.stdout
    tags = client.get_model_version(settings.mlflow.model_name, first.version).tags
    assert tags["reproduced.result"] == "differs"

    # The data DB gone entirely: the snapshot is all it takes (it never reads the DB).
    if s3 is None:
        Path(settings.data_db.removeprefix("sqlite:///")).unlink()
    else:
        with sa.create_engine(settings.data_db).begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {sa.engine.make_url(settings.data_db).database}")
    rebuilt = run_reproduction(settings, first.version, "snapshot")
    assert rebuilt.identical, rebuilt.table()


def test_what_cannot_be_reproduced_is_refused_in_one_line(mlflow_server, tmp_path, real_frame):
    settings = training_settings(tmp_path, mlflow_server.url)
    fill_data_db(settings.data_db, real_frame, rows=2000, batches=2)
    first = train(settings, candidates=GIVEN)
    client = MlflowClient(mlflow_server.url)
    artifacts = Path(mlflow_server.cwd) / "home" / "mlartifacts"

    def refused(version: str, *needles: str, env=None) -> None:
        done = reproduce(settings, tmp_path, version, env=env)
        assert done.returncode == 2, done.stdout + done.stderr[-3000:]
        for needle in needles:
            assert needle in error_line(done), error_line(done)

    refused("99", f"{settings.mlflow.model_name} has no version '99'; its versions: 1")
    done = reproduce(settings, tmp_path, first.version, source="yesterday")
    assert done.returncode == 2 and "--from: 'yesterday' not allowed; allowed: snapshot, db" in (
        error_line(done)
    )

    # The snapshot's files, corrupted then missing.
    holdout = client.get_model_version(settings.mlflow.model_name, first.version).tags[
        "manifest.holdout_digest"
    ]
    [run] = [
        r for r in snapshot_runs(client, settings) if r.data.tags[snapshot.DIGEST_TAG] == holdout
    ]
    [parquet] = artifacts.glob(f"*/{run.info.run_id}/artifacts/{snapshot.FILE}")
    original = parquet.read_bytes()
    parquet.write_bytes(original[:-10] + b"0123456789")
    refused(first.version, "the holdout share's snapshot runs:/", "is corrupted: its SHA-256 is")
    parquet.unlink()
    refused(first.version, "cannot be read")
    parquet.write_bytes(original)

    # A version of the release before manifests: said so, and what is still checked.
    [manifest] = artifacts.glob(f"*/{first.run_id}/artifacts/manifest.json")
    manifest.unlink()
    refused(
        first.version,
        "has no manifest (trained before reproducible versions)",
        "batches 1,2 have the same keys as its run recorded",
    )

    done = reproduce(
        settings,
        tmp_path,
        first.version,
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},
    )
    assert done.returncode != 0 and "MLflow" in error_line(done), done.stderr[-2000:]

    # Nothing of the refusals was recorded.
    assert (
        "reproduced.result"
        not in client.get_model_version(settings.mlflow.model_name, first.version).tags
    )
    experiment = client.get_experiment_by_name(settings.mlflow.experiment_name)
    assert not client.search_runs([experiment.experiment_id], "tags.kind = 'reproduction'")
