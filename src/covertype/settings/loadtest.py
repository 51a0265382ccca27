"""Locust: its web UI, its login, where it writes its reports."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from covertype.settings.values import Group, setting


class LoadtestSettings(Group):
    host: str = setting("127.0.0.1", "COVERTYPE_LOCUST_HOST", "where Locust's web UI listens")
    port: int = setting(8089, "COVERTYPE_LOCUST_PORT", "Locust's web UI port", ge=1, le=65535)
    user: str = setting("locust", "COVERTYPE_LOCUST_USER", "Locust web UI's user")
    password: SecretStr | None = setting(
        None,
        "COVERTYPE_LOCUST_PASSWORD",
        "Locust web UI's password; the web UI refuses to start without one",
    )
    dir: Path | None = setting(
        None, "COVERTYPE_LOADTEST_DIR", "Locust's reports; unset: a folder in COVERTYPE_HOME"
    )

    @property
    def reports_dir(self) -> Path:
        return self.dir or self._home / "loadtest"
