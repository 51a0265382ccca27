"""Every login of the platform: on or off, the inference API's keys, the UI's password,
MLflow's users. Airflow's and Locust's logins are with their own settings."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator

from covertype.settings.values import MIN_KEY, MIN_PASSWORD, Group, check_secret, setting


class AuthSettings(Group):
    mode: Literal["on", "off"] = setting(
        "on",
        "COVERTYPE_AUTH",
        "off: no login on MLflow, the API or the UI; the local stack refuses it unless every "
        "service listens on 127.0.0.1",
    )
    api_keys: SecretStr | None = setting(
        None,
        "COVERTYPE_API_KEYS",
        f"comma-separated keys the inference API accepts (each >= {MIN_KEY} characters)",
    )
    api_key: SecretStr | None = setting(
        None,
        "COVERTYPE_API_KEY",
        "the key this client sends to the inference API (UI, Locust, `up`)",
    )
    metrics_key: SecretStr | None = setting(
        None,
        "COVERTYPE_METRICS_KEY",
        "the scraper's secret: Bearer key of the API's /metrics, password of the MLflow user "
        "COVERTYPE_MLFLOW_METRICS_USER",
    )
    ui_user: str = setting("covertype", "COVERTYPE_UI_USER", "the Streamlit UI's user")
    ui_password: SecretStr | None = setting(
        None, "COVERTYPE_UI_PASSWORD", "the Streamlit UI's password"
    )
    mlflow_admin_user: str = setting("admin", "COVERTYPE_MLFLOW_ADMIN_USER", "MLflow's admin")
    mlflow_admin_password: SecretStr | None = setting(
        None,
        "COVERTYPE_MLFLOW_ADMIN_PASSWORD",
        "MLflow's admin password; the server refuses to start without one",
    )
    mlflow_auth_db_url: str | None = setting(
        None,
        "COVERTYPE_MLFLOW_AUTH_DB_URL",
        "MLflow's user DB; unset: SQLite in COVERTYPE_HOME (MySQL in compose)",
    )
    mlflow_default_permission: Literal["READ", "NO_PERMISSIONS"] = setting(
        "READ",
        "COVERTYPE_MLFLOW_DEFAULT_PERMISSION",
        "what a signed-in MLflow user may do where no grant says more",
    )
    mlflow_auth_cache_seconds: int = setting(
        60,
        "COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS",
        "how long MLflow trusts a checked password (0: hash every request)",
        ge=0,
    )
    mlflow_train_user: str = setting(
        "covertype-train", "COVERTYPE_MLFLOW_TRAIN_USER", "MLflow user of training, monitoring"
    )
    mlflow_train_password: SecretStr | None = setting(
        None,
        "COVERTYPE_MLFLOW_TRAIN_PASSWORD",
        "its password (EDIT on the experiments and the model)",
    )
    mlflow_serve_user: str = setting(
        "covertype-serve", "COVERTYPE_MLFLOW_SERVE_USER", "MLflow user of the inference API"
    )
    mlflow_serve_password: SecretStr | None = setting(
        None, "COVERTYPE_MLFLOW_SERVE_PASSWORD", "its password (READ)"
    )
    mlflow_ui_user: str = setting(
        "covertype-ui", "COVERTYPE_MLFLOW_UI_USER", "MLflow user of the Streamlit UI"
    )
    mlflow_ui_password: SecretStr | None = setting(
        None, "COVERTYPE_MLFLOW_UI_PASSWORD", "its password (READ)"
    )
    mlflow_metrics_user: str = setting(
        "covertype-metrics",
        "COVERTYPE_MLFLOW_METRICS_USER",
        "MLflow user of the Prometheus scraper (its password: COVERTYPE_METRICS_KEY)",
    )
    # MLflow's client reads these itself; here for the checks and the messages.
    mlflow_tracking_username: str | None = setting(
        None, "MLFLOW_TRACKING_USERNAME", "the MLflow user this process signs in as"
    )
    mlflow_tracking_password: SecretStr | None = setting(
        None, "MLFLOW_TRACKING_PASSWORD", "that user's password"
    )

    @field_validator(
        "ui_password", "mlflow_admin_password", "mlflow_train_password", "mlflow_serve_password",
        "mlflow_ui_password", "mlflow_tracking_password",
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
    def mlflow_auth_db(self) -> str:
        return self.mlflow_auth_db_url or f"sqlite:///{self._home / 'mlflow-auth.db'}"

    @property
    def on(self) -> bool:
        return self.mode == "on"

    @property
    def api_headers(self) -> dict[str, str]:
        """What a client of the inference API sends: its key, if it has one."""
        return {"X-API-Key": self.api_key.get_secret_value()} if self.api_key else {}

    @property
    def accepted_api_keys(self) -> tuple[str, ...]:
        if self.api_keys is None:
            return ()
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(","))
