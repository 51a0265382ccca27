"""Airflow for the platform: its whole configuration from the settings, and what the DAGs share.

`airflow_env(settings)` is the Airflow configuration (AIRFLOW_HOME and AIRFLOW__* variables):
nothing is edited in airflow.cfg or set in the UI. `covertype airflow <args>` runs the venv's
`airflow` with it. The DAG files in `covertype/dags` only wire tasks; the decisions they take
(the schedule, when collection is paused) are plain functions here, testable without Airflow.
Nothing at module level imports Airflow, so the CLI stays quick and the DAG files cheap to parse.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from covertype.settings import Settings, client_host

DAGS_FOLDER = Path(__file__).resolve().parent / "dags"
COLLECT_DAG = "covertype_collect"
TRAIN_DAG = "covertype_train"
MONITOR_DAG = "covertype_monitor"
COVER_TYPE_ASSET = "cover_type"
# Airflow Variable: set while the source says all data was collected (see `paused_reason`).
PAUSE_VARIABLE = "covertype_collection_paused"


# ---------------------------------------------------------------- configuration


def airflow_home(settings: Settings) -> Path:
    return settings.home / "airflow"


def passwords_file(settings: Settings) -> Path:
    return airflow_home(settings) / "simple_auth_manager_passwords.json"


def airflow_env(settings: Settings) -> dict[str, str]:
    """AIRFLOW_HOME and the AIRFLOW__* options of the platform's Airflow.

    Local stack (defaults): SQLite metadata DB in COVERTYPE_HOME, LocalExecutor with
    `airflow_parallelism` workers. Compose: COVERTYPE_AIRFLOW_DB_URL (PostgreSQL),
    COVERTYPE_AIRFLOW_EXECUTOR=CeleryExecutor and COVERTYPE_AIRFLOW_BROKER_URL (Redis)."""
    home = airflow_home(settings)
    parallelism = str(settings.airflow_parallelism)
    # Workers call the api-server's Execution API; 0.0.0.0 is where it listens, not an address.
    base_url = f"http://{client_host(settings.airflow_host)}:{settings.airflow_port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The stack is there to run the pipeline: collection starts once the DAG is parsed.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": settings.airflow_executor,
        # Standalone otherwise starts 32 worker slots and 4 api-server workers (2 cores here).
        "AIRFLOW__CORE__PARALLELISM": parallelism,
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": parallelism,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_db_url
        or f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file(settings)),
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
    }
    if settings.airflow_broker_url:
        # Celery's result backend defaults to the metadata DB; each worker runs as many tasks.
        env["AIRFLOW__CELERY__BROKER_URL"] = settings.airflow_broker_url
        env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = parallelism
    return env


def process_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) plus `airflow_env`; an AIRFLOW__* option
    already in `base` wins (Airflow's own way to set what the settings do not cover). The
    venv's bin goes first on PATH: `airflow standalone` starts its components as `airflow`."""
    base = dict(os.environ if base is None else base)
    env = base | airflow_env(settings)
    env |= {key: value for key, value in base.items() if key.startswith("AIRFLOW__")}
    env["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), *filter(None, base.get("PATH", "").split(os.pathsep))]
    )
    return env


def prepare_home(settings: Settings) -> Path:
    """Create AIRFLOW_HOME; write the admin password of the settings where the simple auth
    manager reads it (unset: Airflow generates one on first start and prints it)."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    if settings.airflow_admin_password is not None:
        path = passwords_file(settings)
        path.touch()
        path.chmod(0o600)  # the simple auth manager keeps passwords in plain text
        path.write_text(
            json.dumps(
                {settings.airflow_admin_user: settings.airflow_admin_password.get_secret_value()}
            )
        )
    return home


def exec_airflow(settings: Settings, args: Sequence[str]) -> None:
    """Replace this process with the venv's `airflow <args>` configured from the settings."""
    prepare_home(settings)
    program = str(Path(sys.executable).parent / "airflow")
    os.execve(program, [program, *args], process_env(settings))


# ---------------------------------------------------------------- what the DAGs decide


def collect_interval(settings: Settings) -> timedelta:
    """The collection DAG's interval: one batch window plus a margin.

    The source moves on one batch at the first call after a window is over and never skips
    one, so a call per window + margin collects each batch once, in order, even when a run
    starts a little late or early; calling exactly every window would sometimes land just
    before the move and fetch the old batch again."""
    return timedelta(seconds=settings.batch_seconds + settings.collect_margin_seconds)


def pause_marker(
    settings: Settings, detail: str, previous: dict | None, now: datetime | None = None
) -> dict:
    """What PAUSE_VARIABLE holds after a call found the source exhausted."""
    now = now or datetime.now(UTC)
    same = previous is not None and _same_source(previous, settings)
    return {
        "source_url": settings.source_url,
        "group_number": settings.group_number,
        "detail": detail,
        "since": previous["since"] if same else now.isoformat(),
        "checked_at": now.isoformat(),
    }


def paused_reason(
    marker: dict | None, settings: Settings, resume: bool = False, now: datetime | None = None
) -> str | None:
    """Why this collection run must not call the source, or None when it should.

    Collection is paused while the last call to this source and group found all data
    collected; once every `collect_probe_seconds` a run asks again (the source may have been
    restarted or given new data), and a run triggered with `resume` asks at once."""
    if marker is None or resume or not _same_source(marker, settings):
        return None
    checked = datetime.fromisoformat(marker["checked_at"])
    due = checked + timedelta(seconds=settings.collect_probe_seconds)
    now = now or datetime.now(UTC)
    if now >= due:
        return None
    return (
        f"collection paused since {marker['since']}: {marker['detail']} Next check of the "
        f"source after {due.isoformat(timespec='seconds')}; trigger with resume=true to ask now."
    )


def _same_source(marker: dict, settings: Settings) -> bool:
    # A marker of another source or group does not pause this one.
    return (marker.get("source_url"), marker.get("group_number")) == (
        settings.source_url,
        settings.group_number,
    )


def cover_type_asset():
    """The Airflow Asset of the data DB's `cover_type` table (no credentials in the URI)."""
    from airflow.sdk import Asset

    return Asset(name=COVER_TYPE_ASSET, uri="x-covertype://data-db/cover_type")


def champion_asset(settings: Settings):
    """The Airflow Asset of the served model (`covertype_champion` by default), updated when
    the gate moves the alias."""
    from airflow.sdk import Asset

    name, alias = settings.model_name, settings.model_alias
    return Asset(name=f"{name}_{alias}", uri=f"models:/{name}@{alias}")


# ---------------------------------------------------------------- when to retrain


@dataclass(frozen=True)
class DriftFacts:
    """The latest batch drift report against the current champion."""

    batch_number: int | None
    dataset_drift: bool
    drifted_features: int
    features: int
    share: float
    threshold: float


@dataclass(frozen=True)
class RetrainFacts:
    """What the retraining policy looks at."""

    champion_version: str | None
    champion_rows: int  # rows the champion's training read (0 without a champion)
    rows_now: int  # rows in cover_type now
    drift: DriftFacts | None  # None: no batch report against this champion yet
    min_new_rows_percent: float
    manual: bool = False

    @property
    def new_rows(self) -> int:
        return max(self.rows_now - self.champion_rows, 0)

    @property
    def new_rows_percent(self) -> float:
        return 100 * self.new_rows / self.champion_rows if self.champion_rows else float("inf")


@dataclass(frozen=True)
class RetrainDecision:
    train: bool
    reason: str
    facts: RetrainFacts

    def as_dict(self) -> dict:
        return asdict(self)


def retrain_decision(facts: RetrainFacts) -> RetrainDecision:
    """Train by hand, without a champion, on drift, or when the rows added since the
    champion's training are at least `min_new_rows_percent` of the rows it read; otherwise
    skip, saying why."""

    def decision(train: bool, reason: str) -> RetrainDecision:
        return RetrainDecision(train, reason, facts)

    if facts.manual:
        return decision(True, "training requested by hand")
    if facts.rows_now == 0:
        return decision(False, "nothing to train on: cover_type has no rows yet")
    if facts.champion_version is None:
        return decision(True, f"no champion yet; {facts.rows_now:,} rows to train on")
    version, drift = facts.champion_version, facts.drift
    if drift is None:
        drift_text = f"no drift report against champion v{version} yet"
    else:
        verdict = "drift" if drift.dataset_drift else "no drift"
        comparison = "≥" if drift.dataset_drift else "<"
        drift_text = (
            f"{verdict} in batch {drift.batch_number} ({drift.drifted_features} of "
            f"{drift.features} features drifted, share {drift.share:.2f} {comparison} "
            f"{drift.threshold:g})"
        )
    enough = facts.new_rows_percent >= facts.min_new_rows_percent
    rows_text = (
        f"{facts.new_rows:,} new rows since v{version}'s training are "
        f"{_percent(facts.new_rows_percent)} of the {facts.champion_rows:,} it read "
        f"({'≥' if enough else '<'} {facts.min_new_rows_percent:g}%)"
    )
    if drift is not None and drift.dataset_drift:
        return decision(True, f"{drift_text}; {rows_text}")
    if enough:
        return decision(True, f"{rows_text}; {drift_text}")
    return decision(False, f"{drift_text} and {rows_text}")


def _percent(value: float) -> str:
    return "all new" if value == float("inf") else f"{value:.0f}%"


def retraining_decision(settings: Settings, manual: bool = False) -> RetrainDecision:
    """Gather the facts (the champion and the rows it read from the registry, the rows now
    and the latest batch drift report from the data DB) and decide; what the DAG calls."""
    from covertype import db, tracking
    from covertype.monitor.reference import find_champion

    champion = find_champion(tracking.connect(settings), settings)
    engine = db.make_engine(settings.data_db)
    try:
        db.create_tables(engine)
        rows_now = db.count_rows(settings.data_db)[0]
        report = (
            db.latest_drift_report(engine, "batch", settings.model_name, champion.version)
            if champion
            else None
        )
    finally:
        engine.dispose()
    drift = None
    if report is not None:
        drift = DriftFacts(
            batch_number=report["batch_number"],
            dataset_drift=bool(report["dataset_drift"]),
            drifted_features=report["drifted_features"],
            features=report["features"],
            share=report["drift_share"],
            threshold=report["drift_share_threshold"],
        )
    facts = RetrainFacts(
        champion_version=champion.version if champion else None,
        champion_rows=champion.rows if champion else 0,
        rows_now=rows_now,
        drift=drift,
        min_new_rows_percent=settings.retrain_min_new_rows_percent,
        manual=manual,
    )
    return retrain_decision(facts)


def batches_to_report(extras: Sequence[Mapping], latest: int | None) -> list[int]:
    """The batches a training run reports drift for: those its triggering collections stored
    rows of (each once, in order); a run by hand, the latest batch in the data DB."""
    batches = sorted({int(e["batch_number"]) for e in extras if e.get("batch_number")})
    return batches or ([latest] if latest else [])


def record_decision(settings: Settings, decision: RetrainDecision, run_id: str | None) -> int:
    """The decision into the data DB's `retrain_decisions` (what `covertype up` and the UI
    show); its id."""
    from covertype import db

    engine = db.make_engine(settings.data_db)
    try:
        db.create_tables(engine)
        return db.add_retrain_decision(
            engine,
            {
                "decided_at": datetime.now(UTC),
                "model_name": settings.model_name,
                "champion_version": decision.facts.champion_version,
                "train": decision.train,
                "reason": decision.reason,
                "rows_now": decision.facts.rows_now,
                "champion_rows": decision.facts.champion_rows,
                "run_id": run_id,
            },
        )
    finally:
        engine.dispose()


def predictions_interval(settings: Settings) -> timedelta:
    """How often the monitoring DAG reports drift of the logged predictions."""
    return timedelta(seconds=settings.monitor_predictions_seconds)
