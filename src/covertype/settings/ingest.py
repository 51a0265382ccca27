"""How ingestion calls the source API."""

from __future__ import annotations

from covertype.settings.values import Group, setting


class IngestSettings(Group):
    attempts: int = setting(
        5, "COVERTYPE_INGEST_ATTEMPTS", "tries per source call before giving up", ge=1
    )
    backoff_seconds: float = setting(
        1.0, "COVERTYPE_INGEST_BACKOFF_SECONDS", "first retry wait, doubling", ge=0
    )
    timeout_seconds: float = setting(
        30.0, "COVERTYPE_INGEST_TIMEOUT_SECONDS", "HTTP timeout of one source call", gt=0
    )
