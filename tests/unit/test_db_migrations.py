"""The data DB's schema under Alembic, on SQLite files: migrations and tables.py agree, a new
DB is made at first use, any other schema stops the caller with what to run."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from covertype import db
from covertype.db import lock, schema_version
from covertype.db.commands import upgrade_before_start
from covertype.errors import BadInput, Unavailable

BASELINE = "0001_baseline"


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'cover_type.db'}")
    yield engine
    engine.dispose()


def differences(engine: sa.Engine, metadata: sa.MetaData = db.metadata) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def stamp(engine: sa.Engine, revision: str) -> None:
    with engine.connect() as conn:
        command.stamp(schema_version.alembic_config(conn), revision, purge=True)
        conn.commit()


def test_migrations_at_head_give_the_tables_of_tables_py(engine):
    schema_version.upgrade(engine)
    assert differences(engine) == []


def test_the_comparison_sees_a_column_the_migrations_lack(engine):
    schema_version.upgrade(engine)
    changed = sa.MetaData()
    for table in db.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["predictions"].append_column(sa.Column("client", sa.String(64)))
    changed.tables["cover_type"].c.batch_number.type = sa.Integer()
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in differences(engine, changed)}
    assert kinds == {"add_column", "modify_type"}


def test_downgrading_to_base_and_back_gives_the_same_schema(engine):
    schema_version.upgrade(engine)
    with engine.connect() as conn:
        command.downgrade(schema_version.alembic_config(conn), "base")
        conn.commit()
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    schema_version.upgrade(engine)
    assert differences(engine) == []


def test_a_new_database_is_brought_to_head_at_first_use(engine):
    db.ensure_schema(engine)
    state = schema_version.current(engine)
    assert state.revisions == (schema_version.head(),) and state.at_head
    assert state.tables == set(db.metadata.tables)
    at = datetime(2026, 5, 1, tzinfo=UTC)
    decision = {"decided_at": at, "model_name": "covertype", "train": True, "reason": "first",
                "rows_now": 10, "champion_rows": 0}  # fmt: skip
    assert db.add_retrain_decision(engine, decision) == 1


def test_a_database_at_head_passes_with_one_query(engine):
    db.ensure_schema(engine)
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    started = time.perf_counter()
    db.ensure_schema(engine)
    elapsed = time.perf_counter() - started
    assert statements == ["SELECT alembic_version.version_num \nFROM alembic_version"]
    assert elapsed < 0.05


def one_line_error(engine: sa.Engine) -> str:
    with pytest.raises(db.SchemaError) as raised:
        db.ensure_schema(engine)
    assert isinstance(raised.value, Unavailable) and raised.value.status == 503
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_an_older_revision_stops_the_caller_naming_the_upgrade(engine):
    schema_version.upgrade(engine, BASELINE)
    message = one_line_error(engine)
    assert message.endswith(
        f"is at revision {BASELINE}, older than this covertype's {schema_version.head()}: "
        "run `covertype db upgrade`"
    )
    assert schema_version.current(engine).revisions == (BASELINE,)  # left as it was


def test_a_database_made_by_create_all_stops_the_caller_naming_the_upgrade(engine):
    db.metadata.create_all(engine)
    message = one_line_error(engine)
    assert "made without migrations (no alembic_version table): run `covertype db upgrade`" in (
        message
    )
    assert "alembic_version" not in sa.inspect(engine).get_table_names()


def test_a_revision_this_code_does_not_know_stops_the_caller_and_the_upgrade(engine):
    schema_version.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    message = one_line_error(engine)
    assert "is at revision 0099_from_the_future, which this covertype does not know" in message
    with pytest.raises(db.SchemaError, match="0099_from_the_future"):
        schema_version.upgrade(engine)


def test_upgrade_says_from_which_revision_to_which(engine):
    assert (
        schema_version.upgrade(engine, BASELINE)
        .summary()
        .endswith(f": upgraded from empty to {BASELINE}")
    )
    head = schema_version.head()
    assert (
        schema_version.upgrade(engine)
        .summary()
        .endswith(f": upgraded from {BASELINE} to {head} (head)")
    )
    assert (
        schema_version.upgrade(engine)
        .summary()
        .endswith(f": already at {head} (head), nothing to do")
    )


def test_upgrading_to_a_revision_that_does_not_exist_names_the_history(engine):
    with pytest.raises(BadInput, match="`covertype db history` lists the revisions") as raised:
        schema_version.upgrade(engine, "0042_nothing")
    assert raised.value.status == 422 and raised.value.exit_code == 2


def test_history_lists_every_revision_newest_first_with_the_current_one(engine):
    schema_version.upgrade(engine, BASELINE)
    revisions = schema_version.history(engine)
    assert revisions[0].revision == schema_version.head() and revisions[-1].revision == BASELINE
    assert [r.down_revision for r in revisions[:-1]] == [r.revision for r in revisions[1:]]
    assert [(r.is_head, r.is_current) for r in revisions] == [
        (r is revisions[0], r is revisions[-1]) for r in revisions
    ]
    assert revisions[-1].down_revision is None and len(revisions) >= 3


def test_the_schema_lock_makes_a_second_holder_wait(engine):
    with (
        engine.connect() as first,
        lock.schema_lock(first),
        engine.connect() as second,
        pytest.raises(lock.LockTimeout) as raised,
        lock.schema_lock(second, wait=0.5),
    ):
        pass
    assert "another process held the schema lock of the data DB" in str(raised.value)
    with engine.connect() as again, lock.schema_lock(again, wait=0.5):
        pass  # released when the first holder left


def test_an_upgrade_waits_for_the_lock_and_then_finds_the_work_done(engine, monkeypatch):
    monkeypatch.setattr(lock, "WAIT_SECONDS", 20)  # a failure here must not hang the suite
    results = []
    with engine.connect() as holder, lock.schema_lock(holder):
        waiting = threading.Thread(target=lambda: results.append(schema_version.upgrade(engine)))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and sa.inspect(engine).get_table_names() == []
        # What the process holding the lock does meanwhile: the whole upgrade.
        command.upgrade(schema_version.alembic_config(holder), "head")
        holder.commit()
    waiting.join(20)
    assert (
        results[0].summary().endswith(f": already at {schema_version.head()} (head), nothing to do")
    )


def test_covertype_up_upgrades_before_starting_and_stops_on_a_bad_schema(engine, caplog):
    said: list[str] = []
    with caplog.at_level("INFO"):
        assert upgrade_before_start(str(engine.url), said.append) is True
    assert said == [f"data DB {engine.url}: upgraded from empty to {schema_version.head()} (head)"]
    assert caplog.records == []  # `up` says it in that line, not in Alembic's log lines too
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    assert upgrade_before_start(str(engine.url), said.append) is False
    assert said[1].startswith("covertype up: the data DB could not be upgraded: the data DB ")
    assert "0099_from_the_future" in said[1] and "\n" not in said[1]


def test_the_cli_mounts_the_db_commands_without_loading_a_database_library():
    probe = (
        "import sys, covertype.db.commands; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'pandas') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_every_name_the_callers_use_is_exported():
    from covertype.db import prediction_log, rows, tables

    assert db.cover_type is tables.cover_type and db.store_rows is rows.store_rows
    assert db.Prediction is prediction_log.Prediction
    for name in db.__all__:
        assert getattr(db, name) is not None
    with pytest.raises(AttributeError):
        db.no_such_name  # noqa: B018
