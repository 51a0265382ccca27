"""How the platform's processes reach the tracking server: a checked connection, and what a
missing alias looks like through MLflow's auth."""

from __future__ import annotations

import logging
import os
import time

from covertype.errors import Unavailable
from covertype.settings import Settings

log = logging.getLogger(__name__)


class TrackingUnreachable(Unavailable):
    """The MLflow tracking server did not answer."""


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
    `settings.mlflow.attempts` times, then TrackingUnreachable naming the URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow's own HTTP retries (7, with minutes of backoff) would hide an outage for long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # we print progress
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    client = MlflowClient(settings.mlflow.tracking_uri)
    error: Exception | None = None
    for attempt in range(1, settings.mlflow.attempts + 1):
        try:
            client.search_experiments(max_results=1)
            return client
        except (MlflowException, OSError) as caught:
            error = caught
            log.warning(
                "MLflow not answering",
                extra={
                    "uri": settings.mlflow.tracking_uri,
                    "attempt": attempt,
                    "error": str(caught),
                },
            )
            if attempt < settings.mlflow.attempts:
                time.sleep(settings.mlflow.backoff_seconds * 2 ** (attempt - 1))
    raise TrackingUnreachable(
        f"MLflow tracking server {settings.mlflow.tracking_uri} unreachable after "
        f"{settings.mlflow.attempts} attempts: {error}"
    )
