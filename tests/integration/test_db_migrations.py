"""`covertype db` on real data DBs (SQLite; MariaDB with COVERTYPE_TEST_MYSQL_URL): a DB made
by the releases before migrations is adopted with every row kept, the baseline makes what
create_all made, concurrent upgrades make the schema once."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import mysql

from covertype import db
from covertype.db import lock, schema_version
from tests.support.environment import BIN, clean_env, run_cli
from tests.support.servers import free_port

HEAD = schema_version.head()
FEATURES = (
    "Elevation", "Aspect", "Slope", "Horizontal_Distance_To_Hydrology",
    "Vertical_Distance_To_Hydrology", "Horizontal_Distance_To_Roadways", "Hillshade_9am",
    "Hillshade_Noon", "Hillshade_3pm", "Horizontal_Distance_To_Fire_Points",
)  # fmt: skip


def release_tables(monitoring: bool = True, drift_columns: bool = True) -> sa.MetaData:
    """The tables `db.create_tables` made before migrations, frozen (src/covertype/db.py at
    git 4539cea); `monitoring=False`: the releases before git 0e9f908, which had only
    cover_type and its quarantine; `drift_columns=False`: drift_reports without its last
    three columns."""
    metadata = sa.MetaData()
    serial = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    micro = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

    def features() -> list[sa.Column]:
        return [
            *(sa.Column(name, sa.SmallInteger, nullable=False) for name in FEATURES),
            sa.Column("Wilderness_Area", sa.String(16), nullable=False),
            sa.Column("Soil_Type", sa.String(8), nullable=False),
        ]

    sa.Table(
        "cover_type", metadata,
        sa.Column("row_key", sa.String(32), primary_key=True),
        *features(),
        sa.Column("Cover_Type", sa.SmallInteger, nullable=False),
        sa.Column("batch_number", sa.SmallInteger, nullable=False),
        sa.Column("group_number", sa.SmallInteger, nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip
    sa.Table(
        "cover_type_quarantine", metadata,
        sa.Column("raw_key", sa.String(32), primary_key=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("batch_number", sa.SmallInteger),
        sa.Column("group_number", sa.SmallInteger),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip
    if not monitoring:
        return metadata
    sa.Table(
        "predictions", metadata,
        sa.Column("id", serial, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("predicted_at", micro, nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        *features(),
        sa.Column("predicted_cover_type", sa.SmallInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Index("ix_predictions_predicted_at", "predicted_at"),
    )  # fmt: skip
    last = (
        [
            sa.Column("live_accuracy", sa.Float),
            sa.Column("live_macro_f1", sa.Float),
            sa.Column("mlflow_run_id", sa.String(32)),
        ]
        if drift_columns
        else []
    )
    sa.Table(
        "drift_reports", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("champion_version", sa.String(32)),
        sa.Column("batch_number", sa.SmallInteger),
        sa.Column("predictions_from_id", sa.BigInteger),
        sa.Column("predictions_to_id", sa.BigInteger),
        sa.Column("reference_rows", sa.Integer, nullable=False),
        sa.Column("current_rows", sa.Integer, nullable=False),
        sa.Column("computed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dataset_drift", sa.Boolean),
        sa.Column("drifted_features", sa.SmallInteger),
        sa.Column("features", sa.SmallInteger),
        sa.Column("drift_share", sa.Float),
        sa.Column("drift_share_threshold", sa.Float),
        sa.Column("feature_scores", sa.Text),
        sa.Column("current_classes", sa.SmallInteger),
        *last,
        sa.Index("ix_drift_reports_kind_model", "kind", "model_name", "id"),
    )  # fmt: skip
    sa.Table(
        "retrain_decisions", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("champion_version", sa.String(32)),
        sa.Column("train", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("rows_now", sa.Integer, nullable=False),
        sa.Column("champion_rows", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(250)),
    )  # fmt: skip
    return metadata


AT = datetime(2026, 5, 1, 12, 30, 15, 123456)


def sample_rows(metadata: sa.MetaData) -> dict[str, list[dict]]:
    """A few rows for each table of `metadata`, NULLs, unicode and fractions included."""
    feature: dict[str, object] = {name: 100 + i for i, name in enumerate(FEATURES)}
    feature |= {"Wilderness_Area": "Rawah", "Soil_Type": "C7745"}
    rows: dict[str, list[dict]] = {
        "cover_type": [
            feature | {"row_key": f"{i:032x}", "Elevation": 2000 + i, "Cover_Type": i % 7 + 1,
                       "batch_number": i // 2 + 1, "group_number": 7, "ingested_at": AT}
            for i in range(5)
        ],
        "cover_type_quarantine": [
            {"raw_key": "f" * 32, "raw": '["2596", "Neota", "x"]',
             "reason": "Soil_Type 'x' is not a soil code", "batch_number": None,
             "group_number": 7, "received_at": AT},
        ],
        "predictions": [
            feature | {"request_id": f"req-{i}", "predicted_at": AT.replace(microsecond=i),
                       "model_version": "3", "predicted_cover_type": 2, "latency_ms": 1.25 + i}
            for i in range(3)
        ],
        "drift_reports": [
            {"kind": "batch", "created_at": AT, "model_name": "covertype",
             "champion_version": "3", "batch_number": 4, "reference_rows": 5000,
             "current_rows": 4000, "computed": True, "reason": "7 of 12 drifted",
             "dataset_drift": True, "drift_share": 0.5, "feature_scores": '{"Slope": "→"}'},
            {"kind": "predictions", "created_at": AT, "model_name": "covertype",
             "champion_version": None, "predictions_from_id": 1, "predictions_to_id": 3,
             "reference_rows": 0, "current_rows": 3, "computed": False,
             "reason": "no champion"},
        ],
        "retrain_decisions": [
            {"decided_at": AT, "model_name": "covertype", "champion_version": "3",
             "train": False, "reason": "no drift", "rows_now": 40000, "champion_rows": 39000,
             "run_id": "scheduled__2026-05-01"},
        ],
    }  # fmt: skip
    return {name: rows[name] for name in metadata.tables}


def fill(engine: sa.Engine, metadata: sa.MetaData) -> None:
    with engine.begin() as conn:
        for name, rows in sample_rows(metadata).items():
            for row in rows:  # one by one: rows leave out different columns
                conn.execute(metadata.tables[name].insert(), row)


def snapshot(engine: sa.Engine, metadata: sa.MetaData) -> dict[str, list[dict]]:
    """Every row of every table of `metadata`, in primary key order."""
    with engine.connect() as conn:
        return {
            name: [
                dict(row)
                for row in conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings()
            ]
            for name, t in metadata.tables.items()
        }


def differences(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


@pytest.fixture
def engine(data_db_url):
    engine = db.make_engine(data_db_url)
    yield engine
    engine.dispose()


def cli(args: list[str], url: str, tmp_path) -> subprocess.CompletedProcess:
    return run_cli(["db", *args], {"COVERTYPE_DATA_DB_URL": url}, tmp_path)


def test_a_database_made_by_create_all_is_adopted_with_every_row(engine, data_db_url, tmp_path):
    frozen = release_tables()
    frozen.create_all(engine)
    fill(engine, frozen)
    before = snapshot(engine, frozen)
    assert sum(map(len, before.values())) == 12

    done = cli(["upgrade"], data_db_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        f": upgraded from no revision (tables made by create_all) to {HEAD} (head)"
    )
    assert snapshot(engine, frozen) == before
    assert differences(engine) == []
    db.ensure_schema(engine)  # the code runs on it again
    features = {k: before["predictions"][0][k] for k in (*FEATURES, "Wilderness_Area", "Soil_Type")}
    db.insert_predictions(engine, [db.Prediction(features, 5, "4", 2.0, AT, "req-new")])
    with engine.connect() as conn:
        ids = conn.scalars(sa.select(db.predictions.c.id).order_by(db.predictions.c.id)).all()
    assert ids == [1, 2, 3, 4]  # the log's ids go on after the adopted rows

    current = cli(["current"], data_db_url, tmp_path)
    assert current.stdout.strip().endswith(f": {HEAD} (head)")


def test_a_database_of_an_older_release_gets_the_tables_and_columns_it_lacks(engine):
    older = release_tables(monitoring=False)
    older.create_all(engine)
    fill(engine, older)
    # ... and a drift_reports made by hand, without its last three columns
    partial = sa.MetaData()
    release_tables(drift_columns=False).tables["drift_reports"].to_metadata(partial)
    partial.create_all(engine)
    fill(engine, partial)
    before = snapshot(engine, older) | snapshot(engine, partial)

    summary = schema_version.upgrade(engine).summary()
    assert summary.endswith(f"upgraded from no revision (tables made by create_all) to {HEAD} "
                            "(head)")  # fmt: skip
    assert differences(engine) == []
    after = snapshot(engine, release_tables())
    for name in older.tables:
        assert after[name] == before[name]
    extra = {"live_accuracy": None, "live_macro_f1": None, "mlflow_run_id": None}
    assert after["drift_reports"] == [row | extra for row in before["drift_reports"]]
    assert after["predictions"] == after["retrain_decisions"] == []


def ddl(engine: sa.Engine) -> dict[str, str]:
    """Each table's and index's definition as the DB itself tells it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE '%alembic_version%'"
            return dict(conn.exec_driver_sql(query).all())
        names = [n for n in sa.inspect(conn).get_table_names() if n != "alembic_version"]
        return {n: conn.exec_driver_sql(f"SHOW CREATE TABLE `{n}`").one()[1] for n in names}


def test_the_baseline_makes_every_table_and_index_as_create_all_did(engine):
    frozen = release_tables()
    frozen.create_all(engine)
    made_by_create_all = ddl(engine)
    frozen.drop_all(engine)

    schema_version.upgrade(engine, "0001_baseline")
    assert ddl(engine) == made_by_create_all
    assert len(made_by_create_all) >= 5


def test_migrations_at_head_give_the_tables_of_tables_py(engine):
    schema_version.upgrade(engine)
    assert differences(engine) == []


def mysql_lock_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'"
        return conn.exec_driver_sql(query).scalar_one()


def test_concurrent_upgrades_of_an_empty_database_make_the_schema_once(
    engine, data_db_url, tmp_path
):
    command = [str(BIN / "covertype"), "db", "upgrade"]
    env = clean_env({"COVERTYPE_DATA_DB_URL": data_db_url})
    with engine.connect() as holder, lock.schema_lock(holder):
        # Both start while another upgrade holds the lock, then race for it when it is free.
        upgrades = [
            subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        deadline = time.monotonic() + 30
        while engine.dialect.name != "sqlite" and mysql_lock_waiters(engine) < 2:
            assert time.monotonic() < deadline, "the upgrades never asked for the lock"
            time.sleep(0.2)
        time.sleep(3)
        assert [u.poll() for u in upgrades] == [None, None]  # waiting, not failing
        assert sa.inspect(engine).get_table_names() == []
    outputs = [u.communicate(timeout=120) for u in upgrades]
    assert [u.returncode for u in upgrades] == [0, 0], outputs
    said = sorted(out.strip().split(": ", 1)[1] for out, _ in outputs)
    assert said == [f"already at {HEAD} (head), nothing to do",
                    f"upgraded from empty to {HEAD} (head)"]  # fmt: skip
    assert differences(engine) == []


def test_db_commands_say_where_the_database_is_and_what_to_run(engine, data_db_url, tmp_path):
    schema_version.upgrade(engine, "0001_baseline")
    current = cli(["current"], data_db_url, tmp_path)
    assert current.returncode == 0
    assert current.stdout.splitlines()[1].endswith(
        f"is at revision 0001_baseline, older than this covertype's {HEAD}: "
        "run `covertype db upgrade`"
    )
    history = cli(["history"], data_db_url, tmp_path).stdout.splitlines()
    assert history[0].startswith(f"0002_cover_type_batch_index -> {HEAD} (head): The release")
    assert history[1].startswith("0001_baseline -> 0002_cover_type_batch_index: Index cover_type")
    assert history[-1].startswith("<base> -> 0001_baseline (current): Baseline")

    done = cli(["upgrade", "--to", "0042_nothing"], data_db_url, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "covertype db: --to 0042_nothing: Can't locate revision identified by '0042_nothing'; "
        "`covertype db history` lists the revisions"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    newer = cli(["upgrade"], data_db_url, tmp_path)
    assert newer.returncode == 1
    assert len(newer.stderr.strip().splitlines()) == 1
    assert "is at revision 0099_from_the_future, which this covertype does not know" in (
        newer.stderr
    )


def test_an_unreachable_database_is_one_line(tmp_path):
    url = f"mysql+pymysql://root@127.0.0.1:{free_port()}/covertype"
    done = cli(["upgrade"], url, tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("covertype db: the data DB did not answer: (2003, ")
    assert len(done.stderr.strip().splitlines()) == 1
