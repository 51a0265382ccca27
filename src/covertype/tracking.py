"""The MLflow tracking server as the platform runs it, and the client's connection check.

One command line for every place that starts the server (local stack, tests, compose):
a database backend store (SQLite locally, MySQL in compose), an artifact destination
(a folder locally, S3/MinIO in compose) proxied by the server (`--serve-artifacts`), so
clients need no storage credentials, and Prometheus metrics on /metrics
(`--expose-prometheus`, prometheus-flask-exporter: requests by method and status, latency).

With COVERTYPE_AUTH=on the server is MLflow's own basic-auth app (`--app-name basic-auth`):
its config file written to COVERTYPE_HOME (0600), its user DB (SQLite in home, MySQL in
compose) bootstrapped before the server starts with MLflow's own store: the admin and the
platform's service users, their passwords taken from the environment each start, and the
training user's grants.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from covertype.settings import Settings, safe_url, write_secret

log = logging.getLogger(__name__)


class TrackingUnreachable(RuntimeError):
    """The MLflow tracking server did not answer."""


def server_command(settings: Settings, host: str | None = None, port: int | None = None) -> list:
    """`mlflow server ...` with the store, artifacts and port of the settings."""
    destination = settings.mlflow_artifacts
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    allowed = ["--allowed-hosts", settings.mlflow_allowed_hosts]
    # The venv's own mlflow, also when the venv is not on PATH.
    beside = Path(sys.executable).parent / "mlflow"
    return [
        str(beside) if beside.exists() else "mlflow",
        "server",
        "--host",
        host or settings.mlflow_host,
        "--port",
        str(port or settings.mlflow_port),
        "--backend-store-uri",
        settings.mlflow_backend_store,
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--workers",
        str(settings.mlflow_workers),
        "--expose-prometheus",
        str(metrics_dir(settings)),
        # MLflow 3 rejects unknown Host headers; compose and k8s reach it by service name.
        *(allowed if settings.mlflow_allowed_hosts else []),
        *(["--app-name", AUTH_APP] if settings.auth == "on" else []),
    ]


def metrics_dir(settings: Settings) -> Path:
    """The workers' shared metric files (prometheus_client's multiprocess mode)."""
    return settings.home / "mlflow-metrics"


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment the server needs for an S3 artifact destination (MinIO, SeaweedFS)."""
    env = {}
    if settings.mlflow_s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.mlflow_s3_endpoint_url
    if settings.aws_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.aws_access_key_id
    if settings.aws_secret_access_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.aws_secret_access_key.get_secret_value()
    return env


def exec_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Replace this process with the MLflow server (signals reach it directly). With auth
    on: refuses to start (exit 1, one line) without a usable admin password, else writes the
    auth config and bootstraps the user DB first."""
    command = server_command(settings, host, port)
    if settings.mlflow_backend_store.startswith("sqlite:///"):
        Path(settings.mlflow_backend_store.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    # MLflow 3's job runner (GenAI evaluation jobs) is two more processes we never use.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    if settings.auth == "on":
        try:
            env |= auth_environment(settings)
            os.environ.update(env)  # MLflow's auth module reads its config path at import
            for line in bootstrap_auth(settings):
                log.info(line)
        except AuthSetupError as error:
            print(f"covertype mlflow: {error}", file=sys.stderr)
            raise SystemExit(1) from None
    # Files of a previous run's workers would add their counts to this run's.
    shutil.rmtree(metrics_dir(settings), ignore_errors=True)
    log.info("starting MLflow server", extra={"command": " ".join(command)})
    os.execvpe(command[0], command, env | server_environment(settings))


# ---------------------------------------------------------------- MLflow's basic-auth app

LEGACY_ADMIN_PASSWORD = "password1234"  # what MLflow < 3.x shipped in basic_auth.ini
AUTH_CONFIG_NAME = "mlflow-auth.ini"
# MLflow's basic-auth app plus one route rule (create_auth_app), registered in pyproject.toml
# as an `mlflow.app` entry point: `mlflow server --app-name covertype-auth`.
AUTH_APP = "covertype-auth"


def create_auth_app(app=None):
    """MLflow's basic-auth app (`mlflow.server.auth:create_app`), with Prometheus' /metrics
    open to the metrics user and admins. MLflow's auth answers 403 to every signed-in
    non-admin on a route it has no rule for (MLFLOW_BASIC_AUTH_FAIL_CLOSED, on by default),
    and /metrics (--expose-prometheus) has none; turning fail-closed off would open every
    such route to every user, this opens one route to one user. Runs in each worker."""
    from mlflow.server import app as flask_app
    from mlflow.server import auth

    metrics_user = os.environ.get("COVERTYPE_MLFLOW_METRICS_USER", "covertype-metrics")

    def can_scrape() -> bool:
        return auth.authenticate_request().username == metrics_user

    auth.BEFORE_REQUEST_VALIDATORS[("/metrics", "GET")] = can_scrape
    return auth.create_app(app or flask_app)


class AuthSetupError(RuntimeError):
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
    secret = settings.mlflow_admin_password
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
        ("train", settings.mlflow_train_user, settings.mlflow_train_password,
         "COVERTYPE_MLFLOW_TRAIN_PASSWORD"),
        ("serve", settings.mlflow_serve_user, settings.mlflow_serve_password,
         "COVERTYPE_MLFLOW_SERVE_PASSWORD"),
        ("ui", settings.mlflow_ui_user, settings.mlflow_ui_password,
         "COVERTYPE_MLFLOW_UI_PASSWORD"),
        ("metrics", settings.mlflow_metrics_user, settings.metrics_key, "COVERTYPE_METRICS_KEY"),
    ]  # fmt: skip
    users = [
        ServiceUser(role, name, secret.get_secret_value(), env)
        for role, name, secret, env in wanted
        if secret is not None and secret.get_secret_value()
    ]
    names = [settings.mlflow_admin_user, *(u.username for u in users)]
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
        f"default_permission = {settings.mlflow_default_permission}",
        f"database_uri = {value(settings.mlflow_auth_db)}",
        f"admin_username = {value(settings.mlflow_admin_user)}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        f"auth_cache_ttl_seconds = {settings.mlflow_auth_cache_seconds}",
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
        "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow_admin_user,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret_key(settings),
        "COVERTYPE_MLFLOW_METRICS_USER": settings.mlflow_metrics_user,  # create_auth_app's
        # bootstrap_auth ran MLflow's migrations and made the admin: the workers need not
        # (MLflow's CLI sets this itself for its own `basic-auth` app name only).
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
    }


def existing_experiments(settings: Settings, names: list[str]) -> dict[str, str]:
    """{name: experiment id} of those experiments already in the backend store (a fresh
    store has none; a non-SQL store is not looked in)."""
    import sqlalchemy as sa

    uri = settings.mlflow_backend_store
    if "://" not in uri or uri.startswith("file:"):
        return {}
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {}
    engine = sa.create_engine(uri)
    try:
        if not sa.inspect(engine).has_table("experiments"):
            return {}
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, experiment_id FROM experiments "
                    "WHERE name IN :names AND lifecycle_stage = 'active'"
                ).bindparams(sa.bindparam("names", expanding=True)),
                {"names": names},
            )
            return {name: str(experiment_id) for name, experiment_id in rows}
    finally:
        engine.dispose()


def wanted_grants(settings: Settings, experiments: dict[str, str]) -> list[tuple]:
    """(username, resource type, pattern, permission) the service users need. Training:
    EDIT on the registered model (by name, also before it exists) and on the experiments
    that exist (one it creates itself gets MANAGE from MLflow). Readers: nothing beyond
    default_permission READ; under NO_PERMISSIONS, READ on every experiment and model."""
    grants = []
    for user in service_users(settings):
        if user.role == "train":
            grants.append((user.username, "registered_model", settings.model_name, "EDIT"))
            grants += [(user.username, "experiment", i, "EDIT") for i in experiments.values()]
        elif settings.mlflow_default_permission == "NO_PERMISSIONS":
            grants += [
                (user.username, kind, "*", "READ") for kind in ("experiment", "registered_model")
            ]
    return grants


def bootstrap_auth(settings: Settings) -> list[str]:
    """Create or update the admin and the service users in MLflow's user DB (running its
    migrations), then their grants; never lowers a grant (MANAGE from creating stays).
    Returns what it did, one line each, without any secret."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.permissions import PERMISSION_PRIORITY
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    url = settings.mlflow_auth_db
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore()
    try:
        with _unique_foreign_key_names(url):
            store.init_db(url)
    except Exception as error:  # unreachable DB, bad URL: one line, not a traceback
        raise AuthSetupError(f"MLflow's user DB {safe_url(url)}: {error}") from error
    done = []
    admin = ServiceUser("admin", settings.mlflow_admin_user, admin_password(settings),
                        "COVERTYPE_MLFLOW_ADMIN_PASSWORD")  # fmt: skip
    for user in [admin, *service_users(settings)]:
        is_admin = user.role == "admin"
        try:
            if not store.has_user(user.username, use_primary=True):
                store.create_user(user.username, user.password, is_admin=is_admin)
                done.append(f"MLflow user {user.username} created ({user.role})")
            elif not store.authenticate_user(user.username, user.password, use_primary=True):
                store.update_user(user.username, password=user.password)
                done.append(f"MLflow user {user.username}: password updated from {user.env}")
            if store.get_user(user.username).is_admin != is_admin:
                store.update_user(user.username, is_admin=is_admin)
                done.append(f"MLflow user {user.username}: admin {is_admin}")
        except MlflowException as error:
            problem = f"MLflow user {user.username} ({user.env}): {error.message}"
            raise AuthSetupError(problem) from None
    experiments = existing_experiments(
        settings, [settings.experiment_name, settings.monitoring_experiment]
    )
    for username, kind, pattern, permission in wanted_grants(settings, experiments):
        current = _current_grant(store, username, kind, pattern)
        if PERMISSION_PRIORITY.get(current, -2) >= PERMISSION_PRIORITY[permission]:
            continue
        store.grant_user_permission(username, kind, pattern, permission)
        done.append(f"MLflow grant: {username} {permission} on {kind} {pattern}")
    store.engine.dispose()
    return done


@contextlib.contextmanager
def _unique_foreign_key_names(url: str):
    """MLflow's first auth migration names two foreign keys `fk_user_id`; MySQL and MariaDB
    want the names unique in a database, so a fresh MySQL user DB fails ("Duplicate key on
    write or update", mlflow/mlflow#9642, #10964, open). While the migrations run, the second
    one is named after its table (no later migration refers to it by name)."""
    if not url.startswith("mysql"):
        yield
        return
    import sqlalchemy as sa
    from alembic.operations import Operations

    original = Operations.create_table

    def create_table(self, table_name, *columns, **kw):
        def renamed(column):
            if not (
                isinstance(column, sa.ForeignKeyConstraint)
                and column.name == "fk_user_id"
                and table_name != "experiment_permissions"
            ):
                return column
            targets = [element._colspec for element in column.elements]
            return sa.ForeignKeyConstraint(
                column.column_keys, targets, name=f"fk_{table_name}_user_id"
            )

        return original(self, table_name, *map(renamed, columns), **kw)

    Operations.create_table = create_table
    try:
        yield
    finally:
        Operations.create_table = original


def _current_grant(store, username: str, kind: str, pattern: str) -> str | None:
    """The permission of the user's own grant on exactly (kind, pattern), if any."""
    user_id = store.get_user(username).id
    workspace = store._get_active_workspace_name()  # "default" without workspaces
    for grant in store.list_grants(user_id, workspace, [kind]):
        if (grant.resource_type, grant.resource_pattern) == (kind, pattern):
            return grant.permission
    return None


NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def alias_missing(client, name: str, error) -> bool:
    """Whether `error` (an MlflowException of an alias lookup of model `name`) means there
    is no such model or alias yet. MLflow's auth (3.17) answers a non-admin's lookup of an
    alias of a model that does not exist with 403 "Permission denied", not 404: then the
    model itself is asked, which says 404 to whoever may read models."""
    from mlflow.exceptions import MlflowException

    if error.error_code in NOT_FOUND_CODES:
        return True
    if error.error_code != "PERMISSION_DENIED":
        return False
    try:
        client.get_registered_model(name)
    except MlflowException as asked:
        return asked.error_code == "RESOURCE_DOES_NOT_EXIST"
    return False


def connect(settings: Settings):
    """An MlflowClient for the tracking URI, after checking the server answers: retried
    `settings.mlflow_attempts` times, then TrackingUnreachable naming the URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow's own HTTP retries (7, with minutes of backoff) would hide an outage for long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # we print progress
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    error: Exception | None = None
    for attempt in range(1, settings.mlflow_attempts + 1):
        try:
            client.search_experiments(max_results=1)
            return client
        except (MlflowException, OSError) as caught:
            error = caught
            log.warning(
                "MLflow not answering",
                extra={
                    "uri": settings.mlflow_tracking_uri,
                    "attempt": attempt,
                    "error": str(caught),
                },
            )
            if attempt < settings.mlflow_attempts:
                time.sleep(settings.mlflow_backoff_seconds * 2 ** (attempt - 1))
    raise TrackingUnreachable(
        f"MLflow tracking server {settings.mlflow_tracking_uri} unreachable after "
        f"{settings.mlflow_attempts} attempts: {error}"
    )
