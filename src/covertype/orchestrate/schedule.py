"""What the DAGs decide about time and data: ids, assets, the collection's interval and
pause, the monitoring's interval, the batches a training reports drift for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from covertype.settings import Settings

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
COLLECT_DAG = "covertype_collect"
TRAIN_DAG = "covertype_train"
MONITOR_DAG = "covertype_monitor"
COVER_TYPE_ASSET = "cover_type"
# Airflow Variable: set while the source says all data was collected (see `paused_reason`).
PAUSE_VARIABLE = "covertype_collection_paused"


def collect_interval(settings: Settings) -> timedelta:
    """The collection DAG's interval: one batch window plus a margin.

    The source moves on one batch at the first call after a window is over and never skips
    one, so a call per window + margin collects each batch once, in order, even when a run
    starts a little late or early; calling exactly every window would sometimes land just
    before the move and fetch the old batch again."""
    return timedelta(
        seconds=settings.source.batch_seconds + settings.airflow.collect_margin_seconds
    )


def pause_marker(
    settings: Settings, detail: str, previous: dict | None, now: datetime | None = None
) -> dict:
    """What PAUSE_VARIABLE holds after a call found the source exhausted."""
    now = now or datetime.now(UTC)
    since = now.isoformat()
    if previous is not None and _same_source(previous, settings):
        since = previous["since"]  # paused on this source since then
    return {
        "source_url": settings.source.url,
        "group_number": settings.source.group_number,
        "detail": detail,
        "since": since,
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
    due = checked + timedelta(seconds=settings.airflow.collect_probe_seconds)
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
        settings.source.url,
        settings.source.group_number,
    )


def cover_type_asset():
    """The Airflow Asset of the data DB's `cover_type` table (no credentials in the URI)."""
    from airflow.sdk import Asset

    return Asset(name=COVER_TYPE_ASSET, uri="x-covertype://data-db/cover_type")


def champion_asset(settings: Settings):
    """The Airflow Asset of the served model (`covertype_champion` by default), updated when
    the gate moves the alias."""
    from airflow.sdk import Asset

    name, alias = settings.mlflow.model_name, settings.mlflow.model_alias
    return Asset(name=f"{name}_{alias}", uri=f"models:/{name}@{alias}")


def batches_to_report(extras: Sequence[Mapping], latest: int | None) -> list[int]:
    """The batches a training run reports drift for: those its triggering collections stored
    rows of (each once, in order); a run by hand, the latest batch in the data DB."""
    batches = sorted({int(e["batch_number"]) for e in extras if e.get("batch_number")})
    return batches or ([latest] if latest else [])


def predictions_interval(settings: Settings) -> timedelta:
    """How often the monitoring DAG reports drift of the logged predictions."""
    return timedelta(seconds=settings.monitor.predictions_seconds)
