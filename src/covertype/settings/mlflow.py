"""The MLflow tracking server (how it runs, how clients reach it), its artifact store, and
the names of the experiment and the registered model."""

from __future__ import annotations

from pydantic import SecretStr

from covertype.settings.values import Group, setting


class MlflowSettings(Group):
    tracking_uri: str = setting(
        "http://127.0.0.1:8084", "MLFLOW_TRACKING_URI", "the MLflow tracking server clients call"
    )
    host: str = setting("127.0.0.1", "COVERTYPE_MLFLOW_HOST", "where the MLflow server listens")
    port: int = setting(8084, "COVERTYPE_MLFLOW_PORT", "the MLflow server's port", ge=1, le=65535)
    backend_store_uri: str | None = setting(
        None,
        "COVERTYPE_MLFLOW_BACKEND_STORE_URI",
        "the MLflow server's DB; unset: SQLite in COVERTYPE_HOME (MySQL in compose)",
    )
    artifacts_destination: str | None = setting(
        None,
        "COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION",
        "where the MLflow server keeps artifacts; unset: a folder in COVERTYPE_HOME (S3 in "
        "compose)",
    )
    workers: int = setting(1, "COVERTYPE_MLFLOW_WORKERS", "the MLflow server's workers", ge=1)
    allowed_hosts: str | None = setting(
        None,
        "COVERTYPE_MLFLOW_ALLOWED_HOSTS",
        "Host headers the MLflow server accepts; unset: localhost and private IPs",
    )
    attempts: int = setting(
        3, "COVERTYPE_MLFLOW_ATTEMPTS", "tries to reach the tracking server", ge=1
    )
    backoff_seconds: float = setting(
        2.0, "COVERTYPE_MLFLOW_BACKOFF_SECONDS", "first wait between those tries, doubling", ge=0
    )
    s3_endpoint_url: str | None = setting(
        None, "MLFLOW_S3_ENDPOINT_URL", "the S3 server of the artifact store (MinIO); unset: AWS"
    )
    aws_access_key_id: str | None = setting(
        None, "AWS_ACCESS_KEY_ID", "the artifact store's access key"
    )
    aws_secret_access_key: SecretStr | None = setting(
        None, "AWS_SECRET_ACCESS_KEY", "the artifact store's secret key"
    )
    model_name: str = setting("covertype", "COVERTYPE_MODEL_NAME", "the registered model")
    model_alias: str = setting(
        "champion", "COVERTYPE_MODEL_ALIAS", "the alias the inference API serves"
    )
    experiment_name: str = setting(
        "covertype", "COVERTYPE_EXPERIMENT_NAME", "the MLflow experiment of the trainings"
    )

    @property
    def backend_store(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self._home / 'mlflow.db'}"

    @property
    def artifacts(self) -> str:
        return self.artifacts_destination or str(self._home / "mlartifacts")
