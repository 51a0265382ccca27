"""MLflow's basic-auth configuration from the settings: the config file (0600 in
COVERTYPE_HOME), the admin and the service users, the server's environment."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from covertype.errors import ConfigurationError
from covertype.settings import Settings, write_secret

LEGACY_ADMIN_PASSWORD = "password1234"  # what MLflow < 3.x shipped in basic_auth.ini
AUTH_CONFIG_NAME = "mlflow-auth.ini"


class AuthSetupError(ConfigurationError):
    """The settings cannot start MLflow with authentication (said in one line)."""


@dataclass(frozen=True)
class ServiceUser:
    role: str  # train, serve, ui, metrics
    username: str
    password: str
    env: str  # the variable its password comes from, for the messages


def auth_config_path(settings: Settings) -> Path:
    return settings.home / AUTH_CONFIG_NAME


def admin_password(settings: Settings) -> str:
    """The admin's password, or AuthSetupError naming the variable to set."""
    secret = settings.auth.mlflow_admin_password
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise AuthSetupError(
            "COVERTYPE_MLFLOW_ADMIN_PASSWORD is not set: MLflow with COVERTYPE_AUTH=on needs "
            "an admin password (at least 12 characters), or set COVERTYPE_AUTH=off"
        )
    if value == LEGACY_ADMIN_PASSWORD:
        raise AuthSetupError(
            "COVERTYPE_MLFLOW_ADMIN_PASSWORD is MLflow's old published default "
            f"({LEGACY_ADMIN_PASSWORD!r}): choose another one"
        )
    return value


def service_users(settings: Settings) -> list[ServiceUser]:
    """The platform's MLflow users whose password is set (the others are left alone)."""
    wanted = [
        ("train", settings.auth.mlflow_train_user, settings.auth.mlflow_train_password,
         "COVERTYPE_MLFLOW_TRAIN_PASSWORD"),
        ("serve", settings.auth.mlflow_serve_user, settings.auth.mlflow_serve_password,
         "COVERTYPE_MLFLOW_SERVE_PASSWORD"),
        ("ui", settings.auth.mlflow_ui_user, settings.auth.mlflow_ui_password,
         "COVERTYPE_MLFLOW_UI_PASSWORD"),
        ("metrics", settings.auth.mlflow_metrics_user, settings.auth.metrics_key,
         "COVERTYPE_METRICS_KEY"),
    ]  # fmt: skip
    users = [
        ServiceUser(role, name, secret.get_secret_value(), env)
        for role, name, secret, env in wanted
        if secret is not None and secret.get_secret_value()
    ]
    names = [settings.auth.mlflow_admin_user, *(u.username for u in users)]
    if len(set(names)) < len(names):
        raise AuthSetupError(
            "two MLflow users share a name (COVERTYPE_MLFLOW_ADMIN_USER, ..._TRAIN_USER, "
            f"..._SERVE_USER, ..._UI_USER, ..._METRICS_USER): {', '.join(names)}"
        )
    return users


def auth_config_text(settings: Settings) -> str:
    """MLflow's auth config (read with ConfigParser's interpolation: `%` doubled). The
    admin's password is not in it: MLflow reads MLFLOW_AUTH_ADMIN_PASSWORD."""

    def value(text: str) -> str:
        return text.replace("%", "%%")

    return "\n".join([
        "# Written by `covertype mlflow` at each start from the settings; edits are lost.",
        "[mlflow]",
        f"default_permission = {settings.auth.mlflow_default_permission}",
        f"database_uri = {value(settings.auth.mlflow_auth_db)}",
        f"admin_username = {value(settings.auth.mlflow_admin_user)}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        f"auth_cache_ttl_seconds = {settings.auth.mlflow_auth_cache_seconds}",
        "",
    ])  # fmt: skip


def write_auth_config(settings: Settings) -> Path:
    """The config file in home, mode 0600 (it holds the user DB's URL, maybe a password)."""
    path = auth_config_path(settings)
    write_secret(path, auth_config_text(settings))  # a new file: 0600 also over an old one
    return path


def flask_secret_key(settings: Settings) -> str:
    """The static key MLflow's auth app needs for CSRF (the same in every worker and
    replica): MLFLOW_FLASK_SERVER_SECRET_KEY when set, else derived from the admin password."""
    if given := os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        return given
    key = admin_password(settings).encode()
    return hmac.new(key, b"covertype mlflow flask secret key", hashlib.sha256).hexdigest()


def auth_environment(settings: Settings) -> dict[str, str]:
    """The server's auth variables (writes the config file they point at)."""
    password = admin_password(settings)
    service_users(settings)  # name clashes fail before anything is written
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(settings)),
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.auth.mlflow_admin_user,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret_key(settings),
        "COVERTYPE_MLFLOW_METRICS_USER": settings.auth.mlflow_metrics_user,  # create_auth_app's
        # bootstrap_auth ran MLflow's migrations and made the admin: the workers need not
        # (MLflow's CLI sets this itself for its own `basic-auth` app name only).
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
    }
