"""MLflow's own authentication on a real `covertype mlflow` (COVERTYPE_AUTH=on, the
covertype-auth app: MLflow's basic-auth app plus /metrics for the scraper), with the worker
count k8s ships (2): who may read, train, register and move the alias; what the server says
to a missing, empty, short or published admin password. One server for the module."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx
import pytest
from mlflow.exceptions import MlflowException

from tests.support.data import fill_data_db, training_settings
from tests.support.environment import run_cli
from tests.support.servers import free_port, start_mlflow

USERS = {  # role: (user, password); the metrics user's password is COVERTYPE_METRICS_KEY
    "admin": ("admin", "admin-password-for-tests"),
    "train": ("covertype-train", "train-password-for-tests"),
    "serve": ("covertype-serve", "serve-password-for-tests"),
    "ui": ("covertype-ui", "ui-password-for-tests"),
    "metrics": ("covertype-metrics", "metrics-key-for-the-tests"),
}
AUTH_ENV = {
    "COVERTYPE_AUTH": "on",
    "COVERTYPE_MLFLOW_ADMIN_PASSWORD": USERS["admin"][1],
    "COVERTYPE_MLFLOW_TRAIN_PASSWORD": USERS["train"][1],
    "COVERTYPE_MLFLOW_SERVE_PASSWORD": USERS["serve"][1],
    "COVERTYPE_MLFLOW_UI_PASSWORD": USERS["ui"][1],
    "COVERTYPE_METRICS_KEY": USERS["metrics"][1],
}
WORKERS = 2  # deploy/k8s/configmap.yaml's COVERTYPE_MLFLOW_WORKERS (compose: the default 1)


@contextlib.contextmanager
def signed_in(role: str):
    """MLflow's client as `role`'s user (MLFLOW_TRACKING_USERNAME/PASSWORD, as a service
    process gets them), restored after."""
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(zip(names, USERS[role], strict=True))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_frame):
    """The server, its names those of a small real training it then receives (covertype.train
    as the training user: the model and experiment created by that user)."""
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    settings = training_settings(tmp, "http://unset")
    env = AUTH_ENV | {
        "COVERTYPE_MODEL_NAME": settings.mlflow.model_name,
        "COVERTYPE_EXPERIMENT_NAME": settings.mlflow.experiment_name,
        "COVERTYPE_MLFLOW_WORKERS": str(WORKERS),
    }
    server = start_mlflow(tmp / "server", env)
    try:
        from covertype.train import train

        settings = settings.with_env({"MLFLOW_TRACKING_URI": server.url})
        fill_data_db(settings.data_db, real_frame, rows=2000, batches=1)
        with signed_in("train"):
            result = train(settings, candidates=[("lightgbm", {"n_estimators": 10})])
        server.settings, server.result = settings, result
        yield server
    finally:
        server.stop()


def client(server):
    from mlflow import MlflowClient

    return MlflowClient(server.url)


def test_anonymous_and_wrong_passwords_get_401_and_health_stays_open(trained):
    search = f"{trained.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search).status_code == 401
    assert httpx.get(search, auth=(USERS["serve"][0], "not-the-password")).status_code == 401
    assert httpx.get(search, auth=("nobody-at-all", USERS["serve"][1])).status_code == 401
    assert httpx.get(search, auth=USERS["serve"]).status_code == 200
    assert httpx.get(f"{trained.url}/health").status_code == 200
    with signed_in("train"), pytest.raises(MlflowException, match="401"):
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "a-wrong-password"
        client(trained).get_registered_model(trained.settings.mlflow.model_name)


def test_the_training_user_trained_registered_and_moved_the_alias(trained):
    name, result = trained.settings.mlflow.model_name, trained.result
    with signed_in("train"):
        mlflow_client = client(trained)
        assert mlflow_client.get_model_version_by_alias(name, "champion").version == str(
            result.version
        )
        # Another train-like round by hand: a run in a new experiment, a version, the alias.
        experiment = mlflow_client.create_experiment(f"{name}-by-hand")
        run = mlflow_client.create_run(experiment)
        mlflow_client.log_metric(run.info.run_id, "macro_f1", 0.5)
        trained_version = mlflow_client.get_model_version(name, str(result.version))
        logged_model = trained_version.source.removeprefix("models:/")
        version = mlflow_client.create_model_version(
            name, trained_version.source, model_id=logged_model
        )
        mlflow_client.set_registered_model_alias(name, "champion", version.version)
        mlflow_client.set_registered_model_alias(name, "champion", str(result.version))
    # What MLflow granted the creator of the model and the experiment (admin's view).
    for kind, resource in [("registered_model", name), ("experiment", experiment)]:
        answer = httpx.get(
            f"{trained.url}/api/3.0/mlflow/users/permissions/get",
            params={"username": USERS["train"][0], "resource_type": kind, "resource_id": resource},
            auth=USERS["admin"],
        )
        assert answer.status_code == 200, answer.text
        assert "MANAGE" in answer.text, answer.text


def test_the_serving_user_loads_the_champion_and_cannot_register_or_move_it(trained, tmp_path):
    import mlflow

    name, version = trained.settings.mlflow.model_name, str(trained.result.version)
    with signed_in("serve"):
        mlflow_client = client(trained)
        champion = mlflow_client.get_model_version_by_alias(name, "champion")
        assert champion.version == version
        mlflow.set_tracking_uri(trained.url)
        folder = mlflow.artifacts.download_artifacts(
            f"models:/{name}@champion", dst_path=str(tmp_path)
        )
        assert (Path(folder) / "MLmodel").is_file()
        with pytest.raises(MlflowException, match="403"):
            mlflow_client.create_model_version(
                name, champion.source, champion.run_id, model_id=champion.model_id
            )
        with pytest.raises(MlflowException, match="403"):
            mlflow_client.set_registered_model_alias(name, "champion", version)
        with pytest.raises(MlflowException, match="403"):
            mlflow_client.delete_registered_model_alias(name, "champion")
    with signed_in("ui"):
        assert client(trained).get_model_version_by_alias(name, "champion").version == version


def test_the_metrics_user_scrapes_metrics_and_every_worker_answers(trained):
    search = f"{trained.url}/api/2.0/mlflow/experiments/search?max_results=1"
    with httpx.Client(auth=USERS["serve"]) as session:
        for _ in range(20):
            assert session.get(search).status_code == 200
    metrics = f"{trained.url}/metrics"
    assert httpx.get(metrics).status_code == 401
    assert httpx.get(metrics, auth=USERS["serve"]).status_code == 403  # the scraper's only
    scraped = httpx.get(metrics, auth=USERS["metrics"])
    assert scraped.status_code == 200
    assert "mlflow_http_request_total" in scraped.text
    # prometheus_client's multiprocess files: one set per worker that served requests.
    files = (trained.settings.home.parent / "server" / "home" / "mlflow-metrics").iterdir()
    pids = {path.stem.rsplit("_", 1)[1] for path in files}
    assert len(pids) == WORKERS, pids


@pytest.mark.parametrize(
    ("password", "said"),
    [
        (None, "COVERTYPE_MLFLOW_ADMIN_PASSWORD is not set"),
        ("", "COVERTYPE_MLFLOW_ADMIN_PASSWORD=<hidden>: a password is empty"),
        ("short-pw", "COVERTYPE_MLFLOW_ADMIN_PASSWORD=<hidden>: a password is too short"),
        ("password1234", "COVERTYPE_MLFLOW_ADMIN_PASSWORD is MLflow's old published default"),
    ],
)
def test_the_server_refuses_a_missing_or_bad_admin_password(tmp_path, password, said):
    env = AUTH_ENV | {"COVERTYPE_HOME": str(tmp_path / "home")}
    env.pop("COVERTYPE_MLFLOW_ADMIN_PASSWORD")
    if password is not None:
        env["COVERTYPE_MLFLOW_ADMIN_PASSWORD"] = password
    done = run_cli(["mlflow", "--port", str(free_port())], env, tmp_path, timeout=60)
    assert done.returncode in (1, 2), done
    assert said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    if password and password != "password1234":  # the published one is named
        assert password not in done.stderr


def test_a_fresh_user_db_is_bootstrapped_once(data_db_url, tmp_path):
    """SQLite (local), and compose's and k8s' MySQL where COVERTYPE_TEST_MYSQL_URL is set
    (MLflow's first migration alone fails there)."""
    from covertype.settings import Settings
    from covertype.tracking.auth_users import bootstrap_auth

    settings = Settings.from_env(
        {
            "COVERTYPE_HOME": tmp_path / "home",
            "COVERTYPE_AUTH": "on",
            "COVERTYPE_MLFLOW_AUTH_DB_URL": data_db_url,
            "COVERTYPE_MLFLOW_ADMIN_PASSWORD": USERS["admin"][1],
            "COVERTYPE_MLFLOW_TRAIN_PASSWORD": USERS["train"][1],
        }
    )
    assert "MLflow user covertype-train created (train)" in bootstrap_auth(settings)
    assert bootstrap_auth(settings) == []


def test_no_model_yet_is_no_champion_for_every_user_not_a_permission_error(trained):
    # MLflow's auth answers a non-admin's alias lookup of a missing model with 403.
    from covertype.monitor.reference import find_champion

    settings = trained.settings.with_env({"COVERTYPE_MODEL_NAME": "never-registered"})
    for role in ("train", "serve", "ui"):
        with signed_in(role):
            assert find_champion(client(trained), settings) is None, role
