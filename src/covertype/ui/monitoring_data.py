"""What the UI's Monitoring tab draws, as DataFrames, each from where it lives: rows per
batch, the batch drift reports and the release ledger from the data DB, the champion history
from the MLflow registry, request rate and latency from Prometheus. Each reader raises
SourceUnavailable with a sentence for the page when its source cannot answer, so the tab
shows the rest."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pandas as pd

from covertype.errors import Unavailable
from covertype.settings import Settings

if TYPE_CHECKING:
    import sqlalchemy as sa


class SourceUnavailable(Unavailable):
    """A source of the tab did not answer; the message says which and why."""


@contextlib.contextmanager
def _data_db(settings: Settings, what: str, table: str) -> Iterator[sa.Engine | None]:
    """An engine on the data DB, None where the DB or `table` does not exist yet (nothing
    collected, or a DB from before the table's migration); SourceUnavailable where the DB
    does not answer, naming `what` could not be read. Read-only: the UI creates neither
    files nor tables."""
    import sqlalchemy as sa

    from covertype import db

    url = sa.engine.make_url(settings.data_db)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        yield None
        return
    engine = db.make_engine(settings.data_db)
    try:
        yield engine if sa.inspect(engine).has_table(table) else None
    except Exception as error:
        raise SourceUnavailable(
            f"{what} come from the data DB ({db_name(settings)}), which did not answer "
            f"({type(error).__name__})."
        ) from None
    finally:
        engine.dispose()


def _rows(settings: Settings, what: str, query) -> list:
    """The rows of a select on the data DB; none where the DB or its table does not exist."""
    with _data_db(settings, what, query.get_final_froms()[0].name) as engine:
        if engine is None:
            return []
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def db_name(settings: Settings) -> str:
    from covertype.settings import safe_url

    return safe_url(settings.data_db)


def batches(settings: Settings) -> pd.DataFrame:
    """Rows collected per batch: batch_number, rows."""
    import sqlalchemy as sa

    from covertype import db

    column = db.cover_type.c.batch_number
    query = sa.select(column, sa.func.count().label("rows")).group_by(column)
    rows = _rows(settings, "Rows per batch", query)
    frame = pd.DataFrame(rows, columns=["batch_number", "rows"]).astype(int)
    return frame.sort_values("batch_number", ignore_index=True)


DRIFT_COLUMNS = [
    "batch_number", "drift_share", "drift_share_threshold", "dataset_drift",
    "drifted_features", "features", "champion_version", "live_accuracy", "live_macro_f1",
    "current_rows", "created_at",
]  # fmt: skip


def batch_drift(settings: Settings) -> pd.DataFrame:
    """The latest computed batch report of each batch (DRIFT_COLUMNS), by batch number."""
    import sqlalchemy as sa

    from covertype import db

    table = db.drift_reports
    query = sa.select(*(table.c[c] for c in DRIFT_COLUMNS), table.c.id).where(
        table.c.kind == "batch",
        table.c.model_name == settings.mlflow.model_name,
        table.c.computed.is_(True),
    )
    rows = _rows(settings, "Drift reports", query.order_by(table.c.id))
    frame = pd.DataFrame(rows, columns=[*DRIFT_COLUMNS, "id"])
    frame = frame.drop_duplicates("batch_number", keep="last").drop(columns="id")
    return frame.sort_values("batch_number", ignore_index=True)


CHAMPION_COLUMNS = [
    "version", "family", "holdout_accuracy", "holdout_macro_f1", "registered_at", "promoted",
    "decision", "last_batch", "champion",
]  # fmt: skip


def champion_history(settings: Settings) -> pd.DataFrame:
    """Every registered version (CHAMPION_COLUMNS), oldest first: family, holdout scores,
    when registered (the gate decides at once), the gate's decision and whether it promoted,
    the last batch it trained on, and which one the alias points at now."""
    import os

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow.tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{settings.mlflow.model_name}'")
        try:
            current = client.get_model_version_by_alias(
                settings.mlflow.model_name, settings.mlflow.model_alias
            )
            current_version = current.version
        except Exception:  # no alias yet
            current_version = None
    except Exception as error:
        raise SourceUnavailable(
            f"The champion history comes from MLflow at {settings.mlflow.tracking_uri}, which "
            f"did not answer ({type(error).__name__})."
        ) from None
    rows = []
    for v in versions:
        tags = v.tags or {}
        batches_seen = [int(b) for b in tags.get("trained_batches", "").split(",") if b.isdigit()]
        rows.append(
            {
                "version": int(v.version),
                "family": tags.get("family"),
                "holdout_accuracy": _float(tags.get("holdout_accuracy")),
                "holdout_macro_f1": _float(tags.get("holdout_macro_f1")),
                "registered_at": pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC"),
                "promoted": tags.get("gate.promoted") == "true",
                "decision": tags.get("gate.decision") or v.description or "",
                "last_batch": max(batches_seen) if batches_seen else None,
                "champion": v.version == current_version,
            }
        )
    frame = pd.DataFrame(rows, columns=CHAMPION_COLUMNS)
    return frame.sort_values("version", ignore_index=True)


def accuracy_before_after(drift: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    """Per batch: `before`, the champion's accuracy on the batch as it arrived (the drift
    report's live accuracy), and `after`, the holdout accuracy of the version promoted once
    it had trained on that batch (none if the gate kept the old one or no training ran).
    Long format: batch_number, when (before/after), accuracy."""
    before = drift[["batch_number", "live_accuracy"]].dropna()
    frames = [before.rename(columns={"live_accuracy": "accuracy"}).assign(when="before")]
    if history is not None and not history.empty:
        promoted = history[history["promoted"] & history["last_batch"].notna()]
        after = promoted.groupby("last_batch", as_index=False)["holdout_accuracy"].last()
        after = after.rename(columns={"last_batch": "batch_number", "holdout_accuracy": "accuracy"})
        frames.append(after.assign(when="after retraining"))
    frame = pd.concat(frames, ignore_index=True)
    frame["batch_number"] = frame["batch_number"].astype(int)
    return frame.sort_values(["batch_number", "when"], ascending=[True, False], ignore_index=True)


MOVE_COLUMNS = ["moved_at", "alias", "action", "from_version", "to_version", "actor", "reason"]


def release_moves(settings: Settings) -> pd.DataFrame:
    """The release ledger of the served model (MOVE_COLUMNS, and `change`: "v3 → v4", "–"
    where the alias pointed nowhere), oldest first; empty before the first move (or the
    ledger's migration)."""
    from covertype.release import ledger

    with _data_db(settings, "Release moves", "releases") as engine:
        found = [] if engine is None else ledger.moves(engine, settings.mlflow.model_name)
    rows = [{c: getattr(move, c) for c in MOVE_COLUMNS} for move in found]
    frame = pd.DataFrame(rows, columns=MOVE_COLUMNS)
    frame["moved_at"] = pd.to_datetime(frame["moved_at"], utc=True)
    frame["change"] = [f"{_v(a)} → {_v(b)}" for a, b in
                       zip(frame["from_version"], frame["to_version"], strict=True)]  # fmt: skip
    return frame


SERVING_COLUMNS = ["created_at", "batch_number", "version", "live_accuracy", "live_macro_f1"]


def serving_accuracy(settings: Settings) -> pd.DataFrame:
    """The live accuracy of each version that served (SERVING_COLUMNS, and `stint`: the
    number of the run of batches in a row it served): its score on each batch it was the
    champion for as the batch arrived, from the computed batch reports (the latest report of
    each batch and version)."""
    import sqlalchemy as sa

    from covertype import db

    table = db.drift_reports
    columns = [table.c.created_at, table.c.batch_number, table.c.champion_version,
               table.c.live_accuracy, table.c.live_macro_f1]  # fmt: skip
    query = sa.select(*columns).where(
        table.c.kind == "batch",
        table.c.model_name == settings.mlflow.model_name,
        table.c.computed.is_(True),
        table.c.champion_version.is_not(None),
        table.c.live_accuracy.is_not(None),
    )
    rows = _rows(settings, "Live accuracies", query.order_by(table.c.id))
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    frame = frame.rename(columns={"champion_version": "version"})
    frame = frame.drop_duplicates(["batch_number", "version"], keep="last")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)  # stored as UTC
    frame = frame[SERVING_COLUMNS].sort_values("created_at", ignore_index=True)
    # A version's stint: its batches in a row (it can serve again after a rollback).
    frame["stint"] = (frame["version"] != frame["version"].shift()).cumsum()
    return frame


def alias_periods(moves: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Which version each alias pointed at, from when to when (alias, version, start, end,
    current): from the move that set it to the alias's next move, or to `now`. A promotion
    also ends the period of any other alias on the same version (the challenger that won);
    an alias removed (a retirement) has no period until it is set again."""
    from covertype.release import ledger

    periods: list[dict] = []
    open_: dict[str, dict] = {}  # alias → its period so far
    for move in moves.itertuples():
        ended = [move.alias]
        if move.action == ledger.PROMOTE:
            ended += [a for a, p in open_.items() if p["version"] == move.to_version]
        for alias in ended:
            if alias in open_:
                periods.append(open_.pop(alias) | {"end": move.moved_at, "current": False})
        if pd.notna(move.to_version):
            open_[move.alias] = {"alias": move.alias, "version": move.to_version,
                                 "start": move.moved_at}  # fmt: skip
    periods += [p | {"end": now, "current": True} for p in open_.values()]
    frame = pd.DataFrame(periods, columns=["alias", "version", "start", "end", "current"])
    return frame.sort_values(["start", "alias"], ignore_index=True)


def ledger_table(moves: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """The newest `limit` moves, newest first, as the page's table: when, alias, action,
    from → to, actor, reason."""
    newest = moves.iloc[::-1].head(limit)
    return pd.DataFrame(
        {
            "when": newest["moved_at"].dt.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "alias": newest["alias"],
            "action": newest["action"],
            "from → to": newest["change"],
            "actor": newest["actor"],
            "reason": newest["reason"],
        }
    ).reset_index(drop=True)


def _v(version: str | None) -> str:
    return "–" if version is None or pd.isna(version) else f"v{version}"


# What users wait for: the prediction endpoints (probes and scrapes are elsewhere, Grafana).
_PREDICT = 'endpoint=~"/predict|/predict/batch"'
TRAFFIC_QUERIES = {
    "requests/s": f"sum by (endpoint) (rate(covertype_requests_total{{{_PREDICT}}}[1m]))",
    "p50 latency (ms)": "1000 * histogram_quantile(0.5, sum by (endpoint, le) "
    f"(rate(covertype_request_duration_seconds_bucket{{{_PREDICT}}}[1m])))",
    "p99 latency (ms)": "1000 * histogram_quantile(0.99, sum by (endpoint, le) "
    f"(rate(covertype_request_duration_seconds_bucket{{{_PREDICT}}}[1m])))",
}


def traffic(settings: Settings, minutes: int = 15, now: float | None = None) -> pd.DataFrame:
    """The inference API's request rate and p50/p99 latency per prediction endpoint over the
    last minutes, from Prometheus (every replica's /metrics): time, endpoint, measure, value."""
    if not settings.prometheus.url:
        raise SourceUnavailable(
            "Request rate and latency come from Prometheus, and this deployment has none "
            "(COVERTYPE_PROMETHEUS_URL is unset; `covertype up` runs one when the `prometheus` "
            "binary is on PATH). The API's own numbers: its /metrics."
        )
    end = now or time.time()
    step = max(5, minutes * 60 // 180)
    frames = []
    for measure, query in TRAFFIC_QUERIES.items():
        try:
            answer = httpx.get(
                f"{settings.prometheus.url}/api/v1/query_range",
                params={"query": query, "start": end - minutes * 60, "end": end, "step": step},
                timeout=10,
            )
            answer.raise_for_status()
            result = answer.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as error:
            raise SourceUnavailable(
                f"Prometheus at {settings.prometheus.url} did not answer ({type(error).__name__})."
            ) from None
        for series in result:
            points = pd.DataFrame(series["values"], columns=["time", "value"])
            points["value"] = pd.to_numeric(points["value"], errors="coerce")
            points["time"] = pd.to_datetime(points["time"].astype(float), unit="s", utc=True)
            points["endpoint"] = series["metric"].get("endpoint", "all")
            frames.append(points.assign(measure=measure).dropna(subset=["value"]))
    columns = ["time", "endpoint", "measure", "value"]
    return (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
