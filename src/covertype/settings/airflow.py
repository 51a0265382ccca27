"""Airflow as the platform runs it, and the timing of its DAGs."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, field_validator

from covertype.settings.values import MIN_PASSWORD, Group, check_secret, setting


class AirflowSettings(Group):
    host: str = setting("127.0.0.1", "COVERTYPE_AIRFLOW_HOST", "where Airflow's api-server listens")
    port: int = setting(
        8080, "COVERTYPE_AIRFLOW_PORT", "Airflow's api-server (and UI) port", ge=1, le=65535
    )
    admin_user: str = setting("admin", "COVERTYPE_AIRFLOW_ADMIN_USER", "Airflow's admin user")
    admin_password: SecretStr | None = setting(
        None,
        "COVERTYPE_AIRFLOW_ADMIN_PASSWORD",
        "Airflow's admin password; unset: Airflow generates one on first start and prints it",
    )
    db_url: str | None = setting(
        None,
        "COVERTYPE_AIRFLOW_DB_URL",
        "Airflow's metadata DB; unset: SQLite in COVERTYPE_HOME (PostgreSQL in compose)",
    )
    executor: str = setting(
        "LocalExecutor",
        "COVERTYPE_AIRFLOW_EXECUTOR",
        "Airflow's executor (CeleryExecutor in compose)",
    )
    broker_url: str | None = setting(
        None, "COVERTYPE_AIRFLOW_BROKER_URL", "the Celery broker (Redis in compose)"
    )
    parallelism: int = setting(
        4, "COVERTYPE_AIRFLOW_PARALLELISM", "task instances running at once", ge=1
    )
    collect_margin_seconds: float = setting(
        30.0,
        "COVERTYPE_COLLECT_MARGIN_SECONDS",
        "added to COVERTYPE_BATCH_SECONDS: the collection DAG's interval",
        ge=0,
    )
    collect_timeout_seconds: float = setting(
        300.0, "COVERTYPE_COLLECT_TIMEOUT_SECONDS", "one collection try", gt=0
    )
    collect_probe_seconds: float = setting(
        3600.0,
        "COVERTYPE_COLLECT_PROBE_SECONDS",
        "how often a paused (source exhausted) collection asks the source again",
        ge=0,
    )
    train_timeout_seconds: float = setting(
        7200.0, "COVERTYPE_TRAIN_TIMEOUT_SECONDS", "one training DAG try", gt=0
    )

    @property
    def metadata_db(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'airflow.db'}"

    @property
    def home(self) -> Path:
        """AIRFLOW_HOME: Airflow's own folder in COVERTYPE_HOME."""
        return self._home / "airflow"

    @field_validator("admin_password")
    @classmethod
    def _long_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value(), MIN_PASSWORD, "a password")
        return value
