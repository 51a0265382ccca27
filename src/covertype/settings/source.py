"""The source API's settings, and where ingestion finds it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from covertype.settings.values import Group, setting


class SourceSettings(Group):
    data: Path | None = setting(
        None,
        "COVERTYPE_SOURCE_DATA",
        "the covtype file the source API serves (UCI 55-column CSV, .gz allowed); "
        "unset: scikit-learn's fetch_covtype",
    )
    url: str = setting(
        "http://127.0.0.1:8087", "COVERTYPE_SOURCE_URL", "where ingestion calls the source API"
    )
    host: str = setting("127.0.0.1", "COVERTYPE_SOURCE_HOST", "where the source API listens")
    port: int = setting(8087, "COVERTYPE_SOURCE_PORT", "the source API's port", ge=1, le=65535)
    group_number: int = setting(
        7, "COVERTYPE_GROUP_NUMBER", "the group number ingestion asks for (1-10)", ge=1, le=10
    )
    batch_seconds: float = setting(
        300.0, "COVERTYPE_BATCH_SECONDS", "how long the source API keeps one batch", gt=0
    )
    order: Literal["random", "elevation", "wilderness"] = setting(
        "random",
        "COVERTYPE_SOURCE_ORDER",
        "drift scenario: random batches (the course's), elevation bands from the lowest, or "
        "the wilderness areas one after another",
    )

    @property
    def state_path(self) -> Path:
        """Where the source API keeps each group's batch (it survives a restart)."""
        return self._home / "source_state.db"
