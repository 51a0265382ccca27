"""Ingestion against a real source API process into SQLite and (in CI) MariaDB."""

import json
import signal
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from covertype import db, schema
from covertype.ingest import Batch, SourceError, fetch_batch, ingest_once, store_batch
from covertype.settings import Settings
from tests.support.environment import BIN, MYSQL_URL, clean_env, run_cli
from tests.support.fakes import ScriptedSource
from tests.support.servers import free_port

GOOD = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"]


def settings_for(url: str, db_url: str, **env) -> Settings:
    return Settings.from_env(
        {
            "COVERTYPE_SOURCE_URL": url,
            "COVERTYPE_DATA_DB_URL": db_url,
            "COVERTYPE_INGEST_BACKOFF_SECONDS": 0.05,
        }
        | env
    )


def table_rows(engine, table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def test_ingest_stores_every_valid_row_of_the_current_batch(source_server, data_engine):
    server = source_server()
    result = ingest_once(settings_for(server.url, str(data_engine.url)), data_engine)
    assert (result.group_number, result.batch_number) == (7, 1)
    assert result.received == 20 and result.stored == 20
    assert result.duplicates == 0 and result.quarantined == 0 and not result.exhausted
    rows = table_rows(data_engine, db.cover_type)
    assert len(rows) == 20
    row = rows[0]
    assert row["batch_number"] == 1 and row["group_number"] == 7
    assert row["ingested_at"] is not None
    assert isinstance(row["Elevation"], int) and row["Soil_Type"] in schema.SOIL_TYPES
    assert row["row_key"] == db.row_key([row[f] for f in schema.FIELDS])


def test_rerun_of_the_same_batch_stores_nothing(source_server, data_engine):
    server = source_server()
    batch = fetch_batch(settings_for(server.url, str(data_engine.url)))
    first = store_batch(data_engine, batch)
    second = store_batch(data_engine, batch)
    assert first.stored == 20
    assert second.stored == 0 and second.duplicates == 20
    assert len(table_rows(data_engine, db.cover_type)) == 20


def test_repeated_calls_in_one_window_store_each_row_once(source_server, data_engine):
    server = source_server()
    settings = settings_for(server.url, str(data_engine.url))
    results = [ingest_once(settings, data_engine) for _ in range(15)]
    stored = sum(r.stored for r in results)
    assert sum(r.duplicates for r in results) > 0  # 15 tenths of a 200-row batch overlap
    assert stored == len(table_rows(data_engine, db.cover_type)) <= 200
    assert sum(r.received for r in results) == stored + sum(r.duplicates for r in results)


def test_concurrent_runs_of_the_same_batch_store_it_once(source_server, data_engine):
    server = source_server()
    batch = fetch_batch(settings_for(server.url, str(data_engine.url)))
    barrier = threading.Barrier(4)
    results = []

    def run():
        barrier.wait()
        results.append(store_batch(data_engine, batch))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.stored for r in results) == [0, 0, 0, 20]
    assert len(table_rows(data_engine, db.cover_type)) == 20


def test_bad_rows_land_in_quarantine_with_a_reason(data_engine):
    rows = [
        GOOD,
        [*GOOD[:5], "10001", *GOOD[6:]],  # out of range
        [*GOOD[:11], "C1234", GOOD[12]],  # unknown soil code
        GOOD[:12],  # wrong field count
        ["Cache la Poudre" if i == 10 else v for i, v in enumerate(GOOD)],  # accepted spelling
    ]
    body = {"group_number": 7, "batch_number": 4, "data": rows}
    with ScriptedSource([(200, body)]) as source:
        settings = settings_for(source.url, str(data_engine.url))
        result = ingest_once(settings, data_engine)
        again = ingest_once(settings, data_engine)
    assert (result.received, result.stored, result.quarantined) == (5, 2, 3)
    assert (again.stored, again.duplicates, again.quarantined) == (0, 2, 3)
    stored = table_rows(data_engine, db.cover_type)
    assert sorted(r["Wilderness_Area"] for r in stored) == ["Cache", "Rawah"]
    quarantined = {r["raw"]: r for r in table_rows(data_engine, db.quarantine)}
    assert len(quarantined) == 3  # kept once although received twice
    reasons = {json.dumps(row): quarantined[json.dumps(row)]["reason"] for row in rows[1:4]}
    assert reasons[json.dumps(rows[1])] == (
        "Horizontal_Distance_To_Roadways: '10001' is out of range; "
        "allowed: a whole number of metres from 0 to 10000"
    )
    assert reasons[json.dumps(rows[2])].startswith("Soil_Type: 'C1234' is not a known soil type")
    assert reasons[json.dumps(rows[3])].startswith("row has 12 values; expected a list of 13")
    assert all(r["batch_number"] == 4 for r in quarantined.values())


def test_source_errors_are_retried_with_backoff(data_engine):
    body = {"group_number": 7, "batch_number": 2, "data": [GOOD]}
    script = [(500, {"detail": "boom"}), (503, {"detail": "busy"}), (200, body)]
    with ScriptedSource(script) as source:
        result = ingest_once(settings_for(source.url, str(data_engine.url)), data_engine)
        assert source.requests == 3
    assert result.stored == 1 and result.batch_number == 2


def test_a_source_that_keeps_failing_ends_with_a_clear_error(data_engine):
    with ScriptedSource([(500, {"detail": "boom"})]) as source:
        settings = settings_for(source.url, str(data_engine.url), COVERTYPE_INGEST_ATTEMPTS=3)
        with pytest.raises(SourceError, match=f"source API {source.url} failed after 3 attempts"):
            ingest_once(settings, data_engine)
        assert source.requests == 3


def test_an_unreachable_source_names_the_url(data_engine):
    url = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(url, str(data_engine.url), COVERTYPE_INGEST_ATTEMPTS=2)
    with pytest.raises(SourceError, match=f"source API {url} failed after 2 attempts.*Connect"):
        ingest_once(settings, data_engine)


def test_all_collected_is_a_normal_end(data_engine):
    detail = "Ya se recolectó toda la información mínima necesaria"  # the course API's words
    with ScriptedSource([(400, {"detail": detail})]) as source:
        result = ingest_once(settings_for(source.url, str(data_engine.url)), data_engine)
        assert source.requests == 1  # a 400 is not retried
    assert result.exhausted and result.batch_number is None and result.stored == 0
    assert result.detail == detail


def test_other_400s_are_errors_not_retried(source_server, data_engine):
    server = source_server()
    settings = settings_for(server.url, str(data_engine.url), COVERTYPE_GROUP_NUMBER=7)
    settings.source.group_number = 11  # bypass the settings check to reach the API's
    with pytest.raises(SourceError, match="answered 400: group_number must be"):
        ingest_once(settings, data_engine)


def test_until_exhausted_collects_every_batch(source_server, data_db_url, tmp_path):
    server = source_server(batch_seconds=0.3)
    env = {
        "COVERTYPE_HOME": str(tmp_path / "cli-home"),
        "COVERTYPE_SOURCE_URL": server.url,
        "COVERTYPE_DATA_DB_URL": data_db_url,
    }
    done = run_cli(["ingest", "--until-exhausted", "--every", "0.1"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("group 7 batch 1: received 20, stored 20")
    assert "source exhausted (All data was collected" in lines[-2]
    engine = db.make_engine(data_db_url)
    with engine.connect() as conn:
        per_batch = dict(
            conn.execute(
                sa.select(db.cover_type.c.batch_number, sa.func.count()).group_by("batch_number")
            ).all()
        )
        total = conn.execute(sa.select(sa.func.count()).select_from(db.cover_type)).scalar()
    engine.dispose()
    assert sorted(per_batch) == list(range(1, 11))
    assert lines[-1].startswith(f"collection finished after {len(lines) - 1} calls: stored {total}")
    assert lines[-1].endswith(f"now holds {total} rows in cover_type and 0 in quarantine")


def test_killed_ingest_leaves_nothing_half_written_and_a_rerun_completes(
    source_server, data_db_url, data_engine, tmp_path
):
    server = source_server()
    env = {
        "COVERTYPE_HOME": str(tmp_path / "kill-home"),
        "COVERTYPE_SOURCE_URL": server.url,
        "COVERTYPE_DATA_DB_URL": data_db_url,
    }
    # Hold the table locked so the ingest process blocks inside its write, then kill it there.
    with data_engine.connect() as blocker:
        if blocker.dialect.name == "sqlite":
            blocker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            blocker.exec_driver_sql("LOCK TABLES cover_type WRITE, cover_type_quarantine WRITE")
        victim = subprocess.Popen(
            [str(BIN / "covertype"), "ingest"],
            env=clean_env(env),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while server.log().count('"data served"') < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # it has the rows and waits on the lock
        assert victim.poll() is None, victim.communicate()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        if blocker.dialect.name == "sqlite":
            blocker.exec_driver_sql("ROLLBACK")
        else:
            blocker.exec_driver_sql("UNLOCK TABLES")
    assert table_rows(data_engine, db.cover_type) == []  # all or nothing, never half

    rerun = run_cli(["ingest"], env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith("group 7 batch 1: received 20, stored 20, duplicates 0")
    keys = [r["row_key"] for r in table_rows(data_engine, db.cover_type)]
    assert len(keys) == len(set(keys)) == 20


def test_ingest_cli_reports_an_unreachable_source_without_a_traceback(tmp_path):
    env = {
        "COVERTYPE_HOME": str(tmp_path / "h"),
        "COVERTYPE_SOURCE_URL": f"http://127.0.0.1:{free_port()}",
        "COVERTYPE_INGEST_ATTEMPTS": "1",
    }
    done = run_cli(["ingest"], env, tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "failed after 1 attempts" in done.stderr


if MYSQL_URL:  # the MySQL/MariaDB bulk path and its fallback exist only there

    def test_a_server_refusing_local_infile_still_gets_every_row(mysql_db_url, caplog):
        bulk = db.make_engine(mysql_db_url)
        db.ensure_schema(bulk)
        plain = sa.create_engine(mysql_db_url)  # client without the LOCAL INFILE capability
        batch = Batch(7, 3, [GOOD, [*GOOD[:12], "5"]])
        try:
            result = store_batch(plain, batch)
            again = store_batch(bulk, batch)  # the bulk path sees them as stored
            stored = table_rows(bulk, db.cover_type)
        finally:
            plain.dispose()
            bulk.dispose()
        assert (result.stored, again.stored, again.duplicates) == (2, 0, 2)
        assert len(stored) == 2
        assert "LOAD DATA LOCAL INFILE refused, using INSERT" in caplog.messages
