import re

from covertype.settings import Settings, env_name
from tests.support.environment import REPO

ROOT = REPO


def env_names() -> set[str]:
    return {env_name(field) for field in Settings.model_fields}


def test_every_setting_is_in_env_example_and_readme():
    example = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    readme = (ROOT / "README.md").read_text()
    assert env_names() <= example, env_names() - example
    missing = {name for name in env_names() if f"`{name}`" not in readme}
    assert not missing, f"settings missing from the README table: {missing}"


def test_defaults_are_the_local_stack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.home == tmp_path / ".covertype"  # absolute: every process agrees
    assert settings.data_db == f"sqlite:///{tmp_path / '.covertype' / 'cover_type.db'}"
    assert settings.source_url == "http://127.0.0.1:8087"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:8084"
    assert (settings.group_number, settings.batch_seconds) == (7, 300)
    assert (settings.serve_port, settings.ui_port, settings.locust_port) == (8085, 8086, 8089)


def test_environment_and_dotenv_override_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in env_names():  # e.g. mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("COVERTYPE_GROUP_NUMBER=3\nMLFLOW_TRACKING_URI=http://m:1\n")
    monkeypatch.setenv("COVERTYPE_BATCH_SECONDS", "2.5")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    settings = Settings()
    assert settings.group_number == 3 and settings.batch_seconds == 2.5
    assert settings.mlflow_tracking_uri == "http://m:1"
    assert "from-env" not in repr(settings)  # secrets stay out of logs and reprs
    assert settings.aws_secret_access_key.get_secret_value() == "from-env"
