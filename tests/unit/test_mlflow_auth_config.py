"""`covertype mlflow` with COVERTYPE_AUTH=on, in-process: the config file MLflow reads, the
refusals, and the user DB bootstrap (MLflow's own store on SQLite). The server itself:
tests/integration/test_mlflow_auth.py."""

from __future__ import annotations

import importlib.metadata

import pytest

from covertype.settings import Settings
from covertype.tracking.auth_app import AUTH_APP
from covertype.tracking.auth_config import (
    AuthSetupError,
    auth_config_path,
    auth_environment,
    service_users,
)
from covertype.tracking.auth_users import bootstrap_auth, wanted_grants
from covertype.tracking.server import server_command

PASSWORDS = {
    "COVERTYPE_MLFLOW_ADMIN_PASSWORD": "admin-password-1",
    "COVERTYPE_MLFLOW_TRAIN_PASSWORD": "train-password-1",
    "COVERTYPE_MLFLOW_SERVE_PASSWORD": "serve-password-1",
    "COVERTYPE_METRICS_KEY": "metrics-key-0123456789",
}


def auth_settings(tmp_path, **env) -> Settings:
    base = {"COVERTYPE_HOME": tmp_path / "home", "COVERTYPE_AUTH": "on"}
    return Settings.from_env(base | {"COVERTYPE_MODEL_NAME": "m1"} | PASSWORDS | env)


def test_the_config_file_is_what_mlflow_reads(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    url = "mysql+pymysql://auth:p%40ss@db:3306/mlflow_auth"  # a % that ConfigParser would eat
    settings = auth_settings(
        tmp_path, COVERTYPE_MLFLOW_AUTH_DB_URL=url, COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS=0
    )
    stale = auth_config_path(settings)
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    stale.chmod(0o644)
    for name, value in auth_environment(settings).items():
        monkeypatch.setenv(name, value)
    assert stale.stat().st_mode & 0o777 == 0o600
    config = read_auth_config()
    assert (config.database_uri, config.default_permission) == (url, "READ")
    assert (config.admin_username, config.admin_password) == ("admin", "admin-password-1")
    assert config.auth_cache_ttl_seconds == 0
    assert "admin-password-1" not in stale.read_text()  # it comes from the environment


def test_auth_on_runs_the_auth_app_and_off_does_not(tmp_path):
    on = server_command(auth_settings(tmp_path))
    assert on[on.index("--app-name") + 1] == AUTH_APP
    assert "--app-name" not in server_command(auth_settings(tmp_path, COVERTYPE_AUTH="off"))
    apps = {e.name: e.value for e in importlib.metadata.entry_points(group="mlflow.app")}
    assert apps.get(AUTH_APP) == "covertype.tracking.auth_app:create_auth_app", (
        "pyproject.toml: [project.entry-points.'mlflow.app'] covertype-auth, then reinstall"
    )


@pytest.mark.parametrize(
    ("password", "said"),
    [(None, "is not set"), ("password1234", "old published default")],
)
def test_no_usable_admin_password_is_refused(tmp_path, password, said):
    settings = auth_settings(tmp_path, COVERTYPE_MLFLOW_ADMIN_PASSWORD=password)
    with pytest.raises(AuthSetupError, match=said) as refused:
        auth_environment(settings)
    assert "COVERTYPE_MLFLOW_ADMIN_PASSWORD" in str(refused.value)
    assert not auth_config_path(settings).exists()


def test_bootstrap_creates_updates_and_never_lowers_a_grant(tmp_path):
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    settings = auth_settings(tmp_path)
    done = bootstrap_auth(settings)
    assert "MLflow user covertype-train created (train)" in done
    assert "MLflow grant: covertype-train EDIT on registered_model m1" in done
    assert not any("covertype-ui" in line for line in done)  # no password, no user
    assert bootstrap_auth(settings) == []  # nothing changed, nothing done

    store = SqlAlchemyStore()
    store.init_db(settings.auth.mlflow_auth_db)
    # What MLflow does when the training user creates the model: MANAGE, kept at restarts.
    store.grant_user_permission("covertype-train", "registered_model", "m1", "MANAGE")
    changed = auth_settings(tmp_path, COVERTYPE_MLFLOW_SERVE_PASSWORD="a-new-serve-password")
    assert bootstrap_auth(changed) == [
        "MLflow user covertype-serve: password updated from COVERTYPE_MLFLOW_SERVE_PASSWORD"
    ]
    assert store.authenticate_user("covertype-serve", "a-new-serve-password")
    assert store.get_user("admin").is_admin and not store.get_user("covertype-train").is_admin
    train = store.get_user("covertype-train").id
    grants = store.list_grants(train, "default", ["registered_model"])
    assert [(g.resource_pattern, g.permission) for g in grants] == [("m1", "MANAGE")]


def test_readers_get_read_when_the_default_is_no_permissions(tmp_path):
    settings = auth_settings(tmp_path, COVERTYPE_MLFLOW_DEFAULT_PERMISSION="NO_PERMISSIONS")
    grants = wanted_grants(settings, {"covertype": "1"})
    assert ("covertype-train", "experiment", "1", "EDIT") in grants
    for user in ("covertype-serve", "covertype-metrics"):
        assert (user, "experiment", "*", "READ") in grants
        assert (user, "registered_model", "*", "READ") in grants
    assert wanted_grants(auth_settings(tmp_path), {}) == [
        ("covertype-train", "registered_model", "m1", "EDIT")
    ]


def test_two_users_of_one_name_are_refused(tmp_path):
    settings = auth_settings(tmp_path, COVERTYPE_MLFLOW_SERVE_USER="admin")
    with pytest.raises(AuthSetupError, match="share a name"):
        service_users(settings)
