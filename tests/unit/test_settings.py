"""The settings: every variable the platform has documented reaches its field, the groups
keep the names users' `.env`, compose and Kubernetes files use, defaults are the local stack."""

import re

import pytest

from covertype.settings import Settings, SettingsError, env_name, get_settings, variables
from tests.support.environment import REPO

# Every variable of the release before the settings were grouped (2d3a8be): users' files use
# these names, so each must still set a field.
RELEASED = """
COVERTYPE_HOME COVERTYPE_SOURCE_DATA COVERTYPE_SOURCE_URL COVERTYPE_SOURCE_HOST
COVERTYPE_SOURCE_PORT COVERTYPE_GROUP_NUMBER COVERTYPE_BATCH_SECONDS COVERTYPE_SOURCE_ORDER
COVERTYPE_DATA_DB_URL COVERTYPE_INGEST_ATTEMPTS COVERTYPE_INGEST_BACKOFF_SECONDS
COVERTYPE_INGEST_TIMEOUT_SECONDS MLFLOW_TRACKING_URI COVERTYPE_MLFLOW_HOST COVERTYPE_MLFLOW_PORT
COVERTYPE_MLFLOW_BACKEND_STORE_URI COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION COVERTYPE_MLFLOW_WORKERS
COVERTYPE_MLFLOW_ALLOWED_HOSTS COVERTYPE_MLFLOW_ATTEMPTS COVERTYPE_MLFLOW_BACKOFF_SECONDS
MLFLOW_S3_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY COVERTYPE_MODEL_NAME
COVERTYPE_MODEL_ALIAS COVERTYPE_EXPERIMENT_NAME COVERTYPE_TRAIN_N_ITER COVERTYPE_TRAIN_SEED
COVERTYPE_TRAIN_THREADS COVERTYPE_HOLDOUT_PERCENT COVERTYPE_VALIDATION_PERCENT
COVERTYPE_MONITOR_PREDICTIONS_SECONDS COVERTYPE_MONITORING_EXPERIMENT
COVERTYPE_DRIFT_REFERENCE_ROWS COVERTYPE_DRIFT_MIN_ROWS COVERTYPE_RETRAIN_MIN_NEW_ROWS_PERCENT
COVERTYPE_API_URL COVERTYPE_SERVE_HOST COVERTYPE_SERVE_PORT COVERTYPE_SERVE_WORKERS
COVERTYPE_SERVE_WATCH_SECONDS COVERTYPE_SERVE_REGISTRY_TIMEOUT_SECONDS COVERTYPE_SERVE_MAX_BATCH
COVERTYPE_SERVE_PREDICTOR COVERTYPE_SERVE_MODEL_CACHE COVERTYPE_SERVE_ACCESS_LOG
COVERTYPE_PREDICTION_LOG COVERTYPE_PREDICTION_LOG_QUEUE COVERTYPE_PREDICTION_LOG_FLUSH_SECONDS
COVERTYPE_UI_HOST COVERTYPE_UI_PORT COVERTYPE_AIRFLOW_PORT COVERTYPE_LOCUST_PORT
COVERTYPE_LOCUST_HOST COVERTYPE_LOCUST_USER COVERTYPE_LOCUST_PASSWORD COVERTYPE_LOADTEST_DIR
COVERTYPE_PUBLIC_HOST COVERTYPE_MINIO_CONSOLE_PORT COVERTYPE_UI_LINKS COVERTYPE_LOCUST_URL
COVERTYPE_PROMETHEUS_HOST COVERTYPE_PROMETHEUS_PORT COVERTYPE_PROMETHEUS_URL
COVERTYPE_PROMETHEUS_SCRAPE_SECONDS COVERTYPE_GRAFANA_PORT COVERTYPE_AUTH COVERTYPE_API_KEYS
COVERTYPE_API_KEY COVERTYPE_METRICS_KEY COVERTYPE_UI_USER COVERTYPE_UI_PASSWORD
COVERTYPE_MLFLOW_ADMIN_USER COVERTYPE_MLFLOW_ADMIN_PASSWORD COVERTYPE_MLFLOW_AUTH_DB_URL
COVERTYPE_MLFLOW_DEFAULT_PERMISSION COVERTYPE_MLFLOW_AUTH_CACHE_SECONDS COVERTYPE_MLFLOW_TRAIN_USER
COVERTYPE_MLFLOW_TRAIN_PASSWORD COVERTYPE_MLFLOW_SERVE_USER COVERTYPE_MLFLOW_SERVE_PASSWORD
COVERTYPE_MLFLOW_UI_USER COVERTYPE_MLFLOW_UI_PASSWORD COVERTYPE_MLFLOW_METRICS_USER
MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD COVERTYPE_AIRFLOW_HOST
COVERTYPE_AIRFLOW_ADMIN_USER COVERTYPE_AIRFLOW_ADMIN_PASSWORD COVERTYPE_AIRFLOW_DB_URL
COVERTYPE_AIRFLOW_EXECUTOR COVERTYPE_AIRFLOW_BROKER_URL COVERTYPE_AIRFLOW_PARALLELISM
COVERTYPE_COLLECT_MARGIN_SECONDS COVERTYPE_COLLECT_TIMEOUT_SECONDS COVERTYPE_COLLECT_PROBE_SECONDS
COVERTYPE_TRAIN_TIMEOUT_SECONDS
""".split()  # noqa: SIM905 (a frozen list, compact)
# Added since, each by the change that needed it.
ADDED = [
    "COVERTYPE_REPRODUCE_TOLERANCE", "COVERTYPE_SERVE_BUDGET_US", "COVERTYPE_RELEASE_MODE",
    "COVERTYPE_CHALLENGER_ALIAS", "COVERTYPE_SHADOW_SHARE", "COVERTYPE_SHADOW_QUEUE",
    "COVERTYPE_RELEASE_F1_TOLERANCE", "COVERTYPE_RELEASE_LATENCY_FACTOR",
    "COVERTYPE_RELEASE_MIN_SHADOW_ROWS", "COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS",
    "COVERTYPE_ROLLBACK_MARGIN", "COVERTYPE_SHADOW_GATHER_RECORDS",
    "COVERTYPE_SHADOW_GATHER_SECONDS",
]  # fmt: skip
FRACTIONS = {
    "COVERTYPE_SHADOW_SHARE",
    "COVERTYPE_RELEASE_F1_TOLERANCE",
    "COVERTYPE_ROLLBACK_MARGIN",
}


def a_value(annotation: object, env: str) -> tuple[str, object]:
    """A valid value for the variable, distinct from its default: (as set, as read)."""
    kind = str(annotation)
    if "Literal" in kind:
        choices = annotation.__args__  # type: ignore[attr-defined]
        return choices[-1], choices[-1]
    if "int" in kind:
        return "7", 7
    if "float" in kind:
        return ("0.25", 0.25) if env in FRACTIONS else ("2.5", 2.5)
    if "Path" in kind:
        return "/tmp/a-path", "/tmp/a-path"
    text = {"COVERTYPE_UI_LINKS": "api,grafana"}.get(env, f"a-value-of-{env.lower()}-12345")
    return text, text


def read(settings: Settings, path: str) -> object:
    value = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def test_every_released_variable_still_sets_a_setting():
    names = [v.env for v in variables()]
    assert sorted(names) == sorted(RELEASED + ADDED), set(names) ^ set(RELEASED + ADDED)
    assert len(set(names)) == len(names), "two settings share a variable"


@pytest.mark.parametrize("variable", list(variables()), ids=lambda v: v.env)
def test_each_variable_reaches_its_field(variable):
    given, expected = a_value(variable.annotation, variable.env)
    settings = Settings.from_env({variable.env: given})
    value = read(settings, variable.path)
    assert str(value) == str(expected), f"{variable.env} did not reach {variable.path}"
    assert env_name(variable.path) == variable.env


def test_every_setting_is_in_env_example_and_the_docs_settings_reference():
    import importlib.util

    example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    names = [v.env for v in variables()]
    assert set(names) <= example, set(names) - example
    # The reference page as the docs build generates it (docs/hooks/reference.py).
    spec = importlib.util.spec_from_file_location(
        "docs_reference", REPO / "docs/hooks/reference.py"
    )
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    assert hook.documented_variables(hook.settings_page()) == names


def test_defaults_are_the_local_stack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    home = tmp_path / ".covertype"
    assert settings.home == home  # absolute: every process agrees
    assert settings.data_db == f"sqlite:///{home / 'cover_type.db'}"
    assert settings.mlflow.backend_store == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.serve.model_cache_dir == home / "serve-cache"
    assert settings.airflow.metadata_db == f"sqlite:///{home / 'airflow' / 'airflow.db'}"
    assert settings.source.url == "http://127.0.0.1:8087"
    assert settings.mlflow.tracking_uri == "http://127.0.0.1:8084"
    assert (settings.source.group_number, settings.source.batch_seconds) == (7, 300)
    assert (settings.serve.port, settings.ui.port, settings.loadtest.port) == (8085, 8086, 8089)


def test_environment_and_dotenv_override_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in RELEASED:  # e.g. mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "COVERTYPE_GROUP_NUMBER=3\nMLFLOW_TRACKING_URI=http://m:1\nCOVERTYPE_BATCH_SECONDS=9\n"
    )
    monkeypatch.setenv("covertype_batch_seconds", "2.5")  # any case, and before .env
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    settings = Settings()
    assert settings.source.group_number == 3 and settings.source.batch_seconds == 2.5
    assert settings.mlflow.tracking_uri == "http://m:1"
    assert "from-env" not in repr(settings)  # secrets stay out of logs and reprs
    assert settings.mlflow.aws_secret_access_key.get_secret_value() == "from-env"


def test_bad_values_are_named_by_their_variable_and_secrets_never_shown(monkeypatch):
    monkeypatch.setenv("COVERTYPE_SERVE_PORT", "eighty")
    monkeypatch.setenv("COVERTYPE_UI_PASSWORD", "secret-11ch")
    monkeypatch.setenv("COVERTYPE_SERVE_PREDICTOR", "gpu")
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as raised:
        get_settings()
    get_settings.cache_clear()
    message = str(raised.value)
    assert "COVERTYPE_SERVE_PORT='eighty'" in message
    assert "COVERTYPE_UI_PASSWORD=<hidden>: a password is too short (11 characters)" in message
    assert (
        "COVERTYPE_SERVE_PREDICTOR='gpu': Input should be 'auto', 'fast' or 'pipeline'" in message
    )
    assert "secret-11ch" not in message


def test_a_copy_with_other_variables_is_validated_again(tmp_path):
    settings = Settings.from_env({"COVERTYPE_HOME": tmp_path})
    other = settings.with_env({"COVERTYPE_MODEL_NAME": "other", "COVERTYPE_SERVE_PORT": "9000"})
    assert (other.mlflow.model_name, other.serve.port, other.home) == ("other", 9000, tmp_path)
    assert settings.mlflow.model_name == "covertype"
    with pytest.raises(SettingsError, match="COVERTYPE_SERVE_PORT='0': Input should be greater"):
        settings.with_env({"COVERTYPE_SERVE_PORT": "0"})


def test_settings_from_given_variables_ignore_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-the-environment:1")
    monkeypatch.setenv("COVERTYPE_SERVE_PORT", "1234")
    given = Settings.from_env({"COVERTYPE_HOME": tmp_path})
    assert (given.mlflow.tracking_uri, given.serve.port) == ("http://127.0.0.1:8084", 8085)
    copy = given.with_env({"COVERTYPE_UI_PORT": "9000"})
    assert (copy.mlflow.tracking_uri, copy.serve.port, copy.ui.port) == (
        "http://127.0.0.1:8084",
        8085,
        9000,
    )
    assert Settings().serve.port == 1234  # the environment's, where it is asked for
