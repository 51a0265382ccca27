"""Every URL, port, path and secret of the platform, read from the environment and `.env`."""

from __future__ import annotations

import os
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

    # Logins. MLflow's basic-auth app, the inference API's keys and the UI's password gate;
    # Airflow, Locust, MinIO and Grafana have their own logins (settings above and below).
    auth: Literal["on", "off"] = Field(
        "on",
        description="off: no login on MLflow, the API or the UI; the local stack refuses it "
        "unless every service listens on 127.0.0.1",
    )
    api_keys: SecretStr | None = Field(
        None, description="comma-separated keys the inference API accepts (each >= 16 characters)"
    )
    api_key: SecretStr | None = Field(
        None, description="the key this client sends to the inference API (UI, Locust, `up`)"
    )
    metrics_key: SecretStr | None = Field(
        None,
        description="the scraper's secret: Bearer key of the API's /metrics, password of the "
        "MLflow user mlflow_metrics_user",
    )
    ui_user: str = "covertype"
    ui_password: SecretStr | None = Field(None, description="the Streamlit UI's login")
    mlflow_admin_user: str = "admin"
    mlflow_admin_password: SecretStr | None = Field(
        None, description="MLflow's admin; the server refuses to start without one"
    )
    mlflow_auth_db_url: str | None = Field(
        None, description="MLflow's user DB; default SQLite in home (MySQL in compose)"
    )
    mlflow_default_permission: Literal["READ", "NO_PERMISSIONS"] = Field(
        "READ", description="what a signed-in MLflow user may do where no grant says more"
    )
    mlflow_auth_cache_seconds: int = Field(
        60, ge=0, description="how long MLflow trusts a checked password (0: hash every request)"
    )
    mlflow_train_user: str = "covertype-train"
    mlflow_train_password: SecretStr | None = Field(
        None, description="MLflow user of training and monitoring (EDIT on experiments, model)"
    )
    mlflow_serve_user: str = "covertype-serve"
    mlflow_serve_password: SecretStr | None = Field(
        None, description="MLflow user of the inference API (READ)"
    )
    mlflow_ui_user: str = "covertype-ui"
    mlflow_ui_password: SecretStr | None = Field(
        None, description="MLflow user of the Streamlit UI (READ)"
    )
    mlflow_metrics_user: str = "covertype-metrics"
    # MLflow's client reads these itself; here for the checks and the messages.
    mlflow_tracking_username: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_USERNAME")
    )
    mlflow_tracking_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_PASSWORD")
    )

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

    @field_validator(
        "ui_password", "mlflow_admin_password", "mlflow_train_password", "mlflow_serve_password",
        "mlflow_ui_password", "mlflow_tracking_password", "airflow_admin_password",
    )  # fmt: skip
    @classmethod
    def _long_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value(), MIN_PASSWORD, "a password")
        return value

    @field_validator("api_key", "metrics_key")
    @classmethod
    def _long_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value(), MIN_KEY, "a key")
        return value

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keys = value.get_secret_value().split(",")
            for number, key in enumerate(keys, 1):
                check_secret(key.strip(), MIN_KEY, f"key {number} of {len(keys)}")
        return value

    @property
    def api_headers(self) -> dict[str, str]:
        """What a client of the inference API sends: its key, if it has one."""
        return {"X-API-Key": self.api_key.get_secret_value()} if self.api_key else {}

    @property
    def accepted_api_keys(self) -> tuple[str, ...]:
        if self.api_keys is None:
            return ()
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(","))

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
    def mlflow_auth_db(self) -> str:
        return self.mlflow_auth_db_url or f"sqlite:///{self.home / 'mlflow-auth.db'}"

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


MIN_PASSWORD = 12  # MLflow's own minimum; the other logins ask for as much
MIN_KEY = 16


def check_secret(text: str, minimum: int, what: str) -> None:
    """ValueError saying what is wrong with a password or key (never the secret itself).
    A key goes in a header and in a comma-separated list: no spaces, no commas."""
    if not text:
        raise ValueError(f"{what} is empty; it needs at least {minimum} characters")
    if len(text) < minimum:
        raise ValueError(f"{what} is too short ({len(text)} characters): at least {minimum}")
    if "key" in what and any(c.isspace() or c == "," for c in text):
        raise ValueError(f"{what} may not contain spaces or commas")


def write_secret(path: Path, text: str) -> None:
    """`text` in `path`, readable by this user only from its first byte (no window at 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    temporary.replace(path)


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


def _shown(error: dict) -> str:
    field = Settings.model_fields[str(error["loc"][0])]
    return "<hidden>" if "SecretStr" in str(field.annotation) else repr(error.get("input"))


class MissingSecret(RuntimeError):
    """A login is on and the secret it needs is not set; the message names the variable."""


def require(settings: Settings, field: str, what: str) -> str:
    """The secret `field` of the settings, or MissingSecret saying `what` needs it."""
    value = getattr(settings, field)
    if value is None:
        raise MissingSecret(
            f"{env_name(field)} is not set: with COVERTYPE_AUTH=on {what} "
            "(COVERTYPE_AUTH=off turns the logins off, on 127.0.0.1 only)"
        )
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class SettingsError(ValueError):
    """Settings that do not validate, each named by its environment variable."""


@lru_cache
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            f"{env_name(str(e['loc'][0]))}={_shown(e)}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
