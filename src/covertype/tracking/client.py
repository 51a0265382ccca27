"""How the platform's processes reach the tracking server: a checked connection, and what a
missing alias looks like through MLflow's auth."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import TYPE_CHECKING

from covertype.errors import Unavailable
from covertype.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)


class TrackingUnreachable(Unavailable):
    """The MLflow tracking server did not answer."""


NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def alias_missing(client: MlflowClient, name: str, error: MlflowException) -> bool:
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


def registry_client(settings: Settings) -> MlflowClient:
    """An MlflowClient of the registry for a server that asks it on its own schedule (the
    inference API's model holder): no retries, `settings.serve.registry_timeout_seconds`."""
    import mlflow

    # MLflow's client reads these per call. No retries of its own (they back off for
    # seconds, and the holder's lock is held meanwhile): the watcher asks again next interval.
    timeout = math.ceil(settings.serve.registry_timeout_seconds)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    # Its tqdm bar would write non-JSON lines into the service's JSON log.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    uri = settings.mlflow.tracking_uri
    # models:/ downloads resolve the version through MLflow's global registry URI
    # (whatever is passed), whose default is a local SQLite file, not the server.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, registry_uri=uri)


def connect(settings: Settings) -> MlflowClient:
    """An MlflowClient for the tracking URI, after checking the server answers: retried
    `settings.mlflow.attempts` times, then TrackingUnreachable naming the URI."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # MLflow's own HTTP retries (7, with minutes of backoff) would hide an outage for long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # we print progress
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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
