"""MLflow's user DB bootstrapped before the server starts, with MLflow's own store: the admin
and the platform's service users (passwords from the environment at each start) and the
training user's grants."""

from __future__ import annotations

from pathlib import Path

from covertype.settings import Settings, safe_url
from covertype.tracking.auth_config import (
    AuthSetupError,
    ServiceUser,
    admin_password,
    service_users,
)
from covertype.tracking.mysql_foreign_keys import unique_foreign_key_names


def existing_experiments(settings: Settings, names: list[str]) -> dict[str, str]:
    """{name: experiment id} of those experiments already in the backend store (a fresh
    store has none; a non-SQL store is not looked in)."""
    import sqlalchemy as sa

    uri = settings.mlflow.backend_store
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
            grants.append((user.username, "registered_model", settings.mlflow.model_name, "EDIT"))
            grants += [(user.username, "experiment", i, "EDIT") for i in experiments.values()]
        elif settings.auth.mlflow_default_permission == "NO_PERMISSIONS":
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

    url = settings.auth.mlflow_auth_db
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore()
    try:
        with unique_foreign_key_names(url):
            store.init_db(url)
    except Exception as error:  # unreachable DB, bad URL: one line, not a traceback
        raise AuthSetupError(f"MLflow's user DB {safe_url(url)}: {error}") from error
    done = []
    admin = ServiceUser("admin", settings.auth.mlflow_admin_user, admin_password(settings),
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
        settings, [settings.mlflow.experiment_name, settings.monitor.experiment]
    )
    for username, kind, pattern, permission in wanted_grants(settings, experiments):
        current = _current_grant(store, username, kind, pattern)
        held = -2 if current is None else PERMISSION_PRIORITY.get(current, -2)  # -2: below all
        if held >= PERMISSION_PRIORITY[permission]:
            continue
        store.grant_user_permission(username, kind, pattern, permission)
        done.append(f"MLflow grant: {username} {permission} on {kind} {pattern}")
    store.engine.dispose()
    return done


def _current_grant(store, username: str, kind: str, pattern: str) -> str | None:
    """The permission of the user's own grant on exactly (kind, pattern), if any."""
    user_id = store.get_user(username).id
    workspace = store._get_active_workspace_name()  # "default" without workspaces
    for grant in store.list_grants(user_id, workspace, [kind]):
        if (grant.resource_type, grant.resource_pattern) == (kind, pattern):
            return grant.permission
    return None
