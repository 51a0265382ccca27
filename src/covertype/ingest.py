"""Ingestion: fetch the current batch from the source API, validate, store once.

`ingest_once` is what the CLI and the Airflow DAG call. Valid rows go to `cover_type`
keyed by their content, invalid rows to `cover_type_quarantine` with the reason; both in
one transaction, so a killed run leaves nothing half-written and a rerun adds exactly what
is missing. "All data was collected" is a normal end (`exhausted=True`), not an error.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from covertype import db, http_errors, schema
from covertype.errors import CovertypeError
from covertype.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Ours says "All data was collected"; the course API says "Ya se recolectó toda la información".
_EXHAUSTED = re.compile(r"collected|recolect", re.IGNORECASE)


class SourceError(CovertypeError):
    """The source API refused the request (not retried: it would refuse again), or did
    not answer after every retry."""

    status = 502


@dataclass
class Batch:
    group_number: int
    batch_number: int | None  # None: the source has no more data
    rows: list
    detail: str = ""

    @property
    def exhausted(self) -> bool:
        return self.batch_number is None


@dataclass
class IngestResult:
    group_number: int
    batch_number: int | None
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    exhausted: bool = False
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.exhausted:
            return f"group {self.group_number}: source exhausted ({self.detail})"
        return (
            f"group {self.group_number} batch {self.batch_number}: received {self.received}, "
            f"stored {self.stored}, duplicates {self.duplicates}, quarantined {self.quarantined}"
        )


def _retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def fetch_batch(settings: Settings, client: httpx.Client | None = None) -> Batch:
    """One GET /data, retried with exponential backoff on connection errors and 5xx."""
    own_client = client is None
    if client is None:
        client = httpx.Client(base_url=settings.source.url, timeout=settings.ingest.timeout_seconds)

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(settings.ingest.attempts),
        wait=wait_exponential(multiplier=settings.ingest.backoff_seconds, max=60),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    def get() -> httpx.Response:
        response = client.get("/data", params={"group_number": settings.source.group_number})
        if response.status_code >= 500:
            response.raise_for_status()
        return response

    try:
        response = get()
    except httpx.HTTPError as error:
        raise SourceError(
            f"source API {settings.source.url} failed after {settings.ingest.attempts} "
            f"attempts: {error!r}"
        ) from error
    finally:
        if own_client:
            client.close()

    if response.status_code == 400:
        detail = http_errors.detail(response)
        if _EXHAUSTED.search(detail):
            return Batch(settings.source.group_number, None, [], detail)
        raise SourceError(f"source API {response.url} answered 400: {detail}")
    if response.status_code != 200:
        raise SourceError(
            f"source API {response.url} answered {response.status_code}: "
            f"{http_errors.detail(response)}"
        )
    body = response.json()
    try:
        return Batch(int(body["group_number"]), int(body["batch_number"]), list(body["data"]))
    except (KeyError, TypeError, ValueError) as error:
        raise SourceError(
            f"source API {response.url} answered an unexpected body ({error!r}); expected "
            "group_number, batch_number and data"
        ) from error


def store_batch(engine, batch: Batch, now: datetime | None = None) -> IngestResult:
    """Validate the rows of one batch and store them once; one transaction for all."""
    if batch.batch_number is None:  # the source has no more data: nothing to store
        return IngestResult(batch.group_number, None, exhausted=True, detail=batch.detail)
    now = now or datetime.now(UTC)
    valid = schema.validate_rows(batch.rows)
    bad = {}
    for item in valid.rejected:
        raw = json.dumps(item.row, default=str)
        key = db.row_key([raw])
        bad[key] = {
            "raw_key": key,
            "raw": raw,
            "reason": item.reason,
            "batch_number": batch.batch_number,
            "group_number": batch.group_number,
            "received_at": now,
        }
    with engine.begin() as conn:
        stored = db.store_rows(
            conn, valid, batch_number=batch.batch_number, group_number=batch.group_number, at=now
        )
        db.insert_new(conn, db.quarantine, list(bad.values()))
    return IngestResult(
        group_number=batch.group_number,
        batch_number=batch.batch_number,
        received=len(batch.rows),
        stored=stored,
        duplicates=len(valid.clean) - stored,
        quarantined=len(valid.rejected),
    )


def ingest_once(settings: Settings | None = None, engine=None) -> IngestResult:
    """Fetch the current batch and store it. The function the CLI and the DAG call."""
    settings = settings or get_settings()
    engine = engine or db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    batch = fetch_batch(settings)
    if batch.exhausted:
        result = IngestResult(batch.group_number, None, exhausted=True, detail=batch.detail)
    else:
        result = store_batch(engine, batch)
    log.info("ingest finished", extra=result.as_dict())
    return result


def ingest_until_exhausted(
    settings: Settings | None = None,
    poll_seconds: float | None = None,
    on_result: Callable[[IngestResult], None] | None = None,
    max_calls: int | None = None,
) -> Sequence[IngestResult]:
    """Keep calling the source (every `poll_seconds`, default a third of the batch window)
    until it says all data was collected; returns every call's result."""
    settings = settings or get_settings()
    poll_seconds = settings.source.batch_seconds / 3 if poll_seconds is None else poll_seconds
    engine = db.make_engine(settings.data_db)
    results: list[IngestResult] = []
    try:
        while max_calls is None or len(results) < max_calls:
            result = ingest_once(settings, engine)
            results.append(result)
            if on_result:
                on_result(result)
            if result.exhausted:
                break
            time.sleep(poll_seconds)
    finally:
        engine.dispose()
    return results
