"""Every URL, port, path and secret of the platform, read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COVERTYPE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Local state: SQLite files, dataset cache, source state, logs.
    home: Path = Path(".covertype")

    # Source API
    source_data: Path | None = Field(
        None, description="UCI 55-column covtype CSV (.gz allowed); unset: sklearn fetch_covtype"
    )
    source_url: str = "http://127.0.0.1:8087"
    source_host: str = "127.0.0.1"
    source_port: int = Field(8087, ge=1, le=65535)
    group_number: int = Field(7, ge=1, le=10)
    batch_seconds: float = Field(300.0, gt=0)
    source_order: Literal["random", "elevation", "wilderness"] = Field(
        "random",
        description="drift scenario: random batches (the course's), elevation bands from the "
        "lowest, or the wilderness areas one after another",
    )

    # Ingestion
    data_db_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in home")
    ingest_attempts: int = Field(5, ge=1, description="tries per source call before giving up")
    ingest_backoff_seconds: float = Field(1.0, ge=0, description="first retry wait, doubling")
    ingest_timeout_seconds: float = Field(30.0, gt=0)

    # MLflow and its artifact store (names fixed by MLflow/boto, hence no prefix)
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:8084", validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = Field(8084, ge=1, le=65535)
    mlflow_backend_store_uri: str | None = Field(
        None, description="MLflow server's DB; default SQLite in home (MySQL in compose)"
    )
    mlflow_artifacts_destination: str | None = Field(
        None, description="where the server keeps artifacts; default a folder in home (S3)"
    )
    mlflow_workers: int = Field(1, ge=1)
    mlflow_allowed_hosts: str | None = Field(
        None, description="Host headers the server accepts; unset: localhost and private IPs"
    )
    mlflow_attempts: int = Field(3, ge=1, description="tries to reach the tracking server")
    mlflow_backoff_seconds: float = Field(2.0, ge=0)
    mlflow_s3_endpoint_url: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_S3_ENDPOINT_URL")
    )
    aws_access_key_id: str | None = Field(None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY")
    )
    model_name: str = "covertype"
    model_alias: str = "champion"
    experiment_name: str = "covertype"

    # Training
    train_n_iter: int = Field(5, ge=1, description="candidates of the random search")
    train_seed: int = 0
    train_threads: int = Field(
        0,
        ge=0,
        description="threads of each training fit; 0: every core (the local stack: all but one)",
    )
    holdout_percent: int = Field(20, ge=1, le=50, description="rows held out, by row key")
    validation_percent: int = Field(
        20, ge=1, le=50, description="of the other rows, to choose the candidate"
    )

    # Monitoring: drift reports and the retraining policy
    monitor_predictions_seconds: float = Field(
        3600.0, gt=0, description="how often the logged predictions get a drift report"
    )
    monitoring_experiment: str = Field(
        "covertype-monitoring", description="MLflow experiment of the drift reports"
    )
    drift_reference_rows: int = Field(
        5000, ge=1, description="seeded sample of the champion's training rows drift compares to"
    )
    drift_min_rows: int = Field(
        100, ge=1, description="fewest current rows (batch or predictions) a drift report needs"
    )
    retrain_min_new_rows_percent: float = Field(
        20.0, ge=0, description="new rows, as % of the champion's, that call for a training"
    )

    # Inference API, UI, Airflow, Locust
    api_url: str = "http://127.0.0.1:8085"
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8085, ge=1, le=65535)
    serve_workers: int = Field(1, ge=1, description="inference API worker processes")
    serve_watch_seconds: float = Field(
        10.0, gt=0, description="how often the inference API checks where the alias points"
    )
    serve_registry_timeout_seconds: float = Field(
        10.0, gt=0, description="HTTP timeout of the inference API's registry calls"
    )
    serve_max_batch: int = Field(1000, ge=1, description="records per /predict/batch call")
    serve_predictor: str = Field(
        "auto",
        pattern="^(auto|fast|pipeline)$",
        description="auto: the fastest predictor that matches the pipeline (ONNX trees for "
        "LightGBM); fast: NumPy encoder and the model's own trees; pipeline: the pipeline",
    )
    serve_model_cache: Path | None = Field(
        None, description="last loaded model on local disk; default a folder in home"
    )
    serve_access_log: str = Field(
        "errors",
        pattern="^(all|errors|off)$",
        description="JSON log line per request: all, errors (4xx/5xx answers only) or off",
    )
    prediction_log: str = Field(
        "on", pattern="^(on|off)$", description="every answer recorded in the data DB's predictions"
    )
    prediction_log_queue: int = Field(
        10_000, ge=1, description="answered records the log keeps in memory; more are dropped"
    )
    prediction_log_flush_seconds: float = Field(
        1.0, gt=0, description="how often the log writes its queue to the data DB"
    )
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(8086, ge=1, le=65535)
    airflow_port: int = Field(8080, ge=1, le=65535)
    locust_port: int = Field(8089, ge=1, le=65535)
    locust_host: str = Field("127.0.0.1", description="where Locust's web UI listens")
    locust_user: str = "locust"
    locust_password: SecretStr | None = Field(
        None, description="Locust web UI login; the web UI refuses to start without one"
    )
    loadtest_dir: Path | None = Field(None, description="reports; default a folder in home")
    public_host: str = Field(
        "127.0.0.1", description="host name the UI's links to the other services use"
    )
    minio_console_port: int = Field(8083, ge=1, le=65535)
    ui_links: str = Field(
        "api,mlflow,airflow",
        pattern=r"^[a-z,]*$",
        description="the services the UI links to (api, mlflow, airflow, minio, prometheus, "
        "grafana); Locust's link shows while locust_url answers",
    )
    locust_url: str | None = Field(
        None, description="where the UI checks that a Locust web run is up (unset: locust_host)"
    )

    # Prometheus (locally when its binary is on PATH) and Grafana (compose, k8s)
    prometheus_host: str = "127.0.0.1"
    prometheus_port: int = Field(9090, ge=1, le=65535)
    prometheus_url: str | None = Field(
        None, description="the Prometheus the UI queries for request rate and latency"
    )
    prometheus_scrape_seconds: float = Field(
        10.0, gt=0, description="the local Prometheus' scrape and rule interval"
    )
    grafana_port: int = Field(3000, ge=1, le=65535)

    # Airflow
    airflow_host: str = "127.0.0.1"
    airflow_admin_user: str = "admin"
    airflow_admin_password: SecretStr | None = Field(
        None, description="unset: Airflow generates one on first start and prints it"
    )
    airflow_db_url: str | None = Field(
        None, description="metadata DB; default SQLite in home (PostgreSQL in compose)"
    )
    airflow_executor: str = Field("LocalExecutor", description="CeleryExecutor in compose")
    airflow_broker_url: str | None = Field(None, description="Celery broker (Redis in compose)")
    airflow_parallelism: int = Field(4, ge=1, description="task instances running at once")
    collect_margin_seconds: float = Field(
        30.0, ge=0, description="added to batch_seconds: the collection DAG's interval"
    )
    collect_timeout_seconds: float = Field(300.0, gt=0, description="one collection try")
    collect_probe_seconds: float = Field(
        3600.0, ge=0, description="how often a paused (source exhausted) collection asks again"
    )
    train_timeout_seconds: float = Field(7200.0, gt=0, description="one training DAG try")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        # Every process (API, CLI, Airflow task) must agree on one folder, whatever its cwd.
        return home.expanduser().resolve()

    @property
    def data_db(self) -> str:
        return self.data_db_url or f"sqlite:///{self.home / 'cover_type.db'}"

    @property
    def mlflow_backend_store(self) -> str:
        return self.mlflow_backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> str:
        return self.mlflow_artifacts_destination or str(self.home / "mlartifacts")

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def serve_model_cache_dir(self) -> Path:
        return self.serve_model_cache or self.home / "serve-cache"

    @property
    def source_state_path(self) -> Path:
        return self.home / "source_state.db"


def client_host(host: str) -> str:
    """Where a client reaches a server that listens on `host` (0.0.0.0 is no address)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def safe_url(url: str) -> str:
    """A database URL with its password hidden, for logs, tags and messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def env_name(field: str) -> str:
    """The environment variable that sets a field of Settings."""
    alias = Settings.model_fields[field].validation_alias
    return alias.choices[0] if alias else f"COVERTYPE_{field.upper()}"


class SettingsError(ValueError):
    """Settings that do not validate, each named by its environment variable."""


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"{env_name(str(e['loc'][0]))}={e.get('input')!r}: {e['msg']}" for e in error.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
